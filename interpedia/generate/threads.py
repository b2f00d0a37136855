"""Thread count for the small bulk operations of the pass and of dashboard building.

The statistics work on arrays of thousands to a few million entries: OpenMP's fork/join costs more
than it saves there, and on a busy machine a parallel region waits for its slowest thread (measured:
an 82k-entry top-k merge took 8x longer with 2 threads than with 1 on a loaded 2-core box). GEMMs and
the model forward keep every thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run the enclosed torch CPU operations on one thread, then restore the previous count."""
    before = torch.get_num_threads()
    if before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class ThreadTuner:
    """Picks the intra-op thread count of the hot loop (model forward + encode) by timing it, on CPU.

    On an idle machine all cores win; on a shared one a single thread can be several times faster (the
    many small ops of a small model wait at OpenMP barriers for descheduled threads: measured 4x on a
    loaded 2-core box). The first minibatches alternate between the candidates; the faster (per token,
    median) is used, and the choice is re-checked every ``recheck`` minibatches as load changes.
    """

    def __init__(self, max_threads: int, *, enabled: bool = True, recheck: int = 48) -> None:
        self.candidates = sorted({max_threads, 1}, reverse=True) if enabled else [max_threads]
        self.samples: dict[int, list[float]] = {n: [] for n in self.candidates}
        self.recheck = recheck
        self.step = 0
        self.choice = max_threads
        self.used: dict[int, int] = {n: 0 for n in self.candidates}

    def next(self) -> int:
        """The thread count for the next minibatch."""
        n_cand = len(self.candidates)
        phase = self.step % self.recheck
        if n_cand > 1 and phase < 2 * n_cand:
            threads = self.candidates[phase % n_cand]
        else:
            threads = self.choice
        self.step += 1
        self.used[threads] = self.used.get(threads, 0) + 1
        return threads

    def record(self, threads: int, seconds_per_token: float) -> None:
        """Report how long the minibatch took, and update the choice."""
        samples = self.samples.setdefault(threads, [])
        samples.append(seconds_per_token)
        del samples[:-3]  # recent samples only: load changes
        if all(self.samples.get(n) for n in self.candidates):
            # the lower median: a first, warming-up minibatch must not decide against its thread count
            self.choice = min(self.candidates, key=lambda n: sorted(self.samples[n])[(len(self.samples[n]) - 1) // 2])
