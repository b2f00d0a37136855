"""Activation files are read ahead in background threads; the result is what a plain sequential read stores.

A source with several activation files is imported with small batches, so each file has several
batches, the first file is read while the features are written and each next one while the last
batches of the one before are written. The middle file's fast reader gives up after its first
batch (the validating reader takes over from there, as after a crash). What is stored must equal
what the validating reader alone stores, and no reader thread may outlive the import, whether it
ends well or with an error.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ingest_helpers import (
    no_embedding_on_import,  # noqa: F401  (autouse fixture)
    np_activation,
    np_feature,
    write_jsonl,
)
from test_import_fast_path import _stored

from interpedia.ingest import columnar, import_path
from interpedia.ingest.validate import BadInput

MODEL = "np-model"
TOKENS = ["Ġthe", "Ġcat", "Ġsat", "Ġ日本", "<|endoftext|>", "Ċ", ".", "Ġon"]
N_FEATURES = 12
EXAMPLES = 20  # 80 lines per file: batch_size=1 cuts batches at 45 lines, so each file has two


def _activation_rows(layer: str, features: range) -> list[dict[str, Any]]:
    rows = []
    for i in features:
        for k in range(EXAMPLES):
            n = 6 + (i * 5 + k * 3) % 20
            tokens = [TOKENS[(i + j * (k + 2)) % len(TOKENS)] for j in range(n)]
            values = [round((j % 5) / 4 + i / 10, 4) if (j + k) % 3 == 0 else 0.0 for j in range(n)]
            rows.append(np_activation(MODEL, layer, i, tokens, values))
    return rows


def _source(root: Path, layer: str) -> Path:
    base = root / MODEL / layer
    write_jsonl(base / "features" / "batch-0.jsonl.gz", [np_feature(MODEL, layer, i) for i in range(N_FEATURES)])
    for part, features in enumerate((range(0, 4), range(4, 8), range(8, N_FEATURES))):
        write_jsonl(base / "activations" / f"batch-{part}.jsonl.gz", _activation_rows(layer, features))
    return base


def _readers_alive() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "interpedia-reader"]


def test_read_ahead_over_several_files_stores_what_the_validating_reader_stores(
    tmp_path: Path, factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = columnar.np_activation_batches
    used: list[str] = []

    def middle_gives_up(file: Path, *args: Any, **kwargs: Any) -> Iterator[Any]:
        if "3-res-slow" in str(file):
            raise columnar.NotFast("switched off by the test")
        used.append(file.name)
        for n, batch in enumerate(fast(file, *args, **kwargs)):
            if n == 1 and file.name == "batch-1.jsonl.gz":
                used.append("gave up")
                raise columnar.NotFast("gives up after one batch (test)")
            yield batch

    monkeypatch.setattr(columnar, "np_activation_batches", middle_gives_up)
    import_path(_source(tmp_path / "a", "3-res-ahead"), factory, batch_size=1)
    import_path(_source(tmp_path / "b", "3-res-slow"), factory, batch_size=1)
    assert used == ["batch-0.jsonl.gz", "batch-1.jsonl.gz", "gave up", "batch-2.jsonl.gz"]
    ahead, slow = _stored(factory, "3-res-ahead"), _stored(factory, "3-res-slow")
    assert sorted(ahead) == list(range(N_FEATURES))
    assert all(len(acts) == EXAMPLES for _, acts in ahead.values())
    assert ahead == slow
    assert _readers_alive() == []


def test_an_error_before_the_activations_stops_the_reader_started_ahead(tmp_path: Path, factory: Any) -> None:
    base = _source(tmp_path, "3-res-bad")
    rows = [np_feature(MODEL, "3-res-bad", i) for i in range(N_FEATURES)]
    rows[5]["frac_nonzero"] = "lots"
    write_jsonl(base / "features" / "batch-0.jsonl.gz", rows)
    with pytest.raises(BadInput, match="frac_nonzero"):
        import_path(base, factory, batch_size=1)
    assert _readers_alive() == []


def test_an_error_in_a_later_file_stops_every_reader(tmp_path: Path, factory: Any) -> None:
    base = _source(tmp_path, "3-res-late")
    rows = _activation_rows("3-res-late", range(8, N_FEATURES))
    rows[-1]["values"][0] = float("nan")
    write_jsonl(base / "activations" / "batch-2.jsonl.gz", rows)
    with pytest.raises(BadInput, match="batch-2"):
        import_path(base, factory, batch_size=1)
    assert _readers_alive() == []
    # What came before the bad file is stored, and a rerun after fixing it completes the import.
    write_jsonl(base / "activations" / "batch-2.jsonl.gz", _activation_rows("3-res-late", range(8, N_FEATURES)))
    import_path(base, factory, batch_size=1)
    stored = _stored(factory, "3-res-late")
    assert sorted(stored) == list(range(N_FEATURES))
    assert all(len(acts) == EXAMPLES for _, acts in stored.values())
