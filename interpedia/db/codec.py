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
import orjson

_IDS_U32 = 1
_DENSE = 2
_POS_U16 = 4
_IDS_VARINT = 8
_KNOWN_FLAGS = _IDS_U32 | _DENSE | _POS_U16 | _IDS_VARINT
_NUMPY = orjson.OPT_SERIALIZE_NUMPY


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


def encode_activation(
    token_ids: Sequence[int] | npt.NDArray[np.integer], values: Sequence[float] | npt.NDArray[np.floating]
) -> bytes:
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


def _varint_lengths(values: npt.NDArray[Any], groups: int = 5) -> npt.NDArray[np.int64]:
    out = np.ones(len(values), dtype=np.int64)
    for k in range(1, groups):
        out += values >= (1 << (7 * k))
    return out


def _varint_stream(values: npt.NDArray[Any], lengths: npt.NDArray[np.int64]) -> npt.NDArray[np.uint8]:
    """The LEB128 varints of ``values`` back to back (``lengths`` from :func:`_varint_lengths`)."""
    groups = int(lengths.max()) if len(lengths) else 0
    v = values.astype(np.uint32)
    table = np.empty((len(v), groups), dtype=np.uint8)
    for k in range(groups):  # group k of every value, its high bit set when another group follows
        column = ((v >> (7 * k)) & 0x7F).astype(np.uint8)
        if k + 1 < groups:
            column |= (lengths > k + 1).astype(np.uint8) << 7
        table[:, k] = column
    return table[np.arange(groups) < lengths[:, None]]  # type: ignore[no-any-return]


def _fixed_stream(ids: npt.NDArray[np.int64], widths: npt.NDArray[np.int64]) -> npt.NDArray[np.uint8]:
    """Little-endian u16/u32 ids back to back, each in its own width (2 or 4)."""
    as_bytes = ids.astype("<u4").view(np.uint8).reshape(-1, 4)
    return as_bytes[np.arange(4)[None, :] < widths[:, None]]  # type: ignore[no-any-return]


Part = tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]
"""A section of many rows: the rows' bytes back to back, and how many belong to each row."""


def interleave(parts: Sequence[Part]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """Rows made of sections: row ``i`` is section 0's bytes of row ``i``, then section 1's, and so on.

    Returns the rows back to back and their bounds (row ``i`` is ``out[bounds[i]:bounds[i + 1]]``).
    Every byte is placed by one numpy scatter per section: no per-row Python.
    """
    n = len(parts[0][1])
    sizes = np.zeros(n, dtype=np.int64)
    for _, lengths in parts:
        sizes += lengths
    bounds = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(sizes, out=bounds[1:])
    out = np.empty(int(bounds[-1]), dtype=np.uint8)
    at = bounds[:-1].copy()
    for stream, lengths in parts:
        if len(stream):
            width = int(lengths[0])
            if len(stream) == width * n and (lengths == width).all():  # fixed width: a 2-D scatter
                out[at[:, None] + np.arange(width)] = stream.reshape(n, width)
            else:
                starts = np.cumsum(lengths) - lengths
                out[np.repeat(at - starts, lengths) + np.arange(len(stream))] = stream
        at += lengths
    return out, bounds


def activation_parts(
    token_ids: npt.NDArray[np.integer], values: npt.NDArray[np.floating], offsets: npt.NDArray[np.integer]
) -> list[Part] | None:
    """The sections of :func:`encode_activation`'s blobs of many examples, built for the whole batch.

    ``token_ids`` and ``values`` are the examples concatenated; example ``i`` is
    ``offsets[i]:offsets[i + 1]``. :func:`interleave` of the result gives the blobs, byte for byte
    those of :func:`encode_activation`. None when an example is empty or longer than 65,536 tokens
    (rare: encode those one by one).
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
    if ((lens == 0) | (lens > 1 << 16)).any():
        return None
    v32 = np.asarray(values, dtype=np.float32)
    nonzero = v32 != 0
    nnz = _segment_sums(nonzero, offs)
    wide = _segment_sums(ids >= 1 << 16, offs) > 0
    tok_varint = _varint_lengths(ids)
    varint_len = _segment_sums(tok_varint, offs)
    fixed_len = lens * np.where(wide, 4, 2)
    use_varint = varint_len < fixed_len
    pos_u16 = lens > 256
    dense = nnz * (np.where(pos_u16, 2, 1) + 4) + 5 >= lens * 4
    flags = (
        np.where(wide & ~use_varint, _IDS_U32, 0)
        | np.where(dense, _DENSE, 0)
        | np.where(~dense & pos_u16, _POS_U16, 0)
        | np.where(use_varint, _IDS_VARINT, 0)
    ).astype(np.uint8)

    # Id sections of all examples back to back.
    if use_varint.all():
        id_stream = _varint_stream(ids, tok_varint)
    elif not use_varint.any():
        id_stream = _fixed_stream(ids, np.repeat(np.where(wide, 4, 2), lens))
    else:
        row = np.repeat(np.arange(len(lens)), lens)
        var_tok = use_varint[row]
        width = np.where(var_tok, tok_varint, np.where(wide[row], 4, 2))
        id_stream = np.empty(int(width.sum()), dtype=np.uint8)
        is_var_byte = np.repeat(var_tok, width)
        id_stream[is_var_byte] = _varint_stream(ids[var_tok], tok_varint[var_tok])
        id_stream[~is_var_byte] = _fixed_stream(ids[~var_tok], width[~var_tok])

    # Value sections: dense examples' values, or sparse examples' count, positions and non-zero values.
    v_bytes = v32.astype("<f4").view(np.uint8).reshape(-1, 4)
    in_dense = np.repeat(dense, lens)
    sparse_nz = nonzero & ~in_dense
    sparse_counts = np.where(dense, 0, nnz)
    positions = (np.arange(len(ids)) - np.repeat(offs[:-1], lens))[sparse_nz]
    if pos_u16.any():
        pos_stream = _fixed_stream(positions, np.repeat(np.where(pos_u16, 2, 1), sparse_counts))
    else:
        pos_stream = positions.astype(np.uint8)
    n_len = _varint_lengths(lens)
    count_len = np.where(dense, 0, _varint_lengths(nnz))
    return [
        (flags, np.ones(len(lens), dtype=np.int64)),
        (_varint_stream(lens, n_len), n_len),
        (id_stream, np.where(use_varint, varint_len, fixed_len)),
        (v_bytes[in_dense].reshape(-1), np.where(dense, 4 * lens, 0)),
        (_varint_stream(nnz[~dense], count_len[~dense]), count_len),
        (pos_stream, sparse_counts * np.where(pos_u16, 2, 1)),
        (v_bytes[sparse_nz].reshape(-1), 4 * sparse_counts),
    ]


def encode_activations(
    token_ids: npt.NDArray[np.integer], values: npt.NDArray[np.floating], offsets: npt.NDArray[np.integer]
) -> list[bytes]:
    """:func:`encode_activation` of many examples at once, byte for byte the same (see :func:`activation_parts`)."""
    parts = activation_parts(token_ids, values, offsets)
    if parts is None:
        ids, offs = np.asarray(token_ids, dtype=np.int64), np.asarray(offsets, dtype=np.int64)
        return [
            encode_activation(ids[a:b], np.asarray(values[a:b]))
            for a, b in zip(offs[:-1].tolist(), offs[1:].tolist(), strict=True)
        ]
    if not len(parts[0][0]):
        return []
    blobs, bounds = interleave(parts)
    raw = blobs.tobytes()
    return [raw[a:b] for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)]


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
    """float32 values as the shortest Python floats that round-trip them (0.1234f -> 0.1234); -0.0 as 0.0."""
    # orjson writes a float32 array as the shortest decimals that round-trip it, and reads them back as the
    # nearest doubles: the same numbers as ``float(str(v))``, at a third of the cost of numpy's string casts.
    # Adding +0.0 turns -0.0 into 0.0.
    text = orjson.dumps(np.asarray(values, dtype=np.float32) + np.float32(0.0), option=_NUMPY)
    return orjson.loads(text)  # type: ignore[no-any-return]


def _gather(buf: npt.NDArray[np.uint8], starts: list[int], lengths: list[int]) -> npt.NDArray[np.uint8]:
    """The bytes ``buf[s:s + n]`` of every (start, length), back to back (one numpy gather, no per-range call)."""
    total = sum(lengths)
    if not total:
        return np.zeros(0, dtype=np.uint8)
    lens = np.asarray(lengths, dtype=np.int64)
    ends = np.cumsum(lens)
    index = np.arange(total, dtype=np.int64) + np.repeat(np.asarray(starts, dtype=np.int64) - (ends - lens), lens)
    return buf[index]


def decode_activations(
    blobs: Sequence[bytes],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """:func:`decode_activation` of many blobs at once: all token ids and all float32 values back to back, and
    the offsets of each example (example ``i`` is ``offsets[i]:offsets[i + 1]``).

    A feature's page decodes ~45 blobs; decoding them one by one costs a dozen numpy calls each. Here each
    blob's header is read in Python (a few bytes), and the ids and values of all blobs are each decoded by a
    handful of numpy calls over the blobs joined together. Malformed blobs raise :class:`CodecError`.
    """
    n_blobs = len(blobs)
    offsets = np.zeros(n_blobs + 1, dtype=np.int64)
    if not n_blobs:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32), offsets
    joined = b"".join(blobs)
    buf = np.frombuffer(joined, dtype=np.uint8)
    # Pass 1: flags and token counts; where each id section starts.
    heads: list[tuple[int, int, int, int]] = []  # (flags, n, ids start, blob end), absolute positions
    at = 0
    for k, blob in enumerate(blobs):
        if not blob:
            raise CodecError("empty activation blob")
        flags = blob[0]
        if flags & ~_KNOWN_FLAGS:
            raise CodecError(f"unknown flags {flags:#x}")
        n, pos = _get_varint(blob, 1)
        heads.append((flags, n, at + pos, at + len(blob)))
        offsets[k + 1] = offsets[k] + n
        at += len(blob)
    total = int(offsets[-1])
    # Where each varint id section ends: after its n-th byte below 0x80 (found for all blobs at once).
    var = [k for k, h in enumerate(heads) if h[0] & _IDS_VARINT and h[1]]
    var_ends: dict[int, int] = {}
    if var:
        stops = np.cumsum(buf < 0x80)
        before = np.asarray([stops[heads[k][2] - 1] if heads[k][2] else 0 for k in var], dtype=np.int64)
        found = np.searchsorted(stops, before + np.asarray([heads[k][1] for k in var]), side="left")
        var_ends = dict(zip(var, (found + 1).tolist(), strict=True))
    ids = np.empty(total, dtype=np.int64)
    values = np.zeros(total, dtype=np.float32)
    var_starts: list[int] = []
    var_lengths: list[int] = []
    pos_starts: list[int] = []
    pos_counts: list[int] = []
    val_starts: list[int] = []
    targets: list[int] = []
    for k, (flags, n, start, end) in enumerate(heads):
        out = int(offsets[k])
        # Pass 2: the id section's end, then the values section.
        if flags & _IDS_VARINT:
            stop = var_ends.get(k, start)
            if stop > end:
                raise CodecError("truncated token ids")
            var_starts.append(start)
            var_lengths.append(stop - start)
        else:
            width = 4 if flags & _IDS_U32 else 2
            stop = start + n * width
            if stop > end:
                raise CodecError("truncated token ids")
            ids[out : out + n] = np.frombuffer(joined, dtype="<u4" if width == 4 else "<u2", count=n, offset=start)
        if flags & _DENSE:
            if stop + 4 * n != end:
                raise CodecError("truncated values" if stop + 4 * n > end else "trailing bytes after values")
            values[out : out + n] = np.frombuffer(joined, dtype="<f4", count=n, offset=stop)
            continue
        nnz, pos = _get_varint(joined, stop)
        if nnz > n:
            raise CodecError(f"{nnz} non-zero values for {n} tokens")
        pos_width = 2 if flags & _POS_U16 else 1
        if pos + nnz * (pos_width + 4) != end:
            raise CodecError("truncated values" if pos + nnz * (pos_width + 4) > end else "trailing bytes after values")
        if pos_width == 2:  # rare (examples over 256 tokens): one at a time
            positions = np.frombuffer(joined, dtype="<u2", count=nnz, offset=pos)
            if nnz and int(positions.max()) >= n:
                raise CodecError("value position out of range")
            values[out + positions] = np.frombuffer(joined, dtype="<f4", count=nnz, offset=pos + 2 * nnz)
            continue
        pos_starts.append(pos)
        pos_counts.append(nnz)
        val_starts.append(pos + nnz)
        targets.append(out)
        if nnz and n < 256 and max(joined[pos : pos + nnz]) >= n:
            raise CodecError("value position out of range")
    if var_starts:
        count = sum(heads[k][1] for k in var)
        stream = _gather(buf, var_starts, var_lengths).tobytes()
        decoded, used = varint_decode(stream, 0, count)
        if used != len(stream):
            raise CodecError("truncated token ids")
        ids[np.repeat(offsets[:-1][var], [heads[k][1] for k in var]) + _ranks([heads[k][1] for k in var])] = decoded
    if pos_counts and sum(pos_counts):
        positions = _gather(buf, pos_starts, pos_counts).astype(np.int64)
        nz = _gather(buf, val_starts, [4 * c for c in pos_counts]).view("<f4")
        values[np.repeat(np.asarray(targets, dtype=np.int64), pos_counts) + positions] = nz
    return ids, values, offsets


def _ranks(counts: list[int]) -> npt.NDArray[np.int64]:
    """0..c-1 for each count c, back to back."""
    lens = np.asarray(counts, dtype=np.int64)
    ends = np.cumsum(lens)
    return np.arange(int(ends[-1]) if len(ends) else 0, dtype=np.int64) - np.repeat(ends - lens, lens)


def example_peaks(values: npt.NDArray[np.float32], offsets: npt.NDArray[np.int64]) -> list[tuple[int, int]]:
    """Per example (``offsets`` as :func:`decode_activations` gives them): the position of its largest value
    and of its smallest, first occurrences, relative to the example's start ((0, 0) for an empty one)."""
    lens = np.diff(offsets)
    out = [(0, 0)] * len(lens)
    full = np.flatnonzero(lens > 0)
    if not len(full):
        return out
    if (lens == lens[full[0]]).all():  # the usual case: every example has the same length
        block = values[: int(offsets[-1])].reshape(len(lens), -1)
        return list(zip(block.argmax(axis=1).tolist(), block.argmin(axis=1).tolist(), strict=True))
    for k in full.tolist():
        seg = values[offsets[k] : offsets[k + 1]]
        out[k] = (int(seg.argmax()), int(seg.argmin()))
    return out
