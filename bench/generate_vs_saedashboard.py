"""Dashboard generation: interpedia vs SAEDashboard on the same model, SAE and tokens, in one run.

    .venv/bin/python bench/generate_vs_saedashboard.py [--repeats 3] [--sd-batches N]

Setting (issue 4): a 2-layer, d_model 128 TransformerLens model, a standard SAE with d_sae 4096 on
``blocks.1.hook_resid_pre``, 800 prompts x 128 tokens (102,400 tokens), CPU. Both tools get the same
token rows. Timed, each in a fresh process:

- SAEDashboard: ``NeuronpediaRunner.run()`` for every feature (128 per batch file, its defaults), through
  the small local-model subclass of ``bench/_saedashboard_side.py``, in its own venv.
- interpedia: ``interpedia generate --out`` (the CLI); ``pass_seconds`` (the streaming pass) and
  ``generate_seconds`` (pass + dashboards + JSON, i.e. everything after loading) from its run.json.
- the floor: model forward to the hook + SAE encode alone (``bench/_generate_floor.py``).

Compared like with like: SAEDashboard's ``run()`` against interpedia's ``generate_seconds`` (both
exclude imports and loading, both include writing the JSON) and against ``pass_seconds``; and the whole
processes. Peak memory is each process's max RSS. Results go to ``bench/results/generate_vs_saedashboard.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import median, setup_logging, table, write_results  # noqa: E402
from _generate_fixture import (  # noqa: E402
    BENCH_DIR,
    MAIN_PYTHON,
    ROOT,
    build_fixture,
    ensure_saedashboard_venv,
    run_json,
)

log = logging.getLogger("bench")


def run_interpedia(fx: dict[str, Any], out: Path) -> dict[str, Any]:
    """``interpedia generate`` as a user runs it; returns run.json plus the whole-process wall time."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [
        str(ROOT / ".venv" / "bin" / "interpedia"),
        "generate",
        "--model",
        fx["model"],
        "--sae",
        fx["sae"],
        "--dataset",
        fx["dataset"],
        "--out",
        str(out),
        "--context-size",
        "128",
        "--n-prompts",
        str(fx["params"]["n_prompts"]),
        "--no-progress",
        "--all-positions",
    ]  # the same work as SAEDashboard
    _, wall = run_json(cmd)
    run = json.loads((out / "run.json").read_text())
    return {
        "process_seconds": round(wall, 3),
        "pass_seconds": run["pass_seconds"],
        "generate_seconds": run["timings"]["generate_seconds"],
        "timings": run["timings"],
        "peak_rss_mb": run["peak_rss_mb"],
        "features_written": run["features_written"],
        "dead": run["n_dead_features"],
        "tokens_per_second": run["tokens_per_second"],
        "json_mb": round(sum(p.stat().st_size for p in out.glob("batch-*.json")) / 2**20, 1),
        "cpu_threads": run.get("cpu_threads"),
        "load_average_1m_after": round(os.getloadavg()[0], 2),
    }


def run_floor(fx: dict[str, Any]) -> dict[str, Any]:
    """Forward to the hook + encode, nothing else."""
    out, _ = run_json(
        [
            str(MAIN_PYTHON),
            str(BENCH_DIR / "_generate_floor.py"),
            "--model",
            fx["model"],
            "--sae",
            fx["sae"],
            "--tokens",
            fx["tokens"],
        ]
    )
    out["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    return out


def run_saedashboard(python: Path, fx: dict[str, Any], out: Path, batches: int | None) -> dict[str, Any]:
    """SAEDashboard over every feature (or the first ``batches`` batch files, then scaled up)."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [
        str(python),
        str(BENCH_DIR / "_saedashboard_side.py"),
        "--model",
        fx["model"],
        "--sae",
        fx["sae"],
        "--tokens",
        fx["tokens"],
        "--out",
        str(out),
    ]
    if batches:
        cmd += ["--end-batch", str(batches - 1)]
    result, wall = run_json(cmd)
    result["process_seconds"] = round(wall, 3)
    result["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    n_batches = -(-fx["params"]["d_sae"] // 128)
    result["batches_run"] = batches or n_batches
    result["batches_total"] = n_batches
    return result


def main() -> None:
    """Run everything, print the figures and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="interpedia and floor runs (median reported)")
    parser.add_argument("--sd-repeats", type=int, default=1, help="SAEDashboard runs (each takes minutes)")
    parser.add_argument(
        "--sd-batches",
        type=int,
        default=None,
        help="time only the first N SAEDashboard batch files and scale to all (quick runs)",
    )
    parser.add_argument(
        "--sd-result",
        type=Path,
        default=None,
        help="reuse the SAEDashboard runs of an earlier results file (same fixture) instead of "
        "running it again; its figures are then from that run, not this one",
    )
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "interpedia-bench-generate")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    setup_logging(args.verbose)
    fx = build_fixture(args.work / "fixture")
    sd_python = ensure_saedashboard_venv() if args.sd_result is None else None
    previous = json.loads(args.sd_result.read_text()) if args.sd_result else None
    if previous is not None:
        args.sd_repeats = 0
    log.info("fixture: %s tokens, d_sae %s (%s)", fx["n_tokens"], fx["params"]["d_sae"], args.work)

    ip_runs, floor_runs, sd_runs = [], [], []
    for i in range(max(args.repeats, args.sd_repeats)):
        if i < args.repeats:
            floor_runs.append(run_floor(fx))
            log.info("floor: %s", floor_runs[-1])
            ip_runs.append(run_interpedia(fx, args.work / "out-interpedia"))
            log.info("interpedia: %s", {k: v for k, v in ip_runs[-1].items() if k != "timings"})
        if i < args.sd_repeats and sd_python is not None:
            sd_runs.append(run_saedashboard(sd_python, fx, args.work / "out-saedashboard", args.sd_batches))
            log.info("saedashboard: %s", sd_runs[-1])
    if previous is not None:
        sd_runs = previous["saedashboard"]
        log.info("saedashboard: reusing %d run(s) from %s", len(sd_runs), args.sd_result)

    scale = sd_runs[0]["batches_total"] / sd_runs[0]["batches_run"]
    sd_run = median([r["run_seconds"] for r in sd_runs]) * scale
    sd_process = median([r["process_seconds"] for r in sd_runs]) + median([r["run_seconds"] for r in sd_runs]) * (
        scale - 1
    )
    sd_rss = max(r["peak_rss_mb"] for r in sd_runs)
    ip_pass = median([r["pass_seconds"] for r in ip_runs])
    ip_gen = median([r["generate_seconds"] for r in ip_runs])
    ip_process = median([r["process_seconds"] for r in ip_runs])
    ip_rss = max(r["peak_rss_mb"] for r in ip_runs)
    floor = median([r["floor_seconds"] for r in floor_runs])
    floor_fused = median([r["floor_fused_seconds"] for r in floor_runs])
    forward = median([r["forward_seconds"] for r in floor_runs])

    rows = [
        ["SAEDashboard run() (all features)", f"{sd_run:.1f}", "" if scale == 1 else f"scaled x{scale:.0f}"],
        ["SAEDashboard whole process", f"{sd_process:.1f}", f"peak RSS {sd_rss:.0f} MB"],
        ["interpedia generate_seconds (pass + dashboards + JSON)", f"{ip_gen:.2f}", ""],
        ["interpedia pass_seconds (streaming pass)", f"{ip_pass:.2f}", ""],
        ["interpedia whole process (CLI)", f"{ip_process:.2f}", f"peak RSS {ip_rss:.0f} MB"],
        ["floor: forward to hook + SAELens encode", f"{floor:.2f}", f"forward alone {forward:.2f}"],
        ["floor: forward to hook + fused encode", f"{floor_fused:.2f}", ""],
    ]
    ratios = {
        "saedashboard_run_over_interpedia_generate": sd_run / ip_gen,
        "saedashboard_run_over_interpedia_pass": sd_run / ip_pass,
        "saedashboard_process_over_interpedia_process": sd_process / ip_process,
        "pass_over_floor": ip_pass / floor,
        "pass_over_fused_floor": ip_pass / floor_fused,
        "generate_over_floor": ip_gen / floor,
        "peak_rss_interpedia_over_saedashboard": ip_rss / sd_rss,
    }
    print(
        f"\n{fx['n_tokens']:,} tokens, d_sae {fx['params']['d_sae']}, {ip_runs[0]['features_written']} features "
        f"written ({ip_runs[0]['dead']} dead); medians of {args.repeats} (interpedia, floor) and "
        f"{len(sd_runs)} (SAEDashboard{', from ' + str(args.sd_result) if previous else ''}) runs\n"
    )
    print(table(rows, ["what", "seconds", "note"]))
    print()
    print(table([[k, f"{v:.2f}x"] for k, v in ratios.items()], ["ratio", "value"]))
    print("\ntargets: >= 30x faster than SAEDashboard; pass <= 1.5x floor; peak RSS <= SAEDashboard's")
    write_results(
        "generate_vs_saedashboard",
        {
            "parameters": {
                "n_tokens": fx["n_tokens"],
                **fx["params"],
                "repeats": args.repeats,
                "sd_repeats": len(sd_runs),
                "sd_batches": args.sd_batches,
                "sd_result_reused_from": str(args.sd_result) if previous else None,
                "load_average": list(os.getloadavg()),
            },
            "saedashboard": sd_runs,
            "interpedia": ip_runs,
            "floor": floor_runs,
            "medians": {
                "saedashboard_run": sd_run,
                "saedashboard_process": sd_process,
                "interpedia_pass": ip_pass,
                "interpedia_generate": ip_gen,
                "interpedia_process": ip_process,
                "floor": floor,
                "floor_fused": floor_fused,
                "forward": forward,
            },
            "ratios": ratios,
        },
    )


if __name__ == "__main__":
    main()
