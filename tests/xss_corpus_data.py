"""The XSS and injection corpus (issue #9), shared by the integration and browser tests: payloads, and a
Neuronpedia export whose every user-visible text field carries one (imported through the real importer)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

MODEL, SET, LAYER = "xss-model", "res-xss", "2-res-xss"

SCRIPT = "<script>alert('xss-script')</script>"
IMG = '"><img src=x onerror="alert(\'xss-img\')">'
SVG = "<svg/onload=alert('xss-svg')>"
JS_URL = "javascript:alert('xss-url')"
SQL = "'; DROP TABLE features; --"
TEMPLATE = "{{ 7*7 }}{% raw %}"
BREAKOUT = "</script><script>alert('xss-breakout')</script>"
NUL = "nul\x00byte"
RTL = "\u202eexe.txt"
BIG = "<b>" + "A" * 10_240 + "</b>"
PAYLOADS = [SCRIPT, IMG, SVG, JS_URL, SQL, TEMPLATE, BREAKOUT, NUL, RTL, BIG]
STORED = [p.replace("\x00", " ") for p in PAYLOADS]  # the NUL rule
EXPLANATIONS = {
    0: f"fires on {SCRIPT} tags",
    1: f"event handlers {IMG} and {SVG}",
    2: f"links like {JS_URL}",
    3: f"SQL such as {SQL} and templates {TEMPLATE}",
    4: f"breaking out {BREAKOUT}; a {NUL}; right-to-left {RTL}",
}
# Text that must never reach a page as markup: raw tags and handlers, whatever the context.
RAW_MARKERS = ["<script>alert", "<img src=x", "<svg/onload", "<b>AAAA", "</script><script>"]


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)


def _feature(model_id: str, layer: str, index: int, **extra: Any) -> dict[str, Any]:
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
        "freq_hist_data_bar_heights": [3, 1],
        "freq_hist_data_bar_values": [0.25, 0.75],
        "logits_hist_data_bar_heights": [1, 2],
        "logits_hist_data_bar_values": [-0.5, 0.5],
        "topkCosSimIndices": [index, 1],
        "topkCosSimValues": [1.0, 0.4],
    }
    row.update(extra)
    return row


def _activation(
    model_id: str, layer: str, index: int, tokens: list[str], values: list[float], **extra: Any
) -> dict[str, Any]:
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
        "creatorId": "someone",
        "createdAt": "2024-05-01T00:00:00.000Z",
    }
    row.update(extra)
    return row


def write_corpus(root: Path) -> Path:
    """A Neuronpedia export whose every user-visible text field carries a payload."""
    base = root / MODEL / LAYER
    _write_jsonl(
        base / "release.jsonl",
        [
            {
                "name": "xss-release",
                "description": SCRIPT,
                "descriptionShort": IMG,
                "urls": [JS_URL],
                "creatorName": SVG,
                "visibility": "PUBLIC",
                "featured": False,
                "createdAt": "2024-05-01T00:00:00.000Z",
            }
        ],
    )
    _write_jsonl(
        base / "model.jsonl",
        [
            {
                "id": MODEL,
                "displayName": f"Model {SCRIPT}",
                "displayNameShort": "X",
                "layers": 4,
                "dimension": 8,
                "tlensId": MODEL,
                "visibility": "PUBLIC",
                "creatorId": "someone",
                "website": JS_URL,
                "owner": IMG,
                "createdAt": "2024-05-01T00:00:00.000Z",
                "updatedAt": "2024-05-01T00:00:00.000Z",
            }
        ],
    )
    _write_jsonl(
        base / "sourceset.jsonl",
        [
            {
                "modelId": MODEL,
                "name": SET,
                "description": f"set {IMG}",
                "type": "sae",
                "creatorName": SVG,
                "releaseName": "xss-release",
                "visibility": "PUBLIC",
                "createdAt": "2024-05-01T00:00:00.000Z",
            }
        ],
    )
    _write_jsonl(
        base / "source.jsonl",
        [
            {
                "id": LAYER,
                "modelId": MODEL,
                "setName": SET,
                "hookName": SCRIPT,
                "num_prompts": 10,
                "num_tokens_in_prompt": 12,
                "dataset": f"{JS_URL} {NUL}",
                "visibility": "PUBLIC",
                "createdAt": "2024-05-01T00:00:00.000Z",
            }
        ],
    )
    feats = [
        _feature(
            MODEL,
            LAYER,
            i,
            pos_str=[SCRIPT, RTL, BIG],
            pos_values=[0.9, 0.5, 0.1],
            neg_str=[IMG, NUL],
            neg_values=[-0.5, -0.2],
        )
        for i in range(5)
    ]
    _write_jsonl(base / "features" / "batch-0.jsonl.gz", feats)
    acts = []
    for i in range(5):
        tokens = PAYLOADS[2 * i : 2 * i + 2] + ["Ġplain", "\n", SVG]
        acts.append(_activation(MODEL, LAYER, i, tokens, [1.0 + i, 2.0, 0.0, 0.5, 0.25]))
        acts.append(
            _activation(MODEL, LAYER, i, [BIG, NUL, RTL], [0.5, 0.0, 1.0], binMin=0.1, binMax=1.0, binContains=0.01)
        )
    _write_jsonl(base / "activations" / "batch-0.jsonl.gz", acts)
    exps = [
        {
            "id": f"xexp{i:021d}",
            "modelId": MODEL,
            "layer": LAYER,
            "index": str(i),
            "description": text,
            "authorId": "someone",
            "typeName": "oai_token-act-pair",
            "explanationModelName": SVG,
            "notes": SCRIPT,
            "createdAt": "2024-05-01T00:00:00.000Z",
        }
        for i, text in EXPLANATIONS.items()
    ]
    _write_jsonl(base / "explanations" / "batch-0.jsonl.gz", exps)  # no embeddings: computed on import
    return root
