"""Read-ahead: an iterator produced by a background thread, so reading overlaps with writing."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_DONE = object()


class Prefetch(Generic[T]):
    """``items``, produced by a background thread, started at once, up to ``depth`` ahead of the consumer.

    Arrow parses and numpy encodes without holding the GIL, so reading the next batch overlaps
    with writing this one (and with the database's own work on it); starting at construction lets
    a file be read while the caller still writes what comes before it. Exceptions arrive in order,
    after the items produced before them. :meth:`close` (also on ``with`` exit) stops the thread;
    ``done`` is set once every item was produced without an exception.
    """

    def __init__(self, items: Iterator[T], depth: int = 2) -> None:
        self._out: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self.done = threading.Event()
        self._finished = False
        self._thread = threading.Thread(target=self._produce, args=(items,), name="interpedia-reader", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, items: Iterator[T]) -> None:
        try:
            for item in items:
                if not self._put((item, None)):
                    return
        except BaseException as exc:  # noqa: B036 - handed to the consumer, which re-raises it
            self._put((None, exc))
            return
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # a reader stopped early closes its file now
        self.done.set()
        self._put((_DONE, None))

    def __iter__(self) -> Prefetch[T]:
        return self

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        item, exc = self._out.get()
        if exc is not None:
            self._finished = True
            raise exc
        if item is _DONE:
            self._finished = True
            raise StopIteration
        return item  # type: ignore[no-any-return]

    def close(self) -> None:
        """Stop the producer and wait for its thread (what it had produced is dropped)."""
        self._finished = True
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> Prefetch[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def prefetched(items: Iterator[T], depth: int = 2) -> Prefetch[T]:
    """``items`` read ahead by a background thread (see :class:`Prefetch`)."""
    return Prefetch(items, depth)
