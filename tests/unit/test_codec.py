"""The compact activation codec: what goes in comes back, and a damaged blob is refused."""

from __future__ import annotations

import numpy as np
import pytest

from interpedia.db.codec import (
    CodecError,
    decode_activation,
    decode_activations,
    encode_activation,
    encode_activations,
    float32_to_floats,
)


def _roundtrip(ids: list[int] | np.ndarray, values: list[float]) -> tuple[list[int], list[float]]:
    out_ids, out_values = decode_activation(encode_activation(ids, values))
    return out_ids.tolist(), out_values


def test_sparse_values_come_back_exactly() -> None:
    ids = [5, 17, 3, 3, 9, 0, 12, 1]
    values = [0.0, 0.0, 1.2345, 0.0, 0.0, 0.0, 0.0, 0.5]
    assert _roundtrip(ids, values) == (ids, values)


def test_dense_values_come_back_exactly() -> None:
    ids = list(range(20))
    values = [round(0.1 * (i + 1) + 0.00001 * i, 5) for i in range(20)]
    assert _roundtrip(ids, values) == (ids, values)


def test_negative_and_four_to_five_decimal_values_come_back_exactly() -> None:
    values = [-0.12345, 3.1416, -7.25, 0.0001, 12.34567, -0.0003, 0.0, 99.9999]
    ids = [1, 2, 3, 4, 5, 6, 7, 8]
    assert _roundtrip(ids, values) == (ids, values)


def test_all_zero_and_empty_examples() -> None:
    assert _roundtrip([1, 2, 3], [0.0, 0.0, 0.0]) == ([1, 2, 3], [0.0, 0.0, 0.0])
    assert _roundtrip([], []) == ([], [])


def test_token_ids_beyond_u16_come_back() -> None:
    ids = [0, 65_535, 65_536, 200_000, 4_294_967_295]
    values = [0.0, 1.5, 0.0, -2.25, 0.75]
    assert _roundtrip(ids, values) == (ids, values)


def test_more_than_256_tokens_sparse_and_dense() -> None:
    n = 1000
    ids = [(i * 7919) % 50_257 for i in range(n)]
    sparse = [0.0] * n
    sparse[3], sparse[300], sparse[999] = 0.125, 4.5678, -1.5
    assert _roundtrip(ids, sparse) == (ids, sparse)
    dense = [round((i % 97) * 0.0131 - 0.5, 4) or 0.25 for i in range(n)]
    assert _roundtrip(ids, dense) == (ids, dense)


def test_example_longer_than_u16_positions_keeps_values_in_place() -> None:
    n = 70_000
    values = [0.0] * n
    values[69_999] = 1.5
    values[5] = 0.25
    ids, out = _roundtrip(np.arange(n) % 100, values)
    assert out[69_999] == 1.5 and out[5] == 0.25 and sum(1 for v in out if v) == 2
    assert ids[-1] == (n - 1) % 100


def test_sparse_storage_is_smaller_than_dense() -> None:
    n = 128
    sparse = [0.0] * n
    sparse[10] = 1.0
    assert len(encode_activation(list(range(n)), sparse)) < len(encode_activation(list(range(n)), [1.0] * n)) / 2


def test_length_mismatch_is_refused() -> None:
    with pytest.raises(ValueError):
        encode_activation([1, 2, 3], [0.5, 0.25])


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda b: b"", id="empty"),
        pytest.param(lambda b: b[:1], id="flags-only"),
        pytest.param(lambda b: b[:4], id="truncated-ids"),
        pytest.param(lambda b: b[:-2], id="truncated-values"),
        pytest.param(lambda b: b + b"\x00\x01", id="trailing-bytes"),
        pytest.param(lambda b: bytes([0xF0]) + b[1:], id="unknown-flags"),
        pytest.param(lambda b: b[:1] + b"\xff" * 12, id="endless-varint"),
    ],
)
@pytest.mark.parametrize("dense", [False, True], ids=["sparse", "dense"])
def test_malformed_blob_raises_codec_error(damage, dense: bool) -> None:  # type: ignore[no-untyped-def]
    values = [0.5 * (i + 1) for i in range(10)] if dense else [0.0] * 9 + [2.5]
    blob = encode_activation(list(range(10)), values)
    good = encode_activation([1, 2], [0.0, 1.0])
    with pytest.raises(CodecError):
        decode_activation(damage(blob))
    # The batch decoder refuses it too, wherever it stands among good blobs.
    for batch in ([damage(blob)], [good, damage(blob)], [damage(blob), good]):
        with pytest.raises(CodecError):
            decode_activations(batch)


def test_sparse_position_out_of_range_raises_codec_error() -> None:
    # ids that need three varint bytes each, so the fixed u16 layout is chosen
    blob = bytearray(encode_activation([20000 + i for i in range(8)], [0.0] * 7 + [1.0]))
    # layout: flags, n=8, 8 x u16 ids, nnz=1, one u8 position, one f32
    assert blob[0] == 0 and len(blob) == 1 + 1 + 16 + 1 + 1 + 4
    blob[19] = 200
    with pytest.raises(CodecError):
        decode_activation(bytes(blob))
    with pytest.raises(CodecError):
        decode_activations([bytes(blob)])


def test_small_ids_use_varints_and_round_trip() -> None:
    ids = [0, 5, 127, 128, 300, 16383, 16384, 70000] * 16
    values = [0.0] * 127 + [2.5]
    blob = encode_activation(ids, values)
    assert blob[0] & 8, "small ids should be stored as varints"
    back_ids, back_values = decode_activation(blob)
    assert back_ids.tolist() == ids and back_values == values
    assert len(blob) < 1 + 2 + 2 * len(ids)


def test_truncated_varint_ids_raise_codec_error() -> None:
    blob = encode_activation([5] * 10, [0.0] * 9 + [1.0])
    with pytest.raises(CodecError):
        decode_activation(blob[:6])
    with pytest.raises(CodecError):
        decode_activations([blob[:6], blob])


@pytest.mark.parametrize("top_id", [3, 200, 20_000, 70_000, 4_294_967_295])
@pytest.mark.parametrize("density", [0.0, 0.04, 0.5, 1.0])
def test_batch_encoder_matches_one_at_a_time(top_id: int, density: float) -> None:
    """encode_activations writes exactly what encode_activation writes, example by example."""
    rng = np.random.default_rng(top_id + int(density * 100))
    lens = np.concatenate([rng.integers(1, 300, 60), [128] * 20, [1, 256, 257, 65_536]])
    offsets = np.concatenate([[0], np.cumsum(lens)])
    ids = rng.integers(0, top_id + 1, int(offsets[-1]))
    values = np.where(rng.random(len(ids)) < density, rng.normal(0, 3, len(ids)).round(4), 0.0)
    blobs = encode_activations(ids, values, offsets)
    assert len(blobs) == len(lens)
    for n, (start, end) in enumerate(zip(offsets[:-1], offsets[1:], strict=True)):
        assert blobs[n] == encode_activation(ids[start:end], values[start:end].tolist()), n


def test_batch_encoder_handles_empty_and_very_long_examples() -> None:
    lens = [3, 0, 70_000, 2]
    offsets = np.concatenate([[0], np.cumsum(lens)])
    ids = np.arange(offsets[-1]) % 1000
    values = np.zeros(len(ids))
    values[::97] = 1.5
    blobs = encode_activations(ids, values, offsets)
    assert [decode_activation(b)[0].tolist() for b in blobs] == [
        ids[a:b].tolist() for a, b in zip(offsets[:-1], offsets[1:], strict=True)
    ]
    with pytest.raises(ValueError):
        encode_activations(ids[:-1], values, offsets)


@pytest.mark.parametrize("top_id", [3, 200, 20_000, 70_000, 4_294_967_295])
@pytest.mark.parametrize("density", [0.0, 0.06, 0.5, 1.0])
def test_batch_decoder_matches_one_at_a_time(top_id: int, density: float) -> None:
    """decode_activations gives, example by example, what decode_activation gives (every layout: varint, u16 and
    u32 ids; sparse with u8 and u16 positions; dense; empty examples)."""
    rng = np.random.default_rng(top_id + int(density * 100) + 7)
    lens = np.concatenate([rng.integers(0, 300, 40), [128] * 45, [1, 0, 256, 257, 3000]])
    rng.shuffle(lens)
    offsets = np.concatenate([[0], np.cumsum(lens)])
    ids = rng.integers(0, top_id + 1, int(offsets[-1]))
    values = np.where(rng.random(len(ids)) < density, rng.normal(0, 3, len(ids)).round(4), 0.0)
    blobs = [encode_activation(ids[a:b], values[a:b]) for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    got_ids, got_values, got_offsets = decode_activations(blobs)
    assert got_offsets.tolist() == offsets.tolist()
    floats = float32_to_floats(got_values)
    for n, blob in enumerate(blobs):
        one_ids, one_values = decode_activation(blob)
        a, b = offsets[n], offsets[n + 1]
        assert got_ids[a:b].tolist() == one_ids.tolist(), n
        assert floats[a:b] == one_values, n


def test_batch_decoder_of_nothing() -> None:
    ids, values, offsets = decode_activations([])
    assert len(ids) == len(values) == 0 and offsets.tolist() == [0]
