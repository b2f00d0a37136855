"""Validation of graph JSON against Neuronpedia's graph schema (``graph-schema.json``, draft-07).

The same rules as the schema: required fields and the JSON types of the fields it names; unknown fields are
allowed (circuit-tracer writes ``transcoder_list``, ``token_prob``, ``run_idx`` ...). Checked by hand rather than
by a generic JSON-schema engine because an upload holds up to millions of links: this walks them once, in
document order, and names the JSON path of the first bad field (``nodes[12].ctx_idx``).
"""

from __future__ import annotations

import math
from typing import Any

from interpedia.store.errors import Invalid

# A field spec: (json types, required?, sub-spec for objects / item spec for arrays).
Spec = dict[str, tuple[tuple[str, ...], bool, Any]]

_GENERATOR: Spec = {k: (("string",), False, None) for k in ("name", "version", "url", "email")}
_INFO: Spec = {
    "description": (("string",), False, None),
    "creator_name": (("string",), False, None),
    "creator_url": (("string",), False, None),
    "source_urls": (("array",), False, None),
    "generator": (("object",), False, _GENERATOR),
    "create_time_ms": (("number",), False, None),
}
_METADATA: Spec = {
    "slug": (("string",), True, None),
    "scan": (("string",), True, None),
    "prompt_tokens": (("array",), True, ("string",)),
    "prompt": (("string",), True, None),
    "feature_details": (
        ("object",),
        False,
        {
            k: (("string",), False, None)
            for k in ("feature_json_base_url", "neuronpedia_source_set", "neuronpedia_lorsa_source_set")
        },
    ),
    "node_threshold": (("number",), False, None),
    "info": (("object",), False, _INFO),
    "generation_settings": (
        ("object",),
        False,
        {
            "max_n_logits": (("integer",), False, None),
            "desired_logit_prob": (("number",), False, None),
            "batch_size": (("integer",), False, None),
            "max_feature_nodes": (("integer",), False, None),
        },
    ),
    "pruning_settings": (
        ("object",),
        False,
        {"node_threshold": (("number",), False, None), "edge_threshold": (("number",), False, None)},
    ),
}
_QPARAMS: Spec = {
    "pinnedIds": (("array",), False, ("string",)),
    "supernodes": (("array",), False, None),
    "linkType": (("string",), False, None),
    "clickedId": (("string",), False, None),
    "sg_pos": (("string",), False, None),
}
_NODE: Spec = {
    "node_id": (("string",), True, None),
    "feature": (("integer", "null"), True, None),
    "layer": (("string", "integer"), True, None),
    "ctx_idx": (("integer",), True, None),
    "feature_type": (("string",), True, None),
    "jsNodeId": (("string",), True, None),
    "clerp": (("string",), True, None),
    "influence": (("number", "null"), False, None),
    "activation": (("number", "null"), False, None),
}
_LINK: Spec = {
    "source": (("string",), True, None),
    "target": (("string",), True, None),
    "weight": (("number",), True, None),
}
GRAPH_SCHEMA: Spec = {
    "metadata": (("object",), True, _METADATA),
    "qParams": (("object",), True, _QPARAMS),
    "nodes": (("array",), True, _NODE),
    "links": (("array",), True, _LINK),
}


class InvalidGraph(Invalid):
    """A graph document that breaks Neuronpedia's graph schema; ``field`` is the JSON path of the first bad field."""


def _is(value: Any, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "null":
        return value is None
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if kind == "number":
        return True
    return isinstance(value, int) or (math.isfinite(value) and float(value).is_integer())  # draft-07: 1.0 is an integer


def _type_name(value: Any) -> str:
    for kind in ("null", "string", "object", "array"):
        if _is(value, kind):
            return kind
    if isinstance(value, bool):
        return "boolean"
    return "number" if isinstance(value, int | float) else type(value).__name__


def _fail(path: str, message: str) -> None:
    raise InvalidGraph(f"graph JSON is not valid: {path}: {message}", field=path)


def _check_object(obj: dict[str, Any], spec: Spec, path: str) -> None:
    for key, (kinds, required, sub) in spec.items():
        where = f"{path}.{key}" if path else key
        if key not in obj:
            if required:
                _fail(where, "required field is missing")
            continue
        value = obj[key]
        if not any(_is(value, k) for k in kinds):
            _fail(where, f"expected {' or '.join(kinds)}, got {_type_name(value)}")
        if sub is None:
            continue
        if isinstance(value, dict):
            _check_object(value, sub, where)
        elif isinstance(value, list):
            _check_items(value, sub, where)


def _check_items(items: list[Any], sub: Spec | tuple[str, ...], path: str) -> None:
    if isinstance(sub, tuple):
        for i, item in enumerate(items):
            if not any(_is(item, k) for k in sub):
                _fail(f"{path}[{i}]", f"expected {' or '.join(sub)}, got {_type_name(item)}")
        return
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            _fail(f"{path}[{i}]", f"expected object, got {_type_name(item)}")
        _check_object(item, sub, f"{path}[{i}]")


def validate_graph(doc: Any) -> None:
    """Raise :class:`InvalidGraph` naming the first field of ``doc`` that breaks Neuronpedia's graph schema."""
    if not isinstance(doc, dict):
        _fail("(root)", f"expected object, got {_type_name(doc)}")
    _check_object(doc, GRAPH_SCHEMA, "")
