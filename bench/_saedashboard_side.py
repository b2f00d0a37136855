"""SAEDashboard's side of the generation benches; runs inside ``bench/.venv-saedashboard``.

Its ``NeuronpediaRunner`` insists on a hub model and a streamed dataset, so a small subclass hands it the
local model, and the exact token rows interpedia uses (reference/environment.md §4(c); ``get_tokens`` is
overridden too, so both tools see the same prompts in the same order). ``run()`` is then SAEDashboard's
own: every feature, ``n_features_at_a_time`` per batch file, activations cached to disk after the first
batch, JSON written. Prints one JSON line: run seconds (``run()`` only), load seconds, peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sae_dashboard.neuronpedia.neuronpedia_runner import NeuronpediaRunner
from sae_dashboard.neuronpedia.neuronpedia_runner_config import NeuronpediaRunnerConfig
from sae_lens import HookedSAETransformer
from safetensors.torch import load_file
from transformer_lens import HookedTransformerConfig
from transformers import PreTrainedTokenizerFast


def load_tokenizer(model_dir: Path) -> PreTrainedTokenizerFast:
    """The model's tokenizer from its ``tokenizer.json`` (transformers 4.x cannot read a 5.x tokenizer_config).

    ``add_bos_token`` and ``name_or_path`` keep TransformerLens 2 from reloading it by name (environment.md §2).
    """
    config = json.loads((model_dir / "tokenizer_config.json").read_text())
    names = {
        k: (v["content"] if isinstance(v, dict) else v)
        for k, v in config.items()
        if k in ("bos_token", "eos_token", "unk_token", "pad_token")
    }
    tok = PreTrainedTokenizerFast(tokenizer_file=str(model_dir / "tokenizer.json"), add_bos_token=True, **names)
    tok.init_kwargs["name_or_path"] = str(model_dir)
    return tok


def local_runner(model_dir: Path, tokens: torch.Tensor) -> type[NeuronpediaRunner]:
    """The runner subclass that takes a local model directory and fixed token rows."""

    class LocalNeuronpediaRunner(NeuronpediaRunner):  # type: ignore[misc]
        def _initialize_model(self) -> None:
            kwargs = json.loads((model_dir / "tl_config.json").read_text())
            tok = load_tokenizer(model_dir)
            self.model = HookedSAETransformer(HookedTransformerConfig(device="cpu", **kwargs), tokenizer=tok)
            state = load_file(str(model_dir / "model.safetensors"))
            # attention masks are rebuilt by the model (TransformerLens 3 stores them empty)
            self.model.load_state_dict(
                {k: v for k, v in state.items() if not k.endswith((".mask", ".IGNORE"))}, strict=False
            )
            self.model.eval()
            self.hook_name = self.sae.cfg.metadata.hook_name

        def _setup_activation_store(self) -> None:
            self.activations_store = None
            self.cached_activations_dir = Path(self.cfg.outputs_dir) / "cached_activations"

        def get_tokens(self) -> torch.Tensor:
            return tokens

    return LocalNeuronpediaRunner


def main() -> None:
    """Run SAEDashboard over every feature and report its time."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--sae", required=True)
    parser.add_argument("--tokens", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--features-per-batch", type=int, default=128)
    parser.add_argument("--end-batch", type=int, default=None)
    # the driver passes interpedia's defaults, so both tools keep the same number of examples
    parser.add_argument("--top-k", type=int, default=20, help="top activations per feature (top_acts_group_size)")
    parser.add_argument("--n-quantiles", type=int, default=5)
    parser.add_argument("--quantile-samples", type=int, default=5, help="examples per interval (quantile_group_size)")
    args = parser.parse_args()
    started = time.perf_counter()
    torch.manual_seed(0)
    tokens = torch.from_numpy(np.load(args.tokens).astype(np.int64))
    runner_cls = local_runner(args.model, tokens)
    cfg = NeuronpediaRunnerConfig(
        sae_set="res-bench",
        sae_path=args.sae,
        from_local_sae=True,
        outputs_dir=str(args.out),
        np_set_name="res-bench",
        huggingface_dataset_path="local-python-docs",
        n_prompts_total=len(tokens),
        n_tokens_in_prompt=tokens.shape[1],
        n_prompts_in_forward_pass=32,
        n_features_at_a_time=args.features_per_batch,
        quantile_feature_batch_size=64,
        top_acts_group_size=args.top_k,
        n_quantiles=args.n_quantiles,
        quantile_group_size=args.quantile_samples,
        end_batch=args.end_batch,
        prepend_bos=False,
        model_dtype="float32",
        sae_dtype="float32",
    )
    devnull = open(os.devnull, "w")  # noqa: SIM115 - the runner prints per batch; keep stdout for the result
    real_stdout, sys.stdout = sys.stdout, devnull
    try:
        runner = runner_cls(cfg)
        load_seconds = time.perf_counter() - started
        run_started = time.perf_counter()
        runner.run()
        run_seconds = time.perf_counter() - run_started
    finally:
        sys.stdout = real_stdout
    print(
        json.dumps(
            {
                "run_seconds": round(run_seconds, 3),
                "load_seconds": round(load_seconds, 3),
                "out_dir": runner.cfg.outputs_dir,
                "torch_threads": torch.get_num_threads(),
                "top_k": args.top_k,
                "n_quantiles": args.n_quantiles,
                "quantile_samples": args.quantile_samples,
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
