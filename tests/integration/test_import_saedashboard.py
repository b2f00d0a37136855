"""Importing a SAEDashboard ``neuronpedia-runner`` directory (batch-N.json) and reading it back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from factories import make_feature, write_saedashboard_dir
from ingest_helpers import (
    counts,
    no_embedding_on_import,  # noqa: F401  (autouse fixture)
)

from interpedia.ingest import DashboardOptions, detect_format, import_path
from interpedia.store.features import feature_json, get_feature_row


def _doc(factory: Any, model_id: str, source_id: str, index: int) -> dict[str, Any]:
    with factory() as session:
        model, source, feature = get_feature_row(session, model_id, source_id, index)
        return feature_json(session, model, source, feature)


def test_directory_imports_and_dashboard_comes_back(factory: Any, tmp_path: Path) -> None:
    path = write_saedashboard_dir(tmp_path / "sd", n_features=6, per_batch=4)
    assert detect_format(path) == "saedashboard"
    summary = import_path(path, factory)
    assert summary.counts.features == 6 and summary.counts.activations == 30
    assert summary.sources == ["0-res-test"]

    source_feature = json.loads((path / "batch-1.json").read_text())["features"][1]  # feature 5
    assert source_feature["feature_index"] == 5
    doc = _doc(factory, "tiny-test", "0-res-test", 5)
    assert (doc["modelId"], doc["layer"], doc["index"], doc["sourceSetName"]) == (
        "tiny-test",
        "0-res-test",
        "5",
        "res-test",
    )
    assert doc["frac_nonzero"] == source_feature["frac_nonzero"]
    assert doc["pos_str"] == source_feature["pos_str"] and doc["pos_values"] == source_feature["pos_values"]
    assert doc["neg_str"] == source_feature["neg_str"] and doc["neg_values"] == source_feature["neg_values"]
    assert doc["logits_hist_data_bar_values"] == source_feature["logits_hist_data_bar_values"]
    assert doc["logits_hist_data_bar_heights"] == source_feature["logits_hist_data_bar_heights"]
    assert doc["freq_hist_data_bar_heights"] == source_feature["freq_hist_data_bar_heights"]
    assert doc["neuron_alignment_indices"] == source_feature["neuron_alignment_indices"]
    assert doc["correlated_neurons_pearson"] == source_feature["correlated_neurons_pearson"]
    expected_max = max(max(a["values"]) for a in source_feature["activations"])
    assert doc["maxActApprox"] == expected_max

    # Every example comes back token for token, value for value, with its bins; largest first.
    want = sorted(source_feature["activations"], key=lambda a: -max(a["values"]))
    got = doc["activations"]
    assert len(got) == len(want) == 5
    for g, w in zip(got, want, strict=True):
        assert g["tokens"] == w["tokens"]
        assert g["values"] == w["values"]
        assert g["maxValue"] == max(w["values"]) and g["minValue"] == min(w["values"])
        assert g["maxValueTokenIndex"] == w["values"].index(max(w["values"]))
        assert g["binMin"] == w["bin_min"] and g["binMax"] == w["bin_max"]
        assert g["qualifyingTokenIndex"] == w["qualifying_token_index"]
    quantile = got[-1]
    assert quantile["binContains"] == 0.00123  # the top group's -1 is shown as null
    assert got[0]["binContains"] is None


def test_importing_twice_leaves_one_copy(factory: Any, tmp_path: Path) -> None:
    path = write_saedashboard_dir(tmp_path / "sd", n_features=9, per_batch=4)
    import_path(path, factory)
    first = counts(factory)
    again = import_path(path, factory)
    assert counts(factory) == first
    assert again.counts.features == 0 and again.skipped_batches == 3
    assert first["features"] == 9 and first["activations"] == 45 and first["models"] == 1


def test_forced_reimport_replaces_instead_of_duplicating(factory: Any, tmp_path: Path) -> None:
    path = write_saedashboard_dir(tmp_path / "sd", n_features=5, per_batch=4)
    import_path(path, factory)
    first = counts(factory)
    summary = import_path(path, factory, force=True)
    assert summary.counts.features == 5
    assert counts(factory) == first
    assert len(_doc(factory, "tiny-test", "0-res-test", 2)["activations"]) == 5


def test_changed_file_is_reimported_in_place(factory: Any, tmp_path: Path) -> None:
    path = write_saedashboard_dir(tmp_path / "sd", n_features=4, per_batch=4)
    import_path(path, factory)
    doc = json.loads((path / "batch-0.json").read_text())
    doc["features"][0] = make_feature(0, seed=9, n_top=2, frac_nonzero=0.04321)
    (path / "batch-0.json").write_text(json.dumps(doc))
    import_path(path, factory)
    assert counts(factory)["features"] == 4 and counts(factory)["activations"] == 3 + 3 * 5
    got = _doc(factory, "tiny-test", "0-res-test", 0)
    assert got["frac_nonzero"] == 0.04321 and len(got["activations"]) == 3


def test_overrides_for_model_source_set_and_layer(factory: Any, tmp_path: Path) -> None:
    path = write_saedashboard_dir(tmp_path / "sd", n_features=3)
    for file in path.glob("batch-*.json"):
        doc = json.loads(file.read_text())
        for key in ("model_id", "layer", "sae_set"):
            doc.pop(key)
        file.write_text(json.dumps(doc))
    opts = DashboardOptions(model_id="my-model", source_set="res-mine", layer="7")
    summary = import_path(path, factory, options=opts)
    assert summary.sources == ["7-res-mine"]
    doc = _doc(factory, "my-model", "7-res-mine", 2)
    assert doc["sourceSetName"] == "res-mine" and len(doc["activations"]) == 5
    assert doc["source"]["setName"] == "res-mine"


def test_overrides_win_over_what_the_files_say(factory: Any, tmp_path: Path) -> None:
    path = write_saedashboard_dir(tmp_path / "sd", n_features=3, model_id="gpt2-small", layer=2)
    import_path(path, factory, options=DashboardOptions(model_id="gpt2-local", layer="5"))
    assert _doc(factory, "gpt2-local", "5-res-test", 1)["index"] == "1"
    with factory() as session:
        from interpedia.errors import NotFound

        with pytest.raises(NotFound):
            get_feature_row(session, "gpt2-small", "2-res-test", 1)


def test_sae_id_suffix_and_dead_features(factory: Any, tmp_path: Path) -> None:
    path = write_saedashboard_dir(tmp_path / "sd", n_features=3)
    doc = json.loads((path / "batch-0.json").read_text())
    doc["sae_id_suffix"] = "16k"
    doc["features"][1] = make_feature(1, dead=True, activations=[])
    (path / "batch-0.json").write_text(json.dumps(doc))
    skipped = json.loads((path / "skipped_indexes.json").read_text())
    skipped["skipped_indexes"] = [10, 11]
    (path / "skipped_indexes.json").write_text(json.dumps(skipped))
    import_path(path, factory)
    assert _doc(factory, "tiny-test", "0-res-test__16k", 1)["maxActApprox"] == 0.0
    dead = _doc(factory, "tiny-test", "0-res-test__16k", 11)
    assert dead["maxActApprox"] == 0.0 and dead["activations"] == []
    assert counts(factory)["features"] == 5


def test_missing_layer_asks_for_the_flag(factory: Any, tmp_path: Path) -> None:
    from interpedia.ingest import BadInput

    path = write_saedashboard_dir(tmp_path / "sd", n_features=2)
    doc = json.loads((path / "batch-0.json").read_text())
    doc.pop("layer")
    (path / "batch-0.json").write_text(json.dumps(doc))
    with pytest.raises(BadInput, match=r"batch-0\.json: field 'layer': is missing; pass --layer"):
        import_path(path, factory)
    assert counts(factory)["features"] == 0 and counts(factory)["sources"] == 0
