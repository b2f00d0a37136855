"""How values look in documents and requests: timestamps, float32 columns, JSON bytes, feature indexes."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import orjson

from interpedia.errors import Invalid

__all__ = ["MAX_INDEX", "dumps", "f32", "iso", "parse_index"]


def iso(value: dt.datetime | None) -> str | None:
    """A timestamp the way Neuronpedia's API writes it."""
    return None if value is None else value.isoformat(timespec="milliseconds") + "Z"


MAX_INDEX = 2**31 - 1


def parse_index(index: Any) -> int:
    """A feature index from a URL or body: a non-negative integer."""
    try:
        value = int(str(index), 10)
    except (TypeError, ValueError):
        raise Invalid(f"feature index {index!r} is not an integer", field="index") from None
    if value < 0:
        raise Invalid(f"feature index {value} is negative", field="index")
    if value > MAX_INDEX:  # the column is a 32-bit integer: Postgres refuses larger parameters outright
        raise Invalid(f"feature index {value} is larger than {MAX_INDEX}", field="index")
    return value


def f32(value: float | None) -> float | None:
    """A float32 column value as the shortest decimal that round-trips it (REAL 0.1234 -> 0.1234)."""
    return None if value is None else float(str(np.float32(value)))


def dumps(doc: Any) -> bytes:
    """JSON bytes of an API document (NaN-free: the importers refuse NaN and Inf)."""
    return orjson.dumps(doc)


_FILE_SUFFIXES = (".jsonl", ".json", ".txt", ".text", ".parquet", ".arrow", ".csv", ".tsv", ".gz", ".zst", ".xz")


def _is_local_path(text: str) -> bool:
    if text.startswith(("/", "~", "./", "../", ".\\", "..\\", "\\\\")) or "\\" in text:
        return True
    if len(text) > 2 and text[1] == ":" and text[2] in "/\\":  # C:\data\...
        return True
    # A hub id is "name" or "owner/name"; more segments, or a file name, is a path on some machine.
    return text.count("/") > 1 or ("/" in text and text.lower().endswith(_FILE_SUFFIXES))


def public_name(value: str | None) -> str | None:
    """A dataset or model named for anyone to read: a hub id or name as it is, a path on the server (which
    ``interpedia generate`` records as given) cut to its last component (``/home/me/pile.jsonl`` -> ``pile.jsonl``)."""
    if not value or not _is_local_path(value.strip()):
        return value
    parts = [p for p in value.strip().replace("\\", "/").split("/") if p and p not in (".", "..", "~")]
    return parts[-1] if parts else None
