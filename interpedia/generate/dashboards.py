"""From merged states and the shards' sparse activations to dashboards, a block of features at a time.

This is the "cheap second pass": it reads the stored positive activations (never the model) once per
feature block. Everything is bulk tensor work over the block's entries:

- ``frac_nonzero``: exact count / all positions (SAEDashboard's denominator: every position, ignored included).
- activation histogram: positive values, ``hist_bins`` bins over ``[min, max]`` of the feature, ``histc`` rules.
- quantile intervals, exactly SAEDashboard's: ``linspace(0, max, n + 1)``, closed intervals, over all
  positions (zeros fall in the lowest one); ``bin_contains`` is the exact fraction. Up to
  ``quantile_samples`` examples per interval are drawn uniformly without replacement (Floyd's algorithm,
  seeded), among positions that can be shown (the window below); the lowest interval's zeros are
  sampled without listing them, through the gaps between non-zero positions.
- top examples: the exact running top-k of the pass (positive values only; no overlap suppression).
- every example carries the feature's values over its whole prompt (positions ``window_start..ctx-1``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from interpedia.generate.decoder import DecoderBlock, DecoderStats, histogram_rows, linspace_rows
from interpedia.generate.state import FeatureState, ShardResult, interleave

log = logging.getLogger(__name__)


@dataclass
class DashboardBlock:
    """Dashboards of the live features of one block, column-wise (rows = features in ``index``)."""

    index: np.ndarray  # [n] feature indexes
    count: np.ndarray  # [n] non-zero positions
    frac_nonzero: np.ndarray
    max_act: np.ndarray
    freq_hist_values: np.ndarray  # [n, bins]
    freq_hist_heights: np.ndarray
    decoder: DecoderBlock  # rows aligned with ``index``
    ex_offsets: np.ndarray  # [n + 1] examples of row r are ex_*[ex_offsets[r]:ex_offsets[r + 1]]
    ex_prompt: np.ndarray  # [E] prompt row
    ex_qualifying: np.ndarray  # [E] index into the window
    ex_bin_min: np.ndarray
    ex_bin_max: np.ndarray
    ex_bin_contains: np.ndarray
    ex_values: np.ndarray  # [E, window] float32, rounded to 4 decimals


class DashboardBuilder:
    """Turns the pass's output into ``DashboardBlock``s; memory is bounded by ``block_entries``."""

    def __init__(self, state: FeatureState, shards: list[ShardResult], decoder: DecoderStats, *,
                 context_size: int, window_start: int, n_quantiles: int, quantile_samples: int, hist_bins: int,
                 seed: int, block_entries: int, max_block_features: int = 1024) -> None:
        self.state = state
        self.shards = sorted(shards, key=lambda s: s.prompt_start)
        self.decoder = decoder
        self.ctx = context_size
        self.ws = window_start
        self.n_q = n_quantiles
        self.n_samples = quantile_samples
        self.bins = hist_bins
        self.seed = seed
        self.block_entries = block_entries
        self.max_block_features = max_block_features
        self.n_prompts = sum(s.prompt_end - s.prompt_start for s in self.shards)
        self.n_total = self.n_prompts * context_size
        self.width = context_size - window_start
        self.n_disp = self.n_prompts * self.width

    @property
    def dead(self) -> np.ndarray:
        """Features that never fired."""
        return torch.nonzero(self.state.count == 0).squeeze(1).numpy()

    def blocks(self) -> Iterator[tuple[int, int]]:
        """Feature ranges whose stored activations fit the memory budget."""
        cum = np.concatenate([[0], np.cumsum(self.state.count.numpy())])
        d_sae = len(cum) - 1
        start = 0
        while start < d_sae:
            end = int(np.searchsorted(cum, cum[start] + self.block_entries, side="right")) - 1
            end = max(start + 1, min(end, start + self.max_block_features, d_sae))
            yield start, end
            start = end

    def build(self) -> Iterator[DashboardBlock]:
        """Every block with at least one live feature, in feature order."""
        for start, end in self.blocks():
            if bool((self.state.count[start:end] > 0).any()):
                yield self.block(start, end)

    # --- one block --------------------------------------------------------------------------------

    def _gather(self, start: int, end: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The block's entries from every shard: feature-major, global positions ascending within a feature."""
        counts, starts, toks, vals = [], [], [], []
        offset = 0
        for shard in self.shards:
            lo, hi = int(shard.crow[start]), int(shard.crow[end])
            crow = torch.from_numpy(np.asarray(shard.crow[start : end + 1], dtype=np.int64))
            counts.append(crow[1:] - crow[:-1])
            starts.append(crow[:-1] - lo + offset)
            toks.append(torch.from_numpy(np.asarray(shard.tok[lo:hi], dtype=np.int64)) + shard.token_offset)
            vals.append(torch.from_numpy(np.asarray(shard.val[lo:hi], dtype=np.float32)))
            offset += hi - lo
        cnt = torch.stack(counts)
        index = interleave(cnt, torch.stack(starts))
        return cnt.sum(0), torch.cat(toks)[index], torch.cat(vals)[index]

    def block(self, start: int, end: int) -> DashboardBlock:
        """Dashboards of the live features in ``[start, end)``."""
        n = end - start
        cnt, tok, val = self._gather(start, end)
        feat = torch.repeat_interleave(torch.arange(n), cnt)
        seg_start = torch.cumsum(cnt, 0) - cnt
        top_val = self.state.top_val[start:end]
        top_pos = self.state.top_pos[start:end]
        max_act = top_val[:, 0]
        min_act = torch.full((n,), float("inf")).scatter_reduce_(0, feat, val, "amin")
        min_act = torch.where(cnt > 0, min_act, max_act)
        hist_values, hist_heights = histogram_rows(val, feat, n, min_act, max_act, self.bins)

        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + start)
        disp = (tok % self.ctx) >= self.ws
        groups = [self._top_group(top_val, top_pos, max_act)]
        bounds = linspace_rows(torch.zeros(n), max_act, self.n_q + 1)
        for i in range(self.n_q - 1, -1, -1):
            groups.append(self._interval(i, bounds, feat, tok, val, cnt, seg_start, disp, gen))
        ex = self._assemble(groups, n)
        ex_values = self._example_values(ex["feat"], ex["pos"], feat, tok, val, n)

        live = (cnt > 0).numpy()
        keep_rows = np.nonzero(live)[0]
        dec = self.decoder.block(start, end)
        keep_t = torch.from_numpy(keep_rows)
        dec = DecoderBlock(*(getattr(dec, f)[keep_t] for f in DecoderBlock.__dataclass_fields__))
        ex_feat = ex["feat"].numpy()
        row_of = np.cumsum(live) - 1
        offsets = np.concatenate([[0], np.cumsum(np.bincount(row_of[ex_feat], minlength=len(keep_rows)))])
        return DashboardBlock(
            index=np.arange(start, end)[keep_rows], count=cnt.numpy()[keep_rows],
            frac_nonzero=(cnt.double() / self.n_total).numpy()[keep_rows], max_act=max_act.numpy()[keep_rows],
            freq_hist_values=hist_values.numpy()[keep_rows], freq_hist_heights=hist_heights.numpy()[keep_rows],
            decoder=dec, ex_offsets=offsets, ex_prompt=(ex["pos"] // self.ctx).numpy(),
            ex_qualifying=(ex["pos"] % self.ctx - self.ws).numpy(), ex_bin_min=ex["bin_min"].numpy(),
            ex_bin_max=ex["bin_max"].numpy(), ex_bin_contains=ex["bin_contains"].numpy(), ex_values=ex_values)

    def _top_group(self, top_val: torch.Tensor, top_pos: torch.Tensor, max_act: torch.Tensor
                   ) -> dict[str, torch.Tensor]:
        valid = top_val > 0
        rows = torch.arange(top_val.shape[0]).unsqueeze(1).expand_as(top_val)[valid]
        k = int(valid.sum())
        return {"feat": rows, "pos": top_pos[valid], "value": top_val[valid],
                "bin_min": torch.full((k,), -1.0, dtype=torch.float64), "bin_max": max_act.double()[rows],
                "bin_contains": torch.full((k,), -1.0, dtype=torch.float64)}

    def _interval(self, i: int, bounds: torch.Tensor, feat: torch.Tensor, tok: torch.Tensor, val: torch.Tensor,
                  cnt: torch.Tensor, seg_start: torch.Tensor, disp: torch.Tensor, gen: torch.Generator
                  ) -> dict[str, torch.Tensor]:
        n = cnt.shape[0]
        lower, upper = bounds[:, i], bounds[:, i + 1]
        inside = (val >= lower[feat]) & (val <= upper[feat])
        contains = torch.bincount(feat[inside], minlength=n)
        members = inside & disp
        n_members = torch.bincount(feat[members], minlength=n)
        n_zero = torch.zeros(n, dtype=torch.int64)
        if i == 0:  # zeros lie in [0, max / n_q]: every position where the feature did not fire
            contains = contains + (self.n_total - cnt)
            n_disp_nz = torch.bincount(feat[disp], minlength=n)
            n_zero = self.n_disp - n_disp_nz
        live = cnt > 0
        total = torch.where(live, n_members + n_zero, 0)
        picks = sample_without_replacement(total, self.n_samples, gen)  # [n, s], -1 = none
        row, col = torch.nonzero(picks >= 0, as_tuple=True)
        j = picks[row, col]
        pos = torch.empty_like(j)
        value = torch.zeros(j.shape[0])
        from_entries = j < n_members[row]
        if bool(from_entries.any()):
            prefix = torch.cumsum(members.long(), 0)
            base = torch.cumsum(n_members, 0) - n_members
            r, jj = row[from_entries], j[from_entries]
            e = torch.searchsorted(prefix, base[r] + jj + 1)
            pos[from_entries] = tok[e]
            value[from_entries] = val[e]
        if bool((~from_entries).any()):
            r, z = row[~from_entries], j[~from_entries] - n_members[row[~from_entries]]
            pos[~from_entries] = self._zero_position(r, z, feat, tok, disp, n)
        return {"feat": row, "pos": pos, "value": value, "bin_min": lower.double()[row],
                "bin_max": upper.double()[row], "bin_contains": (contains.double() / self.n_total)[row]}

    def _zero_position(self, rows: torch.Tensor, ranks: torch.Tensor, feat: torch.Tensor, tok: torch.Tensor,
                       disp: torch.Tensor, n: int) -> torch.Tensor:
        """Global position of the ``ranks``-th shown position where feature ``rows`` is zero."""
        d_feat, d_tok = feat[disp], tok[disp]
        u = (d_tok // self.ctx) * self.width + (d_tok % self.ctx - self.ws)  # index among shown positions
        n_per = torch.bincount(d_feat, minlength=n)
        first = torch.cumsum(n_per, 0) - n_per
        gap = u - (torch.arange(u.shape[0]) - first[d_feat])  # non-decreasing within a feature
        key = d_feat * self.n_disp + gap
        k = torch.searchsorted(key, rows * self.n_disp + ranks, right=True) - first[rows]
        shown = ranks + k
        return (shown // self.width) * self.ctx + shown % self.width + self.ws

    @staticmethod
    def _assemble(groups: list[dict[str, torch.Tensor]], n: int) -> dict[str, torch.Tensor]:
        """All examples, by feature, then group (top first, intervals high to low), then value descending."""
        cat = {key: torch.cat([g[key] for g in groups]) for key in groups[0]}
        group_id = torch.cat([torch.full((g["feat"].shape[0],), gi) for gi, g in enumerate(groups)])
        order = torch.argsort(-cat["value"], stable=True)
        order = order[torch.argsort(group_id[order], stable=True)]
        order = order[torch.argsort(cat["feat"][order], stable=True)]
        return {key: t[order] for key, t in cat.items()}

    def _example_values(self, ex_feat: torch.Tensor, ex_pos: torch.Tensor, feat: torch.Tensor, tok: torch.Tensor,
                        val: torch.Tensor, n: int) -> np.ndarray:
        """The feature's value at every shown position of each example's prompt, [E, window] float32."""
        n_ex = ex_feat.shape[0]
        out = torch.zeros(n_ex, self.ctx)
        if n_ex and feat.numel():
            key = feat * self.n_total + tok
            prompt_start = (ex_pos // self.ctx) * self.ctx
            lo = torch.searchsorted(key, ex_feat * self.n_total + prompt_start)
            hi = torch.searchsorted(key, ex_feat * self.n_total + prompt_start + self.ctx)
            lengths = hi - lo
            ex_id = torch.repeat_interleave(torch.arange(n_ex), lengths)
            starts = torch.cumsum(lengths, 0) - lengths
            e = torch.arange(int(lengths.sum())) - starts[ex_id] + lo[ex_id]
            out[ex_id, tok[e] - prompt_start[ex_id]] = val[e]
        return np.round(out[:, self.ws :].numpy(), 4)


def sample_without_replacement(total: torch.Tensor, m: int, gen: torch.Generator) -> torch.Tensor:
    """For each row, ``min(m, total)`` distinct uniform indices in ``[0, total)`` (Floyd's algorithm), -1 padded."""
    n = total.shape[0]
    take = torch.clamp(total, max=m)
    out = torch.full((n, m), -1, dtype=torch.int64)
    for step in range(m):
        top = total - take + step  # Floyd: draw t in [0, top]; if already taken, take top itself
        t = (torch.rand(n, generator=gen, dtype=torch.float64) * (top + 1).double()).long().clamp_(max=top)
        clash = (out[:, :step] == t[:, None]).any(1) if step else torch.zeros(n, dtype=torch.bool)
        out[:, step] = torch.where(step < take, torch.where(clash, top, t), -1)
    return out
