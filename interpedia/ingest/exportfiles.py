"""Where the batch files of a Neuronpedia export come from: a directory on disk, or a bucket downloaded on the way.

The export importer asks an :class:`ExportFiles` for the batch files of a source (names and sizes, which
make the keys of finished files, before any is read), says which it will read and in what order
(``fetch``), waits for each before reading it (``local``) and hands it back once imported (``release``);
``stop`` when an error ends the import early.
On disk all of this is a directory listing; for a bucket it is a download that runs ahead of the import.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from interpedia.ingest.pipeline import SourceTarget
from interpedia.ingest.validate import BadInput, as_dict, as_int, loads

BATCH_RE = re.compile(r"^batch-(\d+)\.jsonl(\.gz)?$")


def batch_number(name: str) -> int | None:
    """N of ``batch-N.jsonl[.gz]``; None for any other name."""
    match = BATCH_RE.match(name)
    return int(match.group(1)) if match else None


class ExportFiles(Protocol):
    """The batch files of an export, made local as the importer reaches them."""

    def batches(self, directory: Path) -> list[tuple[Path, int]]:
        """The ``batch-N`` files of ``directory`` (``<source>/features`` ...) in order, with their sizes."""
        ...

    def fetch(self, files: Sequence[Path]) -> None:
        """The files the importer will read, in the order it reads them (a download may start now)."""
        ...

    def local(self, file: Path) -> Path:
        """``file``, on disk and whole; blocks until it is (safe in a reader thread)."""
        ...

    def release(self, file: Path) -> None:
        """The importer is done with ``file`` (it is imported)."""
        ...

    def stop(self) -> None:
        """The import is stopping (an error): fetch no more, and let a waiting ``local`` return or raise soon."""
        ...


class LocalFiles:
    """An export that is a directory on disk: nothing to fetch."""

    def batches(self, directory: Path) -> list[tuple[Path, int]]:
        """The ``batch-N`` files of the directory, by N, with their sizes."""
        if not directory.is_dir():
            return []
        numbered = [(n, p) for p in directory.iterdir() if (n := batch_number(p.name)) is not None]
        return [(p, p.stat().st_size) for _, p in sorted(numbered)]

    def fetch(self, files: Sequence[Path]) -> None:
        """Nothing to do: the files are there."""

    def local(self, file: Path) -> Path:
        """The file itself."""
        return file

    def release(self, file: Path) -> None:
        """Nothing to do: the export's files are the user's."""

    def stop(self) -> None:
        """Nothing to do: nothing is being fetched."""


def display_name(path: Path) -> str:
    """How errors name a file of the layout: ``gpt2-small/6-res-jb/features/batch-0.jsonl.gz``.

    An export holds many sources, so the model and source directories are part of the name.
    """
    if path.parent.name == "config":
        return f"config/{path.name}"
    depth = 4 if path.parent.name in ("features", "activations", "explanations") else 3
    return "/".join(path.parts[-depth:])


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) of a ``.jsonl`` or ``.jsonl.gz`` file, with errors naming file and line."""
    name = display_name(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    yield lineno, as_dict(loads(line, file=name), "line")
                except BadInput as exc:
                    raise BadInput(f"line {lineno}: {exc.reason}", file=name, field=exc.field) from None
    except (EOFError, OSError, zlib.error, gzip.BadGzipFile) as exc:
        raise BadInput(f"cannot read compressed file ({exc}); is it truncated?", file=name) from None


def check_owner(row: dict[str, Any], target: SourceTarget, file: str, lineno: int) -> int:
    """The row's feature index, or BadInput when it is not of the directory's model and source."""
    index = row.get("index")
    try:
        idx = as_int(index, "index", minimum=0)
    except BadInput as exc:
        raise BadInput(f"line {lineno}: {exc.reason}", file=file, feature=index, field="index") from None
    if row.get("modelId", target.model_id) != target.model_id:
        raise BadInput(
            f"line {lineno}: unknown model {row.get('modelId')!r} (this directory is "
            f"{target.model_id}/{target.source_id})",
            file=file,
            feature=idx,
            field="modelId",
        )
    if row.get("layer", target.source_id) != target.source_id:
        raise BadInput(
            f"line {lineno}: unknown source {row.get('layer')!r} (this directory is "
            f"{target.model_id}/{target.source_id})",
            file=file,
            feature=idx,
            field="layer",
        )
    return idx
