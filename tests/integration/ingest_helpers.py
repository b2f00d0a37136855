"""Helpers shared by the import/export tests: row counts, writing Neuronpedia export files, reading exports."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from interpedia.config import get_settings
from interpedia.db.tables import Activation, Explanation, Feature, ImportedBatch, Model, Source, VocabToken

# An explanation embedding as stored: 384 float32 values (other widths are dropped and re-embedded).
EMBEDDING = [((i % 17) - 8) / 64 for i in range(384)]


@pytest.fixture(autouse=True)
def no_embedding_on_import(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Import tests do not load the sentence embedder (it has its own tests); import this name to use it."""
    monkeypatch.setenv("INTERPEDIA_EMBED_ON_IMPORT", "false")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


COUNTED = {
    "features": Feature,
    "activations": Activation,
    "explanations": Explanation,
    "imported_batches": ImportedBatch,
    "models": Model,
    "sources": Source,
}


def counts(factory: sessionmaker[Session]) -> dict[str, int]:
    """Row counts of the tables an import writes."""
    with factory() as session:
        return {
            name: int(session.scalar(select(func.count()).select_from(table)) or 0) for name, table in COUNTED.items()
        }


def vocab_size(factory: sessionmaker[Session]) -> int:
    """How many vocabulary tokens are stored (all models)."""
    with factory() as session:
        return int(session.scalar(select(func.count()).select_from(VocabToken)) or 0)


def write_jsonl(path: Path, rows: list[dict[str, Any]], *, gz: bool | None = None) -> Path:
    """Write rows as JSON lines (gzipped when the name ends in .gz); Python's json writes NaN as NaN."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    if gz if gz is not None else path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a .jsonl or .jsonl.gz file."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return [json.loads(line) for line in raw.splitlines() if line.strip()]


def np_activation(
    model_id: str, layer: str, index: int, tokens: list[str], values: list[float], **extra: Any
) -> dict[str, Any]:
    """An activation row of the Neuronpedia export layout."""
    row = {
        "modelId": model_id,
        "layer": layer,
        "index": str(index),
        "tokens": tokens,
        "values": values,
        "maxValue": max(values),
        "maxValueTokenIndex": values.index(max(values)),
        "minValue": min(values),
        "binMin": -1,
        "binMax": max(values),
        "binContains": -1,
        "qualifyingTokenIndex": 0,
        "dfaValues": [],
        "zIndices": [[], []],
        "zValues": [],
        "lossValues": [],
        "creatorId": "someone",
        "createdAt": "2024-05-01T00:00:00.000Z",
    }
    row.update(extra)
    return row


def np_feature(model_id: str, layer: str, index: int, **extra: Any) -> dict[str, Any]:
    """A feature ("Neuron") row of the Neuronpedia export layout."""
    row = {
        "modelId": model_id,
        "layer": layer,
        "index": str(index),
        "sourceSetName": layer.split("-", 1)[-1],
        "creatorId": "someone",
        "createdAt": "2024-05-01T00:00:00.000Z",
        "maxActApprox": 2.5 + index,
        "hasVector": False,
        "vector": [],
        "frac_nonzero": 0.00123,
        "pos_str": ["Ġcat", "Ġdog"],
        "pos_values": [0.91234, 0.5],
        "neg_str": ["Ġthe"],
        "neg_values": [-0.33333],
        "freq_hist_data_bar_heights": [3, 1],
        "freq_hist_data_bar_values": [0.25, 0.75],
        "logits_hist_data_bar_heights": [1, 2],
        "logits_hist_data_bar_values": [-0.5, 0.5],
        "neuron_alignment_indices": [4, 2],
        "neuron_alignment_values": [0.1, -0.2],
        "neuron_alignment_l1": [0.01, 0.02],
        "topkCosSimIndices": [index, 1],
        "topkCosSimValues": [1.0, 0.4],
        "umap_x": 1.5,
        "umap_y": -2.25,
        "umap_cluster": 3,
        "umap_log_feature_sparsity": -3.5,
    }
    row.update(extra)
    return row


def write_np_export(
    root: Path, *, model_id: str = "np-model", layer: str = "3-res-np", n_features: int = 4, with_release: bool = True
) -> Path:
    """A small, hand-written Neuronpedia export: config, catalogue rows, features, activations, explanations."""
    write_jsonl(
        root / "config" / "explanation_type.jsonl",
        [
            {
                "name": "oai_token-act-pair",
                "displayName": "OpenAI token/activation pairs",
                "description": "Bills et al.",
                "featured": True,
                "isAttention": False,
            }
        ],
    )
    write_jsonl(
        root / "config" / "explanation_model_type.jsonl",
        [{"name": "gpt-4o-mini", "displayName": "GPT-4o mini", "description": "", "featured": False}],
    )
    write_jsonl(
        root / "config" / "explanation_score_type.jsonl",
        [{"name": "recall_alt", "displayName": "Recall", "description": "", "featured": False, "isAttention": False}],
    )
    base = root / model_id / layer
    set_name = layer.split("-", 1)[1]
    if with_release:
        write_jsonl(
            base / "release.jsonl",
            [
                {
                    "name": "np-release",
                    "description": "A release for tests",
                    "descriptionShort": "tests",
                    "urls": ["https://example.org"],
                    "creatorName": "Tester",
                    "visibility": "PUBLIC",
                    "featured": False,
                    "createdAt": "2024-05-01T00:00:00.000Z",
                }
            ],
        )
    write_jsonl(
        base / "model.jsonl",
        [
            {
                "id": model_id,
                "displayName": "NP Model",
                "displayNameShort": "NPM",
                "layers": 6,
                "dimension": 64,
                "tlensId": "np-model",
                "visibility": "PUBLIC",
                "creatorId": "someone",
                "createdAt": "2024-05-01T00:00:00.000Z",
                "updatedAt": "2024-05-01T00:00:00.000Z",
            }
        ],
    )
    write_jsonl(
        base / "sourceset.jsonl",
        [
            {
                "modelId": model_id,
                "name": set_name,
                "description": "Residual SAEs",
                "type": "sae",
                "creatorName": "Tester",
                "releaseName": "np-release",
                "visibility": "PUBLIC",
                "createdAt": "2024-05-01T00:00:00.000Z",
            }
        ],
    )
    write_jsonl(
        base / "source.jsonl",
        [
            {
                "id": layer,
                "modelId": model_id,
                "setName": set_name,
                "hookName": "blocks.3.hook_resid_pre",
                "num_prompts": 1000,
                "num_tokens_in_prompt": 128,
                "dataset": "local/tests",
                "visibility": "PUBLIC",
                "createdAt": "2024-05-01T00:00:00.000Z",
            }
        ],
    )
    write_jsonl(base / "features" / "batch-0.jsonl.gz", [np_feature(model_id, layer, i) for i in range(n_features)])
    acts = []
    for i in range(n_features):
        acts.append(np_activation(model_id, layer, i, ["Ġthe", "Ġcat", "Ġsat"], [0.0, 2.5 + i, -0.12345]))
        acts.append(
            np_activation(
                model_id,
                layer,
                i,
                ["Ġon", "Ġthe", "Ġmat", "."],
                [0.5, 0.0, 1.0625, 0.0],
                binMin=0.25,
                binMax=1.5,
                binContains=0.00042,
            )
        )
    write_jsonl(base / "activations" / "batch-0.jsonl.gz", acts)
    exps = [
        {
            "id": f"cexp{i:021d}",
            "modelId": model_id,
            "layer": layer,
            "index": str(i),
            "description": f"cats, sitting ({i})",
            "authorId": "someone",
            "typeName": "oai_token-act-pair",
            "explanationModelName": "gpt-4o-mini",
            "notes": None,
            "embedding": EMBEDDING,
            "createdAt": "2024-05-01T00:00:00.000Z",
        }
        for i in range(n_features)
    ]
    write_jsonl(base / "explanations" / "batch-0.jsonl.gz", exps)
    return root
