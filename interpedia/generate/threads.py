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
