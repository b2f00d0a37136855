"""Bulk writes of feature dashboards: one call per import batch, inside the caller's transaction.

Re-running the same batch leaves one copy of everything: features are upserted on
``(source, index)``, a feature's examples from the same creator are replaced, and explanations are
deduplicated by id (when the input has ids) or by (feature, text, type, model).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from sqlalchemy import JSON, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from interpedia.db.codec import activation_parts, encode_activation, encode_activations, interleave
from interpedia.db.tables import Activation, Explanation, Feature, Source, new_id
from interpedia.db.vector import EMBEDDING_BYTES
from interpedia.store.records import FEATURE_STAT_COLUMNS, ActivationColumns, ActivationRecord, FeatureRecord
from interpedia.store.versions import touch_sources

log = logging.getLogger(__name__)

ACT_COLUMNS = (
    "feature_id",
    "creator_id",
    "data",
    "max_value",
    "bin_min",
    "bin_max",
    "bin_contains",
    "qualifying_token_index",
    "extras",
)
_CHUNK = 500
_STAT_COLUMNS = frozenset(FEATURE_STAT_COLUMNS)
_JSON_COLUMNS = frozenset(c.name for c in Feature.__table__.columns if isinstance(c.type, JSON))


@dataclass
class WriteCounts:
    """What one batch wrote."""

    features: int = 0
    activations: int = 0
    explanations: int = 0

    def add(self, other: WriteCounts) -> None:
        """Accumulate another batch's counts."""
        self.features += other.features
        self.activations += other.activations
        self.explanations += other.explanations


def _dialect_insert(session: Session, table: Any) -> Any:
    name = session.get_bind().dialect.name
    return (postgresql.insert if name == "postgresql" else sqlite.insert)(table)


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def all_tokens(records: Iterable[FeatureRecord]) -> Counter[str]:
    """Every token string the batch's examples use, with counts (new ones get ids most frequent first)."""
    columns = activation_columns(list(records))
    return columns.token_counts() if columns is not None else Counter()


def activation_columns(records: Sequence[FeatureRecord]) -> ActivationColumns | None:
    """The examples of the records as columns (None when they have none), each token looked up once."""
    pairs = [(rec.index, act) for rec in records for act in rec.activations or ()]
    if not pairs:
        return None
    acts = [act for _, act in pairs]
    lens = np.fromiter(map(len, (a.tokens for a in acts)), dtype=np.int64, count=len(acts))
    if any(len(a.values) != n for a, n in zip(acts, lens.tolist(), strict=True)):
        raise ValueError("an example has a different number of tokens and values")
    offsets = np.zeros(len(acts) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    n_tokens = int(offsets[-1])
    flat = list(chain.from_iterable(a.tokens for a in acts))
    position: dict[str, int] = dict.fromkeys(flat, 0)
    strings = list(position)
    position.update(zip(strings, range(len(strings)), strict=True))
    codes = np.fromiter(map(position.__getitem__, flat), dtype=np.int64, count=n_tokens)
    values = np.fromiter(chain.from_iterable(a.values for a in acts), dtype=np.float64, count=n_tokens)
    return ActivationColumns(
        feature_index=np.fromiter((i for i, _ in pairs), dtype=np.int64, count=len(pairs)),
        offsets=offsets,
        token_codes=codes,
        token_strings=strings,
        values=values,
        bin_min=[a.bin_min for a in acts],
        bin_max=[a.bin_max for a in acts],
        bin_contains=[a.bin_contains for a in acts],
        qualifying_token_index=[a.qualifying_token_index for a in acts],
        extras=[activation_extras(a) for a in acts],
    )


def write_features(
    session: Session,
    source: Source,
    records: Sequence[FeatureRecord],
    *,
    creator_id: str | None,
    token_ids: dict[str, int],
    columns: ActivationColumns | None = None,
    embed: EmbedTexts | None = None,
) -> WriteCounts:
    """Upsert the batch's features, replace their examples and add their new explanations.

    ``columns`` carries examples already in columns (the fast readers'); their features must be
    among ``records``, and their stored examples are replaced like those of records with a list.
    ``embed`` embeds new explanations that come without a usable embedding (none when not given).
    """
    # Records that carry only examples or explanations (the export's activation and explanation files)
    # touch features another record wrote; counting them too would count one feature several times.
    counts = WriteCounts(features=sum(1 for r in records if r.stats))
    if not records:
        return counts
    feature_ids = _upsert_features(session, source, records, creator_id)
    # One new version for the whole source instead of one per feature: an import writes thousands of them.
    touch_sources(session, [source.id])
    counts.activations = _replace_activations(session, records, feature_ids, token_ids, columns)
    counts.explanations = _add_explanations(session, records, feature_ids, embed)
    return counts


def _json_list(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def _upsert_features(
    session: Session, source: Source, records: Sequence[FeatureRecord], creator_id: str | None
) -> dict[int, int]:
    postgres = session.get_bind().dialect.name == "postgresql"
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    created = now if postgres else now.strftime("%Y-%m-%d %H:%M:%S.%f")  # as SQLAlchemy stores it in SQLite
    # Plain driver statements with JSON serialised by orjson: the ORM's per-value json.dumps and
    # parameter processing cost more than the database's own work on a dashboard row.
    groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    for rec in records:
        cols = tuple(sorted(k for k in rec.stats if k in _STAT_COLUMNS))
        stats = tuple(_json_list(rec.stats[c]) if c in _JSON_COLUMNS else rec.stats[c] for c in cols)
        groups.setdefault(cols, []).append((source.id, rec.index, creator_id, created, *stats))
    for cols, params in groups.items():
        names = ", ".join(f'"{name}"' for name in ("source_id", "index", "creator_id", "created_at", *cols))
        marks = ", ".join(["%s" if postgres else "?"] * (4 + len(cols)))
        update = ", ".join(f'"{c}" = excluded."{c}"' for c in cols)
        conflict = f"DO UPDATE SET {update}" if update else "DO NOTHING"
        sql = f'INSERT INTO features ({names}) VALUES ({marks}) ON CONFLICT (source_id, "index") {conflict}'
        for chunk in _chunks(params, 2000):
            session.connection().exec_driver_sql(sql, list(chunk))
    ids: dict[int, int] = {}
    indexes = [r.index for r in records]
    for chunk in _chunks(indexes, 5000):
        for fid, idx in session.execute(
            select(Feature.id, Feature.index).where(Feature.source_id == source.id, Feature.index.in_(chunk))
        ):
            ids[idx] = fid
    return ids


def activation_extras(act: ActivationRecord) -> dict[str, Any] | None:
    """The rare fields of an example, kept together in the ``extras`` column (None when all are empty)."""
    extras = dict(act.extras or {})
    for key, value in (
        ("dfaTargetIndex", act.dfa_target_index),
        ("dfaMaxValue", act.dfa_max_value),
        ("dataSource", act.data_source),
        ("dataIndex", act.data_index),
    ):
        if value is not None:
            extras[key] = value
    return extras or None


def activation_row(
    feature_id: int, creator_id: str | None, act: ActivationRecord, token_ids: dict[str, int]
) -> tuple[Any, ...]:
    """The ``activations`` row of one example, in ``ACT_COLUMNS`` order."""
    ids = np.fromiter(map(token_ids.__getitem__, act.tokens), dtype=np.int64, count=len(act.tokens))
    return (
        feature_id,
        creator_id,
        encode_activation(ids, act.values),
        act.max_value,
        act.bin_min,
        act.bin_max,
        act.bin_contains,
        act.qualifying_token_index,
        activation_extras(act),
    )


def _column_rows(
    columns: ActivationColumns, feature_ids: dict[int, int], token_ids: dict[str, int]
) -> Iterator[tuple[Any, ...]]:
    """``activations`` rows (``ACT_COLUMNS`` order, extras as JSON text) of examples in columns."""
    fids, blobs = _column_blobs(columns, feature_ids, token_ids)
    extras = [None if e is None else orjson.dumps(e).decode() for e in columns.extras]
    return zip(
        fids.tolist(),
        repeat(None),
        blobs,
        columns.max_values().tolist(),
        columns.bin_min,
        columns.bin_max,
        columns.bin_contains,
        columns.qualifying_token_index,
        extras,
    )


def _token_ids_of(columns: ActivationColumns, token_ids: dict[str, int]) -> npt.NDArray[np.int64]:
    """Vocabulary id of each distinct token of the batch (``columns.token_codes`` index into these)."""
    if columns.token_ids is not None:
        return columns.token_ids
    strings = columns.token_strings
    return np.fromiter(map(token_ids.__getitem__, strings), dtype=np.int64, count=len(strings))


def _feature_ids_of(columns: ActivationColumns, feature_ids: dict[int, int]) -> npt.NDArray[np.int64]:
    """Each example's feature id (examples come grouped by feature: one lookup per feature)."""
    index = columns.feature_index
    starts = np.flatnonzero(np.concatenate(([True], index[1:] != index[:-1]))) if len(index) else index
    lengths = np.diff(np.append(starts, len(index)))
    firsts = np.fromiter(map(feature_ids.__getitem__, index[starts].tolist()), dtype=np.int64, count=len(starts))
    return np.repeat(firsts, lengths)


def encode_columns(columns: ActivationColumns, token_ids: dict[str, int]) -> None:
    """Encode the examples' blobs (``columns.blob_parts``) ahead of the write, e.g. in a reader thread.

    Left unset for a batch the batch encoder does not take (the writer encodes those one by one).
    """
    if columns.blob_parts is None and len(columns):
        codes = _token_ids_of(columns, token_ids)
        columns.blob_parts = activation_parts(codes[columns.token_codes], columns.values, columns.offsets)


def _column_blobs(
    columns: ActivationColumns, feature_ids: dict[int, int], token_ids: dict[str, int]
) -> tuple[npt.NDArray[np.int64], list[bytes]]:
    """Each example's feature id and its encoded ``data`` blob."""
    if columns.blob_parts is not None:
        rows, bounds = interleave(columns.blob_parts)
        raw = rows.tobytes()
        blobs = [raw[a:b] for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)]
    else:
        codes = _token_ids_of(columns, token_ids)
        blobs = encode_activations(codes[columns.token_codes], columns.values, columns.offsets)
    return _feature_ids_of(columns, feature_ids), blobs


def _replace_activations(
    session: Session,
    records: Sequence[FeatureRecord],
    feature_ids: dict[int, int],
    token_ids: dict[str, int],
    columns: ActivationColumns | None,
) -> int:
    # A dashboard's own examples have no creator of their own (the feature's creator made them); examples
    # users added later (creator set) survive a re-import.
    replaced = {feature_ids[r.index] for r in records if r.activations is not None}
    if columns is not None:
        replaced.update(map(feature_ids.__getitem__, np.unique(columns.feature_index).tolist()))
    for chunk in _chunks(sorted(replaced), 5000):
        session.execute(delete(Activation).where(Activation.feature_id.in_(chunk), Activation.creator_id.is_(None)))
    parts = [c for c in (activation_columns(records), columns) if c is not None and len(c)]
    if not parts:
        return 0
    if session.get_bind().dialect.name == "postgresql":
        streams = [_copy_stream(c, feature_ids, token_ids) for c in parts]
        if all(s is not None for s in streams):
            _copy_data(session, streams)  # type: ignore[arg-type]
        else:
            _copy_rows(session, chain.from_iterable(_column_rows(c, feature_ids, token_ids) for c in parts))
    else:
        rows = chain.from_iterable(_column_rows(c, feature_ids, token_ids) for c in parts)
        marks = ", ".join("?" * len(ACT_COLUMNS))
        session.connection().exec_driver_sql(
            f"INSERT INTO activations ({', '.join(ACT_COLUMNS)}) VALUES ({marks})", list(rows)
        )
    return sum(len(c) for c in parts)


# Binary COPY types of ACT_COLUMNS (the server reads each field with its column's own binary input:
# text for varchar and json, float4 for real).
_COPY_TYPES = ("int8", "text", "bytea", "float4", "float4", "float4", "float4", "int4", "text")


def _copy_rows(session: Session, rows: Iterable[tuple[Any, ...]]) -> None:
    """Postgres binary COPY, inside the batch's transaction.

    Binary, because text COPY escapes every blob byte as two hex digits, which costs both sides
    more than the rest of the row.
    """
    raw = session.connection().connection.driver_connection
    assert raw is not None
    with (
        raw.cursor() as cur,
        cur.copy(f"COPY activations ({', '.join(ACT_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.set_types(list(_COPY_TYPES))
        for row in rows:
            copy.write_row(row)


# Binary COPY framing (https://www.postgresql.org/docs/current/sql-copy.html, "Binary Format").
_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
_COPY_TRAILER = b"\xff\xff"
# A row's fields before ``data``: field count, feature_id (8 bytes), creator_id NULL, the blob's length.
_HEAD = np.dtype([("fields", ">i2"), ("fid_len", ">i4"), ("fid", ">i8"), ("creator", ">i4"), ("data_len", ">i4")])
# After ``data``: max_value, bin_min, bin_max, bin_contains (float4), qualifying_token_index (int4), extras.
_TAIL_FIELDS = ("max_value", "bin_min", "bin_max", "bin_contains", "qualifying_token_index")
_TAIL = np.dtype(
    [
        (part, kind)
        for name in _TAIL_FIELDS
        for part, kind in ((f"{name}_len", ">i4"), (name, ">i4" if name.startswith("q") else ">f4"))
    ]
    + [("extras_len", ">i4")]
)
_INT4 = (-(1 << 31), (1 << 31) - 1)


def _nullable(values: Sequence[float | int | None], dtype: str) -> tuple[npt.NDArray[Any], npt.NDArray[np.bool_]]:
    """A column with NULLs as (values with 0 in their place, null mask)."""
    if None not in values:  # the usual case, checked in C
        return np.asarray(values, dtype=dtype), np.zeros(len(values), dtype=bool)
    null = np.fromiter((v is None for v in values), dtype=bool, count=len(values))
    return np.asarray([0 if v is None else v for v in values], dtype=dtype), null


def _copy_stream(columns: ActivationColumns, feature_ids: dict[int, int], token_ids: dict[str, int]) -> bytes | None:
    """The examples as binary COPY tuples, framed by numpy for the whole batch (no per-row Python).

    None when a row needs what only the row-by-row path handles: extras, an example the batch
    encoder does not take, or a number outside its column's range (which that path reports as an error).
    """
    if any(e is not None for e in columns.extras):
        return None
    encode_columns(columns, token_ids)
    blob_parts = columns.blob_parts
    if blob_parts is None:
        return None
    n = len(columns)
    head = np.empty(n, dtype=_HEAD)
    head["fields"], head["fid_len"], head["fid"], head["creator"] = (
        len(ACT_COLUMNS),
        8,
        _feature_ids_of(columns, feature_ids),
        -1,
    )
    blob_len = np.zeros(n, dtype=np.int64)
    for _, lengths in blob_parts:
        blob_len += lengths
    head["data_len"] = blob_len
    tail = np.empty(n, dtype=_TAIL)
    keep = np.ones((n, _TAIL.itemsize), dtype=bool)
    at = 0
    for name in _TAIL_FIELDS:
        if name == "max_value":
            values, null = columns.max_values(), np.zeros(n, dtype=bool)
        else:
            values, null = _nullable(getattr(columns, name), "float64" if name.startswith("b") else "int64")
        if name.startswith("q"):
            if len(values) and (values.min() < _INT4[0] or values.max() > _INT4[1]):
                return None
        else:
            with np.errstate(over="ignore"):
                if not np.isfinite(values.astype(np.float32)).all():
                    return None
        tail[f"{name}_len"] = np.where(null, -1, 4)
        tail[name] = values
        keep[null, at + 4 : at + 8] = False  # a NULL is its length (-1) alone
        at += 8
    tail["extras_len"] = -1
    tail_bytes = tail.view(np.uint8).reshape(n, _TAIL.itemsize)
    if keep.all():
        tail_part = (tail_bytes.reshape(-1), np.full(n, _TAIL.itemsize, dtype=np.int64))
    else:
        tail_part = (tail_bytes[keep], keep.sum(axis=1).astype(np.int64))
    head_part = (head.view(np.uint8).reshape(-1), np.full(n, _HEAD.itemsize, dtype=np.int64))
    rows, _ = interleave([head_part, *blob_parts, tail_part])
    return rows.tobytes()


def _copy_data(session: Session, streams: Sequence[bytes]) -> None:
    """Send tuples framed by :func:`_copy_stream` in one binary COPY, inside the batch's transaction."""
    raw = session.connection().connection.driver_connection
    assert raw is not None
    with (
        raw.cursor() as cur,
        cur.copy(f"COPY activations ({', '.join(ACT_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.write(_COPY_SIGNATURE)
        for stream in streams:
            copy.write(stream)
        copy.write(_COPY_TRAILER)


def embedding_bytes(embedding: Sequence[float] | None) -> bytes | None:
    """An embedding as stored (float32, little-endian), or None unless it is 384 finite floats.

    Other widths (Neuronpedia's exports carry 256-dim OpenAI embeddings) cannot share the index;
    they are dropped and the text is embedded again (on import, or by ``interpedia embed --missing``).
    """
    if embedding is None:
        return None
    arr = np.asarray(embedding, dtype="<f4").reshape(-1)
    return arr.tobytes() if arr.nbytes == EMBEDDING_BYTES and np.isfinite(arr).all() else None


# Texts in, stored embeddings out (float32 bytes, or None where one could not be made). The caller chooses
# the embedder (the search package's, per INTERPEDIA_EMBED_ON_IMPORT); the store only stores what it gets.
EmbedTexts = Callable[[Sequence[str]], Sequence[bytes | None]]


def _embed_missing(rows: list[dict[str, Any]], embed: EmbedTexts | None) -> None:
    """Embed new explanations that came without a usable embedding, when the caller gave an embedder."""
    todo = [row for row in rows if row["embedding"] is None]
    if not todo or embed is None:
        return
    for row, emb in zip(todo, embed([r["description"] for r in todo]), strict=True):
        row["embedding"] = emb


def _add_explanations(
    session: Session, records: Sequence[FeatureRecord], feature_ids: dict[int, int], embed: EmbedTexts | None
) -> int:
    wanted = [(feature_ids[rec.index], exp) for rec in records for exp in rec.explanations]
    if not wanted:
        return 0
    fids = sorted({fid for fid, _ in wanted})
    existing: set[tuple[int, str, str | None, str | None]] = set()
    existing_ids: set[str] = set()
    for chunk in _chunks(fids):
        for eid, fid, desc, type_name, model_name in session.execute(
            select(
                Explanation.id,
                Explanation.feature_id,
                Explanation.description,
                Explanation.type_name,
                Explanation.explanation_model_name,
            ).where(Explanation.feature_id.in_(chunk))
        ):
            existing.add((fid, desc, type_name, model_name))
            existing_ids.add(eid)
    rows: list[dict[str, Any]] = []
    for fid, exp in wanted:
        key = (fid, exp.description, exp.type_name, exp.explanation_model_name)
        if key in existing or (exp.id is not None and exp.id in existing_ids):
            continue
        existing.add(key)
        row: dict[str, Any] = {
            "feature_id": fid,
            "description": exp.description,
            "type_name": exp.type_name,
            "explanation_model_name": exp.explanation_model_name,
            "author_id": exp.author_id,
            "notes": exp.notes,
            "score_v1": exp.score_v1,
            "score_v2": exp.score_v2,
            "embedding": embedding_bytes(exp.embedding),
        }
        if exp.id is not None:
            row["id"] = exp.id
        rows.append(row)
    if rows:
        _embed_missing(rows, embed)
        stmt = _dialect_insert(session, Explanation.__table__).on_conflict_do_nothing(index_elements=["id"])
        for chunk in _chunks(rows):
            session.execute(stmt, [r if "id" in r else {**r, "id": new_id()} for r in chunk])
    return len(rows)
