"""Nearest explanations to a query vector: pgvector HNSW on Postgres, an exact in-process index on SQLite.

Postgres: ``explanations.embedding`` is ``vector(384)`` with an HNSW index (``vector_cosine_ops``).
Each search sets ``hnsw.ef_search`` and ``hnsw.iterative_scan`` for its own transaction (``SET
LOCAL`` via ``set_config``) from the settings; iterative scans keep filtered searches (one model, a
few sources) from coming back short. Approximate: recall@10 is measured by ``bench/explanation_search.py``.

SQLite: this Python's ``sqlite3`` cannot load extensions, so the vectors are held in a numpy matrix
per database and searched exactly (recall 1.0) with one matrix-vector product; about 1.5 KB of
memory per explanation (150 MB at 100k). The migration's triggers log every embedding change to
``explanation_embedding_changes``; before each search the index applies the changes logged since it
last looked, so writes by other processes (``interpedia embed``, an import) show up at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from interpedia.config import Settings
from interpedia.db.vector import EMBEDDING_BYTES, EMBEDDING_DIM, to_float32, vector_literal

log = logging.getLogger(__name__)

__all__ = ["Hit", "MemoryIndex", "memory_index", "search_vectors", "set_search_params"]

HNSW_INDEX = "ix_explanations_embedding_hnsw"
CHANGES = "explanation_embedding_changes"
MAX_CANDIDATES = 1000  # pgvector's largest hnsw.ef_search; also the deepest page the API serves


@dataclass(frozen=True)
class Hit:
    """One explanation near the query; ``similarity`` is cosine similarity (1 - cosine distance)."""

    explanation_id: str
    similarity: float


def set_search_params(session: Session, settings: Settings, candidates: int = 0) -> None:
    """``hnsw.ef_search`` / ``hnsw.iterative_scan`` for the current transaction only."""
    ef = max(settings.vector_ef_search, min(candidates, MAX_CANDIDATES))
    session.execute(
        text("SELECT set_config('hnsw.ef_search', :ef, true), set_config('hnsw.iterative_scan', :scan, true)"),
        {"ef": str(ef), "scan": settings.vector_iterative_scan},
    )


def _pg_search(
    session: Session, settings: Settings, query: npt.NDArray[np.float32], source_ids: Sequence[int] | None, n: int
) -> list[Hit]:
    set_search_params(session, settings, n)
    join = "JOIN features f ON f.id = e.feature_id" if source_ids is not None else ""
    where = "AND f.source_id = ANY(:sources)" if source_ids is not None else ""
    # Materialised, then re-sorted: relaxed_order iterative scans may return rows slightly out of order.
    sql = text(f"""
        WITH hits AS MATERIALIZED (
            SELECT e.id, e.embedding <=> CAST(:q AS vector) AS distance
            FROM explanations e {join}
            WHERE e.embedding IS NOT NULL {where}
            ORDER BY e.embedding <=> CAST(:q AS vector)
            LIMIT :n
        )
        SELECT id, distance FROM hits ORDER BY distance, id""")
    params: dict[str, Any] = {"q": vector_literal(query), "n": n}
    if source_ids is not None:
        params["sources"] = list(source_ids)
    return [Hit(eid, 1.0 - float(dist)) for eid, dist in session.execute(sql, params)]


class MemoryIndex:
    """All of one SQLite database's explanation embeddings in memory, kept current from the change log."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clear()

    def _clear(self) -> None:
        self._ids: list[str | None] = []
        self._slot: dict[str, int] = {}
        self._vecs = np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        self._sources = np.zeros(0, dtype=np.int64)
        self._alive = np.zeros(0, dtype=bool)
        self._free: list[int] = []
        self._seq: int | None = None

    def __len__(self) -> int:
        return len(self._slot)

    @property
    def nbytes(self) -> int:
        """Memory held by the vectors."""
        return int(self._vecs.nbytes)

    def _grow(self, need: int) -> None:
        cap = len(self._vecs)
        if need <= cap:
            return
        new_cap = max(need, cap + cap // 2, 1024)
        vecs = np.zeros((new_cap, EMBEDDING_DIM), dtype=np.float32)
        vecs[:cap] = self._vecs
        sources = np.full(new_cap, -1, dtype=np.int64)
        sources[:cap] = self._sources
        alive = np.zeros(new_cap, dtype=bool)
        alive[:cap] = self._alive
        self._vecs, self._sources, self._alive = vecs, sources, alive

    def _put(self, eid: str, source_id: int, blob: bytes | None) -> None:
        slot = self._slot.get(eid)
        if blob is None or len(blob) != EMBEDDING_BYTES:
            if slot is not None:
                self._alive[slot] = False
                self._ids[slot] = None
                del self._slot[eid]
                self._free.append(slot)
            return
        if slot is None:
            if self._free:
                slot = self._free.pop()
                self._ids[slot] = eid
            else:
                slot = len(self._ids)
                self._grow(slot + 1)
                self._ids.append(eid)
            self._slot[eid] = slot
        self._vecs[slot] = to_float32(blob)
        self._sources[slot] = source_id
        self._alive[slot] = True

    def _last_seq(self, session: Session) -> int:
        value = session.execute(text("SELECT seq FROM sqlite_sequence WHERE name = :t"), {"t": CHANGES}).scalar()
        return int(value or 0)

    def _reload(self, session: Session) -> None:
        seq = self._last_seq(session)
        self._clear()
        expected = session.execute(text("SELECT count(*) FROM explanations WHERE embedding IS NOT NULL")).scalar()
        self._grow(int(expected or 0) + 1024)  # one allocation, not a doubling (memory ~ 1.5 KB per row)
        rows = session.execute(
            text(
                "SELECT e.id, f.source_id, e.embedding FROM explanations e "
                "JOIN features f ON f.id = e.feature_id WHERE e.embedding IS NOT NULL"
            )
        )
        for eid, source_id, blob in rows:
            self._put(eid, source_id, bytes(blob))
        self._seq = seq
        log.info("loaded %d explanation embeddings into the in-process vector index", len(self))

    def sync(self, session: Session) -> None:
        """Apply the embedding changes logged since the last look (or load everything the first time)."""
        with self._lock:
            if self._seq is None:
                self._reload(session)
                return
            top = self._last_seq(session)
            if top <= self._seq:
                return
            low = session.execute(text(f"SELECT min(seq) FROM {CHANGES}")).scalar()
            if low is None or low > self._seq + 1 or top - self._seq > max(5000, len(self) // 4):
                self._reload(session)  # the log was pruned past us, or reloading is cheaper
                return
            changed = list(
                session.scalars(
                    text(f"SELECT DISTINCT explanation_id FROM {CHANGES} WHERE seq > :a AND seq <= :b"),
                    {"a": self._seq, "b": top},
                )
            )
            found: dict[str, tuple[int, bytes]] = {}
            for start in range(0, len(changed), 500):
                chunk = changed[start : start + 500]
                marks = ",".join(f":i{n}" for n in range(len(chunk)))
                for eid, source_id, blob in session.execute(
                    text(
                        f"SELECT e.id, f.source_id, e.embedding FROM explanations e JOIN features f "
                        f"ON f.id = e.feature_id WHERE e.id IN ({marks})"
                    ),
                    {f"i{n}": v for n, v in enumerate(chunk)},
                ):
                    found[eid] = (source_id, bytes(blob) if blob is not None else b"")
            for eid in changed:
                source_id, blob = found.get(eid, (-1, b""))
                self._put(eid, source_id, blob or None)
            self._seq = top

    def search(self, query: npt.NDArray[np.float32], source_ids: Sequence[int] | None, n: int) -> list[Hit]:
        """The ``n`` most similar live vectors, exactly, optionally only from these sources."""
        with self._lock:
            count = len(self._ids)
            if count == 0 or n <= 0:
                return []
            sims = self._vecs[:count] @ query  # [count]
            mask = self._alive[:count].copy()
            if source_ids is not None:
                mask &= np.isin(self._sources[:count], np.asarray(list(source_ids), dtype=np.int64))
            candidates = np.flatnonzero(mask)
            if candidates.size == 0:
                return []
            scores = sims[candidates]
            k = min(n, candidates.size)
            top = np.argpartition(-scores, k - 1)[:k] if k < candidates.size else np.arange(candidates.size)
            order = sorted(top.tolist(), key=lambda i: (-float(scores[i]), self._ids[candidates[i]] or ""))
            return [Hit(self._ids[candidates[i]] or "", float(scores[i])) for i in order]


_indexes: dict[str, MemoryIndex] = {}
_indexes_lock = threading.Lock()


def memory_index(session: Session) -> MemoryIndex:
    """The process-wide in-memory index of this session's (SQLite) database, brought up to date."""
    bind = session.get_bind()
    key = (bind.engine if isinstance(bind, Connection) else bind).url.render_as_string(hide_password=False)
    with _indexes_lock:
        index = _indexes.setdefault(key, MemoryIndex())
    index.sync(session)
    return index


def search_vectors(
    session: Session, settings: Settings, query: Any, *, source_ids: Sequence[int] | None, n: int
) -> list[Hit]:
    """The ``n`` explanations nearest ``query`` (a unit vector), best first, optionally within sources."""
    vec = to_float32(query)
    if vec.shape != (EMBEDDING_DIM,):
        raise ValueError(f"query vector has {vec.size} dimensions, expected {EMBEDDING_DIM}")
    n = min(n, MAX_CANDIDATES)
    if session.get_bind().dialect.name == "postgresql":
        return _pg_search(session, settings, vec, source_ids, n)
    return memory_index(session).search(vec, source_ids, n)
