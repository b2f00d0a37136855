"""Compact binary form of one activation example: token ids plus (usually sparse) float32 values.

A real SAE set has millions of features x ~45 examples x 128 tokens, so the row layout decides the
database size. Neuronpedia keeps ``tokens text[]`` and ``values float8[]``; we keep token ids into a
per-model vocabulary and only the non-zero values as float32, which is the precision the SAE computed
them in. Vocabulary ids are handed out most-frequent first, so most ids fit a one- or two-byte varint.

Layout (little-endian)::

    u8      flags: 1 = ids are u32 (else u16), 2 = values dense (else sparse), 4 = positions u16 (else u8),
                   8 = ids are LEB128 varints (used when shorter than the fixed width)
    varint  n_tokens
    ids     n_tokens x (u16 | u32), or n_tokens varints
    dense:  n_tokens x f32
    sparse: varint nnz, nnz x (u8 | u16) positions, nnz x f32 values

Values come back as the shortest decimal that round-trips the float32, so ``0.1234`` stays ``0.1234``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

_IDS_U32 = 1
_DENSE = 2
_POS_U16 = 4
_IDS_VARINT = 8
_KNOWN_FLAGS = _IDS_U32 | _DENSE | _POS_U16 | _IDS_VARINT


class CodecError(ValueError):
    """A stored activation blob is malformed."""


def _put_varint(out: bytearray, value: int) -> None:
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


def _get_varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = 0
    result = 0
    while True:
        if pos >= len(buf):
            raise CodecError("truncated varint")
        if shift > 63:
            raise CodecError("varint too long")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def varint_encode(values: npt.NDArray[np.int64]) -> bytes:
    """LEB128 varints of non-negative integers, vectorised."""
    vals = values.astype(np.uint64)
    lengths = np.ones(vals.shape[0], dtype=np.int64)
    for k in range(1, 5):
        lengths += vals >= (1 << (7 * k))
    shifts = (7 * np.arange(5, dtype=np.uint64))[None, :]
    groups = ((vals[:, None] >> shifts) & 0x7F).astype(np.uint8)
    cols = np.arange(5)[None, :]
    groups[cols < (lengths[:, None] - 1)] |= 0x80
    return groups[cols < lengths[:, None]].tobytes()


def varint_decode(buf: bytes, pos: int, count: int) -> tuple[npt.NDArray[np.int64], int]:
    """``count`` varints from ``buf`` at ``pos``; returns them and the position after the last one."""
    if count == 0:
        return np.zeros(0, dtype=np.int64), pos
    raw = np.frombuffer(buf, dtype=np.uint8, count=min(len(buf) - pos, 5 * count), offset=pos)
    ends = np.flatnonzero(raw < 0x80)[:count]
    if len(ends) < count:
        raise CodecError("truncated token ids")
    used = int(ends[-1]) + 1
    chunk = raw[:used].astype(np.int64)
    starts = np.concatenate([[0], ends[:-1] + 1])
    group = np.repeat(np.arange(count), ends - starts + 1)
    offset = np.arange(used) - starts[group]
    if int(offset.max()) > 4:
        raise CodecError("varint too long")
    # Each varint has at most 5 groups of 7 bits (< 2**35), exact in the float64 weights of bincount.
    parts = (chunk & 0x7F) << (7 * offset)
    return np.bincount(group, weights=parts, minlength=count).astype(np.int64), pos + used


def encode_activation(token_ids: Sequence[int] | npt.NDArray[np.integer], values: Sequence[float]) -> bytes:
    """Pack token ids and their values (same length) into one blob."""
    ids = np.asarray(token_ids, dtype=np.int64)
    vals = np.asarray(values, dtype=np.float32)
    n = int(ids.shape[0])
    if vals.shape[0] != n:
        raise ValueError(f"{n} token ids but {vals.shape[0]} values")
    if n and (int(ids.min()) < 0 or int(ids.max()) >= 1 << 32):
        raise ValueError("token ids must be in [0, 2**32)")
    flags = 0
    if n and int(ids.max(initial=0)) >= 1 << 16:
        flags |= _IDS_U32
    nonzero = np.flatnonzero(vals)
    pos_u16 = n > 256
    sparse_size = len(nonzero) * ((2 if pos_u16 else 1) + 4) + 5
    # Positions are at most u16, so a longer example is always stored dense.
    if sparse_size >= n * 4 or n > 1 << 16:
        flags |= _DENSE
    elif pos_u16:
        flags |= _POS_U16
    fixed = ids.astype("<u4" if flags & _IDS_U32 else "<u2").tobytes()
    varints = varint_encode(ids)
    if len(varints) < len(fixed):
        flags = (flags & ~_IDS_U32) | _IDS_VARINT
    out = bytearray([flags])
    _put_varint(out, n)
    out += varints if flags & _IDS_VARINT else fixed
    if flags & _DENSE:
        out += vals.astype("<f4").tobytes()
    else:
        _put_varint(out, len(nonzero))
        out += nonzero.astype("<u2" if pos_u16 else "u1").tobytes()
        out += vals[nonzero].astype("<f4").tobytes()
    return bytes(out)


def _segment_sums(x: npt.NDArray[Any], offsets: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Sums of ``x`` over the segments ``offsets[i]:offsets[i + 1]`` (empty segments sum to 0)."""
    acc = np.zeros(len(x) + 1, dtype=np.int64)
    np.cumsum(x, out=acc[1:])
    return acc[offsets[1:]] - acc[offsets[:-1]]  # type: ignore[no-any-return]


def _varint_lengths(values: npt.NDArray[np.int64], groups: int = 5) -> npt.NDArray[np.int64]:
    out = np.ones(len(values), dtype=np.int64)
    for k in range(1, groups):
        out += values >= (1 << (7 * k))
    return out


def _put_varints(buf: npt.NDArray[np.uint8], at: npt.NDArray[np.int64], values: npt.NDArray[np.int64],
                 lengths: npt.NDArray[np.int64]) -> None:
    for j in range(int(lengths.max(initial=0))):
        m = lengths > j
        byte = (values[m] >> (7 * j)) & 0x7F
        byte |= (lengths[m] - 1 > j) << 7
        buf[at[m] + j] = byte


def encode_activations(token_ids: npt.NDArray[np.integer], values: npt.NDArray[np.floating],
                       offsets: npt.NDArray[np.integer]) -> list[bytes]:
    """:func:`encode_activation` of many examples at once, byte for byte the same.

    ``token_ids`` and ``values`` are the examples concatenated; example ``i`` is
    ``offsets[i]:offsets[i + 1]``. One numpy pass over the whole batch instead of a dozen small
    array operations per example.
    """
    ids = np.asarray(token_ids, dtype=np.int64)
    offs = np.asarray(offsets, dtype=np.int64)
    if ids.shape != np.shape(values) or offs.ndim != 1 or len(offs) == 0 or offs[0] != 0 or offs[-1] != len(ids):
        raise ValueError("token ids and values must have the same length, cut by offsets from 0 to that length")
    lens = np.diff(offs)
    if (lens < 0).any():
        raise ValueError("offsets must not decrease")
    if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= 1 << 32):
        raise ValueError("token ids must be in [0, 2**32)")
    odd = (lens == 0) | (lens > 1 << 16)
    if odd.any():  # empty or very long examples: rare enough to go one by one
        out: list[bytes] = []
        for start, end in zip(offs[:-1].tolist(), offs[1:].tolist(), strict=True):
            out.append(encode_activation(ids[start:end], np.asarray(values[start:end])))
        return out
    n_rows, n = len(lens), len(ids)
    if n_rows == 0:
        return []
    v32 = np.asarray(values, dtype=np.float32)
    row = np.repeat(np.arange(n_rows), lens)
    at_in_row = np.arange(n) - offs[row]
    nonzero = v32 != 0
    nnz = _segment_sums(nonzero, offs)
    wide = _segment_sums(ids >= 1 << 16, offs) > 0
    tok_varint = _varint_lengths(ids)
    use_varint = _segment_sums(tok_varint, offs) < lens * np.where(wide, 4, 2)
    pos_u16 = lens > 256
    pos_width = np.where(pos_u16, 2, 1)
    dense = nnz * (pos_width + 4) + 5 >= lens * 4
    flags = (np.where(wide & ~use_varint, _IDS_U32, 0) | np.where(dense, _DENSE, 0)
             | np.where(~dense & pos_u16, _POS_U16, 0) | np.where(use_varint, _IDS_VARINT, 0))
    # Bytes each token's id takes, and where it goes inside its example's id section.
    tok_width = np.where(use_varint[row], tok_varint, np.where(wide[row], 4, 2))
    ends = np.cumsum(tok_width)
    tok_at = ends - tok_width
    tok_at -= tok_at[offs[:-1]][row]
    ids_len = _segment_sums(tok_width, offs)
    n_len = _varint_lengths(lens, 3)
    nnz_len = _varint_lengths(nnz, 3)
    vals_len = np.where(dense, 4 * lens, nnz_len + nnz * (pos_width + 4))
    total = 1 + n_len + ids_len + vals_len
    start = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(total, out=start[1:])
    buf = np.zeros(int(start[-1]), dtype=np.uint8)
    buf[start[:-1]] = flags
    _put_varints(buf, start[:-1] + 1, lens, n_len)
    ids_at = start[:-1] + 1 + n_len
    dest = ids_at[row] + tok_at
    var_tok = use_varint[row]
    for j in range(int(tok_width.max())):
        m = tok_width > j
        shifted_var = (ids[m] >> (7 * j)) & 0x7F | ((tok_width[m] - 1 > j) << 7)
        shifted_fixed = (ids[m] >> (8 * j)) & 0xFF
        buf[dest[m] + j] = np.where(var_tok[m], shifted_var, shifted_fixed)
    vals_at = ids_at + ids_len
    v_bytes = v32.astype("<f4").view(np.uint8).reshape(n, 4)
    four = np.arange(4)
    in_dense = dense[row]
    if in_dense.any():
        buf[(vals_at[row] + 4 * at_in_row)[in_dense][:, None] + four] = v_bytes[in_dense]
    sparse_nz = nonzero & ~in_dense
    if (~dense).any():
        sparse_rows = np.flatnonzero(~dense)
        _put_varints(buf, vals_at[sparse_rows], nnz[sparse_rows], nnz_len[sparse_rows])
        rank = np.cumsum(nonzero) - nonzero
        rank -= rank[offs[:-1]][row]
        r, k, width = row[sparse_nz], rank[sparse_nz], pos_width[row[sparse_nz]]
        pos_at = vals_at[r] + nnz_len[r] + k * width
        pos = at_in_row[sparse_nz]
        buf[pos_at] = pos & 0xFF
        wide_pos = width == 2
        buf[pos_at[wide_pos] + 1] = pos[wide_pos] >> 8
        val_at = vals_at[r] + nnz_len[r] + nnz[r] * width + 4 * k
        buf[val_at[:, None] + four] = v_bytes[sparse_nz]
    raw = buf.tobytes()
    bounds = start.tolist()
    return [raw[bounds[i] : bounds[i + 1]] for i in range(n_rows)]


def decode_activation(blob: bytes) -> tuple[npt.NDArray[np.int64], list[float]]:
    """Unpack a blob into (token ids, values as Python floats)."""
    if not blob:
        raise CodecError("empty activation blob")
    flags = blob[0]
    if flags & ~_KNOWN_FLAGS:
        raise CodecError(f"unknown flags {flags:#x}")
    n, pos = _get_varint(blob, 1)
    if flags & _IDS_VARINT:
        ids, pos = varint_decode(blob, pos, n)
    else:
        id_width = 4 if flags & _IDS_U32 else 2
        end = pos + n * id_width
        if end > len(blob):
            raise CodecError("truncated token ids")
        ids = np.frombuffer(blob, dtype="<u4" if id_width == 4 else "<u2", count=n, offset=pos).astype(np.int64)
        pos = end
    values = np.zeros(n, dtype=np.float32)
    if flags & _DENSE:
        end = pos + 4 * n
        if end != len(blob):
            raise CodecError("truncated values" if end > len(blob) else "trailing bytes after values")
        values[:] = np.frombuffer(blob, dtype="<f4", count=n, offset=pos)
    else:
        nnz, pos = _get_varint(blob, pos)
        if nnz > n:
            raise CodecError(f"{nnz} non-zero values for {n} tokens")
        pos_width = 2 if flags & _POS_U16 else 1
        end = pos + nnz * (pos_width + 4)
        if end != len(blob):
            raise CodecError("truncated values" if end > len(blob) else "trailing bytes after values")
        positions = np.frombuffer(blob, dtype="<u2" if pos_width == 2 else "u1", count=nnz, offset=pos)
        if nnz and int(positions.max()) >= n:
            raise CodecError("value position out of range")
        pos += nnz * pos_width
        values[positions] = np.frombuffer(blob, dtype="<f4", count=nnz, offset=pos)
    return ids, float32_to_floats(values)


def float32_to_floats(values: npt.NDArray[np.float32]) -> list[float]:
    """float32 values as the shortest Python floats that round-trip them (0.1234f -> 0.1234)."""
    out = np.zeros(values.shape[0], dtype=np.float64)
    nz = np.flatnonzero(values)
    if len(nz):
        out[nz] = values[nz].astype(str).astype(np.float64)
    return out.tolist()  # type: ignore[no-any-return]
