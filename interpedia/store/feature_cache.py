"""Feature documents kept in memory, and the versions that say when one is stale.

Building a feature's document costs more than reading it: ~45 examples of 128 tokens to decode and write out
as JSON. It changes only when something is written to the feature, so each serving process keeps the documents
it built (:class:`FeatureCache`, least recently used first out, bounded in bytes) under a key that changes
with every such write: ``(feature id, feature's doc_version, source's doc_version)``. The two versions are
columns of the rows every feature read fetches first (``store.features.locate_feature``), so checking a cached
document costs no extra statement, and several processes or servers on one database never serve each other
stale documents: a write anywhere changes the key everywhere.

Versions are fresh random values, not counters (``store.versions``): a feature deleted and made again with the
same id (SQLite reuses the largest rowid) cannot meet its predecessor's key. Who replaces them:

- ``touch_features``, by every store function that writes what a feature's document shows: explanations
  and their scores, votes, comments, examples added to a feature (``store.explanations``, ``store.votes``,
  ``store.comments``, ``store.activations``, ``store.vectors``);
- ``touch_sources``, by bulk writes, once per batch instead of once per feature: imports and uploads
  (``store.writer.write_features``), UMAP layouts, embeddings filled in (``hasEmbedding``).

The key is read in the first statement of a read, before anything else of the document, so a document is never
older than its key: a write commits its data and the new version together, and a read that raced it and saw
the old version can only have seen newer data, cached under a key nobody asks for again. A database edited by
hand (SQL) bypasses the versions: restart the servers, or run them with ``INTERPEDIA_FEATURE_CACHE_MB=0``.

The catalogue parts of the document (model, source set, source) are not cached: they are rebuilt from the
catalogue row on every read and added to the cached body (:func:`merged_json`), so catalogue edits need no
version of their own.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from interpedia.store.annotations import FeatureAnnotations
from interpedia.store.documents.feature import FeatureDoc

__all__ = [
    "CachedFeature",
    "FeatureCache",
    "FeatureKey",
    "merged_json",
]

T = TypeVar("T")

FeatureKey = tuple[int, int, int]
"""(feature id, the feature's ``doc_version``, its source's ``doc_version``)."""


def merged_json(body: bytes, extra: dict[str, Any]) -> bytes:
    """The JSON object ``body`` with ``extra``'s keys added at its end (``body`` is an object, as orjson wrote it)."""
    if not extra:
        return body
    tail = orjson.dumps(extra)
    return body[:-1] + (b"," if body != b"{}" else b"") + tail[1:]


@dataclass
class CachedFeature:
    """A feature's document without its catalogue parts, its JSON, and what else readers derived from it.

    Shared by every request of the process: nobody may change ``doc``, ``annotations`` or ``derived`` values
    once cached (``derived`` only gains keys: ``setdefault``).
    """

    doc: FeatureDoc
    body: bytes
    annotations: FeatureAnnotations
    derived: dict[str, Any] = field(default_factory=dict)
    extra_bytes: int = 0  # what ``derived`` holds, as counted by FeatureCache.grow

    @property
    def size(self) -> int:
        """Approximate bytes held: the JSON, plus Python objects for the document (about four times it)."""
        return 5 * len(self.body) + self.extra_bytes


class FeatureCache:
    """Feature documents by :data:`FeatureKey`, least recently used out first once over ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[FeatureKey, CachedFeature] = OrderedDict()
        self._bytes = 0
        self._by_feature: dict[int, FeatureKey] = {}  # the key each feature is cached under
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        """Whether anything is kept at all (``INTERPEDIA_FEATURE_CACHE_MB=0`` turns it off)."""
        return self.max_bytes > 0

    def get(self, key: FeatureKey) -> CachedFeature | None:
        """The cached document of ``key``, or None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry

    def put(self, key: FeatureKey, entry: CachedFeature) -> None:
        """Keep ``entry``; the feature's entry under an older key goes (nobody can ask for that key again)."""
        if not self.enabled or entry.size > self.max_bytes:
            return
        with self._lock:
            old_key = self._by_feature.pop(key[0], None)
            if old_key is not None:
                self._bytes -= self._entries.pop(old_key).size
            self._entries[key] = entry
            self._by_feature[key[0]] = key
            self._bytes += entry.size
            while self._bytes > self.max_bytes:
                dropped_key, dropped = self._entries.popitem(last=False)
                self._bytes -= dropped.size
                del self._by_feature[dropped_key[0]]

    def grow(self, key: FeatureKey, name: str, value: T, size: int) -> T:
        """Add something derived from a cached entry's document (an HTML fragment, a page's view) to it and count
        its ``size`` in bytes; returns the value kept (the first one, if two requests raced)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return value
            kept = entry.derived.setdefault(name, value)
            if kept is value:
                self._bytes += size
                entry.extra_bytes += size
            return kept  # type: ignore[no-any-return]

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._entries.clear()
            self._by_feature.clear()
            self._bytes = 0

    def stats(self) -> dict[str, int]:
        """Entries, bytes held, hits and misses so far."""
        with self._lock:
            return {"entries": len(self._entries), "bytes": self._bytes, "hits": self.hits, "misses": self.misses}
