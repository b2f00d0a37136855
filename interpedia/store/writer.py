"""Bulk writes of feature dashboards: one call per import batch, inside the caller's transaction.

Re-running the same batch leaves one copy of everything: features are upserted on
``(source, index)``, a feature's examples from the same creator are replaced, and explanations are
deduplicated by id (when the input has ids) or by (feature, text, type, model).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from sqlalchemy import delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from interpedia.db.codec import encode_activation
from interpedia.db.tables import Activation, Explanation, Feature, Source, new_id
from interpedia.db.vector import EMBEDDING_BYTES
from interpedia.store.records import FEATURE_STAT_COLUMNS, ActivationRecord, FeatureRecord

log = logging.getLogger(__name__)

ACT_COLUMNS = (
    "feature_id", "creator_id", "data", "max_value", "bin_min", "bin_max", "bin_contains",
    "qualifying_token_index", "extras",
)
_CHUNK = 500


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
    out: Counter[str] = Counter()
    for rec in records:
        for act in rec.activations or ():
            out.update(act.tokens)
    return out


def write_features(session: Session, source: Source, records: Sequence[FeatureRecord], *,
                   creator_id: str | None, token_ids: dict[str, int]) -> WriteCounts:
    """Upsert the batch's features, replace their examples and add their new explanations."""
    # Records that carry only examples or explanations (the export's activation and explanation files)
    # touch features another record wrote; counting them too would count one feature several times.
    counts = WriteCounts(features=sum(1 for r in records if r.stats))
    if not records:
        return counts
    feature_ids = _upsert_features(session, source, records, creator_id)
    counts.activations = _replace_activations(session, records, feature_ids, token_ids)
    counts.explanations = _add_explanations(session, records, feature_ids)
    return counts


def _upsert_features(session: Session, source: Source, records: Sequence[FeatureRecord],
                     creator_id: str | None) -> dict[int, int]:
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for rec in records:
        stats = {k: v for k, v in rec.stats.items() if k in FEATURE_STAT_COLUMNS}
        row = {"source_id": source.id, "index": rec.index, "creator_id": creator_id, **stats}
        groups.setdefault(tuple(sorted(stats)), []).append(row)
    for cols, rows in groups.items():
        stmt = _dialect_insert(session, Feature.__table__)
        update_cols = {c: stmt.excluded[c] for c in cols}
        if update_cols:
            stmt = stmt.on_conflict_do_update(index_elements=["source_id", "index"], set_=update_cols)
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=["source_id", "index"])
        for chunk in _chunks(rows):
            session.execute(stmt, list(chunk))
    ids: dict[int, int] = {}
    indexes = [r.index for r in records]
    for chunk in _chunks(indexes):
        for fid, idx in session.execute(
            select(Feature.id, Feature.index).where(Feature.source_id == source.id, Feature.index.in_(chunk))
        ):
            ids[idx] = fid
    return ids


def activation_extras(act: ActivationRecord) -> dict[str, Any] | None:
    """The rare fields of an example, kept together in the ``extras`` column (None when all are empty)."""
    extras = dict(act.extras or {})
    for key, value in (("dfaTargetIndex", act.dfa_target_index), ("dfaMaxValue", act.dfa_max_value),
                       ("dataSource", act.data_source), ("dataIndex", act.data_index)):
        if value is not None:
            extras[key] = value
    return extras or None


def activation_row(feature_id: int, creator_id: str | None, act: ActivationRecord,
                   token_ids: dict[str, int]) -> tuple[Any, ...]:
    """The ``activations`` row of one example, in ``ACT_COLUMNS`` order."""
    ids = np.fromiter(map(token_ids.__getitem__, act.tokens), dtype=np.int64, count=len(act.tokens))
    return (feature_id, creator_id, encode_activation(ids, act.values), act.max_value, act.bin_min, act.bin_max,
            act.bin_contains, act.qualifying_token_index, activation_extras(act))


def _replace_activations(session: Session, records: Sequence[FeatureRecord], feature_ids: dict[int, int],
                         token_ids: dict[str, int]) -> int:
    # A dashboard's own examples have no creator of their own (the feature's creator made them); examples
    # users added later (creator set) survive a re-import.
    replaced = [feature_ids[r.index] for r in records if r.activations is not None]
    for chunk in _chunks(replaced):
        session.execute(delete(Activation).where(Activation.feature_id.in_(chunk), Activation.creator_id.is_(None)))
    rows = [
        activation_row(feature_ids[rec.index], None, act, token_ids)
        for rec in records
        for act in rec.activations or ()
    ]
    if not rows:
        return 0
    if session.get_bind().dialect.name == "postgresql":
        _copy_rows(session, rows)
    else:
        dicts = [dict(zip(ACT_COLUMNS, row, strict=True)) for row in rows]
        for chunk in _chunks(dicts, 2000):
            session.execute(insert(Activation), list(chunk))
    return len(rows)


def _copy_rows(session: Session, rows: list[tuple[Any, ...]]) -> None:
    """Postgres COPY: the fastest way in, and still inside the batch's transaction."""
    raw = session.connection().connection.driver_connection
    assert raw is not None
    extras_at = ACT_COLUMNS.index("extras")
    with raw.cursor() as cur, cur.copy(f"COPY activations ({', '.join(ACT_COLUMNS)}) FROM STDIN") as copy:
        for row in rows:
            if row[extras_at] is not None:
                row = (*row[:extras_at], orjson.dumps(row[extras_at]).decode(), *row[extras_at + 1 :])
            copy.write_row(row)


def embedding_bytes(embedding: Sequence[float] | None) -> bytes | None:
    """An embedding as stored (float32, little-endian), or None unless it is 384 finite floats.

    Other widths (Neuronpedia's exports carry 256-dim OpenAI embeddings) cannot share the index;
    they are dropped and the text is embedded again (on import, or by ``interpedia embed --missing``).
    """
    if embedding is None:
        return None
    arr = np.asarray(embedding, dtype="<f4").reshape(-1)
    return arr.tobytes() if arr.nbytes == EMBEDDING_BYTES and np.isfinite(arr).all() else None


def _embed_missing(rows: list[dict[str, Any]]) -> None:
    """Embed new explanations that came without a usable embedding (INTERPEDIA_EMBED_ON_IMPORT)."""
    todo = [row for row in rows if row["embedding"] is None]
    if not todo:
        return
    from interpedia.config import get_settings
    from interpedia.search.embeddings import get_embedder, try_embed

    settings = get_settings()
    if not settings.embed_on_import:
        return
    for row, emb in zip(todo, try_embed(get_embedder(settings), [r["description"] for r in todo]), strict=True):
        row["embedding"] = emb


def _add_explanations(session: Session, records: Sequence[FeatureRecord], feature_ids: dict[int, int]) -> int:
    wanted = [(feature_ids[rec.index], exp) for rec in records for exp in rec.explanations]
    if not wanted:
        return 0
    fids = sorted({fid for fid, _ in wanted})
    existing: set[tuple[int, str, str | None, str | None]] = set()
    existing_ids: set[str] = set()
    for chunk in _chunks(fids):
        for eid, fid, desc, type_name, model_name in session.execute(
            select(Explanation.id, Explanation.feature_id, Explanation.description, Explanation.type_name,
                   Explanation.explanation_model_name).where(Explanation.feature_id.in_(chunk))
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
            "feature_id": fid, "description": exp.description, "type_name": exp.type_name,
            "explanation_model_name": exp.explanation_model_name, "author_id": exp.author_id,
            "notes": exp.notes, "score_v1": exp.score_v1, "score_v2": exp.score_v2,
            "embedding": embedding_bytes(exp.embedding),
        }
        if exp.id is not None:
            row["id"] = exp.id
        rows.append(row)
    if rows:
        _embed_missing(rows)
        stmt = _dialect_insert(session, Explanation.__table__).on_conflict_do_nothing(index_elements=["id"])
        for chunk in _chunks(rows):
            session.execute(stmt, [r if "id" in r else {**r, "id": new_id()} for r in chunk])
    return len(rows)

