"""Train variants of the demo's SAE and transcoders on a built demo's model and token rows, and measure each.

For the SAE: the fraction of its features that fire at least once on the tokens the demo's dashboards read
(the first ``--n-prompts`` rows, BOS left out), L0 and explained variance on held-out rows. For the
transcoders: each layer's L0, explained variance of the MLP output and dead fraction on held-out rows, the
fraction firing on the dashboards' tokens, and the model's loss with the MLP outputs replaced. Every variant
records its wall time, CPU time and the load.

The machine is shared, so each variant is bracketed by a reference workload whose time on an idle machine is
known (one training step of the demo model: 161 s / 366 steps = 0.44 s in the README's idle build), and the
result carries ``idle_estimate_s = wall_s x 0.44 / reference_step_s``: an estimate, not a measurement.

``python bench/demo_dictionaries.py --home ~/.interpedia --sae baseline auxk-w25 --tc default``
(the demo must be built up to its ``model`` step). Results: ``bench/results/demo_dictionaries.json``, one
entry per variant, kept across runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import RESULTS_DIR, setup_logging, write_results

from interpedia.demo.sae import SAETrainConfig, train_sae
from interpedia.demo.transcoder import TranscoderTrainConfig, train_transcoders
from interpedia.generate.model import HookedModel

log = logging.getLogger("bench.demo_dictionaries")

IDLE_REFERENCE_STEP_S = 161 / 366  # the demo model's training step on the idle machine (README)
LEGACY_MODEL_TOKENS = 1_500_000  # the demo model's training tokens until 3 Dec 2026 (entries without the field)

# The variants' overrides apply to these (the demo's first defaults), not to today's defaults, so each name
# keeps meaning what it measured; each result records its whole config.
SAE_BASE = replace(SAETrainConfig(), init="tied", resample_phases=1)
TC_BASE = replace(TranscoderTrainConfig(), dead_after_tokens=100_000, resample_every_tokens=0)

SAE_VARIANTS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "auxk-w25": {"dead_feature_window": 25},
    "auxk-w10": {"dead_feature_window": 10},
    "auxk-w25-coef4": {"dead_feature_window": 25, "aux_loss_coefficient": 4.0},
    "auxk-w25-lr2e-3": {"dead_feature_window": 25, "lr": 2e-3},
    "auxk-w25-nodecinit": {"dead_feature_window": 25, "decoder_init_norm": None},
    "auxk-w25-3M": {"dead_feature_window": 25, "training_tokens": 3_000_000},
    "auxk-w25-decay": {"dead_feature_window": 25, "lr_decay_steps": 73},
    "data-init": {"init": "data"},
    "data-init-auxk-w25": {"init": "data", "dead_feature_window": 25},
    "lr3e-4": {"lr": 3e-4},
    "lr3e-3": {"lr": 3e-3},
    "data-init-lr3e-3": {"init": "data", "lr": 3e-3},
    "resample3": {"resample_phases": 3},
    "data-init-resample3": {"init": "data", "resample_phases": 3},
    "data-init-resample4": {"init": "data", "resample_phases": 4},
    "data-init-lr3e-3-resample3": {"init": "data", "lr": 3e-3, "resample_phases": 3},
    "data-init-lr3e-3-resample4": {"init": "data", "lr": 3e-3, "resample_phases": 4},
    "data-init-lr3e-3-resample4-rows512": {"init": "data", "lr": 3e-3, "resample_phases": 4, "resample_rows": 512},
    "data-init-resample6": {"init": "data", "resample_phases": 6},
    "data-init-resample6-k32": {"init": "data", "resample_phases": 6, "k": 32},
    "data-init-resample8-3M": {"init": "data", "resample_phases": 8, "training_tokens": 3_000_000},
    "data-init-resample6-auxk-w25": {"init": "data", "resample_phases": 6, "dead_feature_window": 25},
    "data-init-resample6-k32-1M": {"init": "data", "resample_phases": 6, "k": 32, "training_tokens": 1_000_000},
    "data-init-resample6-k32-750k": {"init": "data", "resample_phases": 6, "k": 32, "training_tokens": 750_000},
    "data-init-resample8-k32-1M": {"init": "data", "resample_phases": 8, "k": 32, "training_tokens": 1_000_000},
}
TC_VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "500k": {"training_tokens": 500_000},
    "1M-d1024": {"d_transcoder": 1024},
    "no-auxk": {"aux_coefficient": 0.0},
    "lr4e-3": {"lr": 4e-3},
    "data-init": {"init": "data"},
    "data-init-no-auxk": {"init": "data", "aux_coefficient": 0.0},
    "auxk-coef1": {"aux_coefficient": 1.0},
    "resample": {"resample_every_tokens": 100_000},
    "resample-no-auxk": {"resample_every_tokens": 100_000, "aux_coefficient": 0.0},
    "resample-data-init": {"resample_every_tokens": 100_000, "init": "data"},
    "resample-50k": {"resample_every_tokens": 50_000, "dead_after_tokens": 50_000},
    "resample-50k-until-0.85": {"resample_every_tokens": 50_000, "dead_after_tokens": 50_000, "resample_until": 0.85},
    "resample-50k-lr4e-3": {"resample_every_tokens": 50_000, "dead_after_tokens": 50_000, "lr": 4e-3},
    "resample-25k-until-0.9": {"resample_every_tokens": 25_000, "dead_after_tokens": 25_000, "resample_until": 0.9},
    "resample-50k-k32": {"resample_every_tokens": 50_000, "dead_after_tokens": 50_000, "k": 32},
    "resample-50k-500k": {"resample_every_tokens": 50_000, "dead_after_tokens": 50_000, "training_tokens": 500_000},
    "resample-25k-500k": {"resample_every_tokens": 25_000, "dead_after_tokens": 25_000, "training_tokens": 500_000},
    "resample-50k-400k": {"resample_every_tokens": 50_000, "dead_after_tokens": 50_000, "training_tokens": 400_000},
}


def reference_step_s(model: Any, rows: np.ndarray, n: int = 3) -> float:
    """Median wall seconds of one training step of the demo model (32 x 128 tokens), weights restored after."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    batch = torch.from_numpy(rows[:32]).long()
    times = []
    for _ in range(n):
        started = time.perf_counter()
        loss = model(batch, return_type="loss")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - started)
    model.load_state_dict(state)
    model.zero_grad(set_to_none=True)
    return float(np.median(times))


@torch.no_grad()
def alive_fraction(model: Any, sae_dir: Path, rows: np.ndarray) -> float:
    """Fraction of the SAE's (or transcoder's) features with a positive activation on ``rows`` (BOS excluded)."""
    from sae_lens import SAE

    sae = SAE.load_from_disk(str(sae_dir))
    hook = str(sae.cfg.metadata.hook_name)
    fired = torch.zeros(sae.cfg.d_sae, dtype=torch.bool)
    stop = int(hook.split(".")[1]) + 1
    for start in range(0, len(rows), 32):
        batch = torch.from_numpy(rows[start : start + 32]).long()
        _, cache = model.run_with_cache(batch, names_filter=[hook], stop_at_layer=stop)
        acts = cache[hook][:, 1:].reshape(-1, cache[hook].shape[-1])
        fired |= (sae.encode(acts) > 0).any(0)
    return float(fired.float().mean())


def _timed(model: Any, rows: np.ndarray, work: Any) -> tuple[Any, dict[str, Any]]:
    ref_before = reference_step_s(model, rows)
    load_before = os.getloadavg()[0]
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    out = work()
    wall = time.perf_counter() - started
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    ref_after = reference_step_s(model, rows)
    ref = (ref_before + ref_after) / 2
    timing = {
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 1),
        "load_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "reference_step_s": [round(ref_before, 3), round(ref_after, 3)],
        "idle_estimate_s": round(wall * IDLE_REFERENCE_STEP_S / ref, 1),
        "torch_threads": torch.get_num_threads(),
    }
    return out, timing


def _store(section: str, name: str, entry: dict[str, Any]) -> None:
    """Add one variant's entry to the results file (locked: variants may run in parallel processes)."""
    import fcntl

    path = RESULTS_DIR / "demo_dictionaries.json"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    with (Path(tempfile.gettempdir()) / "interpedia-demo-dictionaries.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        doc = json.loads(path.read_text()) if path.exists() else {}
        results = {k: doc.get(k, {}) for k in ("sae", "transcoders")}
        results[section][name] = entry
        write_results("demo_dictionaries", {"idle_reference_step_s": IDLE_REFERENCE_STEP_S, **results})


def _describe(overrides: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in overrides.items()) or "(the first defaults)"


def _model_tokens(entry: dict[str, Any]) -> str:
    return f"{entry.get('model_train_tokens', LEGACY_MODEL_TOKENS) / 1e6:g}M"


def print_tables() -> None:
    """The results file as the markdown tables of docs/demo.md."""
    doc = json.loads((RESULTS_DIR / "demo_dictionaries.json").read_text())
    print(
        "| SAE variant | changes | model tokens | fire on dashboard text | held-out EV | CPU s | idle estimate s"
        " | load |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, e in sorted(doc["sae"].items(), key=lambda kv: -kv[1]["alive_on_dashboard_tokens"]):
        print(
            f"| {name} | {_describe(e['overrides'])} | {_model_tokens(e)} | "
            f"{100 * e['alive_on_dashboard_tokens']:.1f}% "
            f"({e['alive_features']}) | {e['heldout_explained_variance']:.3f} | {e['cpu_s']:.0f} | "
            f"{e['idle_estimate_s']:.0f} | {e['load_1min'][0]:.0f}-{e['load_1min'][1]:.0f} |"
        )
    print()
    print(
        "| transcoder variant | changes | model tokens | layer | fire on dashboard text | dead on held-out |"
        " EV of MLP out | L0 | CPU s | idle estimate s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, e in sorted(doc["transcoders"].items()):
        for layer, st in sorted(e["layers"].items()):
            alive = st.get("alive_on_dashboard_tokens")
            print(
                f"| {name} | {_describe(e['overrides'])} | {_model_tokens(e)} | {layer} | "
                f"{'-' if alive is None else f'{100 * alive:.1f}%'} | {100 * st['dead_fraction']:.1f}% | "
                f"{st['explained_variance']:.3f} | {st['l0']:.1f} | {e['cpu_s']:.0f} | {e['idle_estimate_s']:.0f} |"
            )


def main() -> None:
    """Train and measure the variants named on the command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, help="INTERPEDIA_HOME of a demo built to its model step")
    parser.add_argument("--sae", nargs="*", default=[], choices=sorted(SAE_VARIANTS))
    parser.add_argument("--tc", nargs="*", default=[], choices=sorted(TC_VARIANTS))
    parser.add_argument("--n-prompts", type=int, default=2048, help="rows the dashboards read")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 when variants run side by side)")
    parser.add_argument("--table", action="store_true", help="print the results as markdown tables and stop")
    args = parser.parse_args()
    if args.table:
        print_tables()
        return
    if args.home is None:
        parser.error("--home is required to train variants")
    setup_logging()
    torch.set_num_threads(args.threads)
    demo = args.home / "demo"
    model = HookedModel.load(str(demo / "model")).model
    # Which demo model the variants ran on: the same variant scores differently on a model trained longer.
    model_tokens = json.loads((demo / "model" / "step.json").read_text())["inputs"]["lm"]["train_tokens"]
    # Results are keyed by variant name; those on another model than the 1.5M-token one every earlier entry
    # used get its size after the name.
    suffix = "" if model_tokens == LEGACY_MODEL_TOKENS else f"@lm{model_tokens // 1000}k"
    rows = np.load(demo / "rows" / "rows.npy")
    for name in args.sae:
        cfg = replace(SAE_BASE, **SAE_VARIANTS[name])
        with tempfile.TemporaryDirectory() as tmp:
            stats, timing = _timed(model, rows, lambda cfg=cfg, tmp=tmp: train_sae(model, rows, cfg, Path(tmp)))
            alive = alive_fraction(model, Path(tmp), rows[: args.n_prompts])
        entry = {
            "overrides": SAE_VARIANTS[name],
            "config": asdict(cfg),
            "alive_on_dashboard_tokens": round(alive, 4),
            "alive_features": round(alive * cfg.d_sae),
            "heldout_l0": round(stats["l0"], 2),
            "heldout_explained_variance": round(stats["explained_variance"], 4),
            "model_train_tokens": model_tokens,
            **timing,
        }
        log.info("sae %s: %s", name, entry)
        _store("sae", name + suffix, entry)
    for name in args.tc:
        tc_cfg = replace(TC_BASE, **TC_VARIANTS[name])
        with tempfile.TemporaryDirectory() as tmp:
            result, timing = _timed(
                model, rows, lambda cfg=tc_cfg, tmp=tmp: train_transcoders(model, rows, cfg, Path(tmp))
            )
            for layer, stats in result["layers"].items():
                tc_dir = Path(tmp) / "saelens" / f"layer_{layer}"
                stats["alive_on_dashboard_tokens"] = round(alive_fraction(model, tc_dir, rows[: args.n_prompts]), 4)
        result.pop("config")
        entry = {
            "overrides": TC_VARIANTS[name],
            "config": asdict(tc_cfg),
            "model_train_tokens": model_tokens,
            **result,
            **timing,
        }
        log.info("transcoders %s: %s", name, entry)
        _store("transcoders", name + suffix, entry)


if __name__ == "__main__":
    main()
