"""Per-model vocabularies: any token string gets one id, ids are dense and most frequent first, and they
read back exactly, from another process's point of view too (the cache cleared)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import func, select

from interpedia.db.engine import transaction
from interpedia.db.tables import VocabToken
from interpedia.store.catalogue import ensure_model
from interpedia.store.vocab import ensure_tokens, vocab_cache

ODD = ["", "\x00", "a\x00b", "Ġ日本", "\ud800", "x" * 10_000, "\t\n\\", "é", "<|endoftext|>"]


def test_odd_tokens_get_dense_ids_most_frequent_first_and_read_back(factory: Any) -> None:
    vocab_cache.clear()
    with transaction(factory) as session:
        ensure_model(session, "vocab-model")
    counts = Counter({tok: 100 - n for n, tok in enumerate(ODD)})
    counts.update({f"t{i}": 1 for i in range(3000)})
    with transaction(factory) as session:
        ids = ensure_tokens(session, "vocab-model", counts)
    assert sorted(ids.values()) == list(range(len(ODD) + 3000))
    assert [ids[t] for t in ODD] == list(range(len(ODD)))  # most frequent first
    # A second batch adds only what is new, after the ids already handed out.
    with transaction(factory) as session:
        more = ensure_tokens(session, "vocab-model", Counter({"t5": 9, "new one": 2, "\x00": 1}))
    assert more["new one"] == len(ODD) + 3000 and more["t5"] == ids["t5"]
    vocab_cache.clear()
    with factory() as session:
        table = vocab_cache.strings(session, "vocab-model", [len(ODD) + 3000])
        assert table[: len(ODD)] == ODD
        assert table[len(ODD) + 3000] == "new one"
        assert session.scalar(select(func.count()).select_from(VocabToken)) == len(ODD) + 3001
