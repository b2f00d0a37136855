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


def _hand_out(url: str, seed: int) -> None:
    """One importer process: several batches of overlapping tokens."""
    import random

    from interpedia.db import make_engine, make_sessionmaker

    engine = make_engine(url)
    factory = make_sessionmaker(engine)
    rng = random.Random(seed)
    for _ in range(8):
        tokens = Counter({f"tok{rng.randrange(400)}": rng.randrange(1, 50) for _ in range(120)})
        with transaction(factory) as session:
            ensure_tokens(session, "shared-model", tokens)
    engine.dispose()


def test_importer_processes_sharing_a_model_never_hand_out_an_id_twice(factory: Any, database_url: str) -> None:
    import multiprocessing

    with transaction(factory) as session:
        ensure_model(session, "shared-model")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_hand_out, args=(database_url, seed)) for seed in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    with factory() as session:
        rows = session.execute(
            select(VocabToken.token_id, VocabToken.token).where(VocabToken.model_id == "shared-model")
        ).all()
    ids = sorted(r[0] for r in rows)
    assert ids == list(range(len(rows)))  # dense, each once
    assert len({bytes(r[1]) for r in rows}) == len(rows)  # each token once
