"""The batch importer every format goes through: one transaction per batch, idempotent, resumable."""

from __future__ import annotations

import gc
import hashlib
import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from interpedia.db.engine import transaction
from interpedia.db.tables import ImportedBatch, Source
from interpedia.errors import UserError
from interpedia.ingest.validate import BadInput
from interpedia.store.catalogue import ensure_model, ensure_source, ensure_source_set
from interpedia.store.records import ActivationColumns, FeatureRecord
from interpedia.store.users import ensure_user
from interpedia.store.vocab import ensure_token_ids
from interpedia.store.writer import EmbedTexts, WriteCounts, activation_columns, encode_columns, write_features

log = logging.getLogger(__name__)


@dataclass
class SourceTarget:
    """Where a batch goes, and what to create if it is not there yet."""

    model_id: str
    source_id: str
    model_fields: dict[str, Any] = field(default_factory=dict)
    set_fields: dict[str, Any] = field(default_factory=dict)
    source_fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class Batch:
    """Records that are written together; ``key`` identifies the batch across reruns, ``file`` names it in errors.

    ``columns`` holds examples a fast reader produced in columns; each of their features has a record.
    """

    key: str
    records: list[FeatureRecord]
    file: str | None = None
    columns: ActivationColumns | None = None


@dataclass
class ImportSummary:
    """What an import did."""

    counts: WriteCounts = field(default_factory=WriteCounts)
    batches: int = 0
    skipped_batches: int = 0
    seconds: float = 0.0
    sources: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """One line for the CLI."""
        c = self.counts
        rate = c.features / self.seconds if self.seconds else 0.0
        return (
            f"{c.features} features, {c.activations} activations, {c.explanations} new explanations in "
            f"{self.batches} batches ({self.skipped_batches} already imported) in {self.seconds:.1f}s "
            f"({rate:.0f} features/s)"
        )


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Run the cyclic garbage collector less often while a bulk import runs.

    An import allocates millions of short-lived objects (parsed rows, statistics lists), and every
    few thousand allocations the collector walks the young objects, every few hundred thousand the
    whole heap: about a tenth of an import's CPU time (measured with py-spy). Import code makes
    few reference cycles, so collecting ~100x less often costs little memory. Reference counting
    still frees everything else at once.
    """
    old = gc.get_threshold()
    gc.set_threshold(max(old[0], 100_000), max(old[1], 50), max(old[2], 100))
    try:
        yield
    finally:
        gc.set_threshold(*old)


def _batch_key(source_pk: int, key: str) -> str:
    return hashlib.sha256(f"{source_pk}:{key}".encode()).hexdigest()


def check_indexes(records: Iterable[FeatureRecord], *, file: str | None) -> None:
    """Refuse duplicate or negative feature indexes within one batch."""
    seen: set[int] = set()
    for rec in records:
        if rec.index < 0:
            raise BadInput(f"negative feature index {rec.index}", file=file, feature=rec.index, field="index")
        if rec.index in seen:
            raise BadInput(f"duplicate feature index {rec.index}", file=file, feature=rec.index, field="index")
        seen.add(rec.index)


def _in_columns(batch: Batch) -> tuple[list[FeatureRecord], ActivationColumns | None]:
    """The batch with its examples in columns: each token is looked up once, and encoding is one numpy pass."""
    if batch.columns is not None:
        return batch.records, batch.columns
    columns = activation_columns(batch.records)
    if columns is None:
        return batch.records, None
    # An empty list still replaces the feature's stored examples; the columns add the new ones.
    records = [replace(r, activations=[]) if r.activations else r for r in batch.records]
    return records, columns


class BatchImporter:
    """Writes batches for one or more sources; a batch recorded as done is skipped on rerun."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        *,
        creator_name: str = "bot",
        force: bool = False,
        embed: EmbedTexts | None = None,
    ) -> None:
        self.factory = factory
        self.force = force
        self.embed = embed
        self.summary = ImportSummary()
        self._started = time.perf_counter()
        with transaction(factory) as session:
            self.creator_id = ensure_user(session, creator_name, bot=creator_name == "bot").id

    def prepare_source(self, target: SourceTarget, *, file: str | None = None) -> Source:
        """Find or create the model, source set and source a batch is for; BadInput when their ids are invalid."""
        try:
            return self._prepare_source(target)
        except BadInput:
            raise  # already located
        except UserError as exc:
            raise BadInput(exc.message, file=file, field=exc.field) from exc

    def _prepare_source(self, target: SourceTarget) -> Source:
        with transaction(self.factory) as session:
            ensure_model(session, target.model_id, creator_id=self.creator_id, **target.model_fields)
            set_name = target.source_id.split("-", 1)[1].split("__", 1)[0] if "-" in target.source_id else ""
            if set_name:
                ensure_source_set(session, target.model_id, set_name, creator_id=self.creator_id, **target.set_fields)
            source = ensure_source(session, target.model_id, target.source_id, creator_id=self.creator_id)
            for key, value in target.source_fields.items():
                if value is not None:
                    setattr(source, key, value)
            session.flush()
            if target.source_id not in self.summary.sources:
                self.summary.sources.append(target.source_id)
            return source

    def is_done(self, source: Source, key: str) -> bool:
        """Whether this batch was imported before (and --force was not given)."""
        if self.force:
            return False
        with self.factory() as session:
            return session.get(ImportedBatch, _batch_key(source.id, key)) is not None

    def write(self, source: Source, batch: Batch) -> WriteCounts | None:
        """Write one batch in one transaction; None when it was already imported."""
        if self.is_done(source, batch.key):
            self.summary.skipped_batches += 1
            return None
        check_indexes(batch.records, file=batch.file or batch.key)
        records, columns = _in_columns(batch)
        try:
            if columns is not None and columns.token_ids is None:
                self._vocabulary(source, columns)
            with transaction(self.factory) as session:
                # The examples are all in ``columns``, which carry their vocabulary ids.
                counts = write_features(
                    session,
                    source,
                    records,
                    creator_id=self.creator_id,
                    token_ids={},
                    columns=columns,
                    embed=self.embed,
                )
                key = _batch_key(source.id, batch.key)
                existing = session.get(ImportedBatch, key)
                if existing is None:
                    session.add(
                        ImportedBatch(
                            key=key,
                            source_id=source.id,
                            n_features=counts.features,
                            n_activations=counts.activations,
                            n_explanations=counts.explanations,
                        )
                    )
        except BadInput:
            raise  # already located
        except UserError as exc:
            raise BadInput(exc.message, file=batch.file or batch.key, field=exc.field) from exc
        if batch.records:  # an empty batch only marks a whole file as done
            self.summary.batches += 1
        self.summary.counts.add(counts)
        return counts

    def _vocabulary(self, source: Source, columns: ActivationColumns) -> None:
        """Hand out ids for the batch's tokens (``columns.token_ids``) in a short transaction of their own.

        An id handed out for a batch that then fails is harmless: ids only map to strings.
        """
        with transaction(self.factory) as session:
            counts = np.bincount(columns.token_codes, minlength=len(columns.token_strings))
            columns.token_ids = ensure_token_ids(session, source.model_id, columns.token_strings, counts)

    def prepare(self, source: Source, batch: Batch) -> Batch:
        """The batch with its vocabulary ids handed out and its examples encoded, ready for ``write``.

        Safe in another thread (a reader's), so that this work overlaps with the writing of the
        batches before it; a batch imported before is returned as it is (``write`` skips it).
        """
        if self.is_done(source, batch.key):
            return batch
        records, columns = _in_columns(batch)
        if columns is not None:
            try:
                self._vocabulary(source, columns)
            except BadInput:
                raise  # already located
            except UserError as exc:
                raise BadInput(exc.message, file=batch.file or batch.key, field=exc.field) from exc
            encode_columns(columns, {})
        return replace(batch, records=records, columns=columns)

    def finish(self) -> ImportSummary:
        """Close the import and return its summary."""
        self.summary.seconds = time.perf_counter() - self._started
        log.info("import done: %s", self.summary.describe())
        return self.summary


def skip_done(importer: BatchImporter, source: Source, keys: Iterable[str]) -> set[str]:
    """The subset of batch keys already imported (for readers that can skip parsing them)."""
    if importer.force:
        return set()
    wanted = {_batch_key(source.id, k): k for k in keys}
    with importer.factory() as session:
        done = session.scalars(select(ImportedBatch.key).where(ImportedBatch.key.in_(list(wanted))))
        return {wanted[k] for k in done}
