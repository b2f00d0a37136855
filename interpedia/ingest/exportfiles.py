"""Where the batch files of a Neuronpedia export come from: a directory on disk, or a bucket downloaded on the way.

The export importer asks an :class:`ExportFiles` for the batch files of a source (names and sizes, which
make the keys of finished files, before any is read), says which it will read and in what order
(``fetch``), waits for each before reading it (``local``) and hands it back once imported (``release``);
``stop`` when an error ends the import early.
On disk all of this is a directory listing; for a bucket it is a download that runs ahead of the import.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

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
