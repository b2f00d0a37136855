"""Operating the explanation vector index: fill missing embeddings, rebuild the HNSW index, report status."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, bindparam, func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from interpedia.config import Settings
from interpedia.db import transaction
from interpedia.db.tables import Explanation
from interpedia.db.vector import EmbeddingVector
from interpedia.search.embeddings import Embedder
from interpedia.search.index import CHANGES, HNSW_INDEX
from interpedia.store.versions import touch_explanation_sources

log = logging.getLogger(__name__)

MISSING_INDEX = "ix_explanations_embedding_missing"
KEEP_CHANGES = 100_000


@dataclass
class IndexStatus:
    """How many explanations have embeddings, and the state of the index."""

    backend: str
    explanations: int
    embedded: int
    missing: int
    index: str
    index_size_bytes: int | None = None
    index_options: str | None = None

    def describe(self) -> str:
        """One paragraph for the terminal."""
        out = (
            f"{self.backend}: {self.explanations} explanations, {self.embedded} embedded, {self.missing} "
            f"missing; index: {self.index}"
        )
        if self.index_size_bytes is not None:
            out += f" ({self.index_size_bytes / 1e6:.1f} MB)"
        if self.index_options:
            out += f" {self.index_options}"
        return out


def index_status(session: Session) -> IndexStatus:
    """Counts (the missing ones come from the partial index) and the index's size and options."""
    backend = session.get_bind().dialect.name
    total = int(session.scalar(select(func.count()).select_from(Explanation)) or 0)
    missing = int(
        session.scalar(select(func.count()).select_from(Explanation).where(Explanation.embedding.is_(None))) or 0
    )
    if backend == "postgresql":
        row = session.execute(
            text("SELECT pg_relation_size(c.oid), c.reloptions::text FROM pg_class c WHERE c.relname = :n"),
            {"n": HNSW_INDEX},
        ).first()
        if row is None:
            return IndexStatus(
                backend, total, total - missing, missing, "no HNSW index (run interpedia embed --reindex)"
            )
        return IndexStatus(backend, total, total - missing, missing, f"HNSW {HNSW_INDEX}", int(row[0]), row[1])
    return IndexStatus(backend, total, total - missing, missing, "exact in-process numpy index (recall 1.0)")


def fill_embeddings(
    factory: sessionmaker[Session],
    embedder: Embedder,
    *,
    recompute_all: bool = False,
    batch_size: int = 256,
    progress: Callable[[int], None] | None = None,
    total: Callable[[int], None] | None = None,
) -> int:
    """Embed explanations that have no embedding (or, with ``recompute_all``, every one), batch by batch.

    Each batch is its own transaction, so a killed run keeps what it did; ``--missing`` finds the rest
    through the partial index. Returns how many were embedded.
    """
    with factory() as session:
        count_stmt = select(func.count()).select_from(Explanation)
        if not recompute_all:
            count_stmt = count_stmt.where(Explanation.embedding.is_(None))
        todo = int(session.scalar(count_stmt) or 0)
    if total:
        total(todo)
    done = 0
    last = ""
    stmt = (
        update(Explanation)
        .where(Explanation.id == bindparam("eid"))
        .values(embedding=bindparam("emb", type_=EmbeddingVector()))
    )
    while True:
        with factory() as session:
            query = select(Explanation.id, Explanation.description).where(Explanation.id > last)
            if not recompute_all:
                query = query.where(Explanation.embedding.is_(None))
            rows = session.execute(query.order_by(Explanation.id).limit(batch_size)).all()
        if not rows:
            break
        vecs = embedder.embed([desc or "" for _, desc in rows])
        with transaction(factory) as session:
            session.connection().execute(
                stmt,
                [{"eid": eid, "emb": vec.astype("<f4").tobytes()} for (eid, _), vec in zip(rows, vecs, strict=True)],
            )
            # Feature documents say whether each explanation has an embedding.
            touch_explanation_sources(session, [eid for eid, _ in rows])
        done += len(rows)
        last = rows[-1][0]
        if progress:
            progress(len(rows))
    with transaction(factory) as session:
        prune_changes(session)
    return done


def prune_changes(session: Session, keep: int = KEEP_CHANGES) -> None:
    """Trim SQLite's embedding change log to its newest ``keep`` entries (an index behind them reloads)."""
    if session.get_bind().dialect.name != "sqlite":
        return
    session.execute(
        text(f"DELETE FROM {CHANGES} WHERE seq <= (SELECT max(seq) FROM {CHANGES}) - :keep"), {"keep": keep}
    )


def _progress_poller(
    engine: Engine, stop: threading.Event, report: Callable[[dict[str, Any]], None], every_s: float
) -> None:
    with engine.connect() as conn:
        while not stop.wait(every_s):
            row = (
                conn.execute(
                    text(
                        "SELECT phase, blocks_done, blocks_total, tuples_done, tuples_total "
                        "FROM pg_stat_progress_create_index WHERE datname = current_database()"
                    )
                )
                .mappings()
                .first()
            )
            conn.rollback()
            if row is not None:
                report(dict(row))


def reindex_postgres(
    engine: Engine,
    settings: Settings,
    *,
    m: int | None = None,
    ef_construction: int | None = None,
    report: Callable[[dict[str, Any]], None] | None = None,
    every_s: float = 2.0,
) -> float:
    """Rebuild the HNSW index (m, ef_construction from the settings unless given) without blocking
    searches: the new index is built CONCURRENTLY beside the old one, then swapped in. While it builds,
    ``report`` gets rows of pg_stat_progress_create_index. Returns the build's seconds."""
    m = m or settings.vector_hnsw_m
    ef = ef_construction or settings.vector_hnsw_ef_construction
    if not (2 <= m <= 100 and 4 <= ef <= 1000 and ef >= 2 * m):
        raise ValueError("need 2 <= m <= 100 and 2*m <= ef_construction <= 1000")
    new = HNSW_INDEX + "_new"
    stop = threading.Event()
    poller = None
    if report is not None:
        poller = threading.Thread(target=_progress_poller, args=(engine, stop, report, every_s), daemon=True)
    started = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(
            text("SELECT set_config('maintenance_work_mem', :mem, false)"),
            {"mem": settings.vector_maintenance_work_mem},
        )
        conn.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {new}"))
        if poller is not None:
            poller.start()
        try:
            conn.execute(
                text(
                    f"CREATE INDEX CONCURRENTLY {new} ON explanations USING hnsw "
                    f"(embedding vector_cosine_ops) WITH (m = {int(m)}, ef_construction = {int(ef)})"
                )
            )
        finally:
            stop.set()
            if poller is not None:
                poller.join(timeout=10)
        conn.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {HNSW_INDEX}"))
        conn.execute(text(f"ALTER INDEX {new} RENAME TO {HNSW_INDEX}"))
    return time.perf_counter() - started
