"""The text form sent to pgvector round-trips float32 embeddings exactly and has pgvector's syntax."""

from __future__ import annotations

import numpy as np

from interpedia.db.vector import vector_literal


def test_vector_literal_round_trips_float32_exactly() -> None:
    rng = np.random.default_rng(0)
    values = rng.standard_normal((50, 384)).astype(np.float32)
    values[0, :4] = [0.0, -0.0, 1e-38, 3.4028235e38]  # zeros, a subnormal-adjacent tiny value, float32 max
    for vec in values:
        text = vector_literal(vec)
        assert text.startswith("[") and text.endswith("]") and " " not in text
        back = np.array([float(x) for x in text[1:-1].split(",")], dtype=np.float32)
        assert np.array_equal(back.view(np.uint32), vec.view(np.uint32)) or np.array_equal(back, vec)


def test_vector_literal_takes_bytes_lists_and_arrays() -> None:
    vec = np.array([0.25, -1.5, 3.0], dtype=np.float32)
    assert vector_literal(vec) == vector_literal(vec.tolist()) == vector_literal(vec.astype("<f4").tobytes())
    assert vector_literal(vec) == "[0.25,-1.5,3]"
