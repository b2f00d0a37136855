"""The fast (Arrow) readers store exactly what the validating readers store, and really are the ones used.

Each test imports the same data twice into one database, as two sources of one model: once as it
comes (the fast reader takes it) and once with the fast reader switched off. Every stored column of
every example and feature must be the same, blobs byte for byte (the model's vocabulary is shared).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from factories import make_feature
from ingest_helpers import (
    no_embedding_on_import,  # noqa: F401  (autouse fixture)
    np_activation,
    np_feature,
    write_jsonl,
)
from sqlalchemy import select

from interpedia.db.tables import Activation, Feature, Source
from interpedia.ingest import columnar, import_path, npactivations, saedashboard
from interpedia.store.records import FEATURE_STAT_COLUMNS

MODEL = "np-model"
TOKENS = ["Ġthe", "Ġcat", "a\x00b", "Ġ日本", "<|endoftext|>", "Ċ", "\n", 'Ġ"quoted"']


def _stored(factory: Any, source_name: str) -> dict[int, Any]:
    """Everything stored for each feature of a source: its statistics and its examples in id order."""
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
            out[feat.index] = (
                {c: getattr(feat, c) for c in FEATURE_STAT_COLUMNS},
                [(bytes(a[0]), *a[1:]) for a in acts],
            )
    return out


def _np_rows(layer: str) -> list[dict[str, Any]]:
    rows = []
    for i in range(6):
        for k in range(10):
            n = 5 + (k * 37 + i) % 300 if k else 3
            tokens = [TOKENS[(i + j * k) % len(TOKENS)] for j in range(n)]
            values: list[Any] = [round(((i + 1) * (j % 7) - 9) / 8, 4) if (j + k) % 5 == 0 else 0.0 for j in range(n)]
            row = np_activation(MODEL, layer, i, tokens, values)
            if k == 1:
                row["values"] = [j % 3 for j in range(n)]  # integers are numbers too
            if k == 2:
                row.update(
                    dfaValues=[0.5] * n,
                    dfaTargetIndex=1,
                    dfaMaxValue=0.5,
                    dataSource="pile",
                    dataIndex="17",
                    logitContributions=json.dumps({"a": 1}),
                )
            if k == 3:
                row.update(zIndices=[[1, 2], [0, 1]], zValues=[0.25, 0.5], lossValues=[0.125] * n)
            if k == 4:
                row.update(binMin=None, qualifyingTokenIndex=None)
            rows.append(row)
    return rows


def _np_source(root: Path, layer: str) -> None:
    base = root / MODEL / layer
    write_jsonl(base / "features" / "batch-0.jsonl.gz", [np_feature(MODEL, layer, i) for i in range(6)])
    write_jsonl(base / "activations" / "batch-0.jsonl.gz", _np_rows(layer))


def test_export_fast_reader_stores_what_the_validating_reader_stores(
    factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "export"
    _np_source(root, "3-res-fast")
    _np_source(root, "3-res-slow")
    fast = columnar.np_activation_batches
    slow = npactivations._activation_batches
    validated: list[str] = []

    def fast_unless_slow(file: Path, *args: Any, **kwargs: Any) -> Any:
        if "3-res-slow" in str(file):
            raise columnar.NotFast("switched off by the test")
        yield from fast(file, *args, **kwargs)

    def spy(file: Path, *args: Any, **kwargs: Any) -> Any:
        validated.append(file.parent.parent.name)
        return slow(file, *args, **kwargs)

    monkeypatch.setattr(columnar, "np_activation_batches", fast_unless_slow)
    monkeypatch.setattr(npactivations, "_activation_batches", spy)
    summary = import_path(root, factory, batch_size=1)  # 45 lines a batch: several batches per file
    assert validated == ["3-res-slow"]
    assert summary.counts.activations == 2 * 60
    got_fast, got_slow = _stored(factory, "3-res-fast"), _stored(factory, "3-res-slow")
    assert sorted(got_fast) == list(range(6))
    assert got_fast == got_slow
    extras = [a[6] for _, acts in got_fast.values() for a in acts if a[6]]
    assert {
        "dfaValues",
        "dfaTargetIndex",
        "dataSource",
        "logitContributions",
        "zKIndices",
        "zValues",
        "lossValues",
    } <= {k for e in extras for k in e}


def _sd_dir(path: Path, sae_set: str) -> Path:
    path.mkdir(parents=True)
    for n in range(2):
        feats = [make_feature(i, n_tokens=40) for i in range(4 * n, 4 * n + 4)]
        feats[0]["activations"][0]["values"] = [j % 2 for j in range(40)]
        feats[0]["activations"][1]["tokens"][3] = "Ġ日本"
        feats[1]["activations"][2].update(
            dfa_values=[0.25] * 40, dfa_maxValue=0.25, dfa_targetIndex=3, loss_values=[0.5] * 40
        )
        feats[2]["activations"][0]["logit_contributions"] = '{"top": 1}'
        feats[3]["activations"] = []
        feats[3]["frac_nonzero"] = 0.0
        doc = {"model_id": "tiny-test", "layer": 0, "sae_set": sae_set, "sae_id_suffix": None, "features": feats}
        (path / f"batch-{n}.json").write_text(json.dumps(doc, indent=1 if n else None))
    return path


def test_saedashboard_fast_reader_stores_what_the_validating_reader_stores(
    factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed = []
    parse = saedashboard.parse_feature
    monkeypatch.setattr(
        saedashboard, "parse_feature", lambda raw, *, file: parsed.append(file) or parse(raw, file=file)
    )
    import_path(_sd_dir(tmp_path / "fast", "res-fast"), factory)
    assert parsed == []

    def not_fast(*args: Any, **kwargs: Any) -> Any:
        raise columnar.NotFast("switched off by the test")

    monkeypatch.setattr(columnar, "saedashboard_batch", not_fast)
    import_path(_sd_dir(tmp_path / "slow", "res-slow"), factory)
    assert len(parsed) == 8
    got_fast, got_slow = _stored(factory, "0-res-fast"), _stored(factory, "0-res-slow")
    assert sorted(got_fast) == list(range(8))
    assert got_fast == got_slow
    assert got_fast[3][0]["max_act_approx"] == 0.0 and got_fast[3][1] == []
