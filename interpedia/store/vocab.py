"""Per-model token vocabularies: token strings become small integer ids in stored activations.

Ids never change once handed out, so each process keeps every model's vocabulary in memory (both
directions) and only reads rows above the highest id it knows. New tokens get ids under a lock on the
model row, most frequent first, so that the codec's varints stay short.
"""

from __future__ import annotations

import struct
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import repeat

import numpy as np
import numpy.typing as npt
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session

from interpedia.db.codec import interleave
from interpedia.db.tables import Model, VocabToken


@dataclass
class _Vocab:
    ids: dict[str, int] = field(default_factory=dict)
    strings: list[str | None] = field(default_factory=list)

    def add(self, token_id: int, token: str) -> None:
        if token_id >= len(self.strings):
            self.strings.extend([None] * (token_id + 1 - len(self.strings)))
        self.strings[token_id] = token
        self.ids[token] = token_id


def _decode(raw: bytes) -> str:
    return bytes(raw).decode("utf-8", "surrogatepass")


class VocabCache:
    """Process-wide vocabularies, keyed by database and model (a process may read several databases)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._vocabs: dict[tuple[str, str], _Vocab] = {}

    def _get(self, session: Session, model_id: str) -> _Vocab:
        database = session.get_bind().engine.url.render_as_string(hide_password=False)
        with self._lock:
            return self._vocabs.setdefault((database, model_id), _Vocab())

    def refresh(self, session: Session, model_id: str) -> _Vocab:
        """Load rows this process has not seen yet (ids are dense, so those above the highest known)."""
        vocab = self._get(session, model_id)
        rows = session.execute(
            select(VocabToken.token_id, VocabToken.token).where(
                VocabToken.model_id == model_id, VocabToken.token_id >= len(vocab.strings)
            )
        )
        with self._lock:
            for tid, raw in rows:
                vocab.add(tid, _decode(raw))
        return vocab

    def strings(self, session: Session, model_id: str, ids: Iterable[int]) -> list[str | None]:
        """The id -> string table of the model, loaded far enough to cover ``ids``."""
        return self.strings_upto(session, model_id, max(ids, default=-1))

    def strings_upto(self, session: Session, model_id: str, top: int) -> list[str | None]:
        """The id -> string table of the model, loaded far enough to cover id ``top`` (-1: none)."""
        vocab = self._get(session, model_id)
        if top >= len(vocab.strings) or (top >= 0 and vocab.strings[top] is None):
            vocab = self.refresh(session, model_id)
        return vocab.strings

    def decode(self, session: Session, model_id: str, ids: npt.NDArray[np.int64]) -> list[str]:
        """Token ids back to their strings."""
        id_list = ids.tolist()
        table = self.strings(session, model_id, id_list)
        return [table[i] for i in id_list]  # type: ignore[misc]

    def clear(self) -> None:
        """Forget everything (tests that drop databases)."""
        with self._lock:
            self._vocabs.clear()


vocab_cache = VocabCache()


# Binary COPY (https://www.postgresql.org/docs/current/sql-copy.html, "Binary Format"): a first
# vocabulary holds tens of thousands of tokens, and framing them by numpy costs less than a call per row.
_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_COPY_TRAILER = b"\xff\xff"
_ID_AND_LENGTH = np.dtype([("id_len", ">i4"), ("id", ">i4"), ("token_len", ">i4")])


def _copy_tuples(model_id: str, start: int, tokens: list[bytes]) -> bytes:
    """Binary COPY data of rows (model_id, start + i, tokens[i]), header and trailer included."""
    n = len(tokens)
    model = model_id.encode()
    prefix = struct.pack(">hi", 3, len(model)) + model
    fixed = np.empty(n, dtype=_ID_AND_LENGTH)
    fixed["id_len"], fixed["id"] = 4, np.arange(start, start + n)
    lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=n)
    fixed["token_len"] = lengths
    rows, _ = interleave(
        [
            (np.tile(np.frombuffer(prefix, dtype=np.uint8), n), np.full(n, len(prefix), dtype=np.int64)),
            (fixed.view(np.uint8).reshape(-1), np.full(n, _ID_AND_LENGTH.itemsize, dtype=np.int64)),
            (np.frombuffer(b"".join(tokens), dtype=np.uint8), lengths),
        ]
    )
    return b"".join((_COPY_SIGNATURE, rows.tobytes(), _COPY_TRAILER))


def ensure_tokens(session: Session, model_id: str, tokens: Iterable[str] | Counter[str]) -> dict[str, int]:
    """Ids for the given token strings, adding unseen ones to the model's vocabulary.

    Pass a Counter to have new tokens numbered most frequent first. Call it in its own short
    transaction: the model row is locked so that concurrent importers of the same model do not hand
    out the same id twice, and the cache learns the new ids only once that transaction commits.
    """
    counts = tokens if isinstance(tokens, Counter) else Counter(set(tokens))
    if not counts:
        return {}
    vocab = vocab_cache._get(session, model_id)
    known = vocab.ids
    if known.keys() >= counts.keys():
        return known
    if session.get_bind().dialect.name == "postgresql":
        # FOR NO KEY UPDATE: excludes other vocabulary writers, but not the foreign-key checks of rows that
        # reference the model (the vocabulary's own rows among them: under FOR UPDATE each of those
        # checks cost twice as much, and other importers' source rows would wait).
        session.execute(select(Model.id).where(Model.id == model_id).with_for_update(key_share=True))
    else:
        # Take SQLite's write lock now, so the read of the newest ids below cannot race another writer.
        session.execute(update(Model).where(Model.id == model_id).values(id=Model.id))
    vocab = vocab_cache.refresh(session, model_id)
    new = sorted(counts.keys() - vocab.ids.keys())
    if not new:
        return vocab.ids
    # Most frequent first, ties by the token (a stable sort of the sorted tokens by count).
    by_count = np.argsort(-np.fromiter(map(counts.__getitem__, new), dtype=np.int64, count=len(new)), kind="stable")
    new = [new[i] for i in by_count.tolist()]
    start = len(vocab.strings)
    pending = dict(zip(new, range(start, start + len(new)), strict=True))
    encoded = [tok.encode("utf-8", "surrogatepass") for tok in new]
    if session.get_bind().dialect.name == "postgresql":
        raw = session.connection().connection.driver_connection
        assert raw is not None
        with (
            raw.cursor() as cur,
            cur.copy("COPY vocab_tokens (model_id, token_id, token) FROM STDIN (FORMAT BINARY)") as copy,
        ):
            copy.write(_copy_tuples(model_id, start, encoded))
    else:
        session.connection().exec_driver_sql(
            "INSERT INTO vocab_tokens (model_id, token_id, token) VALUES (?, ?, ?)",
            [(model_id, tid, tok) for tid, tok in enumerate(encoded, start)],
        )

    def _learn(_session: Session) -> None:
        with vocab_cache._lock:
            if len(vocab.strings) == start:  # nobody else learned ids above ours meanwhile: add them in bulk
                vocab.strings.extend(new)
                vocab.ids.update(pending)
                return
            for tok, tid in pending.items():
                vocab.add(tid, tok)

    def _forget(_session: Session) -> None:
        if event.contains(_session, "after_commit", _learn):
            event.remove(_session, "after_commit", _learn)

    event.listen(session, "after_commit", _learn, once=True)
    event.listen(session, "after_soft_rollback", _forget, once=True)
    return {**vocab.ids, **pending}


def ensure_token_ids(
    session: Session, model_id: str, strings: list[str], counts: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Vocabulary ids of ``strings`` (in their order), adding unseen ones most frequent first by ``counts``.

    The array form of :func:`ensure_tokens` for a batch's distinct tokens: known tokens cost one
    dictionary lookup each, and only the unseen ones (after a model's first batch, a few) are counted
    and sent. Same transaction rules as :func:`ensure_tokens`.
    """
    known = vocab_cache._get(session, model_id).ids
    ids = np.fromiter(map(known.get, strings, repeat(-1)), dtype=np.int64, count=len(strings))
    missing = np.flatnonzero(ids < 0).tolist()
    if missing:
        wanted: Counter[str] = Counter()
        for i in missing:
            wanted[strings[i]] += int(counts[i])  # a string may appear twice (NUL made a space)
        added = ensure_tokens(session, model_id, wanted)
        ids[missing] = np.fromiter((added[strings[i]] for i in missing), dtype=np.int64, count=len(missing))
    return ids
