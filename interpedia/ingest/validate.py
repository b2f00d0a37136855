"""Turning untrusted JSON into store records, with errors that name the file, the feature and the field."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import orjson

from interpedia.errors import Invalid
from interpedia.store.records import ActivationRecord, ExplanationRecord


class BadInput(Invalid):
    """Input that cannot be imported; the message names where the problem is."""

    def __init__(
        self, message: str, *, file: str | None = None, feature: int | str | None = None, field: str | None = None
    ) -> None:
        self.reason = message
        self.file = file
        self.feature = feature
        self.field = field
        super().__init__(self._render(), field)

    def _render(self) -> str:
        where = []
        if self.file:
            where.append(self.file)
        if self.feature is not None:
            where.append(f"feature {self.feature}")
        if self.field:
            where.append(f"field '{self.field}'")
        return (": ".join(where) + ": " if where else "") + self.reason

    def located(self, *, file: str | None = None, feature: int | str | None = None) -> BadInput:
        """The same error with more location filled in (inner code knows the field, outer the file)."""
        return BadInput(
            self.reason,
            file=self.file or file,
            feature=self.feature if self.feature is not None else feature,
            field=self.field,
        )


def _reject_constant(name: str) -> float:
    # "NaN", "Infinity" and "-Infinity" (what Python's json.dumps writes); validation then names the field.
    return float(name)


def without_nul(value: Any) -> Any:
    """The value with NUL characters in its strings (keys included) turned into spaces."""
    if isinstance(value, str):
        return value.replace("\x00", " ")
    if isinstance(value, list):
        return [without_nul(v) for v in value]
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    return value


def loads(data: bytes | str, *, file: str | None = None) -> Any:
    """Parse JSON; NaN/Infinity literals are parsed so that validation can say which field holds them.

    NUL characters in strings become spaces, as Neuronpedia's importer does: Postgres text cannot hold them.
    """
    try:
        out = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        try:
            out = json.loads(data, parse_constant=_reject_constant)
        except json.JSONDecodeError:
            raise BadInput(f"malformed JSON: {exc}", file=file) from None
    has_nul = "\\u0000" in data if isinstance(data, str) else b"\\u0000" in data
    if has_nul:
        out = without_nul(out)
    return out


def as_int(value: Any, field: str, *, minimum: int | None = None) -> int:
    """An integer (a numeric string like "12" is accepted, as Neuronpedia's index is a string)."""
    if isinstance(value, bool):
        raise BadInput(f"expected an integer, got {value!r}", field=field)
    if isinstance(value, int):
        out = value
    elif isinstance(value, float) and value.is_integer():
        out = int(value)
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        out = int(value)
    else:
        raise BadInput(f"expected an integer, got {_show(value)}", field=field)
    if minimum is not None and out < minimum:
        raise BadInput(f"must be >= {minimum}, got {out}", field=field)
    return out


def as_float(value: Any, field: str, *, allow_none: bool = False) -> float | None:
    """A finite number."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadInput(f"expected a number, got {_show(value)}", field=field)
    out = float(value)
    if not math.isfinite(out):
        raise BadInput(f"must be a finite number, got {out}", field=field)
    return out


def as_str(value: Any, field: str, *, allow_none: bool = False, max_len: int = 1_000_000) -> str | None:
    """A string."""
    if value is None and allow_none:
        return None
    if not isinstance(value, str):
        raise BadInput(f"expected a string, got {_show(value)}", field=field)
    if len(value) > max_len:
        raise BadInput(f"longer than {max_len} characters", field=field)
    return value


_NUMBER_TYPES = frozenset((int, float))


def as_float_list(value: Any, field: str, *, allow_none: bool = True) -> list[float] | None:
    """A list of finite numbers."""
    if value is None:
        if allow_none:
            return None
        raise BadInput("is required", field=field)
    if type(value) is list:
        # The common case in C loops: item types in one pass, finiteness from the sum (a NaN or an
        # infinity makes it non-finite; a sum that overflows only sends us to the exact check below).
        types = set(map(type, value))
        if types <= _NUMBER_TYPES:
            try:
                finite = math.isfinite(sum(value))
            except OverflowError:
                finite = False
            if finite:
                return value if float in types else [float(v) for v in value]
    return _checked_float_list(value, field)


def _checked_float_list(value: Any, field: str) -> list[float]:
    """as_float_list's item-by-item check, which says what is wrong and where."""
    if not isinstance(value, list):
        raise BadInput(f"expected a list of numbers, got {_show(value)}", field=field)
    if not value:
        return []
    arr = np.asarray(value) if all(type(v) in (int, float) for v in value[:4]) else np.asarray(value, dtype=object)
    if arr.dtype.kind not in "if" or arr.ndim != 1:
        bad = next((v for v in value if isinstance(v, bool) or not isinstance(v, int | float)), value[0])
        raise BadInput(f"expected a list of numbers, found {_show(bad)}", field=field)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        pos = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise BadInput(f"must hold finite numbers, found {arr[pos]} at position {pos}", field=field)
    return [float(v) for v in value] if arr.dtype.kind == "i" else value


def as_int_list(value: Any, field: str) -> list[int] | None:
    """A list of integers."""
    if value is None:
        return None
    if type(value) is list and (not value or set(map(type, value)) == {int}):
        return value
    if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, int) for v in value):
        raise BadInput("expected a list of integers", field=field)
    return value


def as_str_list(value: Any, field: str, *, max_len: int = 100_000) -> list[str]:
    """A list of strings."""
    if type(value) is list and (not value or (set(map(type, value)) == {str} and max(map(len, value)) <= max_len)):
        return value
    if not isinstance(value, list):
        raise BadInput(f"expected a list of strings, got {_show(value)}", field=field)
    for pos, item in enumerate(value):
        if not isinstance(item, str):
            raise BadInput(f"expected a list of strings, found {_show(item)} at position {pos}", field=field)
        if len(item) > max_len:
            raise BadInput(f"token at position {pos} is longer than {max_len} characters", field=field)
    return value


def as_dict(value: Any, field: str) -> dict[str, Any]:
    """A JSON object."""
    if not isinstance(value, dict):
        raise BadInput(f"expected an object, got {_show(value)}", field=field)
    return value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def activation_record(tokens: Any, values: Any, *, prefix: str = "activations", **fields: Any) -> ActivationRecord:
    """An example from tokens and values of equal length, plus optional bins and DFA fields."""
    toks = as_str_list(tokens, f"{prefix}.tokens")
    vals = as_float_list(values, f"{prefix}.values", allow_none=False)
    assert vals is not None
    if len(toks) != len(vals):
        raise BadInput(f"has {len(toks)} tokens but {len(vals)} values", field=f"{prefix}.values")
    if not toks:
        raise BadInput("is empty", field=f"{prefix}.tokens")
    rec = ActivationRecord(tokens=toks, values=vals)
    for name in ("bin_min", "bin_max", "bin_contains", "dfa_max_value"):
        if name in fields:
            setattr(rec, name, as_float(fields[name], f"{prefix}.{name}", allow_none=True))
    for name in ("qualifying_token_index", "dfa_target_index"):
        if fields.get(name) is not None:
            setattr(rec, name, as_int(fields[name], f"{prefix}.{name}"))
    rec.extras = activation_rare_fields(fields, prefix)
    if fields.get("data_source") is not None:
        rec.data_source = as_str(fields["data_source"], f"{prefix}.dataSource")
    if fields.get("data_index") is not None:
        rec.data_index = str(fields["data_index"])
    return rec


_RARE_LISTS = (
    ("dfaValues", as_float_list),
    ("lossValues", as_float_list),
    ("zQIndices", as_int_list),
    ("zKIndices", as_int_list),
    ("zValues", as_float_list),
)


def activation_rare_fields(fields: dict[str, Any], prefix: str = "activations") -> dict[str, Any] | None:
    """An example's DFA values, loss values, attention pattern and logit contributions, checked (None if none)."""
    extras: dict[str, Any] = {}
    for key, check in _RARE_LISTS:
        value = fields.get(key)
        if value is None or (type(value) is list and not value):
            continue
        checked = check(value, f"{prefix}.{key}")
        if checked:
            extras[key] = checked
    if fields.get("logitContributions") not in (None, "", [], {}):
        extras["logitContributions"] = fields["logitContributions"]
    return extras or None


def explanation_record(
    description: Any, *, field: str = "explanations.description", **fields: Any
) -> ExplanationRecord:
    """An explanation with a non-empty description."""
    text = as_str(description, field, max_len=10_000)
    assert text is not None
    if not text.strip():
        raise BadInput("is empty", field=field)
    emb = as_float_list(fields.pop("embedding", None), "explanations.embedding")
    return ExplanationRecord(description=text, embedding=emb or None, **fields)
