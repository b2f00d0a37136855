"""Bad input: a clear error naming the file, the feature and the field, and nothing of the bad batch written.

Each SAEDashboard case breaks ``batch-1.json`` (features 4-7) of a three-file directory: ``batch-0.json``
(features 0-3) is a good batch that came first and may stay; nothing of ``batch-1.json`` may be written, and
the import stops there.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from factories import make_feature, write_saedashboard_dir
from ingest_helpers import (
    counts,
    no_embedding_on_import,  # noqa: F401  (autouse fixture)
    np_activation,
    np_feature,
    write_jsonl,
    write_np_export,
)
from sqlalchemy import func, select

from interpedia.db.tables import Feature
from interpedia.ingest import BadInput, import_path

GOOD_FIRST_BATCH = {"features": 4, "activations": 20, "explanations": 0}


def _indexes(factory: Any) -> set[int]:
    with factory() as session:
        return set(session.scalars(select(Feature.index)))


def _sd_dir(tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    path = write_saedashboard_dir(tmp_path / "sd", n_features=12, per_batch=4)
    file = path / "batch-1.json"
    doc = json.loads(file.read_text())
    edit(doc)
    file.write_text(json.dumps(doc))  # json.dumps writes NaN / Infinity / -Infinity literals
    return path


def _feature(doc: dict[str, Any], index: int) -> dict[str, Any]:
    return next(f for f in doc["features"] if f["feature_index"] == index)


def _import_fails(factory: Any, path: Path, *patterns: str) -> BadInput:
    with pytest.raises(BadInput) as info:
        import_path(path, factory)
    message = str(info.value)
    for pattern in patterns:
        assert pattern in message, f"{pattern!r} not in {message!r}"
    return info.value


def _only_first_batch_written(factory: Any) -> None:
    got = counts(factory)
    assert {k: got[k] for k in GOOD_FIRST_BATCH} == GOOD_FIRST_BATCH
    assert _indexes(factory) == {0, 1, 2, 3}


def test_malformed_json(factory: Any, tmp_path: Path) -> None:
    path = write_saedashboard_dir(tmp_path / "sd", n_features=12, per_batch=4)
    text = (path / "batch-1.json").read_text()
    (path / "batch-1.json").write_text(text[: len(text) // 2])
    err = _import_fails(factory, path, "batch-1.json", "malformed JSON")
    assert err.file == "batch-1.json"
    _only_first_batch_written(factory)


def test_tokens_values_length_mismatch(factory: Any, tmp_path: Path) -> None:
    def edit(doc: dict[str, Any]) -> None:
        _feature(doc, 6)["activations"][2]["values"].pop()

    _import_fails(
        factory,
        _sd_dir(tmp_path, edit),
        "batch-1.json",
        "feature 6",
        "activations[2].values",
        "16 tokens but 15 values",
    )
    _only_first_batch_written(factory)


NAN_INF_CASES = [  # (value, field of feature 5, how the message shows it)
    (math.nan, "activations[1].values", "nan"),
    (math.inf, "activations[1].values", "inf"),
    (-math.inf, "activations[1].values", "-inf"),
    (math.nan, "frac_nonzero", "nan"),
    (math.inf, "pos_values", "inf"),
    (-math.inf, "logits_hist_data_bar_values", "-inf"),
]


def test_nan_and_inf(factory: Any, tmp_path: Path) -> None:
    """Each case is a retry on the same database: batch-0 stays imported, batch-1 is refused every time."""
    for bad, field, shown in NAN_INF_CASES:

        def edit(doc: dict[str, Any], bad: float = bad, field: str = field) -> None:
            feat = _feature(doc, 5)
            if field.startswith("activations"):
                feat["activations"][1]["values"][3] = bad
            elif field == "frac_nonzero":
                feat[field] = bad
            else:
                feat[field][1] = bad

        path = _sd_dir(tmp_path, edit)
        assert ("NaN" if math.isnan(bad) else "Infinity") in (path / "batch-1.json").read_text()
        err = _import_fails(factory, path, "batch-1.json", "feature 5", f"'{field}'", "finite", shown)
        assert (err.file, err.feature, err.field) == ("batch-1.json", 5, field)
        _only_first_batch_written(factory)


def test_duplicate_feature_index(factory: Any, tmp_path: Path) -> None:
    def edit(doc: dict[str, Any]) -> None:
        doc["features"][3] = make_feature(5)

    _import_fails(factory, _sd_dir(tmp_path, edit), "batch-1.json", "feature 5", "duplicate feature index 5")
    _only_first_batch_written(factory)


def test_negative_feature_index(factory: Any, tmp_path: Path) -> None:
    def edit(doc: dict[str, Any]) -> None:
        doc["features"][2]["feature_index"] = -3

    _import_fails(factory, _sd_dir(tmp_path, edit), "batch-1.json", "feature -3", "'feature_index'", ">= 0")
    _only_first_batch_written(factory)


WRONG_TYPES: list[tuple[Callable[[dict[str, Any]], None], tuple[str, ...]]] = [  # (edit feature 5, message)
    (
        lambda f: f["activations"][0].update(values=[str(v) for v in f["activations"][0]["values"]]),
        ("feature 5", "'activations[0].values'", "expected a list of numbers"),
    ),
    (lambda f: f["activations"][1].update(tokens=42), ("feature 5", "'activations[1].tokens'", "got 42")),
    (lambda f: f.update(feature_index="abc"), ("feature 'abc'", "'feature_index'", "expected an integer")),
    (lambda f: f.update(activations={"tokens": []}), ("feature 5", "'activations'", "expected a list")),
    (lambda f: f.update(frac_nonzero="high"), ("feature 5", "'frac_nonzero'", "expected a number")),
    (lambda f: f.update(pos_str=[1, 2]), ("feature 5", "'pos_str'", "expected a list of strings")),
    (
        lambda f: f.update(neuron_alignment_indices=[0.5, 1]),
        ("feature 5", "'neuron_alignment_indices'", "expected a list of integers"),
    ),
    (
        lambda f: f["activations"][0].update(bin_min="low"),
        ("feature 5", "'activations[0].bin_min'", "expected a number"),
    ),
]


def test_wrong_types(factory: Any, tmp_path: Path) -> None:
    """Values as strings, tokens as a number, feature_index "abc", ...: each refused, nothing of it written."""
    for edit, expected in WRONG_TYPES:
        path = _sd_dir(tmp_path, lambda doc, edit=edit: edit(_feature(doc, 5)))
        _import_fails(factory, path, "batch-1.json", *expected)
        _only_first_batch_written(factory)


def test_bad_first_batch_creates_no_empty_source(factory: Any, tmp_path: Path) -> None:
    path = write_saedashboard_dir(tmp_path / "sd", n_features=4, per_batch=4)
    doc = json.loads((path / "batch-0.json").read_text())
    doc["features"][1]["activations"][0]["values"][0] = math.nan
    (path / "batch-0.json").write_text(json.dumps(doc))
    _import_fails(factory, path, "batch-0.json", "feature 1", "'activations[0].values'")
    assert counts(factory) == {
        "features": 0,
        "activations": 0,
        "explanations": 0,
        "imported_batches": 0,
        "models": 0,
        "sources": 0,
    }


def test_bad_source_id_is_a_clear_error(factory: Any, tmp_path: Path) -> None:
    path = write_saedashboard_dir(tmp_path / "sd", n_features=2)
    from interpedia.ingest import DashboardOptions

    with pytest.raises(BadInput, match=r"source"):
        import_path(path, factory, options=DashboardOptions(layer="7 8"))
    assert counts(factory)["features"] == 0


# --- the Neuronpedia export layout ----------------------------------------------------------------------------


def _np_source(tmp_path: Path) -> Path:
    """An export whose features and first activation file are good; tests break ``activations/batch-1``."""
    root = write_np_export(tmp_path / "export", n_features=4)
    base = root / "np-model" / "3-res-np"
    write_jsonl(base / "features" / "batch-1.jsonl.gz", [np_feature("np-model", "3-res-np", i) for i in (4, 5, 6)])
    return root


def _np_acts(root: Path, rows: list[dict[str, Any]]) -> None:
    write_jsonl(root / "np-model" / "3-res-np" / "activations" / "batch-1.jsonl.gz", rows)


def _np_good_rows() -> list[dict[str, Any]]:
    return [np_activation("np-model", "3-res-np", i, ["a", "b", "c"], [0.0, 1.5, 0.25]) for i in (4, 5, 6)]


NP_GOOD_PART = {"features": 7, "activations": 8, "explanations": 0}


def _np_only_good_written(factory: Any) -> None:
    got = counts(factory)
    assert {k: got[k] for k in NP_GOOD_PART} == NP_GOOD_PART


def test_truncated_gzip(factory: Any, tmp_path: Path) -> None:
    root = _np_source(tmp_path)
    rows = [
        np_activation("np-model", "3-res-np", i, [f"t{j}" for j in range(64)], [j / 7 for j in range(64)])
        for i in (4, 5, 6)
        for _ in range(5)
    ]
    _np_acts(root, rows)
    file = root / "np-model" / "3-res-np" / "activations" / "batch-1.jsonl.gz"
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])
    err = _import_fails(factory, root, "activations/batch-1.jsonl.gz", "truncated")
    assert err.file == "np-model/3-res-np/activations/batch-1.jsonl.gz"
    _np_only_good_written(factory)


@pytest.mark.parametrize(
    ("change", "field", "shown"),
    [
        ({"modelId": "gpt2-small"}, "modelId", "unknown model 'gpt2-small'"),
        ({"layer": "4-res-np"}, "layer", "unknown source '4-res-np'"),
    ],
    ids=["unknown-model", "unknown-source"],
)
def test_unknown_model_or_source(factory: Any, tmp_path: Path, change: dict[str, str], field: str, shown: str) -> None:
    root = _np_source(tmp_path)
    rows = _np_good_rows()
    rows[1].update(change)
    _np_acts(root, rows)
    err = _import_fails(factory, root, "activations/batch-1.jsonl.gz", "feature 5", f"'{field}'", "line 2", shown)
    assert (err.feature, err.field) == (5, field)
    _np_only_good_written(factory)


def test_export_nan_in_activation_row(factory: Any, tmp_path: Path) -> None:
    root = _np_source(tmp_path)
    rows = _np_good_rows()
    rows[2]["values"][1] = math.nan
    _np_acts(root, rows)
    _import_fails(factory, root, "activations/batch-1.jsonl.gz", "line 3", "feature 6", "'activation.values'", "finite")
    _np_only_good_written(factory)


def test_export_negative_and_duplicate_feature_index(factory: Any, tmp_path: Path) -> None:
    root = write_np_export(tmp_path / "export", n_features=2)
    feats = root / "np-model" / "3-res-np" / "features"
    write_jsonl(feats / "batch-1.jsonl.gz", [np_feature("np-model", "3-res-np", i) for i in (7, 8, 7)])
    _import_fails(factory, root, "features/batch-1.jsonl.gz", "feature 7", "duplicate feature index 7")
    assert _indexes(factory) == {0, 1}
    write_jsonl(feats / "batch-1.jsonl.gz", [np_feature("np-model", "3-res-np", i) for i in (7, -2)])
    _import_fails(factory, root, "features/batch-1.jsonl.gz", "line 2", "feature -2", "'index'", ">= 0")
    assert _indexes(factory) == {0, 1}


def test_export_wrong_types(factory: Any, tmp_path: Path) -> None:
    root = _np_source(tmp_path)
    rows = _np_good_rows()
    rows[0]["tokens"] = "a b c"
    _np_acts(root, rows)
    _import_fails(
        factory,
        root,
        "activations/batch-1.jsonl.gz",
        "line 1",
        "feature 4",
        "'activation.tokens'",
        "expected a list of strings",
    )
    _np_only_good_written(factory)


def test_export_malformed_json_line(factory: Any, tmp_path: Path) -> None:
    root = _np_source(tmp_path)
    file = root / "np-model" / "3-res-np" / "activations" / "batch-1.jsonl.gz"
    import gzip

    lines = [json.dumps(r) for r in _np_good_rows()]
    lines[1] = lines[1][:40]
    file.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    _import_fails(factory, root, "activations/batch-1.jsonl.gz", "line 2", "malformed JSON")
    _np_only_good_written(factory)


def test_export_bad_source_directory_name(factory: Any, tmp_path: Path) -> None:
    base = tmp_path / "export" / "np-model" / "nolayer"
    write_jsonl(base / "features" / "batch-0.jsonl.gz", [np_feature("np-model", "nolayer", 0)])
    with pytest.raises(BadInput, match=r"nolayer"):
        import_path(tmp_path / "export", factory)
    assert counts(factory)["features"] == 0


def test_truncated_gzip_spanning_batches_keeps_whole_features_and_recovers(factory: Any, tmp_path: Path) -> None:
    """A long file is written in several batches: those before the cut stay whole, the cut one is not written,
    and the re-downloaded file then imports completely, with one copy of everything."""
    import random

    root = write_np_export(tmp_path / "export", n_features=4)
    base = root / "np-model" / "3-res-np"
    write_jsonl(base / "features" / "batch-1.jsonl.gz", [np_feature("np-model", "3-res-np", i) for i in range(4, 10)])
    rng = random.Random(0)
    rows = [
        np_activation(
            "np-model",
            "3-res-np",
            i,
            [f"t{rng.randrange(10**6)}" for _ in range(32)],
            [round(rng.uniform(0, 5), 4) for _ in range(32)],
        )
        for i in range(4, 10)
        for _ in range(20)
    ]
    file = base / "activations" / "batch-1.jsonl.gz"
    write_jsonl(file, rows)
    whole = file.read_bytes()
    file.write_bytes(whole[: len(whole) * 3 // 4])

    with pytest.raises(BadInput, match=r"activations/batch-1\.jsonl\.gz: cannot read compressed file"):
        import_path(root, factory, batch_size=1)  # 45 example lines per batch: features 4-6, then 7-9
    with factory() as session:
        from interpedia.db.tables import Activation

        per_feature = dict(
            session.execute(
                select(Feature.index, func.count(Activation.id))
                .join(Activation, Activation.feature_id == Feature.id)
                .where(Feature.index >= 4)
                .group_by(Feature.index)
            ).all()
        )
    assert per_feature == {4: 20, 5: 20, 6: 20}

    file.write_bytes(whole)
    import_path(root, factory, batch_size=1)
    assert counts(factory)["activations"] == 8 + 6 * 20
    import_path(root, factory, batch_size=1)
    assert counts(factory)["activations"] == 8 + 6 * 20
