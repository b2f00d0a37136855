"""The warm-model cache: bounded, least recently used out, and one load per key however many ask at once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from interpedia.inference.registry import _Lru


def test_keeps_at_most_capacity_and_drops_the_least_recently_used() -> None:
    lru: _Lru[str, str] = _Lru(2, "thing")
    loads: list[str] = []

    def get(key: str) -> str:
        return lru.get(key, lambda: loads.append(key) or key.upper())

    assert [get("a"), get("b"), get("a"), get("c")] == ["A", "B", "A", "C"]
    assert sorted(lru.keys()) == ["a", "c"]  # b was the least recently used
    get("b")
    assert loads == ["a", "b", "c", "b"]


def test_concurrent_requests_for_a_cold_key_load_it_once() -> None:
    lru: _Lru[str, int] = _Lru(4, "thing")
    calls = []
    gate = threading.Event()

    def slow_load() -> int:
        calls.append(1)
        gate.wait(5)
        return 42

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(lru.get, "model", slow_load) for _ in range(8)]
        time.sleep(0.2)
        gate.set()
        assert [f.result() for f in futures] == [42] * 8
    assert len(calls) == 1


def test_a_failed_load_is_not_cached() -> None:
    lru: _Lru[str, int] = _Lru(2, "thing")

    def broken() -> int:
        raise OSError("missing file")

    with pytest.raises(OSError):
        lru.get("x", broken)
    assert lru.get("x", lambda: 3) == 3
