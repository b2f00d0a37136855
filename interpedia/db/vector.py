"""The explanation-embedding column type: pgvector ``vector(384)`` on Postgres, a float32 blob elsewhere.

In Python the value is always the same thing on both backends: the embedding as little-endian
float32 bytes (what the importers and exporters already read and write). On Postgres the bytes are
converted to and from pgvector's type at the driver boundary, so the column can carry an HNSW
index and be compared with ``<=>``.
"""

from __future__ import annotations

import functools
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
            return dialect.type_descriptor(_fast_vector_type()(EMBEDDING_DIM))
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


@functools.cache
def _text_template(dim: int) -> str:
    return "[" + ",".join(["%.9g"] * dim) + "]"


def vector_literal(vec: Any) -> str:
    """pgvector's text form of a vector (``[0.1,0.2,...]``), exact for float32 (9 significant digits)."""
    values = to_float32(vec).tolist()
    return _text_template(len(values)) % tuple(values)


@functools.cache
def _fast_vector_type() -> type[Any]:
    """pgvector's SQLAlchemy type, with the vector sent as :func:`vector_literal`.

    pgvector's own conversion formats each float with ``str`` in Python: ~300 us for 384 of them,
    about 7 s of each ~28 s source (25,000 explanations) in ``bench/scale.py``. One ``%`` over a
    template takes ~70 us and sends shorter text that still round-trips the float32 values.
    """
    from pgvector.sqlalchemy import VECTOR

    class FastVector(VECTOR):
        cache_ok = True

        def bind_processor(self, dialect: Dialect) -> Any:
            def process(value: Any) -> str | None:
                return None if value is None else vector_literal(value)

            return process

    return FastVector
