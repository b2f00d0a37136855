"""Prototypes of changes to interpedia's storage and importer, measured by the benchmarks (not used by the package).

Storage (``activation_storage.py --prototypes``): the activation rows an import wrote are rewritten
into side tables of the same database, so each change is measured on the same data:

- ``lean``: the same blob, narrower columns: ``max_value``/bins as ``real`` (the blob's values are
  float32 anyway), token positions as ``smallint``, ``min_value`` and ``created_at`` dropped (derivable
  from the blob / the feature), ``creator_id`` NULL when it is the feature's creator, rare fields
  (DFA, data source/index) left to ``extras``;
- ``varint``: the current columns with codec v2 ids: LEB128 varints of vocabulary ids handed out in
  order of frequency (the first batch that sees a token gives the most frequent new token the
  smallest id), falling back to u16/u32 when that is not smaller;
- ``lean+varint``: both;
- ``packed``: both, with the per-example scalars (bins, token positions) moved into the blob, leaving
  ``(id, feature_id, max_value, data, extras)``: five columns, a 24-byte tuple header;
- ``vocab8``: ``vocab_tokens`` with an 8-byte token hash instead of 16.

Import (``import_throughput.py --prototype``): the real ``import_path`` with five functions swapped:
``ensure_tokens`` holds the model's vocabulary in memory (read once, then only ids above the highest
it holds), so a batch costs no lookups by hash; new tokens go in by COPY, most frequent first (counted
with C loops, only when a batch brings 1,000+ new tokens); ``all_tokens`` keeps first-seen order and
what the counting needs; ``_activation_row`` maps tokens with ``operator.itemgetter`` and takes
max/min/argmax with numpy; ``as_str_list`` checks types and lengths with ``map`` (C loops), and
``as_int_list`` returns empty lists at once. Errors fall back to the original functions, so messages
are unchanged.
"""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from itertools import chain
from operator import itemgetter
from typing import Any
from unittest import mock

import numpy as np
import numpy.typing as npt
import orjson
import psycopg
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from interpedia.db import codec
from interpedia.db.tables import Model, VocabToken
from interpedia.ingest import validate
from interpedia.store import vocab as vocab_mod
from interpedia.store import writer
from interpedia.store.records import ActivationRecord, FeatureRecord

log = logging.getLogger(__name__)

_IDS_VARINT = 8
_SCALARS = 16


# --- codec v2 (prototype) -----------------------------------------------------------------------


def varint_bytes(values: npt.NDArray[np.int64]) -> bytes:
    """LEB128 varints of non-negative integers, vectorised (at most 5 bytes each, ids < 2**35)."""
    v = values.astype(np.uint64)
    nbytes = np.ones(len(v), dtype=np.int64)
    for k in range(1, 5):
        nbytes += v >= (1 << (7 * k))
    out = np.empty(int(nbytes.sum()), dtype=np.uint8)
    starts = np.concatenate(([0], np.cumsum(nbytes)[:-1]))
    for k in range(5):
        has = nbytes > k
        byte = ((v[has] >> np.uint64(7 * k)) & np.uint64(0x7F)).astype(np.uint8)
        more = nbytes[has] > k + 1
        out[starts[has] + k] = byte | (more.astype(np.uint8) << 7)
    return out.tobytes()


def read_varints(buf: bytes, pos: int, count: int) -> tuple[npt.NDArray[np.int64], int]:
    """``count`` LEB128 varints from ``buf`` at ``pos``; returns (values, next position)."""
    arr = np.frombuffer(buf, dtype=np.uint8, offset=pos)
    ends = np.flatnonzero(arr < 0x80)[:count]
    if len(ends) < count:
        raise codec.CodecError("truncated varints")
    end = int(ends[-1]) + 1 if count else 0
    chunk = arr[:end].astype(np.int64)
    starts = np.concatenate(([0], ends[:-1] + 1)) if count else np.zeros(0, dtype=np.int64)
    out = np.zeros(count, dtype=np.int64)
    for k in range(5):
        idx = starts + k
        valid = idx <= ends
        out[valid] |= (chunk[idx[valid]] & 0x7F) << (7 * k)
    return out, pos + end


def encode_v2(token_ids: npt.NDArray[np.int64], values: Sequence[float] | npt.NDArray[Any],
              scalars: tuple[float | None, float | None, float | None, int, int | None] | None = None) -> bytes:
    """Codec v1 with varint ids when smaller (flag 8) and, optionally, the example's scalars (flag 16)."""
    blob = bytearray(codec.encode_activation(token_ids, values))
    n, pos = codec._get_varint(bytes(blob), 1)
    width = 4 if blob[0] & codec._IDS_U32 else 2
    packed = varint_bytes(np.asarray(token_ids, dtype=np.int64))
    if len(packed) < n * width:
        blob = bytearray([blob[0] & ~codec._IDS_U32 | _IDS_VARINT]) + blob[1:pos] + packed + blob[pos + n * width:]
    if scalars is not None:
        bin_min, bin_max, bin_contains, max_at, qual_at = scalars
        blob[0] |= _SCALARS
        extra = bytearray(struct.pack("<fff", *(np.nan if x is None else x for x in (bin_min, bin_max,
                                                                                       bin_contains))))
        codec._put_varint(extra, max_at)
        codec._put_varint(extra, 0 if qual_at is None else qual_at + 1)
        blob += extra
    return bytes(blob)


def decode_v2_ids(blob: bytes) -> tuple[npt.NDArray[np.int64], int]:
    """Token ids of a v2 blob and the position after them (enough to check the id stream)."""
    flags = blob[0]
    n, pos = codec._get_varint(blob, 1)
    if flags & _IDS_VARINT:
        return read_varints(blob, pos, n)
    width = 4 if flags & codec._IDS_U32 else 2
    ids = np.frombuffer(blob, dtype="<u4" if width == 4 else "<u2", count=n, offset=pos).astype(np.int64)
    return ids, pos + n * width


def frequency_ranks(id_streams: Iterable[npt.NDArray[np.int64]], batch_rows: int, n_ids: int) -> npt.NDArray[np.int64]:
    """old id -> new id, handing out ids batch by batch in import order, most frequent new token first."""
    mapping = np.full(n_ids, -1, dtype=np.int64)
    next_id = 0
    batch: list[npt.NDArray[np.int64]] = []

    def close() -> None:
        nonlocal next_id
        if not batch:
            return
        counts = np.bincount(np.concatenate(batch), minlength=n_ids)
        new = np.flatnonzero((counts > 0) & (mapping < 0))
        order = new[np.lexsort((new, -counts[new]))]
        mapping[order] = np.arange(next_id, next_id + len(order))
        next_id += len(order)
        batch.clear()

    for ids in id_streams:
        batch.append(ids)
        if len(batch) >= batch_rows:
            close()
    close()
    unused = np.flatnonzero(mapping < 0)
    mapping[unused] = np.arange(next_id, next_id + len(unused))
    return mapping


# --- storage prototypes -------------------------------------------------------------------------

_LEAN_DDL = """
CREATE TABLE {name} (
    id bigint PRIMARY KEY,
    feature_id bigint NOT NULL,
    max_value real NOT NULL,
    bin_min real, bin_max real, bin_contains real,
    max_value_token_index smallint NOT NULL,
    qualifying_token_index smallint,
    creator_id varchar(32),
    data bytea NOT NULL,
    extras json
);
"""
_PACKED_DDL = """
CREATE TABLE {name} (
    id bigint PRIMARY KEY,
    feature_id bigint NOT NULL,
    max_value real NOT NULL,
    data bytea NOT NULL,
    extras json
);
"""
_FEATURE_MAX_INDEX = "CREATE INDEX ix_{name}_feature_max ON {name} (feature_id, max_value);"
# Non-unique on feature_id alone: Postgres' btree deduplication stores ~45 row pointers per key.
_FEATURE_INDEX = "CREATE INDEX ix_{name}_feature ON {name} (feature_id);"
_VOCAB_CHUNKS_DDL = """
CREATE TABLE p_vocab_chunks (
    model_id varchar(64) NOT NULL,
    chunk integer NOT NULL,
    n_tokens integer NOT NULL,
    tokens bytea NOT NULL,
    PRIMARY KEY (model_id, chunk)
);
"""
VOCAB_CHUNK = 4096
_CURRENT_COLS = ("id", "feature_id", "creator_id", "data", "max_value", "max_value_token_index", "min_value",
                 "bin_min", "bin_max", "bin_contains", "qualifying_token_index", "dfa_target_index", "dfa_max_value",
                 "extras", "data_source", "data_index", "created_at")
# (table, DDL, index) of each cumulative step; the vocabulary step adds p_vocab_chunks to the last one.
STEPS = {
    "lean columns": ("p_lean", _LEAN_DDL, _FEATURE_MAX_INDEX),
    "+ varint ids ranked by frequency": ("p_lean_varint", _LEAN_DDL, _FEATURE_MAX_INDEX),
    "+ index on feature_id only": ("p_lean_varint_fidx", _LEAN_DDL, _FEATURE_INDEX),
    "+ scalars packed into the blob": ("p_packed_fidx", _PACKED_DDL, _FEATURE_INDEX),
}


def vocab_chunk_bytes(tokens: list[bytes]) -> bytes:
    """Length-prefixed (varint) UTF-8 token strings, concatenated."""
    out = bytearray()
    for tok in tokens:
        codec._put_varint(out, len(tok))
        out += tok
    return bytes(out)


def build_storage_prototypes(dsn: str, *, batch_rows: int) -> dict[str, Any]:
    """Rewrite the imported activations into the prototype tables; returns checks and average blob sizes."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(f"SELECT {', '.join(_CURRENT_COLS)} FROM activations ORDER BY id").fetchall()
        vocab_rows = conn.execute("SELECT model_id, token_id, token FROM vocab_tokens ORDER BY token_id").fetchall()
    data_at = _CURRENT_COLS.index("data")
    decoded = [codec.decode_activation(bytes(r[data_at])) for r in rows]
    n_ids = max(int(v[1]) for v in vocab_rows) + 1
    mapping = frequency_ranks((ids for ids, _ in decoded), batch_rows, n_ids)
    col = {c: i for i, c in enumerate(_CURRENT_COLS)}
    v1_blobs = [bytes(r[data_at]) for r in rows]
    v2_blobs: list[bytes] = []
    packed_blobs: list[bytes] = []
    for row, (ids, values) in zip(rows, decoded, strict=True):
        new_ids = mapping[ids]
        v2 = encode_v2(new_ids, values)
        back, _ = decode_v2_ids(v2)
        if not np.array_equal(back, new_ids):
            raise AssertionError("varint id stream does not round-trip")
        v2_blobs.append(v2)
        packed_blobs.append(encode_v2(new_ids, values, (row[col["bin_min"]], row[col["bin_max"]],
                                                        row[col["bin_contains"]], row[col["max_value_token_index"]],
                                                        row[col["qualifying_token_index"]])))
    blobs = {"p_lean": v1_blobs, "p_lean_varint": v2_blobs, "p_lean_varint_fidx": v2_blobs,
             "p_packed_fidx": packed_blobs}
    lean_cols = ("id", "feature_id", "max_value", "bin_min", "bin_max", "bin_contains", "max_value_token_index",
                 "qualifying_token_index", "creator_id", "data", "extras")
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name, ddl, index in STEPS.values():
            conn.execute(f"DROP TABLE IF EXISTS {name}")
            conn.execute(ddl.format(name=name))
            # The index exists during the load, as under the importer's COPY.
            conn.execute(index.format(name=name))
            with conn.cursor() as cur:
                if name == "p_packed_fidx":
                    with cur.copy(f"COPY {name} (id, feature_id, max_value, data, extras) FROM STDIN") as cp:
                        for r, blob in zip(rows, blobs[name], strict=True):
                            cp.write_row((r[col["id"]], r[col["feature_id"]], r[col["max_value"]], blob, None))
                else:
                    with cur.copy(f"COPY {name} ({', '.join(lean_cols)}) FROM STDIN") as cp:
                        for r, blob in zip(rows, blobs[name], strict=True):
                            # creator_id NULL: the same creator as the feature's.
                            cp.write_row((r[col["id"]], r[col["feature_id"]], r[col["max_value"]], r[col["bin_min"]],
                                          r[col["bin_max"]], r[col["bin_contains"]], r[col["max_value_token_index"]],
                                          r[col["qualifying_token_index"]], None, blob, None))
        conn.execute("DROP TABLE IF EXISTS p_vocab_chunks")
        conn.execute(_VOCAB_CHUNKS_DDL)
        by_new_id = sorted(((int(mapping[tid]), model_id, bytes(tok)) for model_id, tid, tok in vocab_rows))
        with conn.cursor() as cur, cur.copy("COPY p_vocab_chunks (model_id, chunk, n_tokens, tokens) FROM STDIN") as cp:
            for k in range(0, len(by_new_id), VOCAB_CHUNK):
                part = by_new_id[k : k + VOCAB_CHUNK]
                cp.write_row((part[0][1], k // VOCAB_CHUNK, len(part), vocab_chunk_bytes([t for _, _, t in part])))
    n = len(rows)
    return {
        "rows": n,
        "avg_blob_bytes": {"v1": round(sum(map(len, v1_blobs)) / n, 1),
                           "v2_varint": round(sum(map(len, v2_blobs)) / n, 1),
                           "v2_varint_packed": round(sum(map(len, packed_blobs)) / n, 1)},
        "varint_fraction_of_rows": round(sum(1 for b in v2_blobs if b[0] & _IDS_VARINT) / n, 4),
        "tables": {**{label: name for label, (name, _, _) in STEPS.items()}, "vocab chunks": "p_vocab_chunks"},
    }


# --- import prototypes --------------------------------------------------------------------------


def fast_as_str_list(value: Any, field: str, *, max_len: int = 100_000) -> list[str]:
    """as_str_list with the per-item checks done by C loops; errors come from the original."""
    if type(value) is list and (not value or (set(map(type, value)) == {str} and max(map(len, value)) <= max_len)):
        return value
    return _ORIGINAL["as_str_list"](value, field, max_len=max_len)  # type: ignore[no-any-return]


def fast_as_int_list(value: Any, field: str) -> list[int] | None:
    """as_int_list with an immediate answer for empty lists (every non-attention example has two)."""
    if type(value) is list and not value:
        return value
    return _ORIGINAL["as_int_list"](value, field)  # type: ignore[no-any-return]


class BatchTokens(dict[str, None]):
    """The batch's distinct tokens in first-seen order, able to count them on demand."""

    def __init__(self, records: Sequence[FeatureRecord]) -> None:
        super().__init__(dict.fromkeys(chain.from_iterable(a.tokens for r in records for a in r.activations or ())))
        self.records = records

    def counts(self) -> dict[str, int]:
        """Occurrences of each token (C loops: itemgetter to positions, then bincount)."""
        position = {t: i for i, t in enumerate(self)}
        flat = list(chain.from_iterable(a.tokens for r in self.records for a in r.activations or ()))
        if len(flat) < 2:
            return dict.fromkeys(self, 1)
        counts = np.bincount(np.array(itemgetter(*flat)(position), dtype=np.int64), minlength=len(position))
        return dict(zip(position, counts.tolist(), strict=True))


def batch_tokens(records: Sequence[FeatureRecord]) -> BatchTokens:
    """all_tokens, keeping what ensure_tokens needs to rank new tokens by frequency."""
    return BatchTokens(records)


def fast_activation_row(feature_id: int, creator_id: str | None, act: ActivationRecord,
                        token_ids: dict[str, int]) -> tuple[Any, ...]:
    """_activation_row with the token lookup in C (itemgetter) and max/min/argmax in numpy."""
    toks = act.tokens
    ids = np.array(itemgetter(*toks)(token_ids) if len(toks) > 1 else [token_ids[toks[0]]], dtype=np.int64)
    vals = np.asarray(act.values, dtype=np.float64)
    at = int(vals.argmax())
    return (
        feature_id, creator_id, codec.encode_activation(ids, vals), float(vals[at]), at, float(vals.min()),
        act.bin_min, act.bin_max, act.bin_contains, act.qualifying_token_index, act.dfa_target_index,
        act.dfa_max_value, act.extras, act.data_source, act.data_index,
    )


class CachedVocab:
    """ensure_tokens backed by the model's whole vocabulary held in memory (ids never change once handed out).

    The first call for a (database, model) reads the vocabulary (a GPT-2 one is 50k short rows); every
    call takes the model-row lock and reads only ids above the highest one it holds, so tokens that a
    concurrent importer added are seen; only new tokens are hashed and inserted (COPY on Postgres).
    No lookup by hash is needed. A real version must add its own new tokens to the cache only after the
    vocabulary transaction commits.
    """

    # Below this many new tokens the frequency ranking is not worth counting the batch.
    RANK_MIN_NEW = 1000

    def __init__(self) -> None:
        self._ids: dict[tuple[str, str], dict[str, int]] = {}

    def ensure_tokens(self, session: Session, model_id: str, tokens: Iterable[str]) -> dict[str, int]:
        """Ids for the tokens; only tokens the vocabulary lacks reach the database."""
        bind = session.get_bind()
        known = self._ids.setdefault((bind.url.render_as_string(hide_password=False), model_id), {})
        if all(t in known for t in tokens):
            return known
        postgres = bind.dialect.name == "postgresql"
        if postgres:
            session.execute(select(Model.id).where(Model.id == model_id).with_for_update())
        else:
            session.execute(update(Model).where(Model.id == model_id).values(id=Model.id))
        top = max(known.values(), default=-1)
        for tid, raw in session.execute(select(VocabToken.token_id, VocabToken.token).where(
                VocabToken.model_id == model_id, VocabToken.token_id > top)):
            known[bytes(raw).decode("utf-8", "surrogatepass")] = tid
        new = [t for t in tokens if t not in known]
        if not new:
            return known
        start_id = max(known.values(), default=-1) + 1
        if len(new) >= self.RANK_MIN_NEW and isinstance(tokens, BatchTokens):
            counts = tokens.counts()
            new.sort(key=lambda t: -counts[t])  # stable: ties keep first-seen order
        rows = [(model_id, start_id + k, vocab_mod.token_hash(t), t.encode("utf-8", "surrogatepass"))
                for k, t in enumerate(new)]
        if postgres:
            raw_conn = session.connection().connection.driver_connection
            with raw_conn.cursor() as cur, cur.copy(
                    "COPY vocab_tokens (model_id, token_id, token_hash, token) FROM STDIN") as cp:
                for row in rows:
                    cp.write_row(row)
        else:
            session.connection().exec_driver_sql(
                "INSERT INTO vocab_tokens (model_id, token_id, token_hash, token) VALUES (?, ?, ?, ?)", rows)
        known.update((t, start_id + k) for k, t in enumerate(new))
        return known


# --- columnar import prototype -------------------------------------------------------------------

_SIMPLE_EMPTY = (None, [])


def _simple_row(row: dict[str, Any]) -> bool:
    """An example with only tokens, values, bins and a token position: its fields can be checked in bulk."""
    g = row.get
    if type(g("tokens")) is not list or type(g("values")) is not list:
        return False
    if (g("dfaValues") not in _SIMPLE_EMPTY or g("lossValues") not in _SIMPLE_EMPTY
            or g("zValues") not in _SIMPLE_EMPTY or g("logitContributions") not in (None, "", [], {})
            or g("dfaTargetIndex") is not None or g("dfaMaxValue") is not None
            or g("dataSource") is not None or g("dataIndex") is not None):
        return False
    z = g("zIndices")
    if z is None:
        if g("zKIndices") not in _SIMPLE_EMPTY or g("zQIndices") not in _SIMPLE_EMPTY:
            return False
    elif z != [[], []]:
        return False
    q = g("qualifyingTokenIndex")
    if q is not None and type(q) is not int:
        return False
    for key in ("binMin", "binMax", "binContains"):
        x = g(key)
        if x is not None and not (type(x) is int or (type(x) is float and math.isfinite(x))):
            return False
    return True


def _float_or_none(x: Any) -> float | None:
    return None if x is None else float(x)


def _bulk_ok(rows: list[dict[str, Any]]) -> bool:
    """The checks as_str_list/as_float_list/activation_record make per example, over the whole batch."""
    toks = [r["tokens"] for r in rows]
    vals = [r["values"] for r in rows]
    lens = list(map(len, toks))
    if not lens or lens != list(map(len, vals)) or min(lens) == 0:
        return not lens
    flat_t = list(chain.from_iterable(toks))
    if not set(map(type, flat_t)) <= {str} or max(map(len, flat_t)) > 100_000:
        return False
    flat_v = list(chain.from_iterable(vals))
    types = set(map(type, flat_v))
    if not types <= {int, float}:
        return False
    return float not in types or bool(np.isfinite(np.array(flat_v, dtype=np.float64)).all())


def columnar_activation_batches(file: Any, target: Any, size: int, seen: set[int]) -> Iterator[list[FeatureRecord]]:
    """npexport._activation_batches with the per-example token/value checks done once per batch.

    Examples that carry anything besides tokens, values, bins and a token position (DFA, z-pattern,
    loss values, logit contributions, data source) take the original path. When the bulk check fails,
    the batch's simple examples are checked again one by one with the original code, so the error
    names the first bad line as before (an owner error on a later line of the same batch would be
    reported first: the one difference).
    """
    from interpedia.ingest import npexport

    name = npexport.display_name(file)
    current: dict[int, FeatureRecord] = {}
    pending: list[tuple[int, int, dict[str, Any]]] = []
    n_lines = 0
    last: int | None = None

    def close() -> list[FeatureRecord]:
        if not _bulk_ok([r for _, _, r in pending]):
            for lineno, idx, row in pending:
                try:
                    validate.activation_record(row.get("tokens"), row.get("values"), prefix="activation")
                except validate.BadInput as exc:
                    raise validate.BadInput(f"line {lineno}: {exc.reason}", file=name, feature=idx,
                                            field=exc.field) from None
        pending.clear()
        return list(current.values())

    for lineno, row in npexport.iter_jsonl(file):
        idx = npexport._check_owner(row, target, name, lineno)
        if idx != last and n_lines >= size:
            yield close()
            current, n_lines = {}, 0
        if idx not in current and idx in seen:
            raise validate.BadInput(f"line {lineno}: examples of this feature also appear earlier; an export must "
                                    "keep each feature's examples together", file=name, feature=idx)
        last = idx
        if _simple_row(row):
            g = row.get
            act = ActivationRecord(tokens=row["tokens"], values=row["values"], bin_min=_float_or_none(g("binMin")),
                                   bin_max=_float_or_none(g("binMax")), bin_contains=_float_or_none(g("binContains")),
                                   qualifying_token_index=g("qualifyingTokenIndex"))
            pending.append((lineno, idx, row))
        else:
            act = _original_activation(row, lineno, name, idx)
        if idx not in current:
            current[idx] = FeatureRecord(index=idx, activations=[])
            seen.add(idx)
        current[idx].activations.append(act)  # type: ignore[union-attr]
        n_lines += 1
    if current:
        yield close()


def _original_activation(row: dict[str, Any], lineno: int, name: str, idx: int) -> ActivationRecord:
    """What npexport._activation_batches does for one line (kept verbatim in behaviour)."""
    try:
        z = row.get("zIndices")
        z_k, z_q = (z[0], z[1]) if isinstance(z, list) and len(z) == 2 else (row.get("zKIndices"),
                                                                              row.get("zQIndices"))
        return validate.activation_record(
            row.get("tokens"), row.get("values"), prefix="activation",
            bin_min=row.get("binMin"), bin_max=row.get("binMax"), bin_contains=row.get("binContains"),
            qualifying_token_index=row.get("qualifyingTokenIndex"), dfa_target_index=row.get("dfaTargetIndex"),
            dfa_max_value=row.get("dfaMaxValue"), dfaValues=row.get("dfaValues"),
            lossValues=row.get("lossValues"), zKIndices=z_k, zQIndices=z_q, zValues=row.get("zValues"),
            logitContributions=row.get("logitContributions"), data_source=row.get("dataSource"),
            data_index=row.get("dataIndex"),
        )
    except validate.BadInput as exc:
        raise validate.BadInput(f"line {lineno}: {exc.reason}", file=name, feature=idx, field=exc.field) from None


_VARINT_BYTES = [bytes([n]) for n in range(128)]


def encode_many(ids: npt.NDArray[np.int64], values: npt.NDArray[np.float64], lens: npt.NDArray[np.int64]
                ) -> tuple[list[bytes], list[float], list[int], list[float]]:
    """encode_activation for every example of a batch at once (byte-identical), with max, argmax and min.

    ``ids`` and ``values`` are the examples' token ids and values concatenated; ``lens`` their lengths.
    Examples of one common length take the vectorised path; anything else goes through the codec.
    """
    n_rows = len(lens)
    if n_rows == 0:
        return [], [], [], []
    width = int(lens[0])
    if not (lens == width).all() or width == 0 or width > 256:
        blobs, maxs, args, mins = [], [], [], []
        for start, n in zip(np.concatenate(([0], np.cumsum(lens)[:-1])).tolist(), lens.tolist(), strict=True):
            v = values[start : start + n]
            blobs.append(codec.encode_activation(ids[start : start + n], v))
            at = int(v.argmax())
            maxs.append(float(v[at]))
            args.append(at)
            mins.append(float(v.min()))
        return blobs, maxs, args, mins
    ids2 = ids.reshape(n_rows, width)
    v64 = values.reshape(n_rows, width)
    v32 = v64.astype(np.float32)
    wide = (ids2.max(axis=1) >= 1 << 16).tolist()
    mask = v32 != 0
    nnz = mask.sum(axis=1)
    dense = (nnz * 5 + 5 >= width * 4).tolist()
    head = bytearray()
    codec._put_varint(head, width)
    sparse_head = bytes([0]) + bytes(head)
    dense_head = bytes([codec._DENSE]) + bytes(head)
    id_bytes = ids2.astype("<u2").tobytes()
    _, cols = np.nonzero(mask)
    pos_bytes = cols.astype("u1").tobytes()
    val_bytes = v32[mask].astype("<f4").tobytes()
    offsets = np.concatenate(([0], np.cumsum(nnz))).tolist()
    nnz_list = nnz.tolist()
    step = 2 * width
    blobs = []
    for r in range(n_rows):
        if wide[r]:
            blobs.append(codec.encode_activation(ids2[r], v64[r]))
        elif dense[r]:
            blobs.append(b"".join((dense_head, id_bytes[r * step : (r + 1) * step], v32[r].astype("<f4").tobytes())))
        else:
            o0, o1 = offsets[r], offsets[r + 1]
            k = nnz_list[r]
            count = _VARINT_BYTES[k] if k < 128 else bytes(_varint(k))
            blobs.append(b"".join((sparse_head, id_bytes[r * step : (r + 1) * step], count, pos_bytes[o0:o1],
                                   val_bytes[4 * o0 : 4 * o1])))
    args = v64.argmax(axis=1)
    return blobs, v64[np.arange(n_rows), args].tolist(), args.tolist(), v64.min(axis=1).tolist()


def _varint(n: int) -> bytearray:
    out = bytearray()
    codec._put_varint(out, n)
    return out


def columnar_replace_activations(session: Session, records: Sequence[FeatureRecord], feature_ids: dict[int, int],
                                 creator_id: str | None, token_ids: dict[str, int]) -> int:
    """writer._replace_activations with the batch's examples mapped and encoded together."""
    from sqlalchemy import delete

    from interpedia.db.tables import Activation

    replaced = [feature_ids[r.index] for r in records if r.activations is not None]
    creator_match = Activation.creator_id.is_(None) if creator_id is None else Activation.creator_id == creator_id
    for start in range(0, len(replaced), 500):
        session.execute(delete(Activation).where(Activation.feature_id.in_(replaced[start : start + 500]),
                                                 creator_match))
    pairs = [(feature_ids[rec.index], act) for rec in records for act in rec.activations or ()]
    if not pairs:
        return 0
    acts = [a for _, a in pairs]
    lens = np.fromiter(map(len, (a.tokens for a in acts)), dtype=np.int64, count=len(acts))
    flat = list(chain.from_iterable(a.tokens for a in acts))
    ids = np.array(itemgetter(*flat)(token_ids) if len(flat) > 1 else [token_ids[flat[0]]], dtype=np.int64)
    values = np.array(list(chain.from_iterable(a.values for a in acts)), dtype=np.float64)
    blobs, maxs, args, mins = encode_many(ids, values, lens)
    rows = [
        (fid, creator_id, blob, mx, at, mn, a.bin_min, a.bin_max, a.bin_contains, a.qualifying_token_index,
         a.dfa_target_index, a.dfa_max_value, a.extras, a.data_source, a.data_index)
        for (fid, a), blob, mx, at, mn in zip(pairs, blobs, maxs, args, mins, strict=True)
    ]
    if session.get_bind().dialect.name == "postgresql":
        writer._copy_rows(session, rows)
    else:
        extras_at = writer._ACT_COLUMNS.index("extras")
        rows = [r if r[extras_at] is None else (*r[:extras_at], orjson.dumps(r[extras_at]).decode(),
                                                *r[extras_at + 1 :]) for r in rows]
        marks = ", ".join("?" * len(writer._ACT_COLUMNS))
        session.connection().exec_driver_sql(
            f"INSERT INTO activations ({', '.join(writer._ACT_COLUMNS)}) VALUES ({marks})", rows)
    return len(rows)


_ORIGINAL: dict[str, Any] = {"as_str_list": validate.as_str_list, "as_int_list": validate.as_int_list,
                             "_activation_row": writer._activation_row}


@contextmanager
def fast_import(*, columnar: bool = False, rank_by_frequency: bool = True) -> Iterator[None]:
    """Swap the prototype functions into the real importer for the duration of the block.

    ``columnar`` also swaps in the batch-at-a-time example checks (npexport) and encoding (writer).
    """
    vocab = CachedVocab()
    patches = [
        mock.patch("interpedia.ingest.pipeline.ensure_tokens", vocab.ensure_tokens),
        mock.patch("interpedia.store.writer._activation_row", fast_activation_row),
        mock.patch("interpedia.ingest.validate.as_str_list", fast_as_str_list),
        mock.patch("interpedia.ingest.validate.as_int_list", fast_as_int_list),
    ]
    if rank_by_frequency:
        patches.append(mock.patch("interpedia.ingest.pipeline.all_tokens", batch_tokens))
    if columnar:
        patches.append(mock.patch("interpedia.ingest.npexport._activation_batches", columnar_activation_batches))
        patches.append(mock.patch("interpedia.store.writer._replace_activations", columnar_replace_activations))
    with ExitStack() as stack:
        for p in patches:
            stack.enter_context(p)
        yield


def check_encode_many(seed: int = 0, rows: int = 500) -> None:
    """encode_many must match encode_activation byte for byte (sparse, dense, wide ids, odd lengths)."""
    rng = np.random.default_rng(seed)
    for width, top in ((128, 50_000), (128, 200_000), (7, 1000), (256, 300)):
        ids = rng.integers(0, top, rows * width)
        values = np.where(rng.random(rows * width) < rng.choice([0.05, 0.9], rows * width), rng.normal(0, 2,
                          rows * width).round(4), 0.0)
        lens = np.full(rows, width)
        blobs, maxs, args, mins = encode_many(ids, values, lens)
        for r in range(rows):
            i, v = ids[r * width : (r + 1) * width], values[r * width : (r + 1) * width]
            assert blobs[r] == codec.encode_activation(i, v.tolist()), (width, r)
            assert maxs[r] == max(v.tolist()) and args[r] == v.tolist().index(maxs[r]) and mins[r] == min(v.tolist())
    lens = rng.integers(1, 300, 50)
    ids = rng.integers(0, 70_000, int(lens.sum()))
    values = rng.normal(0, 1, int(lens.sum())).round(4) * (rng.random(int(lens.sum())) < 0.1)
    blobs, *_ = encode_many(ids, values, lens)
    start = 0
    for r, n in enumerate(lens.tolist()):
        assert blobs[r] == codec.encode_activation(ids[start : start + n], values[start : start + n].tolist())
        start += n
