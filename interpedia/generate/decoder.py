"""Statistics of the decoder weights alone: logit lens, logit histogram, cosine neighbours, neuron alignment.

The logit lens is SAEDashboard's: the unit decoder direction, mapped to the residual stream (through
``W_out`` for MLP ``hook_pre``/``hook_post`` SAEs, ``W_O`` for ``hook_z``), times ``W_U`` as stored. By
default the final LayerNorm's scale is **not** folded in and no ``b_U`` is added (what Neuronpedia shows);
``fold_ln_final`` multiplies ``W_U``'s rows by the ``ln_final`` weight first.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from interpedia.generate.model import HookedModel
from interpedia.generate.sae import LoadedSae

_SLICE_ELEMENTS = 8_000_000  # rows x width of one slice's logits / cosine temporaries (64 MB as int64)


@dataclass
class DecoderBlock:
    """Decoder statistics of features ``[start, start + n)``; tensors are on the CPU."""

    pos_ids: torch.Tensor  # [n, n_logits] token ids of the largest logits, descending
    pos_vals: torch.Tensor
    neg_ids: torch.Tensor  # [n, n_logits] smallest logits, ascending
    neg_vals: torch.Tensor
    logit_hist_values: torch.Tensor  # [n, bins] bin centres
    logit_hist_heights: torch.Tensor  # [n, bins] int64
    cos_ids: torch.Tensor  # [n, n_cos] other features, most similar first
    cos_vals: torch.Tensor
    align_ids: torch.Tensor  # [n, 3] largest signed decoder entries
    align_vals: torch.Tensor
    align_l1: torch.Tensor


def linspace_rows(start: torch.Tensor, end: torch.Tensor, steps: int) -> torch.Tensor:
    """``torch.linspace(start[i], end[i], steps)`` for every row at once, with the same float32 arithmetic."""
    start, end = start.float(), end.float()
    step = (end - start) / (steps - 1)
    idx = torch.arange(steps, dtype=torch.float32, device=start.device)
    front = start[:, None] + step[:, None] * idx
    back = end[:, None] - step[:, None] * (steps - 1 - idx)
    return torch.where(idx < steps / 2, front, back)


def histogram_rows(
    values: torch.Tensor, rows: torch.Tensor, n_rows: int, lo: torch.Tensor, hi: torch.Tensor, bins: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row fixed-bin histograms with ``torch.histc``'s binning; returns (bin centres, heights).

    ``values[i]`` belongs to row ``rows[i]``; row ``r`` spans ``[lo[r], hi[r]]`` (SAEDashboard's
    ``HistogramData.from_data``: edges ``linspace(min, max, bins + 1)``, centres rounded to 5 decimals).
    """
    flat_lo, flat_hi = lo.clone(), hi.clone()
    same = flat_lo == flat_hi  # histc widens an empty range by 1 on each side
    flat_lo[same] -= 1
    flat_hi[same] += 1
    b = ((values - flat_lo[rows]) * bins / (flat_hi[rows] - flat_lo[rows])).long().clamp_(0, bins - 1)
    heights = torch.bincount(rows * bins + b, minlength=n_rows * bins).reshape(n_rows, bins)
    return bin_centres(lo, hi, bins), heights


def dense_histogram_rows(x: torch.Tensor, bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Histogram of each row of ``x`` [n, m] over its own [min, max] (see :func:`histogram_rows`).

    ``x`` is overwritten (the bin arithmetic runs in place: these are the largest arrays of the stage).
    """
    lo, hi = x.min(1).values, x.max(1).values
    wlo, whi = lo.clone(), hi.clone()
    same = wlo == whi
    wlo[same] -= 1
    whi[same] += 1
    n = x.shape[0]
    # histc's arithmetic, in its order: (x - lo) * bins / (hi - lo), truncated, the top edge in the last bin
    b = x.sub_(wlo[:, None]).mul_(bins).div_((whi - wlo)[:, None]).clamp_(0, bins - 1)
    b.add_(torch.arange(n, device=x.device, dtype=x.dtype)[:, None] * bins)
    heights = torch.bincount(b.reshape(-1).long(), minlength=n * bins).reshape(n, bins)
    return bin_centres(lo, hi, bins), heights


def bin_centres(lo: torch.Tensor, hi: torch.Tensor, bins: int) -> torch.Tensor:
    """SAEDashboard's bar values: ``linspace(lo, hi, bins + 1)[:-1] + (hi - lo) / bins / 2``, 5 decimals."""
    edges = linspace_rows(lo, hi, bins + 1)
    size = (hi.double() - lo.double()) / bins
    return torch.round((edges[:, :-1].double() + size[:, None] / 2) * 1e5) / 1e5


class DecoderStats:
    """Computes decoder-only statistics block by block (memory: block x max(d_vocab, d_sae) floats)."""

    def __init__(
        self,
        model: HookedModel,
        sae: LoadedSae,
        hook_name: str,
        *,
        n_logits: int,
        n_cos_sim: int,
        hist_bins: int,
        fold_ln_final: bool,
    ) -> None:
        self.dirs = sae.decoder_directions().to(model.device)  # [F, d_in], unit rows
        self.model = model
        self.hook_name = hook_name
        w_u = model.unembed().float()
        scale = model.ln_final_scale() if fold_ln_final else None
        self.w_u = w_u * scale.float()[:, None] if scale is not None else w_u
        self.ln_final_folded = scale is not None
        self.n_logits = n_logits
        self.n_cos_sim = n_cos_sim
        self.bins = hist_bins

    @torch.no_grad()
    def block(self, start: int, end: int) -> DecoderBlock:
        """Statistics of features ``[start, end)``, computed in slices that keep temporaries small."""
        width = max(self.w_u.shape[1], self.dirs.shape[0])
        step = max(1, _SLICE_ELEMENTS // width)
        parts = [self._slice(s, min(s + step, end)) for s in range(start, end, step)]
        return DecoderBlock(*(torch.cat([getattr(p, f) for p in parts]) for f in DecoderBlock.__dataclass_fields__))

    def _slice(self, start: int, end: int) -> DecoderBlock:
        dirs = self.dirs[start:end]
        n = dirs.shape[0]
        resid = self.model.to_resid_direction(dirs.to(self.model.unembed().dtype), self.hook_name).float()
        logits = resid @ self.w_u  # [n, d_vocab]
        k = min(self.n_logits, logits.shape[1])
        pos = torch.topk(logits, k, dim=1)
        neg = torch.topk(logits, k, dim=1, largest=False)
        centres, heights = dense_histogram_rows(logits, self.bins)  # overwrites logits
        sims = dirs @ self.dirs.T  # [n, F]
        sims[torch.arange(n, device=sims.device), torch.arange(start, end, device=sims.device)] = -float("inf")
        cos = torch.topk(sims, min(self.n_cos_sim, max(0, sims.shape[1] - 1)), dim=1)
        # SAEDashboard's neuron alignment: the largest signed entries of the (folded, unit) decoder row.
        align = torch.topk(dirs, min(3, dirs.shape[1]), dim=1)
        l1 = align.values.abs() / dirs.abs().sum(1, keepdim=True).clamp(min=1e-12)
        out = DecoderBlock(
            pos.indices,
            pos.values,
            neg.indices,
            neg.values,
            centres,
            heights,
            cos.indices,
            cos.values,
            align.indices,
            align.values,
            l1,
        )
        return DecoderBlock(*(t.cpu() for t in vars(out).values()))
