"""Postgres: examples sent as numpy-framed binary COPY tuples are stored exactly as the row-by-row COPY stores them.

The same export is imported as two sources of one model: once through ``writer._copy_stream`` (the
fast framing) and once with it switched off (psycopg's ``write_row`` per example). Every stored
column of every example must be the same, blobs byte for byte, NULLs included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ingest_helpers import (
    no_embedding_on_import,  # noqa: F401  (autouse fixture)
    np_activation,
    np_feature,
    write_jsonl,
)
from sqlalchemy import select

from interpedia.db.tables import Activation, Feature, Source
from interpedia.ingest import import_path
from interpedia.store import writer

MODEL = "np-model"
TOKENS = ["Ġthe", "Ġcat", "Ġ日本", "<|endoftext|>", "Ċ", "\n", 'Ġ"quoted"', "x" * 300]


def _rows(layer: str, *, with_extras: bool) -> list[dict[str, Any]]:
    rows = []
    for i in range(5):
        for k in range(9):
            n = 4 + (k * 53 + i * 7) % 400  # past 256 tokens: u16 positions; some dense examples
            tokens = [TOKENS[(i + j * (k + 1)) % len(TOKENS)] for j in range(n)]
            dense = k == 5
            values = [round((j % 11 - 3) / 7, 4) if dense or (j + k) % 6 == 0 else 0.0 for j in range(n)]
            row = np_activation(MODEL, layer, i, tokens, values)
            if k == 2:
                row.update(binMin=None, qualifyingTokenIndex=None)
            if k == 3:
                row.update(binMax=None, binContains=None)
            if k == 4:
                row.update(binMin=-1.0, binMax=3.4e38, binContains=1e-30, qualifyingTokenIndex=2**31 - 1)
            if with_extras and k == 6:
                row.update(dataSource="pile", dataIndex="17")
            rows.append(row)
    return rows


def _source(root: Path, layer: str, *, with_extras: bool) -> None:
    base = root / MODEL / layer
    write_jsonl(base / "features" / "batch-0.jsonl.gz", [np_feature(MODEL, layer, i) for i in range(5)])
    write_jsonl(base / "activations" / "batch-0.jsonl.gz", _rows(layer, with_extras=with_extras))


def _stored(factory: Any, source_name: str) -> dict[int, list[tuple[Any, ...]]]:
    with factory() as session:
        source = session.scalar(select(Source).where(Source.name == source_name))
        assert source is not None
        out = {}
        for feat in session.scalars(select(Feature).where(Feature.source_id == source.id)):
            acts = session.execute(
                select(
                    Activation.data,
                    Activation.max_value,
                    Activation.bin_min,
                    Activation.bin_max,
                    Activation.bin_contains,
                    Activation.qualifying_token_index,
                    Activation.extras,
                    Activation.creator_id,
                )
                .where(Activation.feature_id == feat.id)
                .order_by(Activation.id)
            ).all()
            out[feat.index] = [(bytes(a[0]), *a[1:]) for a in acts]
    return out


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)  # binary COPY is the Postgres path
@pytest.mark.parametrize("with_extras", [False, True], ids=["framed", "extras-fall-back"])
def test_framed_copy_stores_what_row_copy_stores(
    backend: str, factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_extras: bool
) -> None:
    root = tmp_path / "export"
    _source(root, "3-res-framed", with_extras=with_extras)
    _source(root, "3-res-rows", with_extras=with_extras)
    framed = writer._copy_stream
    used: list[bool] = []

    def spy(columns: Any, feature_ids: Any, token_ids: Any) -> bytes | None:
        out = framed(columns, feature_ids, token_ids)
        used.append(out is not None)
        return out

    monkeypatch.setattr(writer, "_copy_stream", spy)
    import_path(root / MODEL / "3-res-framed", factory, batch_size=1)
    monkeypatch.setattr(writer, "_copy_stream", lambda *args: None)
    import_path(root / MODEL / "3-res-rows", factory, batch_size=1)
    # The framing took every batch unless the batch had extras, which only the row path writes.
    assert used and all(used) is (not with_extras)
    got_framed, got_rows = _stored(factory, "3-res-framed"), _stored(factory, "3-res-rows")
    assert sorted(got_framed) == list(range(5))
    assert sum(len(v) for v in got_framed.values()) == 45
    assert got_framed == got_rows
    nulls = [a for acts in got_framed.values() for a in acts if a[2] is None or a[4] is None or a[5] is None]
    assert nulls, "the data must exercise NULL fields"
