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
- top examples: the exact running top-k of the pass (positive values only): distinct prompts at their maxima,
  or any positions with ``distinct_prompts=False``.
- every example carries the feature's values over its whole prompt (positions ``window_start..ctx-1``).
- with a ``DfaCalculator`` (SAEs on an attention layer's ``hook_z``): each example that fires gets its direct
  feature attribution at its maximum (``generate/dfa.py``), over the same positions, and each feature its heads'
  shares of the decoder norm (``decoder_weights_dist``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from interpedia.generate.decoder import DecoderBlock, DecoderStats, histogram_rows, linspace_rows
from interpedia.generate.dfa import DfaCalculator, head_attribution
from interpedia.generate.state import FeatureState, ShardResult, interleave
from interpedia.generate.threads import single_threaded

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
    # DFA (hook_z SAEs only): per example [E, window] (rounded to 4 decimals), whether it was computed (examples
    # that never fire have nothing to attribute), and each feature's head shares of its decoder norm [n, heads]
    ex_dfa_values: np.ndarray | None = None
    ex_dfa_mask: np.ndarray | None = None
    head_attribution: np.ndarray | None = None


class DashboardBuilder:
    """Turns the pass's output into ``DashboardBlock``s; memory is bounded by ``block_entries``."""

    def __init__(
        self,
        state: FeatureState,
        shards: list[ShardResult],
        decoder: DecoderStats,
        *,
        context_size: int,
        window_start: int,
        n_quantiles: int,
        quantile_samples: int,
        hist_bins: int,
        seed: int,
        block_entries: int,
        max_block_features: int = 1024,
        dfa: DfaCalculator | None = None,
        tokens: np.ndarray | None = None,
    ) -> None:
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
        if dfa is not None and tokens is None:
            raise ValueError("DFA needs the run's token rows")
        self.dfa = dfa
        self.tokens = tokens
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
            crow = torch.from_numpy(np.array(shard.crow[start : end + 1], dtype=np.int64))
            counts.append(crow[1:] - crow[:-1])
            starts.append(crow[:-1] - lo + offset)
            toks.append(torch.from_numpy(np.array(shard.tok[lo:hi], dtype=np.int64)) + shard.token_offset)
            vals.append(torch.from_numpy(np.array(shard.val[lo:hi], dtype=np.float32)))
            offset += hi - lo
        cnt = torch.stack(counts)
        index = interleave(cnt, torch.stack(starts))
        return cnt.sum(0), torch.cat(toks)[index], torch.cat(vals)[index]

    def block(self, start: int, end: int) -> DashboardBlock:
        """Dashboards of the live features in ``[start, end)``."""
        decoder = self.decoder.block(start, end)  # GEMMs: every thread
        with single_threaded():
            out = self._block(start, end, decoder)
        if self.dfa is not None:
            self._add_dfa(out, self.dfa)  # model forwards: every thread
        return out

    def _add_dfa(self, out: DashboardBlock, dfa: DfaCalculator) -> None:
        """DFA of every example that fires, at its maximum, and the features' head attribution."""
        assert self.tokens is not None
        n_ex = out.ex_values.shape[0]
        features = np.repeat(out.index, np.diff(out.ex_offsets))
        mask = out.ex_values.max(axis=1) > 0 if n_ex else np.zeros(0, dtype=bool)
        targets = out.ex_values.argmax(axis=1) if n_ex else np.zeros(0, dtype=np.int64)
        values = np.zeros_like(out.ex_values)
        chosen = np.nonzero(mask)[0]
        full = dfa.examples(self.tokens, out.ex_prompt[chosen], features[chosen], targets[chosen] + self.ws)
        values[chosen] = np.round(full[:, self.ws :], 4)
        out.ex_dfa_values, out.ex_dfa_mask = values, mask
        out.head_attribution = head_attribution(dfa.sae, dfa.n_heads, torch.from_numpy(out.index)).numpy()

    def _block(self, start: int, end: int, dec: DecoderBlock) -> DashboardBlock:
        n = end - start
        cnt, tok, val = self._gather(start, end)
        feat = torch.repeat_interleave(torch.arange(n), cnt)
        top_val = self.state.top_val[start:end]
        top_pos = self.state.top_pos[start:end]
        max_act = top_val[:, 0]
        min_act = torch.full((n,), float("inf")).scatter_reduce_(0, feat, val, "amin")
        min_act = torch.where(cnt > 0, min_act, max_act)
        hist_values, hist_heights = histogram_rows(val, feat, n, min_act, max_act, self.bins)

        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + start)
        bounds = linspace_rows(torch.zeros(n), max_act, self.n_q + 1)  # [n, n_q + 1]
        # Only values >= max / n_q can fall in an upper interval or be excluded from the lowest one: a small
        # part of the entries in practice, so everything interval-related works on that part alone.
        high = val >= bounds[:, 1][feat]
        h_feat, h_tok, h_val = feat[high], tok[high], val[high]
        h_disp = (h_tok % self.ctx) >= self.ws
        groups = [self._top_group(top_val, top_pos, max_act)]
        for i in range(self.n_q - 1, 0, -1):
            groups.append(self._upper_interval(i, bounds, h_feat, h_tok, h_val, h_disp, cnt, gen))
        groups.append(self._lowest_interval(bounds, h_feat, h_tok, h_val, h_disp, cnt, gen))
        ex = self._assemble(groups, n)
        ex_values = self._example_values(ex["feat"], ex["pos"], feat, tok, val, n)

        live = (cnt > 0).numpy()
        keep_rows = np.nonzero(live)[0]
        keep_t = torch.from_numpy(keep_rows)
        dec = DecoderBlock(*(getattr(dec, f)[keep_t] for f in DecoderBlock.__dataclass_fields__))
        ex_feat = ex["feat"].numpy()
        row_of = np.cumsum(live) - 1
        offsets = np.concatenate([[0], np.cumsum(np.bincount(row_of[ex_feat], minlength=len(keep_rows)))])
        return DashboardBlock(
            index=np.arange(start, end)[keep_rows],
            count=cnt.numpy()[keep_rows],
            frac_nonzero=(cnt.double() / self.n_total).numpy()[keep_rows],
            max_act=max_act.numpy()[keep_rows],
            freq_hist_values=hist_values.numpy()[keep_rows],
            freq_hist_heights=hist_heights.numpy()[keep_rows],
            decoder=dec,
            ex_offsets=offsets,
            ex_prompt=(ex["pos"] // self.ctx).numpy(),
            ex_qualifying=(ex["pos"] % self.ctx - self.ws).numpy(),
            ex_bin_min=ex["bin_min"].numpy(),
            ex_bin_max=ex["bin_max"].numpy(),
            ex_bin_contains=ex["bin_contains"].numpy(),
            ex_values=ex_values,
        )

    def _top_group(
        self, top_val: torch.Tensor, top_pos: torch.Tensor, max_act: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        valid = top_val > 0
        rows = torch.arange(top_val.shape[0]).unsqueeze(1).expand_as(top_val)[valid]
        k = int(valid.sum())
        return {
            "feat": rows,
            "pos": top_pos[valid],
            "value": top_val[valid],
            "bin_min": torch.full((k,), -1.0, dtype=torch.float64),
            "bin_max": max_act.double()[rows],
            "bin_contains": torch.full((k,), -1.0, dtype=torch.float64),
        }

    def _picks(
        self, counts: torch.Tensor, live: torch.Tensor, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(row, rank) of the sampled members: ``min(samples, count)`` distinct ranks per live row."""
        picks = sample_without_replacement(torch.where(live, counts, 0), self.n_samples, gen)
        row, col = torch.nonzero(picks >= 0, as_tuple=True)
        return row, picks[row, col]

    def _group(
        self,
        row: torch.Tensor,
        pos: torch.Tensor,
        value: torch.Tensor,
        lower: torch.Tensor,
        upper: torch.Tensor,
        contains: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        return {
            "feat": row,
            "pos": pos,
            "value": value,
            "bin_min": lower.double()[row],
            "bin_max": upper.double()[row],
            "bin_contains": (contains.double() / self.n_total)[row],
        }

    def _upper_interval(
        self,
        i: int,
        bounds: torch.Tensor,
        h_feat: torch.Tensor,
        h_tok: torch.Tensor,
        h_val: torch.Tensor,
        h_disp: torch.Tensor,
        cnt: torch.Tensor,
        gen: torch.Generator,
    ) -> dict[str, torch.Tensor]:
        """Interval ``i >= 1``: ``[bounds[i], bounds[i + 1]]``, closed; members are stored entries."""
        n = cnt.shape[0]
        lower, upper = bounds[:, i], bounds[:, i + 1]
        inside = (h_val >= lower[h_feat]) & (h_val <= upper[h_feat])
        contains = torch.bincount(h_feat[inside], minlength=n)
        members = torch.nonzero(inside & h_disp).squeeze(1)  # feature-major, positions ascending
        n_members = torch.bincount(h_feat[members], minlength=n)
        row, rank = self._picks(n_members, cnt > 0, gen)
        entry = members[(torch.cumsum(n_members, 0) - n_members)[row] + rank]
        return self._group(row, h_tok[entry], h_val[entry], lower, upper, contains)

    def _lowest_interval(
        self,
        bounds: torch.Tensor,
        h_feat: torch.Tensor,
        h_tok: torch.Tensor,
        h_val: torch.Tensor,
        h_disp: torch.Tensor,
        cnt: torch.Tensor,
        gen: torch.Generator,
    ) -> dict[str, torch.Tensor]:
        """Interval 0, ``[0, max / n_q]``: every position whose value is not above it, zeros included.

        Members are never listed: the r-th shown position not above the interval is found from the
        (few) positions above it, through the gaps between them.
        """
        n = cnt.shape[0]
        upper = bounds[:, 1]
        above = h_val > upper[h_feat]
        contains = self.n_total - torch.bincount(h_feat[above], minlength=n)
        shown_above = above & h_disp
        a_feat, a_tok = h_feat[shown_above], h_tok[shown_above]
        n_above = torch.bincount(a_feat, minlength=n)
        row, rank = self._picks(self.n_disp - n_above, cnt > 0, gen)
        u = (a_tok // self.ctx) * self.width + (a_tok % self.ctx - self.ws)  # index among shown positions
        first = torch.cumsum(n_above, 0) - n_above
        gap = u - (torch.arange(u.shape[0]) - first[a_feat])  # non-decreasing within a feature
        key = a_feat * self.n_disp + gap
        shown = rank + torch.searchsorted(key, row * self.n_disp + rank, right=True) - first[row]
        pos = (shown // self.width) * self.ctx + shown % self.width + self.ws
        return self._group(row, pos, torch.zeros(row.shape[0]), bounds[:, 0], upper, contains)

    @staticmethod
    def _assemble(groups: list[dict[str, torch.Tensor]], n: int) -> dict[str, torch.Tensor]:
        """All examples ordered by feature, then group (top first, intervals high to low).

        Every group lists its examples by feature already, so the order is computed, not sorted.
        """
        sizes = torch.stack([torch.bincount(g["feat"], minlength=n) for g in groups], 1)  # [n, G]
        dest_start = (torch.cumsum(sizes.reshape(-1), 0) - sizes.reshape(-1)).reshape(sizes.shape)
        total = int(sizes.sum())
        out = {key: torch.empty(total, dtype=groups[0][key].dtype) for key in groups[0]}
        for gi, g in enumerate(groups):
            row = g["feat"]
            group_start = torch.cumsum(sizes[:, gi], 0) - sizes[:, gi]
            dest = dest_start[row, gi] + torch.arange(row.shape[0]) - group_start[row]
            for key in out:
                out[key][dest] = g[key].to(out[key].dtype)
        return out

    def _example_values(
        self,
        ex_feat: torch.Tensor,
        ex_pos: torch.Tensor,
        feat: torch.Tensor,
        tok: torch.Tensor,
        val: torch.Tensor,
        n: int,
    ) -> np.ndarray:
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
