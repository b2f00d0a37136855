"""The explanation-embedding column type: pgvector ``vector(384)`` on Postgres, a float32 blob elsewhere.

In Python the value is always the same thing on both backends: the embedding as little-endian
float32 bytes (what the importers and exporters already read and write). On Postgres the bytes are
converted to and from pgvector's type at the driver boundary, so the column can carry an HNSW
index and be compared with ``<=>``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import Dialect, LargeBinary
from sqlalchemy.types import TypeDecorator, TypeEngine

# all-MiniLM-L6-v2's width; an OpenAI-compatible endpoint is asked for the same number of dimensions.
EMBEDDING_DIM = 384
EMBEDDING_BYTES = EMBEDDING_DIM * 4


def to_float32(value: Any) -> np.ndarray[Any, np.dtype[np.float32]]:
    """An embedding given as bytes, a list or an array, as a float32 vector (no copy for arrays)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return np.frombuffer(bytes(value), dtype="<f4").astype(np.float32, copy=False)
    return np.asarray(value, dtype=np.float32).reshape(-1)


class EmbeddingVector(TypeDecorator[bytes]):
    """Float32 little-endian bytes in Python; ``vector(384)`` on Postgres, ``BLOB`` on SQLite."""

    impl = LargeBinary
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """pgvector's type on Postgres, a plain blob elsewhere."""
        if dialect.name == "postgresql":
            from pgvector.sqlalchemy import VECTOR

            return dialect.type_descriptor(VECTOR(EMBEDDING_DIM))
        return dialect.type_descriptor(LargeBinary())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        """Bytes (or a list/array) in; what the dialect's column takes out."""
        if value is None:
            return None
        if dialect.name == "postgresql":
            return to_float32(value)
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value)
        return to_float32(value).astype("<f4").tobytes()

    def process_result_value(self, value: Any, dialect: Dialect) -> bytes | None:
        """Always float32 little-endian bytes."""
        if value is None:
            return None
        if dialect.name == "postgresql":
            return np.asarray(value, dtype="<f4").tobytes()
        return bytes(value)


def vector_literal(vec: Any) -> str:
    """pgvector's text form of a vector (``[0.1,0.2,...]``), for a ``CAST(:q AS vector)`` parameter."""
    return "[" + ",".join(f"{x:.9g}" for x in to_float32(vec).tolist()) + "]"
