"""Token sources: the prompts a run looks at, as one fixed [n_prompts, context_size] array.

Inputs: a Hugging Face dataset saved with ``save_to_disk`` (or a hub name) with a ``text`` or a
pre-tokenised ``input_ids`` column, a ``.jsonl`` file with a ``text`` field, or a directory of ``.txt`` files.

Text is tokenised without special tokens. With ``concat`` (the default) documents are joined with the EOS
token between them and cut into rows, so every row is full; without it each document gives one row (its
first tokens) and shorter documents are skipped, which is what SAEDashboard's runner does. With
``prepend_bos`` each row is BOS followed by ``context_size - 1`` tokens. ``input_ids`` rows are used as they
are (BOS added in front only with ``prepend_bos`` and when the row does not start with it); rows shorter than
the context are skipped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class TokenRows:
    """The prompts of a run and how they were made."""

    tokens: np.ndarray  # [n_prompts, context_size] int32
    kind: str  # "hf-text", "hf-input_ids", "jsonl", "txt-dir", "hub-text", ...
    skipped_short: int = 0

    @property
    def n_prompts(self) -> int:
        """Rows."""
        return int(self.tokens.shape[0])


class TokenSource:
    """Reads a dataset and makes the run's prompt rows."""

    def __init__(
        self,
        spec: str,
        tokenizer: Any,
        *,
        context_size: int,
        n_prompts: int,
        prepend_bos: bool,
        concat: bool = True,
        split: str = "train",
        text_field: str = "text",
        bos_id: int | None = None,
    ) -> None:
        self.spec = spec
        self.tokenizer = tokenizer
        self.context_size = context_size
        self.n_prompts = n_prompts
        self.prepend_bos = prepend_bos
        self.concat = concat
        self.split = split
        self.text_field = text_field
        # The model's BOS (HookedModel.bos_token_id: the tokenizer's, or its EOS where it has none)
        self.bos_id = bos_id if bos_id is not None else tokenizer.bos_token_id

    def rows(self) -> TokenRows:
        """Tokenise until ``n_prompts`` rows exist (or the data runs out: fewer rows, with a warning)."""
        path = Path(self.spec)
        if path.suffix == ".jsonl" and path.is_file():
            out = self._from_texts(self._jsonl_texts(path), "jsonl")
        elif path.is_dir() and any(path.glob("*.txt")) and not (path / "dataset_info.json").exists():
            out = self._from_texts(self._txt_texts(path), "txt-dir")
        elif path.is_file() and path.suffix == ".txt":
            out = self._from_texts(iter([path.read_text(errors="replace")]), "txt-file")
        else:
            out = self._from_hf(path)
        if out.n_prompts < self.n_prompts:
            log.warning(
                "dataset %s gave %d prompts of %d tokens, fewer than the %d asked for",
                self.spec,
                out.n_prompts,
                self.context_size,
                self.n_prompts,
            )
        if out.n_prompts == 0:
            raise ValueError(f"dataset {self.spec} gave no prompt of {self.context_size} tokens")
        return out

    # --- readers ---------------------------------------------------------------------------------

    def _jsonl_texts(self, path: Path) -> Iterator[str]:
        with path.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                doc = json.loads(line)
                if not isinstance(doc, dict) or not isinstance(doc.get(self.text_field), str):
                    raise ValueError(f"{path}:{n}: expected an object with a string {self.text_field!r} field")
                yield doc[self.text_field]

    @staticmethod
    def _txt_texts(path: Path) -> Iterator[str]:
        for file in sorted(path.rglob("*.txt")):
            yield file.read_text(encoding="utf-8", errors="replace")

    def _from_hf(self, path: Path) -> TokenRows:
        import datasets

        if path.exists():
            ds: Any = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                ds = ds[self.split] if self.split in ds else next(iter(ds.values()))
            streamed, kind = False, "hf"
        else:
            ds = datasets.load_dataset(self.spec, split=self.split, streaming=True)
            streamed, kind = True, "hub"
        columns = ds.column_names or []
        if "input_ids" in columns:
            return self._from_ids((row["input_ids"] for row in ds), f"{kind}-input_ids")
        if self.text_field not in columns:
            raise ValueError(
                f"dataset {self.spec} has neither an input_ids nor a {self.text_field!r} column "
                f"(columns: {', '.join(columns)})"
            )
        texts = (row[self.text_field] for row in ds) if streamed else iter(ds[self.text_field])
        return self._from_texts(texts, f"{kind}-text")

    # --- row building ----------------------------------------------------------------------------

    def _bos(self) -> int:
        if self.bos_id is None:
            raise ValueError("--prepend-bos needs a tokenizer with a BOS (or EOS) token; use --no-prepend-bos")
        return int(self.bos_id)

    def _from_texts(self, texts: Iterator[str], kind: str) -> TokenRows:
        body = self.context_size - 1 if self.prepend_bos else self.context_size
        head = [self._bos()] if self.prepend_bos else []
        sep = self.tokenizer.eos_token_id
        rows: list[list[int]] = []
        skipped = 0
        stream: list[int] = []  # concatenated documents not yet cut into rows

        def take(docs: list[str]) -> None:
            nonlocal skipped, stream
            for ids in self.tokenizer(docs, add_special_tokens=False)["input_ids"]:
                if not self.concat:
                    if len(ids) >= body:
                        rows.append(head + ids[:body])
                    else:
                        skipped += 1
                    continue
                stream.extend(ids)
                if sep is not None:
                    stream.append(int(sep))
                cut = 0
                while len(stream) - cut >= body and len(rows) < self.n_prompts:
                    rows.append(head + stream[cut : cut + body])
                    cut += body
                stream = stream[cut:]

        batch: list[str] = []
        for text in texts:
            batch.append(text)
            if len(batch) == 256:
                take(batch)
                batch = []
                if len(rows) >= self.n_prompts:
                    break
        else:
            take(batch)
        return TokenRows(
            np.asarray(rows[: self.n_prompts], dtype=np.int32).reshape(-1, self.context_size),
            kind=kind,
            skipped_short=skipped,
        )

    def _from_ids(self, rows_in: Iterator[Any], kind: str) -> TokenRows:
        rows: list[list[int]] = []
        skipped = 0
        bos = self._bos() if self.prepend_bos else None
        for raw in rows_in:
            ids = [int(i) for i in raw]
            if bos is not None and (not ids or ids[0] != bos):
                ids = [bos, *ids]
            if len(ids) < self.context_size:
                skipped += 1
                continue
            rows.append(ids[: self.context_size])
            if len(rows) >= self.n_prompts:
                break
        return TokenRows(
            np.asarray(rows, dtype=np.int32).reshape(-1, self.context_size), kind=kind, skipped_short=skipped
        )
