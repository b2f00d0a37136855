"""The streaming pass: model forward to the hook, SAE encode, per-feature state updated for all features.

The token rows are cut into shards (``shard_prompts`` prompts each), the unit of resume and of Ray
work. A shard runs in minibatches of ``batch_size`` prompts; each minibatch costs one forward pass that
stops at the hook, one sparse encode, and a few bulk tensor operations on the positive activations
(bincount, a filtered top-k merge). Memory per minibatch is one dense [d_sae, batch_size * context]
activation block; the shard's positive activations (8 bytes each) are kept until the shard is saved.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from interpedia.generate.model import HookedModel
from interpedia.generate.sae import LoadedSae
from interpedia.generate.state import FeatureState, ShardResult, interleave, prompt_maxima
from interpedia.generate.threads import ThreadTuner, single_threaded

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardSpec:
    """Prompts ``[start, end)`` of the run's token rows."""

    shard: int
    start: int
    end: int


def plan_shards(n_prompts: int, shard_prompts: int) -> list[ShardSpec]:
    """Consecutive shards covering every prompt."""
    return [
        ShardSpec(i, s, min(s + shard_prompts, n_prompts)) for i, s in enumerate(range(0, n_prompts, shard_prompts))
    ]


class FeaturePass:
    """Runs shards of the token stream through the model and SAE, producing mergeable shard results."""

    def __init__(
        self,
        model: HookedModel,
        sae: LoadedSae,
        tokens: np.ndarray,
        *,
        hook_name: str,
        top_k: int,
        batch_size: int,
        ignore_ids: list[int] | None,
        tune_threads: bool = True,
        distinct_prompts: bool = True,
    ) -> None:
        self.model = model
        self.sae = sae
        self.tokens = tokens
        self.hook_name = hook_name
        self.top_k = top_k
        self.distinct_prompts = distinct_prompts
        self.batch_size = batch_size
        self.context_size = int(tokens.shape[1])
        self.encode = sae.encoder()
        self.device = model.device
        self.ignore_ids = torch.tensor(sorted(set(ignore_ids)), device=self.device) if ignore_ids else None
        self.max_threads = torch.get_num_threads()
        self.tuner = ThreadTuner(self.max_threads, enabled=tune_threads and self.device.type == "cpu")

    def encode_minibatch(self, toks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sparse activations (feature, row-major token index within ``toks``, value) of one minibatch."""
        x = self.model.activations(toks, self.hook_name)
        ignore = torch.isin(toks.reshape(-1), self.ignore_ids) if self.ignore_ids is not None else None
        sparse = self.encode(x.to(self.sae.sae.W_enc.device), ignore)
        return sparse.feat, sparse.tok, sparse.val

    @torch.inference_mode()
    def run_shard(self, spec: ShardSpec, progress: Callable[[int], None] | None = None) -> ShardResult:
        """Stream one shard; ``progress`` is called with the number of tokens after each minibatch."""
        ctx = self.context_size
        state = FeatureState.empty(self.sae.d_sae, self.top_k, device=self.device)
        pieces: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        for start in range(spec.start, spec.end, self.batch_size):
            end = min(start + self.batch_size, spec.end)
            toks = torch.from_numpy(np.asarray(self.tokens[start:end], dtype=np.int64)).to(self.device)
            threads = self.tuner.next()
            torch.set_num_threads(threads)
            started = time.perf_counter()
            try:
                feat, tok, val = self.encode_minibatch(toks)
            finally:
                torch.set_num_threads(self.max_threads)
            self.tuner.record(threads, (time.perf_counter() - started) / toks.numel())
            with single_threaded():
                top = None
                if self.distinct_prompts:
                    f_top, t_top, v_top = prompt_maxima(feat, tok, val, ctx)
                    top = (f_top, t_top + start * ctx, v_top)
                state.update(feat, tok + start * ctx, val, top=top)
                offset = (start - spec.start) * ctx
                pieces.append((feat.cpu(), (tok + offset).to(torch.int32).cpu(), val.cpu()))
            if progress is not None:
                progress((end - start) * ctx)
        with single_threaded():
            crow, tok_arr, val_arr = self._to_csr(pieces)
        return ShardResult(
            shard=spec.shard,
            prompt_start=spec.start,
            prompt_end=spec.end,
            context_size=ctx,
            state=state.to("cpu"),
            crow=crow,
            tok=tok_arr,
            val=val_arr,
        )

    def _to_csr(
        self, pieces: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Minibatch pieces (each feature-major) joined into one feature-major CSR for the shard."""
        d_sae = self.sae.d_sae
        if not pieces:
            return np.zeros(d_sae + 1, dtype=np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32)
        counts = torch.stack([torch.bincount(f, minlength=d_sae) for f, _, _ in pieces])  # [P, F]
        sizes = counts.sum(1)
        piece_start = torch.cumsum(sizes, 0) - sizes
        starts = piece_start[:, None] + torch.cumsum(counts, 1) - counts
        index = interleave(counts, starts)
        tok = torch.cat([t for _, t, _ in pieces])[index]
        val = torch.cat([v for _, _, v in pieces])[index]
        crow = torch.zeros(d_sae + 1, dtype=torch.int64)
        crow[1:] = torch.cumsum(counts.sum(0), 0)
        return crow.numpy(), tok.numpy(), val.numpy()


def merge_states(results: list[FeatureState]) -> FeatureState:
    """Merge shard states in shard order (exact; the same for any grouping of shards)."""
    if not results:
        raise ValueError("no shard states to merge")
    merged = FeatureState(results[0].count.clone(), results[0].top_val.clone(), results[0].top_pos.clone())
    with single_threaded():
        for later in results[1:]:
            merged.merge(later)
    return merged
