"""Per-feature state of the streaming pass, and how two states merge exactly.

``FeatureState`` holds, for every feature at once: the exact non-zero count and the exact running top-k
(values and global token positions; ties go to the earlier position). Updates and merges are bulk tensor
operations over the sparse entries of a minibatch (no sort: padded per-feature matrices and ``topk``),
never a Python loop over features or positions.

A ``ShardResult`` is what one shard of prompts produces: its ``FeatureState`` plus every positive
activation of the shard in compressed sparse rows (feature-major, tokens ascending). States merge by
count addition and top-k of the union; the sparse rows of shards are concatenated when dashboards are
built. Both are exact, so any split of the token stream (shards, Ray workers) gives the same result.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

_EMPTY_POS = -1


def _value_bits(val: torch.Tensor) -> torch.Tensor:
    """The bit pattern of non-negative float32 values as int64: it orders exactly as the values do."""
    return val.float().contiguous().view(torch.int32).to(torch.int64)


@dataclass
class FeatureState:
    """Exact counts and top-k for ``d_sae`` features; ``top_val`` is 0 and ``top_pos`` -1 in empty slots."""

    count: torch.Tensor  # [F] int64
    top_val: torch.Tensor  # [F, k] float32, descending
    top_pos: torch.Tensor  # [F, k] int64 global token positions

    @classmethod
    def empty(cls, d_sae: int, k: int, device: torch.device | str = "cpu") -> FeatureState:
        """A state that has seen nothing."""
        return cls(
            count=torch.zeros(d_sae, dtype=torch.int64, device=device),
            top_val=torch.zeros(d_sae, k, device=device),
            top_pos=torch.full((d_sae, k), _EMPTY_POS, dtype=torch.int64, device=device),
        )

    @property
    def k(self) -> int:
        """Top-k size."""
        return int(self.top_val.shape[1])

    def update(
        self,
        feat: torch.Tensor,
        pos: torch.Tensor,
        val: torch.Tensor,
        top: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        """Add entries (feature-major, positions ascending within a feature and after all seen so far).

        ``top``, when given, is the subset of the entries that may become top examples (one per prompt).
        """
        self.count += torch.bincount(feat, minlength=self.count.shape[0])
        self._merge_topk(*(top if top is not None else (feat, pos, val)))

    def merge(self, later: FeatureState) -> None:
        """Fold in the state of a later stretch of tokens (its positions all come after this state's)."""
        self.count += later.count
        keep = later.top_val > 0
        feat = torch.arange(self.count.shape[0], device=self.count.device).unsqueeze(1).expand_as(later.top_val)[keep]
        self._merge_topk(feat, later.top_pos[keep], later.top_val[keep])

    def _merge_topk(self, feat: torch.Tensor, pos: torch.Tensor, val: torch.Tensor) -> None:
        k = self.k
        # Only entries that beat a feature's current k-th value can change its top-k (ties keep the old one).
        cand = val > self.top_val[feat, k - 1]
        if not bool(cand.any()):
            return
        feat, pos, val = feat[cand], pos[cand], val[cand]
        touched, counts = torch.unique_consecutive(feat, return_counts=True)
        seg_start = torch.cumsum(counts, 0) - counts
        slot = torch.repeat_interleave(torch.arange(touched.shape[0], device=feat.device), counts)
        col = torch.arange(feat.shape[0], device=feat.device) - seg_start[slot] + k
        # Features are grouped by how many candidates they have (powers of two), so each group's padded
        # [features, k + candidates] matrix is at most twice the entries it holds: memory stays linear.
        width_class = torch.ceil(torch.log2((counts + k).double())).long()
        for cls in torch.unique(width_class).tolist():
            rows = torch.nonzero(width_class == cls).squeeze(1)
            self._merge_group(touched[rows], rows, 1 << cls, slot, col, pos, val)

    def _merge_group(
        self,
        feats: torch.Tensor,
        rows: torch.Tensor,
        width: int,
        slot: torch.Tensor,
        col: torch.Tensor,
        pos: torch.Tensor,
        val: torch.Tensor,
    ) -> None:
        """Top-k of (current top-k + candidates) for the features ``feats`` (candidate ``slot`` in ``rows``)."""
        k, n, device = self.k, feats.shape[0], feats.device
        local = torch.full((int(slot.max()) + 1,), -1, dtype=torch.int64, device=device)
        local[rows] = torch.arange(n, device=device)
        mine = local[slot] >= 0
        r, c = local[slot[mine]], col[mine]
        keys = torch.full((n, width), -1, dtype=torch.int64, device=device)
        vals = torch.zeros((n, width), dtype=self.top_val.dtype, device=device)
        poss = torch.full((n, width), _EMPTY_POS, dtype=torch.int64, device=device)
        vals[:, :k] = self.top_val[feats]
        poss[:, :k] = self.top_pos[feats]
        vals[r, c] = val[mine]
        poss[r, c] = pos[mine]
        # Unique keys: value first, then the earlier column (old entries, then positions ascending) wins ties.
        cols = torch.arange(width, device=device)
        filled = torch.cat(
            [
                torch.ones((n, k), dtype=torch.bool, device=device),
                torch.zeros((n, width - k), dtype=torch.bool, device=device),
            ],
            1,
        )
        filled[r, c] = True
        keys = torch.where(filled, (_value_bits(vals) << 31) | (0x7FFFFFFF - cols), keys)
        best = torch.topk(keys, k, dim=1).indices
        self.top_val[feats] = torch.gather(vals, 1, best)
        self.top_pos[feats] = torch.gather(poss, 1, best)

    def to(self, device: torch.device | str) -> FeatureState:
        """The same state on another device."""
        return FeatureState(self.count.to(device), self.top_val.to(device), self.top_pos.to(device))

    def to_numpy(self) -> dict[str, np.ndarray]:
        """Arrays for saving."""
        cpu = self.to("cpu")
        return {"count": cpu.count.numpy(), "top_val": cpu.top_val.numpy(), "top_pos": cpu.top_pos.numpy()}

    @classmethod
    def from_numpy(cls, arrays: dict[str, np.ndarray]) -> FeatureState:
        """The inverse of :meth:`to_numpy` (copies, so the state can be updated)."""
        return cls(
            count=torch.from_numpy(np.array(arrays["count"])),
            top_val=torch.from_numpy(np.array(arrays["top_val"])),
            top_pos=torch.from_numpy(np.array(arrays["top_pos"])),
        )


def interleave(counts: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
    """Gather index that makes piece-major segments feature-major.

    ``counts[p, f]`` entries of feature ``f`` sit at ``starts[p, f]`` in the source; the result lists the
    source indices feature by feature, pieces in order within a feature (so positions stay ascending).
    """
    seg_len = counts.T.reshape(-1)
    seg_src = starts.T.reshape(-1)
    total = int(seg_len.sum())
    if total == 0:
        return torch.zeros(0, dtype=torch.int64)
    seg_dst = torch.cumsum(seg_len, 0) - seg_len
    return torch.arange(total) + torch.repeat_interleave(seg_src - seg_dst, seg_len)


@dataclass
class ShardResult:
    """One shard's state and sparse activations; ``tok`` is relative to the shard's first token."""

    shard: int
    prompt_start: int
    prompt_end: int
    context_size: int
    state: FeatureState
    crow: np.ndarray  # [F + 1] int64
    tok: np.ndarray  # [nnz] int32
    val: np.ndarray  # [nnz] float32

    @property
    def token_offset(self) -> int:
        """Global position of the shard's first token."""
        return self.prompt_start * self.context_size

    @property
    def nnz(self) -> int:
        """Stored activations."""
        return int(self.val.shape[0])


class ShardStore:
    """Shard results on disk, one directory each, written atomically (a kill leaves no half shard)."""

    FILES = ("count", "top_val", "top_pos", "crow", "tok", "val")

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, shard: int) -> Path:
        """Directory of one shard."""
        return self.root / f"shard-{shard:06d}"

    def done(self) -> set[int]:
        """Shards already written."""
        return {int(p.name.split("-")[1]) for p in self.root.glob("shard-*") if (p / "meta.json").exists()}

    def save(self, result: ShardResult) -> None:
        """Write a shard (to a temporary directory, then renamed into place)."""
        final = self.path(result.shard)
        tmp = self.root / f".tmp-{final.name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        arrays = {**result.state.to_numpy(), "crow": result.crow, "tok": result.tok, "val": result.val}
        for name, arr in arrays.items():
            np.save(tmp / f"{name}.npy", arr)
        meta = {
            "shard": result.shard,
            "prompt_start": result.prompt_start,
            "prompt_end": result.prompt_end,
            "context_size": result.context_size,
            "nnz": result.nnz,
        }
        (tmp / "meta.json").write_text(json.dumps(meta))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)

    def load(self, shard: int, *, with_state: bool = True) -> ShardResult:
        """A saved shard, its sparse arrays memory-mapped (its state only when asked: d_sae x k each)."""
        path = self.path(shard)
        meta: dict[str, Any] = json.loads((path / "meta.json").read_text())
        names = self.FILES if with_state else ("crow", "tok", "val")
        arrays = {name: np.load(path / f"{name}.npy", mmap_mode="r") for name in names}
        state = FeatureState.from_numpy(arrays) if with_state else None
        return ShardResult(
            shard=meta["shard"],
            prompt_start=meta["prompt_start"],
            prompt_end=meta["prompt_end"],
            context_size=meta["context_size"],
            state=state,  # type: ignore[arg-type]
            crow=arrays["crow"],
            tok=arrays["tok"],
            val=arrays["val"],
        )

    def merged_state(self, shards: list[int]) -> FeatureState:
        """The states of ``shards`` merged in order, one shard in memory at a time."""
        from interpedia.generate.threads import single_threaded

        merged = self.load(shards[0]).state
        with single_threaded():
            for shard in shards[1:]:
                merged.merge(self.load(shard).state)
        return merged

    def clear(self) -> None:
        """Remove every shard (a fresh start)."""
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True)


def prompt_maxima(
    feat: torch.Tensor, tok: torch.Tensor, val: torch.Tensor, context_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One entry per (feature, prompt): the prompt's largest value, at its first position on ties.

    Examples are whole prompts, so two top entries from one prompt would show the same tokens twice; keeping
    each prompt's maximum makes the top examples distinct prompts. Order stays feature-major, ascending.
    """
    if feat.numel() == 0:
        return feat, tok, val
    row = torch.div(tok, context_size, rounding_mode="floor")
    n_rows = int(row.max()) + 1
    key = feat.to(torch.int64) * n_rows + row
    uniq, inverse = torch.unique(key, sorted=True, return_inverse=True)
    best = torch.full((uniq.numel(),), float("-inf"), dtype=val.dtype, device=val.device)
    best.scatter_reduce_(0, inverse, val, reduce="amax")
    index = torch.arange(val.numel(), device=val.device)
    candidate = torch.where(val == best[inverse], index, torch.full_like(index, val.numel()))
    first = torch.full((uniq.numel(),), val.numel(), dtype=index.dtype, device=val.device)
    first.scatter_reduce_(0, inverse, candidate, reduce="amin")
    return feat[first], tok[first], val[first]
