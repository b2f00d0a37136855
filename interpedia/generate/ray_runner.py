"""Scale-out on Ray: shards of the token stream run on Ray workers (one per GPU), states merge exactly.

Each worker loads the model and SAE once and streams the shards it is handed; it returns the shard's
result (state + sparse activations) to the driver, which saves it exactly as the single-process run does,
so a Ray run resumes, merges and writes through the same code and gives the same numbers.

Ray's old ``local_mode`` is gone (Ray >= 2.10); ``ray.init()`` without an address starts a local cluster
on this machine, which is what the tests use.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from interpedia.generate.config import GenerateConfig
from interpedia.generate.feature_pass import ShardSpec
from interpedia.generate.state import ShardResult

log = logging.getLogger(__name__)


class ShardWorker:
    """Body of a Ray actor: the model, SAE and token rows of one run, ready to stream shards."""

    def __init__(
        self, config: dict[str, Any], tokens: np.ndarray, hook_name: str, ignore_ids: list[int] | None, threads: int
    ) -> None:
        import torch

        from interpedia.generate.feature_pass import FeaturePass
        from interpedia.generate.model import HookedModel
        from interpedia.generate.sae import LoadedSae

        torch.set_num_threads(max(1, threads))
        cfg = GenerateConfig.from_dict(config)
        model = HookedModel.load(cfg.model, device=cfg.device, dtype=cfg.dtype)
        sae = LoadedSae.load(cfg.sae, device=cfg.device, dtype=cfg.dtype, fold=cfg.fold_decoder_norm)
        self.feature_pass = FeaturePass(
            model,
            sae,
            tokens,
            hook_name=hook_name,
            top_k=cfg.top_k,
            distinct_prompts=cfg.distinct_prompts,
            batch_size=cfg.batch_size,
            ignore_ids=ignore_ids,
        )

    def run(self, spec: ShardSpec) -> ShardResult:
        """Stream one shard."""
        return self.feature_pass.run_shard(spec)


class RayRunner:
    """Hands shards to Ray actors and passes each finished shard to ``on_done`` (in completion order)."""

    def __init__(
        self, cfg: GenerateConfig, tokens: np.ndarray, *, hook_name: str, ignore_ids: list[int] | None
    ) -> None:
        self.cfg = cfg
        self.tokens = tokens
        self.hook_name = hook_name
        self.ignore_ids = ignore_ids

    def run(self, shards: list[ShardSpec], on_done: Callable[[ShardResult], None]) -> dict[str, Any]:
        """Run every shard; returns what the run record should say about the cluster."""
        import ray
        from ray.util import ActorPool

        started_here = not ray.is_initialized()
        if started_here:
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if self.cfg.ray_address:
                kwargs["address"] = self.cfg.ray_address
            elif self.cfg.ray_workers:
                kwargs["num_cpus"] = self.cfg.ray_workers
            ray.init(**kwargs)
        try:
            resources = ray.cluster_resources()
            gpu = self.cfg.device.startswith("cuda")
            n_slots = int(resources.get("GPU", 0)) if gpu else int(resources.get("CPU", 1))
            n_workers = max(1, min(self.cfg.ray_workers or n_slots, n_slots, len(shards) or 1))
            threads = max(1, int(resources.get("CPU", 1)) // n_workers)
            actor = ray.remote(num_gpus=1 if gpu else 0, num_cpus=1)(ShardWorker)
            tokens_ref = ray.put(self.tokens)
            workers: list[Any] = [
                actor.remote(self.cfg.to_dict(), tokens_ref, self.hook_name, self.ignore_ids, threads)
                for _ in range(n_workers)
            ]
            pool = ActorPool(workers)
            for result in pool.map_unordered(lambda w, spec: w.run.remote(spec), shards):
                on_done(result)
            for worker in workers:
                ray.kill(worker)
            return {
                "ray_version": ray.__version__,
                "workers": n_workers,
                "threads_per_worker": threads,
                "address": self.cfg.ray_address or "local",
            }
        finally:
            if started_here:
                ray.shutdown()
