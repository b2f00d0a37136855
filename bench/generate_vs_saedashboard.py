"""Dashboard generation: interpedia vs SAEDashboard on the same model, SAE and tokens, in one run.

    .venv/bin/python bench/generate_vs_saedashboard.py [--repeats 3] [--sd-batches N]

Setting (issue 4): a 2-layer, d_model 128 TransformerLens model, a standard SAE with d_sae 4096 on
``blocks.1.hook_resid_pre``, 800 prompts x 128 tokens (102,400 tokens), CPU. Both tools get the same
token rows and keep the same number of examples (SAEDashboard's top-k, intervals and samples per interval are
set to interpedia's defaults). Timed, each in a fresh process, in ``--repeats`` rounds; each round runs every
contender once, one after the other (interleaved, so a change in the machine's load falls on all of them):

- SAEDashboard: ``NeuronpediaRunner.run()`` for every feature (128 per batch file, its defaults), through
  the small local-model subclass of ``bench/_saedashboard_side.py``, in its pinned venv;
- interpedia: ``interpedia generate --out`` (the CLI) in its default mode (top examples are distinct prompts)
  and with ``--all-positions`` (SAEDashboard's choice of top examples); ``pass_seconds`` (the streaming pass)
  and ``generate_seconds`` (pass + dashboards + JSON, i.e. everything after loading) from its run.json;
- the floor: model forward to the hook + SAE encode alone (``bench/_generate_floor.py``; ``--no-floor`` leaves
  it out).

On a loaded machine ``--sd-batches N`` runs SAEDashboard on its first N batch files only (the activation cache is
built before the first) and adds the batch files not run at the median measured time between two batch files
(``run_seconds_all``; every measured gap is recorded).

Compared like with like: SAEDashboard's ``run()`` against interpedia's ``generate_seconds`` (both
exclude imports and loading, both include writing the JSON) and against ``pass_seconds``; and the whole
processes. Peak memory is each process's max RSS. The load average is recorded before and after every run: the
machine has two cores, and a figure measured while other jobs ran includes waiting for a CPU. Results go to
``bench/results/generate_vs_saedashboard.json``; the last outputs stay in ``--work`` for
``check_vs_saedashboard.py --from-bench``.
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import median, setup_logging, table, write_results  # noqa: E402
from _generate_fixture import (  # noqa: E402
    BENCH_DIR,
    MAIN_PYTHON,
    build_fixture,
    ensure_saedashboard_venv,
    interpedia_command,
    matched_statistics,
    run_json,
    saedashboard_command,
    saedashboard_versions,
)

log = logging.getLogger("bench")

MODES = ("default", "all-positions")


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _timed(run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``run()`` with the 1-minute load average before and after it."""
    before = _load()
    result = run()
    return {**result, "load_average_1m_before": before, "load_average_1m_after": _load()}


def run_interpedia(fx: dict[str, Any], out: Path, mode: str) -> dict[str, Any]:
    """``interpedia generate`` as a user runs it; returns run.json's figures plus the whole-process wall time."""
    shutil.rmtree(out, ignore_errors=True)
    _, wall = run_json(interpedia_command(fx, out, all_positions=mode == "all-positions"))
    run = json.loads((out / "run.json").read_text())
    return {
        "mode": mode,
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
    }


def run_floor(fx: dict[str, Any]) -> dict[str, Any]:
    """Forward to the hook + encode, nothing else."""
    cmd = [str(MAIN_PYTHON), str(BENCH_DIR / "_generate_floor.py"), "--model", fx["model"], "--sae", fx["sae"]]
    out, _ = run_json([*cmd, "--tokens", fx["tokens"]])
    return out


def _batch_gaps(out_dir: Path) -> list[float]:
    """Seconds between consecutive batch files SAEDashboard wrote (its steady cost per batch of 128 features:
    the activation cache is built before the first one)."""
    files = sorted(out_dir.glob("batch-*.json"), key=lambda p: int(p.stem.split("-")[1]))
    times = [p.stat().st_mtime for p in files]
    return [round(b - a, 3) for a, b in zip(times, times[1:], strict=False)]


def run_saedashboard(python: Path, fx: dict[str, Any], out: Path, batches: int | None) -> dict[str, Any]:
    """SAEDashboard over every feature, or over the first ``batches`` batch files: then ``run_seconds_all`` is the
    measured ``run()`` plus the batches not run at the median measured time between two batch files."""
    shutil.rmtree(out, ignore_errors=True)
    result, wall = run_json(saedashboard_command(python, fx, out, batches))
    result["process_seconds"] = round(wall, 3)
    n_batches = -(-fx["params"]["d_sae"] // 128)
    result["batches_run"] = batches or n_batches
    result["batches_total"] = n_batches
    gaps = _batch_gaps(Path(result["out_dir"]))
    result["seconds_between_batch_files"] = gaps
    missing = n_batches - result["batches_run"]
    if missing and not gaps:
        raise RuntimeError("--sd-batches needs at least 2 batch files to measure the time per batch")
    per_batch = median(gaps) if gaps else 0.0
    result["run_seconds_all"] = round(result["run_seconds"] + missing * per_batch, 3)
    result["process_seconds_all"] = round(wall + missing * per_batch, 3)
    return result


ROUND_LINE = re.compile(r"round (\d+) (floor|interpedia (\S+)|saedashboard): (\{.*\})$")


def _rounds_from_log(
    path: Path,
) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    """The runs a cut-short run of this script logged, keeping whole rounds only (every contender ran)."""
    rounds: dict[int, dict[str, dict[str, Any]]] = {}
    for line in path.read_text().splitlines():
        if match := ROUND_LINE.search(line):
            number, what, mode, doc = match.groups()
            rounds.setdefault(int(number), {})[mode or what] = ast.literal_eval(doc)
    whole = [r for _, r in sorted(rounds.items()) if "saedashboard" in r and all(m in r for m in MODES)]
    if not whole:
        raise SystemExit(f"{path}: no whole round logged")
    sd_runs = [r["saedashboard"] for r in whole]
    ip_runs = {mode: [r[mode] for r in whole] for mode in MODES}
    return sd_runs, ip_runs, [r["floor"] for r in whole if "floor" in r]


def _summary(
    sd_runs: list[dict[str, Any]], ip_runs: dict[str, list[dict[str, Any]]], floor_runs: list[dict[str, Any]]
) -> tuple[dict[str, float], dict[str, float]]:
    """Medians and ratios (SAEDashboard over interpedia, per interpedia mode)."""
    sd_run = median([r["run_seconds_all"] for r in sd_runs])
    sd_process = median([r["process_seconds_all"] for r in sd_runs])
    sd_rss = max(r["peak_rss_mb"] for r in sd_runs)
    medians = {"saedashboard_run": sd_run, "saedashboard_process": sd_process}
    if floor_runs:
        medians |= {
            "floor": median([r["floor_seconds"] for r in floor_runs]),
            "floor_fused": median([r["floor_fused_seconds"] for r in floor_runs]),
            "forward": median([r["forward_seconds"] for r in floor_runs]),
        }
    ratios: dict[str, float] = {}
    for mode, runs in ip_runs.items():
        key = mode.replace("-", "_")
        ip_pass = median([r["pass_seconds"] for r in runs])
        ip_gen = median([r["generate_seconds"] for r in runs])
        ip_process = median([r["process_seconds"] for r in runs])
        medians |= {f"interpedia_{key}_pass": ip_pass, f"interpedia_{key}_generate": ip_gen}
        medians[f"interpedia_{key}_process"] = ip_process
        ratios |= {
            f"{key}: saedashboard_run_over_interpedia_generate": sd_run / ip_gen,
            f"{key}: saedashboard_run_over_interpedia_pass": sd_run / ip_pass,
            f"{key}: saedashboard_process_over_interpedia_process": sd_process / ip_process,
            f"{key}: peak_rss_interpedia_over_saedashboard": max(r["peak_rss_mb"] for r in runs) / sd_rss,
        }
        if floor_runs:
            ratios |= {
                f"{key}: pass_over_floor": ip_pass / medians["floor"],
                f"{key}: pass_over_fused_floor": ip_pass / medians["floor_fused"],
            }
    return medians, ratios


def main() -> None:
    """Run everything, interleaved; print the figures and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="rounds: each runs every contender once (medians)")
    parser.add_argument(
        "--sd-batches",
        type=int,
        default=None,
        help="run SAEDashboard on its first N batch files (128 features each) and add the rest at its measured time "
        "per batch file (for a loaded machine: recorded as such)",
    )
    parser.add_argument("--no-floor", action="store_true", help="leave out the forward+encode floor runs")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "interpedia-bench-generate")
    parser.add_argument(
        "--from-log",
        type=Path,
        default=None,
        help="record the whole rounds a run of this script that was cut short logged (its stderr), and run nothing",
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    setup_logging(args.verbose)
    fx = build_fixture(args.work / "fixture")
    sd_python = ensure_saedashboard_venv()
    log.info("fixture: %s tokens, d_sae %s (%s)", fx["n_tokens"], fx["params"]["d_sae"], args.work)

    ip_runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    floor_runs: list[dict[str, Any]] = []
    sd_runs: list[dict[str, Any]] = []
    if args.from_log:
        sd_runs, ip_runs, floor_runs = _rounds_from_log(args.from_log)
        args.repeats = len(sd_runs)
    for round_ in range(0 if args.from_log else args.repeats):
        if not args.no_floor:
            floor_runs.append(_timed(lambda: run_floor(fx)))
            log.info("round %d floor: %s", round_ + 1, floor_runs[-1])
        for mode in MODES:
            out = args.work / f"out-interpedia-{mode}"
            ip_runs[mode].append(_timed(lambda out=out, mode=mode: run_interpedia(fx, out, mode)))
            log.info(
                "round %d interpedia %s: %s",
                round_ + 1,
                mode,
                {k: v for k, v in ip_runs[mode][-1].items() if k != "timings"},
            )
        sd_runs.append(_timed(lambda: run_saedashboard(sd_python, fx, args.work / "out-saedashboard", args.sd_batches)))
        log.info("round %d saedashboard: %s", round_ + 1, sd_runs[-1])

    medians, ratios = _summary(sd_runs, ip_runs, floor_runs)
    every_run = [r for runs in (floor_runs, sd_runs, *ip_runs.values()) for r in runs]
    loads = [r[k] for r in every_run for k in r if k.startswith("load_average")]
    sd_note = (
        f"{sd_runs[0]['batches_run']} of {sd_runs[0]['batches_total']} batch files run, the rest at the measured "
        "time per batch file"
        if sd_runs[0]["batches_run"] < sd_runs[0]["batches_total"]
        else ""
    )
    rows = [
        ["SAEDashboard run() (all features)", f"{medians['saedashboard_run']:.1f}", sd_note],
        ["SAEDashboard whole process", f"{medians['saedashboard_process']:.1f}", sd_note],
    ]
    for mode in MODES:
        key = mode.replace("-", "_")
        rows += [
            [
                f"interpedia {mode}: generate_seconds (pass + dashboards + JSON)",
                f"{medians[f'interpedia_{key}_generate']:.2f}",
                "",
            ],
            [f"interpedia {mode}: pass_seconds (streaming pass)", f"{medians[f'interpedia_{key}_pass']:.2f}", ""],
            [f"interpedia {mode}: whole process (CLI)", f"{medians[f'interpedia_{key}_process']:.2f}", ""],
        ]
    if floor_runs:
        rows += [
            [
                "floor: forward to hook + SAELens encode",
                f"{medians['floor']:.2f}",
                f"forward alone {medians['forward']:.2f}",
            ],
            ["floor: forward to hook + fused encode", f"{medians['floor_fused']:.2f}", ""],
        ]
    print(
        f"\n{fx['n_tokens']:,} tokens, d_sae {fx['params']['d_sae']}; medians of {args.repeats} interleaved rounds; "
        f"1-minute load average {min(loads):.1f}-{max(loads):.1f} during the runs\n"
    )
    print(table(rows, ["what", "seconds", "note"]))
    print()
    print(table([[k, f"{v:.2f}x"] for k, v in ratios.items()], ["ratio", "value"]))
    write_results(
        "generate_vs_saedashboard",
        {
            "parameters": {
                "n_tokens": fx["n_tokens"],
                **fx["params"],
                "repeats": args.repeats,
                "from_log": str(args.from_log) if args.from_log else None,
                "sd_batches": sd_runs[0]["batches_run"],
                "matched_statistics": matched_statistics(),
                "saedashboard_versions": saedashboard_versions(),
                "load_average_1m_range": [min(loads), max(loads)],
            },
            "saedashboard": sd_runs,
            "interpedia": ip_runs,
            "floor": floor_runs,
            "medians": medians,
            "ratios": ratios,
        },
    )


if __name__ == "__main__":
    main()
