"""Real English text available offline: the King James Bible and the Python documentation (Debian packages).

Both come from Debian's archive (``bible-kjv-text`` with the ``bible`` command, and ``python3.11-doc``'s
reST sources), which ``scripts/install-system.sh`` installs. A user's own text files or JSONL can be used
instead (``--corpus PATH``). The corpus is one document per line, shuffled with a fixed seed.
"""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from interpedia.errors import Unavailable

log = logging.getLogger(__name__)

PY_DOC_SOURCES = Path("/usr/share/doc/python3.11/html/_sources")
_CHAPTER_RE = re.compile(r"^\S.* \d+$")
_VERSE_RE = re.compile(r"^\s+\d+\s+")
_DIRECTIVE_RE = re.compile(r"^\s*\.\. ")
_ROLE_RE = re.compile(r":[a-z:]+:`~?([^`<]*?)(?:\s*<[^>]*>)?`")
_MARKUP_RE = re.compile(r"``([^`]*)``|`([^`<]*?)(?:\s*<[^>]*>)?`_{0,2}|\*\*([^*]+)\*\*")
_UNDERLINE_RE = re.compile(r"^\s*([=\-~^*#+\"'`.:])\1{2,}\s*$")


class CorpusUnavailable(Unavailable):
    """The offline text sources are not installed."""


def kjv_chapters() -> Iterator[str]:
    """Each chapter of the King James Bible as one line of plain text (verse numbers removed)."""
    bible = shutil.which("bible")
    if bible is None:
        raise CorpusUnavailable("the `bible` command is missing: run scripts/install-system.sh (bible-kjv)")
    text = subprocess.run([bible, "Gen1:1-Rev22:21"], capture_output=True, text=True, check=True).stdout
    chapter: list[str] = []
    for line in text.splitlines():
        if _CHAPTER_RE.match(line):
            if chapter:
                yield " ".join(chapter)
            chapter = []
        elif line.strip():
            chapter.append(_VERSE_RE.sub("", line).strip())
    if chapter:
        yield " ".join(chapter)


def _clean_rst(text: str) -> str:
    text = _ROLE_RE.sub(lambda m: m.group(1), text)
    return _MARKUP_RE.sub(lambda m: next(g for g in m.groups() if g is not None), text)


def python_doc_paragraphs(root: Path = PY_DOC_SOURCES) -> Iterator[str]:
    """Paragraphs of the Python documentation's reST sources, lightly cleaned (directives dropped)."""
    if not root.is_dir():
        raise CorpusUnavailable(f"{root} is missing: run scripts/install-system.sh (python3.11-doc)")
    for path in sorted(root.rglob("*.rst.txt")):
        para: list[str] = []
        skipping = False
        for line in path.read_text(errors="replace").splitlines() + [""]:
            if _DIRECTIVE_RE.match(line):
                skipping = True
                continue
            if not line.strip():
                if para:
                    yield _clean_rst(" ".join(para))
                para, skipping = [], False
                continue
            if skipping and line.startswith((" ", "\t")):
                continue
            skipping = False
            if _UNDERLINE_RE.match(line):
                continue
            para.append(line.strip())


def user_documents(path: Path) -> Iterator[str]:
    """Documents from a user's corpus: ``.jsonl`` (``text`` field), a ``.txt`` file, or a directory of them."""
    files = sorted(p for p in path.rglob("*") if p.suffix in (".txt", ".jsonl")) if path.is_dir() else [path]
    if not files:
        raise CorpusUnavailable(f"no .txt or .jsonl files in {path}")
    for file in files:
        if file.suffix == ".jsonl":
            for n, line in enumerate(file.read_text().splitlines(), 1):
                if line.strip():
                    obj = json.loads(line)
                    if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                        raise CorpusUnavailable(f"{file}:{n}: expected an object with a 'text' string")
                    yield obj["text"]
        else:
            for block in re.split(r"\n\s*\n", file.read_text(errors="replace")):
                if block.strip():
                    yield " ".join(block.split())


def build_corpus(out: Path, *, source: Path | None = None, seed: int = 0, min_chars: int = 40) -> Path:
    """Write the corpus (one document per line, shuffled) to ``out``; return it."""
    docs = list(user_documents(source)) if source else [*kjv_chapters(), *python_doc_paragraphs()]
    docs = [" ".join(d.split()) for d in docs]
    docs = [d for d in docs if len(d) >= min_chars]
    random.Random(seed).shuffle(docs)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text("\n".join(docs) + "\n")
    tmp.replace(out)
    log.info("corpus: %d documents, %.1f MB -> %s", len(docs), out.stat().st_size / 1e6, out)
    return out
