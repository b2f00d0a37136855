"""What a graph JSON must hold to be stored: Neuronpedia's graph schema ("Anthropic Attribution Graph").

Required as upstream requires: ``metadata`` (``slug``, ``scan``, ``prompt_tokens``, ``prompt``), ``qParams``,
``nodes`` (``node_id``, ``feature``, ``layer``, ``ctx_idx``, ``feature_type``, ``jsNodeId``, ``clerp``) and
``links`` (``source``, ``target``, ``weight``), with upstream's types; optional fields are type-checked when
present. Beyond the schema, what the graph page needs to draw it: every link between known nodes, numbers
finite. Node ids may repeat (circuit-tracer's own files collide; see ``_check_nodes``); integral numbers
written as floats (``2.0``) count as integers, as JSON does not tell them apart. The first problem is
reported as an :class:`Invalid` whose ``field`` is its JSON
path (``nodes[12].ctx_idx``), so an upload names what to fix; nothing is stored.

Checked by hand rather than with a JSON Schema library: a graph can hold a million links, and a generic
validator spends tens of seconds on that where this loop spends about one.
"""

from __future__ import annotations

import math
import re
from typing import Any

from interpedia.errors import Invalid

__all__ = ["SLUG_RE", "validate_graph"]

SLUG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_NUMBER = (int, float)


def _fail(path: str, message: str) -> Invalid:
    return Invalid(f"not a valid graph: {path}: {message}", field=path)


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__.replace("str", "string").replace("dict", "object")


def _expect(value: Any, kinds: tuple[type, ...], path: str, what: str, *, nullable: bool = False) -> None:
    if value is None and nullable:
        return
    if isinstance(value, bool) and bool not in kinds:  # JSON true is not a number
        raise _fail(path, f"must be {what}, not a boolean")
    if isinstance(value, float) and int in kinds and float not in kinds and value.is_integer():
        return  # 2.0 is the integer 2 in JSON
    if not isinstance(value, kinds):
        raise _fail(path, f"must be {what}, not {_type_name(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise _fail(path, f"must be a finite number, not {value}")


def _object(doc: Any, path: str) -> dict[str, Any]:
    _expect(doc, (dict,), path, "an object")
    return doc  # type: ignore[no-any-return]


def _required(obj: dict[str, Any], name: str, path: str) -> Any:
    if name not in obj:
        raise _fail(f"{path}.{name}" if path != "$" else name, "is required")
    return obj[name]


def _check_metadata(meta: dict[str, Any]) -> None:
    slug = _required(meta, "slug", "metadata")
    _expect(slug, (str,), "metadata.slug", "a string")
    if not SLUG_RE.match(slug):
        raise _fail("metadata.slug", "must be 1-200 letters, digits, '.', '_' or '-', starting with a letter or digit")
    _expect(_required(meta, "scan", "metadata"), (str,), "metadata.scan", "a string (the model id)")
    _expect(_required(meta, "prompt", "metadata"), (str,), "metadata.prompt", "a string")
    tokens = _required(meta, "prompt_tokens", "metadata")
    _expect(tokens, (list,), "metadata.prompt_tokens", "an array of strings")
    for i, token in enumerate(tokens):
        _expect(token, (str,), f"metadata.prompt_tokens[{i}]", "a string")
    if "node_threshold" in meta:
        _expect(meta["node_threshold"], _NUMBER, "metadata.node_threshold", "a number", nullable=True)
    if "schema_version" in meta:
        _expect(meta["schema_version"], (int,), "metadata.schema_version", "an integer", nullable=True)
    for name in ("feature_details", "info", "generation_settings", "pruning_settings"):
        if name in meta:
            _expect(meta[name], (dict,), f"metadata.{name}", "an object", nullable=True)
    details = meta.get("feature_details") or {}
    for name in ("feature_json_base_url", "neuronpedia_source_set", "neuronpedia_lorsa_source_set"):
        if name in details:
            _expect(details[name], (str,), f"metadata.feature_details.{name}", "a string", nullable=True)


def _check_qparams(q: dict[str, Any]) -> None:
    if "pinnedIds" in q:
        _expect(q["pinnedIds"], (list,), "qParams.pinnedIds", "an array of node ids", nullable=True)
        for i, node in enumerate(q["pinnedIds"] or []):
            _expect(node, (str,), f"qParams.pinnedIds[{i}]", "a string")
    if "supernodes" in q:
        _expect(q["supernodes"], (list,), "qParams.supernodes", "an array", nullable=True)
        for i, group in enumerate(q["supernodes"] or []):
            _expect(group, (list,), f"qParams.supernodes[{i}]", "an array [label, node id, ...]")
            for j, item in enumerate(group):
                _expect(item, (str,), f"qParams.supernodes[{i}][{j}]", "a string")
    for name in ("linkType", "clickedId", "sg_pos"):
        if name in q:
            _expect(q[name], (str,), f"qParams.{name}", "a string", nullable=True)


_NODE_STRINGS = ("node_id", "feature_type", "jsNodeId", "clerp")


def _check_nodes(nodes: list[Any]) -> set[str]:
    seen: set[str] = set()
    for i, node in enumerate(nodes):
        path = f"nodes[{i}]"
        _object(node, path)
        for name in _NODE_STRINGS:
            _expect(_required(node, name, path), (str,), f"{path}.{name}", "a string")
        _expect(_required(node, "feature", path), (int,), f"{path}.feature", "an integer", nullable=True)
        _expect(_required(node, "layer", path), (str, int), f"{path}.layer", "a string or an integer")
        _expect(_required(node, "ctx_idx", path), (int,), f"{path}.ctx_idx", "an integer")
        for name in ("influence", "activation", "token_prob"):
            if name in node:
                _expect(node[name], _NUMBER, f"{path}.{name}", "a number", nullable=True)
        # Not required unique: circuit-tracer names an error node ``0_{layer}_{pos}``, the id of layer-0 feature
        # ``layer`` at that position, and its own files must upload. interpedia's writer never repeats an id.
        seen.add(node["node_id"])
    return seen


def _check_links(links: list[Any], ids: set[str]) -> None:
    for i, link in enumerate(links):
        path = f"links[{i}]"
        _object(link, path)
        for name in ("source", "target"):
            value = _required(link, name, path)
            _expect(value, (str,), f"{path}.{name}", "a node id (string)")
            if value not in ids:
                raise _fail(f"{path}.{name}", f"{value!r} is not the node_id of any node")
        _expect(_required(link, "weight", path), _NUMBER, f"{path}.weight", "a number")


def validate_graph(doc: Any) -> dict[str, Any]:
    """The graph document itself when it is a valid graph JSON; else Invalid naming the first bad field's path."""
    graph = _object(doc, "$")
    _check_metadata(_object(_required(graph, "metadata", "$"), "metadata"))
    _check_qparams(_object(_required(graph, "qParams", "$"), "qParams"))
    nodes = _required(graph, "nodes", "$")
    _expect(nodes, (list,), "nodes", "an array")
    links = _required(graph, "links", "$")
    _expect(links, (list,), "links", "an array")
    _check_links(links, _check_nodes(nodes))
    return graph
