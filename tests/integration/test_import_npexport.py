"""Importing the Neuronpedia public dataset layout (reference/neuronpedia.md §7.1) and reading it back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from ingest_helpers import (
    EMBEDDING,
    counts,
    no_embedding_on_import,  # noqa: F401  (autouse fixture)
    np_activation,
    np_feature,
    write_jsonl,
    write_np_export,
)
from sqlalchemy import select

from interpedia.db.tables import ExplanationModelType, ExplanationScoreType, ExplanationType, SourceRelease, SourceSet
from interpedia.ingest import detect_format, import_path
from interpedia.store.features import feature_json, get_feature_row


def _doc(factory: Any, model_id: str, source_id: str, index: int) -> dict[str, Any]:
    with factory() as session:
        model, source, feature = get_feature_row(session, model_id, source_id, index)
        return feature_json(session, model, source, feature)


def test_export_layout_imports_and_comes_back(factory: Any, tmp_path: Path) -> None:
    root = write_np_export(tmp_path / "export", n_features=4)
    assert detect_format(root) == "np-export"
    summary = import_path(root, factory)
    assert summary.sources == ["3-res-np"]
    assert (summary.counts.features, summary.counts.activations, summary.counts.explanations) == (4, 8, 4)
    assert counts(factory) | {"imported_batches": 0} == {
        "features": 4,
        "activations": 8,
        "explanations": 4,
        "imported_batches": 0,
        "models": 1,
        "sources": 1,
    }

    doc = _doc(factory, "np-model", "3-res-np", 2)
    want = np_feature("np-model", "3-res-np", 2)
    assert doc["maxActApprox"] == want["maxActApprox"] == 4.5
    assert doc["frac_nonzero"] == 0.00123
    assert doc["pos_str"] == ["Ġcat", "Ġdog"] and doc["pos_values"] == [0.91234, 0.5]
    assert doc["neg_values"] == [-0.33333]
    assert doc["topkCosSimIndices"] == [2, 1] and doc["topkCosSimValues"] == [1.0, 0.4]
    assert (doc["umap_x"], doc["umap_y"], doc["umap_cluster"]) == (1.5, -2.25, 3)
    assert doc["logits_hist_data_bar_heights"] == [1, 2] and doc["freq_hist_data_bar_values"] == [0.25, 0.75]

    acts = doc["activations"]
    assert [a["tokens"] for a in acts] == [["Ġthe", "Ġcat", "Ġsat"], ["Ġon", "Ġthe", "Ġmat", "."]]
    assert [a["values"] for a in acts] == [[0.0, 4.5, -0.12345], [0.5, 0.0, 1.0625, 0.0]]
    assert (acts[1]["binMin"], acts[1]["binMax"], acts[1]["binContains"]) == (0.25, 1.5, 0.00042)
    assert acts[0]["binMin"] == -1 and acts[0]["maxValueTokenIndex"] == 1 and acts[0]["minValue"] == -0.12345

    [exp] = doc["explanations"]
    assert exp["id"] == f"cexp{2:021d}" and exp["description"] == "cats, sitting (2)"
    assert exp["typeName"] == "oai_token-act-pair" and exp["explanationModelName"] == "gpt-4o-mini"

    # The catalogue rows come along: model fields, source fields, the release and config catalogues.
    assert doc["model"]["displayName"] == "NP Model" and doc["model"]["layers"] == 6
    assert doc["source"]["hookName"] == "blocks.3.hook_resid_pre" and doc["source"]["num_prompts"] == 1000
    assert doc["sourceSet"]["description"] == "Residual SAEs" and doc["sourceSet"]["releaseName"] == "np-release"
    with factory() as session:
        assert session.get(SourceRelease, "np-release").description == "A release for tests"
        assert session.get(ExplanationType, "oai_token-act-pair").display_name == "OpenAI token/activation pairs"
        assert session.get(ExplanationModelType, "gpt-4o-mini") is not None
        assert session.get(ExplanationScoreType, "recall_alt") is not None
        from interpedia.db.tables import Explanation

        emb = session.scalar(select(Explanation.embedding).where(Explanation.id == exp["id"]))
        assert np.frombuffer(emb, dtype="<f4").tolist() == EMBEDDING


def test_importing_the_export_twice_leaves_one_copy(factory: Any, tmp_path: Path) -> None:
    root = write_np_export(tmp_path / "export", n_features=5)
    import_path(root, factory)
    first = counts(factory)
    again = import_path(root, factory)
    assert counts(factory) == first
    assert again.counts.activations == 0 and again.counts.explanations == 0 and again.skipped_batches == 3
    forced = import_path(root, factory, force=True)
    assert forced.counts.activations == 10
    assert counts(factory) | {"imported_batches": 0} == first | {"imported_batches": 0}
    with factory() as session:
        assert len(list(session.scalars(select(SourceSet)))) == 1


def test_explanations_without_ids_are_not_duplicated(factory: Any, tmp_path: Path) -> None:
    root = write_np_export(tmp_path / "export", n_features=2)
    rows = [
        {
            "modelId": "np-model",
            "layer": "3-res-np",
            "index": "1",
            "description": "the word cat",
            "typeName": "oai_token-act-pair",
            "explanationModelName": "gpt-4o-mini",
        }
    ]
    write_jsonl(root / "np-model" / "3-res-np" / "explanations" / "batch-1.jsonl.gz", rows)
    import_path(root, factory)
    import_path(root, factory, force=True)
    assert counts(factory)["explanations"] == 3
    assert {e["description"] for e in _doc(factory, "np-model", "3-res-np", 1)["explanations"]} == {
        "cats, sitting (1)",
        "the word cat",
    }


def test_source_directory_alone_imports_with_many_batches(factory: Any, tmp_path: Path) -> None:
    """Pointing at ``<modelId>/<sourceId>`` works, and features/activations span several files and batches."""
    base = tmp_path / "gpt2-small" / "6-res-jb"
    write_jsonl(base / "source.jsonl", [{"id": "6-res-jb", "modelId": "gpt2-small", "setName": "res-jb"}])
    for n in range(3):
        idx = range(n * 10, n * 10 + 10)
        write_jsonl(base / "features" / f"batch-{n}.jsonl.gz", [np_feature("gpt2-small", "6-res-jb", i) for i in idx])
        write_jsonl(
            base / "activations" / f"batch-{n}.jsonl.gz",
            [
                np_activation("gpt2-small", "6-res-jb", i, ["a", "b"], [0.25, float(i + 1)])
                for i in idx
                for _ in range(3)
            ],
        )
    summary = import_path(base, factory, batch_size=4)
    assert counts(factory)["features"] == 30 and counts(factory)["activations"] == 90
    assert (summary.counts.features, summary.counts.activations) == (30, 90)
    doc = _doc(factory, "gpt2-small", "6-res-jb", 27)
    assert [a["values"] for a in doc["activations"]] == [[0.25, 28.0]] * 3
    import_path(base, factory, batch_size=4)
    assert counts(factory)["activations"] == 90


def test_nul_characters_become_spaces(factory: Any, tmp_path: Path) -> None:
    """As Neuronpedia's importer does; Postgres text cannot hold NUL, and both backends must agree."""
    from ingest_helpers import read_jsonl

    root = write_np_export(tmp_path / "export", n_features=2)
    exps = root / "np-model" / "3-res-np" / "explanations" / "batch-0.jsonl.gz"
    rows = read_jsonl(exps)
    rows[0]["description"], rows[1]["notes"] = "cat\u0000s", "note\u0000"
    write_jsonl(exps, rows)
    acts = root / "np-model" / "3-res-np" / "activations" / "batch-0.jsonl.gz"
    rows = read_jsonl(acts)
    rows[0]["tokens"][0], rows[0]["dataSource"] = "\u0000", "web\u0000text"
    write_jsonl(acts, rows)
    feats = root / "np-model" / "3-res-np" / "features" / "batch-0.jsonl.gz"
    rows = read_jsonl(feats)
    rows[0]["pos_str"][0] = "Ġc\u0000at"
    write_jsonl(feats, rows)
    import_path(root, factory)
    doc = _doc(factory, "np-model", "3-res-np", 0)
    assert doc["explanations"][0]["description"] == "cat s"
    assert doc["pos_str"][0] == "Ġc at"
    top = doc["activations"][0]
    assert top["tokens"][0] == " " and top["dataSource"] == "web text"
    assert _doc(factory, "np-model", "3-res-np", 1)["explanations"][0]["notes"] == "note "
