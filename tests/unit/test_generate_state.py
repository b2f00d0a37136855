"""The pass's per-feature state: exact top-k (ties to the earlier position), exact counts, exact merges."""

from __future__ import annotations

import pytest
from parts import require_module

torch = require_module("torch")

from interpedia.generate.dashboards import sample_without_replacement  # noqa: E402
from interpedia.generate.decoder import dense_histogram_rows, linspace_rows  # noqa: E402
from interpedia.generate.state import FeatureState, interleave  # noqa: E402


def _minibatch(
    gen: torch.Generator, n_feat: int, n_tok: int, offset: int, *, ties: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sparse feature-major entries of a random [n_feat, n_tok] block with uneven densities."""
    density = torch.rand(n_feat, 1, generator=gen) ** 3
    dense = torch.rand(n_feat, n_tok, generator=gen)
    dense = torch.where(torch.rand(n_feat, n_tok, generator=gen) < density, dense, torch.zeros(()))
    if ties:  # few distinct values, so many exact ties
        dense = torch.ceil(dense * 4) / 4
    feat, tok = torch.nonzero(dense, as_tuple=True)
    return feat, tok + offset, dense[feat, tok - 0]


def _brute_force(
    feats: torch.Tensor, pos: torch.Tensor, vals: torch.Tensor, n_feat: int, k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    top_val = torch.zeros(n_feat, k)
    top_pos = torch.full((n_feat, k), -1, dtype=torch.int64)
    count = torch.bincount(feats, minlength=n_feat)
    for f in range(n_feat):
        sel = feats == f
        pairs = sorted(zip((-vals[sel]).tolist(), pos[sel].tolist(), strict=True))[:k]
        for j, (v, p) in enumerate(pairs):
            top_val[f, j], top_pos[f, j] = -v, p
    return count, top_val, top_pos


@pytest.mark.parametrize("ties", [False, True])
def test_running_topk_equals_brute_force(ties: bool) -> None:
    gen = torch.Generator().manual_seed(1)
    n_feat, n_tok, k = 50, 64, 7
    state = FeatureState.empty(n_feat, k)
    seen = []
    for i in range(6):
        feat, pos, val = _minibatch(gen, n_feat, n_tok, i * n_tok, ties=ties)
        state.update(feat, pos, val)
        seen.append((feat, pos, val))
    feats, pos, vals = (torch.cat([s[j] for s in seen]) for j in range(3))
    count, top_val, top_pos = _brute_force(feats, pos, vals, n_feat, k)
    assert torch.equal(state.count, count)
    assert torch.equal(state.top_val, top_val)
    assert torch.equal(state.top_pos, top_pos)


def test_merge_of_split_stream_equals_one_stream() -> None:
    gen = torch.Generator().manual_seed(2)
    n_feat, n_tok, k = 40, 32, 5
    batches = [_minibatch(gen, n_feat, n_tok, i * n_tok, ties=True) for i in range(8)]
    whole = FeatureState.empty(n_feat, k)
    for b in batches:
        whole.update(*b)
    parts = []
    for chunk in (batches[:3], batches[3:4], batches[4:]):
        part = FeatureState.empty(n_feat, k)
        for b in chunk:
            part.update(*b)
        parts.append(part)
    merged = parts[0]
    for later in parts[1:]:
        merged.merge(later)
    assert torch.equal(merged.count, whole.count)
    assert torch.equal(merged.top_val, whole.top_val)
    assert torch.equal(merged.top_pos, whole.top_pos)


def test_interleave_makes_pieces_feature_major() -> None:
    counts = torch.tensor([[2, 0, 1], [1, 3, 0]])  # piece 0: f0 x2, f2 x1; piece 1: f0, f1 x3
    starts = torch.tensor([[0, 2, 2], [3, 4, 7]])
    assert interleave(counts, starts).tolist() == [0, 1, 3, 4, 5, 6, 2]


def test_floyd_sampling_is_distinct_and_in_range() -> None:
    gen = torch.Generator().manual_seed(0)
    total = torch.tensor([0, 1, 3, 5, 6, 1000])
    picks = sample_without_replacement(total, 5, gen)
    for row, n in zip(picks.tolist(), total.tolist(), strict=True):
        chosen = [p for p in row if p >= 0]
        assert len(chosen) == min(5, n) == len(set(chosen))
        assert all(0 <= p < n for p in chosen)
    # uniform: each of 6 items is picked with probability 5/6
    hits = torch.zeros(6)
    picks = sample_without_replacement(torch.full((6000,), 6), 5, gen)
    hits += torch.bincount(picks.reshape(-1), minlength=6)
    assert torch.allclose(hits / 6000, torch.full((6,), 5 / 6), atol=0.03)


def test_linspace_rows_and_histograms_match_torch() -> None:
    ends = torch.tensor([0.7, 3.3, 12.25, 1e-3])
    rows = linspace_rows(torch.zeros(4), ends, 6)
    for i, end in enumerate(ends.tolist()):
        assert torch.equal(rows[i], torch.linspace(0, end, 6))
    x = torch.randn(3, 1000) * torch.tensor([[1.0], [5.0], [0.01]])
    x[2] = 2.0  # a constant row: histc widens the range by 1 on each side
    _, heights = dense_histogram_rows(x.clone(), 50)
    for i in range(3):
        assert torch.equal(heights[i], torch.histc(x[i], bins=50).long())


def test_thread_tuner_picks_the_faster_count_and_rechecks() -> None:
    from interpedia.generate.threads import ThreadTuner

    tuner = ThreadTuner(2, recheck=10)
    cost = {2: 4.0, 1: 1.0}  # a busy machine: one thread is faster
    seen = []
    for _ in range(30):
        n = tuner.next()
        seen.append(n)
        tuner.record(n, cost[n] if len(seen) > 1 else 100.0)  # the first, warming-up minibatch is slow
    assert seen[:4] == [2, 1, 2, 1] and set(seen[4:10]) == {1}
    assert tuner.choice == 1 and seen[10:14] == [2, 1, 2, 1]  # re-checked every 10 minibatches
    cost = {2: 0.5, 1: 1.0}  # the machine went quiet
    for _ in range(10):
        n = tuner.next()
        tuner.record(n, cost[n])
    assert tuner.choice == 2
    assert ThreadTuner(2, enabled=False).next() == 2 and ThreadTuner(1).candidates == [1]
