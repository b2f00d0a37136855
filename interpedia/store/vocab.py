"""Per-model token vocabularies: token strings become small integer ids in stored activations."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt
from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from interpedia.db.tables import Model, VocabToken

_CHUNK = 500


def token_hash(token: str) -> bytes:
    """The 16-byte key under which a token string is unique within a model."""
    return hashlib.blake2b(token.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class VocabCache:
    """Process-wide id->string cache; vocabulary rows never change once written, so it never goes stale.

    Ids are handed out per database, so the cache is keyed by database as well as by model: a process
    that reads two databases (a copy, a test) must not decode one with the other's vocabulary.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_model: dict[tuple[str, str], dict[int, str]] = {}

    def strings(self, session: Session, model_id: str, ids: Iterable[int]) -> dict[int, str]:
        """Strings for the given ids, loading any that are not cached yet."""
        database = session.get_bind().engine.url.render_as_string(hide_password=False)
        with self._lock:
            known = self._by_model.setdefault((database, model_id), {})
        missing = sorted({int(i) for i in ids} - known.keys())
        for start in range(0, len(missing), _CHUNK):
            chunk = missing[start : start + _CHUNK]
            rows = session.execute(
                select(VocabToken.token_id, VocabToken.token).where(
                    VocabToken.model_id == model_id, VocabToken.token_id.in_(chunk)
                )
            ).all()
            with self._lock:
                for tid, raw in rows:
                    known[tid] = bytes(raw).decode("utf-8", "surrogatepass")
        return known

    def decode(self, session: Session, model_id: str, ids: npt.NDArray[np.int64]) -> list[str]:
        """Token ids back to their strings."""
        table = self.strings(session, model_id, ids.tolist())
        return [table[i] for i in ids.tolist()]

    def clear(self) -> None:
        """Forget everything (tests that drop databases)."""
        with self._lock:
            self._by_model.clear()


vocab_cache = VocabCache()


def ensure_tokens(session: Session, model_id: str, tokens: Iterable[str]) -> dict[str, int]:
    """Ids for the given token strings, adding unseen ones to the model's vocabulary.

    Call it in its own short transaction: on Postgres the model row is locked so that concurrent
    importers of the same model do not hand out the same id twice.
    """
    wanted = {t: token_hash(t) for t in set(tokens)}
    if not wanted:
        return {}
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(Model.id).where(Model.id == model_id).with_for_update())
    else:
        # Take SQLite's write lock now, so the max-id read below cannot race another writer.
        session.execute(update(Model).where(Model.id == model_id).values(id=Model.id))
    by_hash = {h: t for t, h in wanted.items()}
    found: dict[str, int] = {}
    hashes = list(by_hash)
    for start in range(0, len(hashes), _CHUNK):
        chunk = hashes[start : start + _CHUNK]
        for tid, h in session.execute(
            select(VocabToken.token_id, VocabToken.token_hash).where(
                VocabToken.model_id == model_id, VocabToken.token_hash.in_(chunk)
            )
        ):
            found[by_hash[bytes(h)]] = tid
    new = [t for t in wanted if t not in found]
    if new:
        next_id = session.scalar(
            select(func.coalesce(func.max(VocabToken.token_id), -1)).where(VocabToken.model_id == model_id)
        )
        start_id = int(next_id if next_id is not None else -1) + 1
        rows = []
        for offset, tok in enumerate(sorted(new)):
            found[tok] = start_id + offset
            rows.append(
                {
                    "model_id": model_id,
                    "token_id": start_id + offset,
                    "token_hash": wanted[tok],
                    "token": tok.encode("utf-8", "surrogatepass"),
                }
            )
        session.execute(insert(VocabToken), rows)
    return found
