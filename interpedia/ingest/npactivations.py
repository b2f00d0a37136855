"""The activation files of an export (``<model>/<source>/activations/batch-N.jsonl[.gz]``), read ahead.

Two readers cut a file into the same batches: the fast one (Arrow, ``ingest/columnar.py``), run in background
threads ahead of its turn, and the validating one, which takes over where the fast one gives up. So a rerun
after a crash skips what was written, whichever reader wrote it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import Any

from interpedia.db.tables import Source
from interpedia.ingest import columnar
from interpedia.ingest.exportfiles import ExportFiles, check_owner, display_name, iter_jsonl
from interpedia.ingest.pipeline import Batch, BatchImporter, SourceTarget
from interpedia.ingest.prefetch import prefetched
from interpedia.ingest.validate import BadInput, activation_record, without_nul
from interpedia.store.records import ActivationRecord, FeatureRecord
from interpedia.store.writer import activation_extras

log = logging.getLogger(__name__)

__all__ = ["ActivationReadahead", "import_activation_file", "np_activation"]


def np_activation(row: dict[str, Any]) -> ActivationRecord:
    """One ``Activation`` row of the export as a record, validated."""
    z = row.get("zIndices")
    z_k, z_q = (z[0], z[1]) if isinstance(z, list) and len(z) == 2 else (row.get("zKIndices"), row.get("zQIndices"))
    return activation_record(
        row.get("tokens"),
        row.get("values"),
        prefix="activation",
        bin_min=row.get("binMin"),
        bin_max=row.get("binMax"),
        bin_contains=row.get("binContains"),
        qualifying_token_index=row.get("qualifyingTokenIndex"),
        dfa_target_index=row.get("dfaTargetIndex"),
        dfa_max_value=row.get("dfaMaxValue"),
        dfaValues=row.get("dfaValues"),
        lossValues=row.get("lossValues"),
        zKIndices=z_k,
        zQIndices=z_q,
        zValues=row.get("zValues"),
        logitContributions=row.get("logitContributions"),
        data_source=row.get("dataSource"),
        data_index=row.get("dataIndex"),
    )


def _rare_fields(row: dict[str, Any]) -> dict[str, Any]:
    """What the fast reader takes from the validating code for a row with rare fields."""
    act = np_activation(without_nul(row))
    return {
        "bin_min": act.bin_min,
        "bin_max": act.bin_max,
        "bin_contains": act.bin_contains,
        "qualifying_token_index": act.qualifying_token_index,
        "extras": activation_extras(act),
    }


def _activation_batches(file: Path, target: SourceTarget, size: int, seen: set[int]) -> Iterator[list[FeatureRecord]]:
    """Examples grouped by feature; a batch closes only between features, so each is replaced whole."""
    name = display_name(file)
    current: dict[int, FeatureRecord] = {}
    n_lines = 0
    last: int | None = None
    for lineno, row in iter_jsonl(file):
        idx = check_owner(row, target, name, lineno)
        if idx != last and n_lines >= size:
            yield list(current.values())
            current, n_lines = {}, 0
        if idx not in current and idx in seen:
            raise BadInput(
                f"line {lineno}: examples of this feature also appear earlier; an export must keep "
                "each feature's examples together",
                file=name,
                feature=idx,
            )
        last = idx
        try:
            act = np_activation(row)
        except BadInput as exc:
            raise BadInput(f"line {lineno}: {exc.reason}", file=name, feature=idx, field=exc.field) from None
        if idx not in current:
            current[idx] = FeatureRecord(index=idx, activations=[])
            seen.add(idx)
        assert current[idx].activations is not None
        current[idx].activations.append(act)  # type: ignore[union-attr]
        n_lines += 1
    if current:
        yield list(current.values())


def _parse_when_local(
    files: ExportFiles, file: Path, target: SourceTarget, size: int, seen: set[int]
) -> Iterator[tuple[list[FeatureRecord], Any]]:
    """The fast reader's batches of ``file`` once it is on disk (waited for in the reader's own thread)."""
    local = files.local(file)
    yield from columnar.np_activation_batches(local, target.model_id, target.source_id, size, seen, _rare_fields)


class _ActivationReader:
    """The fast reader of one activation file, started ahead of its turn in a background thread.

    The reader parses the file, hands out the vocabulary ids of each batch and encodes its examples
    (``BatchImporter.prepare``), so the writer is left with each batch's own transaction.
    """

    def __init__(
        self,
        importer: BatchImporter,
        source: Source,
        target: SourceTarget,
        file: Path,
        key: str,
        size: int,
        seen: set[int],
        files: ExportFiles,
    ) -> None:
        self.file, self.key = file, key
        self.before = set(seen)
        name = display_name(file)
        # Two threads: one parses (once the file is on disk), one waits for the database on new vocabulary
        # and encodes.
        self.parsed = prefetched(_parse_when_local(files, file, target, size, seen))
        self.batches = prefetched(
            importer.prepare(source, Batch(key=f"{key}#{part}", records=records, file=name, columns=columns))
            for part, (records, columns) in enumerate(self.parsed)
        )

    def close(self) -> None:
        self.batches.close()
        self.parsed.close()


def import_activation_file(
    importer: BatchImporter,
    source: Source,
    target: SourceTarget,
    reader: _ActivationReader,
    size: int,
    seen: set[int],
    start_next: Callable[[], None] = lambda: None,
) -> None:
    """Write an activation file batch by batch: Arrow's reader when it takes the file, else the validating one.

    Both cut the file into the same batches, so a rerun after a crash (or after the fast reader gave
    up halfway) skips what was written, whichever reader wrote it. ``start_next`` is called once the
    fast reader has read the whole file, so that the next file is read while this one's last
    batches are written.
    """
    file, key = reader.file, reader.key
    name = display_name(file)
    written = 0
    try:
        with closing(reader):
            for batch in reader.batches:
                if reader.parsed.done.is_set():
                    start_next()
                importer.write(source, batch)
                written += 1
        return
    except columnar.NotFast as exc:
        log.debug("%s: reading with the validating reader (%s)", name, exc)
    seen.clear()
    seen.update(reader.before)
    for part, records in enumerate(_activation_batches(file, target, size, seen)):
        if part >= written:
            importer.write(source, Batch(key=f"{key}#{part}", records=records, file=name))


class ActivationReadahead:
    """The activation files of one source, each read ahead in a background thread.

    The first starts while the feature files are written, each next one while the last batches of
    the one before are written. ``seen`` is shared by the files of a source (a feature's examples
    must not be split across them), so one reader runs at a time.
    """

    def __init__(
        self,
        importer: BatchImporter,
        source: Source,
        target: SourceTarget,
        files: dict[Path, str],
        size: int,
        seen: set[int],
        export_files: ExportFiles,
    ) -> None:
        self.importer, self.source, self.target = importer, source, target
        self.keys, self.files, self.size, self.seen = files, list(files), size, seen
        self.export_files = export_files
        self.readers: dict[Path, _ActivationReader] = {}

    def start(self, position: int) -> None:
        """Start reading the ``position``-th file (no-op past the end or when started)."""
        if position < len(self.files) and self.files[position] not in self.readers:
            file = self.files[position]
            self.readers[file] = _ActivationReader(
                self.importer, self.source, self.target, file, self.keys[file], self.size, self.seen, self.export_files
            )

    def take(self, file: Path) -> tuple[_ActivationReader, Callable[[], None]]:
        """The reader of ``file`` and the call that starts the next file's."""
        position = self.files.index(file)
        self.start(position)
        return self.readers.pop(file), partial(self.start, position + 1)

    def close(self) -> None:
        """Stop readers whose files were not reached (an error stopped the import)."""
        for reader in self.readers.values():
            reader.close()
        self.readers.clear()
