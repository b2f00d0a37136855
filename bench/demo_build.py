"""Time the full demo build (``interpedia demo --no-serve``, what ``make demo`` runs) from an empty home.

Records the wall time, the CPU time of the build process (all threads), the load on the machine while it ran
(the 1-minute load average, sampled every 10 s) and each step's wall and CPU seconds from its ``step.json``.

The machine is shared, so wall time under load says little about the idle machine. Two estimates go with it:

- ``idle_estimate_s``: wall x (the demo-model training step on the idle machine, 0.44 s) / (the same step
  measured just before and after the build), as in ``bench/demo_dictionaries.py``;
- ``cpu_s``: an idle machine runs the build in at most its CPU seconds plus its waits on I/O (a step that keeps
  both cores busy takes about half), so ``cpu_s`` < 600 says the idle build stays within 10 minutes unless it
  waits on I/O for long.

``python bench/demo_build.py --home /tmp/demo-build`` (the home must not exist). Results:
``bench/results/demo_build.json``. ``--reuse corpus tokenizer rows model --reference-home H`` copies those built
steps from H first (the build then starts at the SAE; the result names what it reused and their recorded times).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import ROOT, setup_logging, write_results
from demo_dictionaries import IDLE_REFERENCE_STEP_S, reference_step_s

from interpedia.generate.model import HookedModel


def _sample_load(samples: list[float], stop: threading.Event) -> None:
    while not stop.wait(10):
        samples.append(os.getloadavg()[0])


def _reference(home: Path) -> float:
    demo = home / "demo"
    model = HookedModel.load(str(demo / "model")).model
    return reference_step_s(model, np.load(demo / "rows" / "rows.npy"))


def _steps(home: Path, skip: Any = ()) -> dict[str, dict[str, Any]]:
    """Each built step's wall and CPU seconds, as its ``step.json`` recorded them."""
    steps = {}
    for marker in sorted((home / "demo").glob("*/step.json"), key=lambda p: p.stat().st_mtime):
        if marker.parent.name not in skip:
            stats = json.loads(marker.read_text())["stats"]
            steps[marker.parent.name] = {k: stats.get(k) for k in ("seconds", "cpu_seconds")}
    return steps


def collect(home: Path, results: str) -> None:
    """Record the steps a build (still running, or stopped) has finished so far: ``"complete": false``."""
    write_results(
        results, {"complete": False, "home": str(home), "load_1min_now": os.getloadavg()[0], "steps": _steps(home)}
    )


def main() -> None:
    """Build the demo from an empty home and record how long it took."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, required=True, help="an INTERPEDIA_HOME that does not exist yet")
    parser.add_argument("--reference-home", type=Path, help="a built demo to time the reference step before")
    parser.add_argument("--reuse", nargs="*", default=[], help="steps to copy from --reference-home first")
    parser.add_argument("--results", default="demo_build")
    parser.add_argument("--collect", action="store_true", help="only record the steps --home has finished so far")
    args = parser.parse_args()
    setup_logging()
    if args.collect:
        collect(args.home, args.results)
        return
    if args.home.exists():
        raise SystemExit(f"{args.home} exists: the build must start from an empty home")
    ref_before = _reference(args.reference_home) if args.reference_home else None
    reused = {}
    for step in args.reuse:
        shutil.copytree(args.reference_home / "demo" / step, args.home / "demo" / step)
        stats = json.loads((args.home / "demo" / step / "step.json").read_text())["stats"]
        reused[step] = {k: stats.get(k) for k in ("seconds", "cpu_seconds")}
    env = {**os.environ, "INTERPEDIA_HOME": str(args.home), "INTERPEDIA_DATABASE_URL": ""}
    load_before = os.getloadavg()[0]
    samples: list[float] = []
    stop = threading.Event()
    sampler = threading.Thread(target=_sample_load, args=(samples, stop), daemon=True)
    sampler.start()
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "interpedia.cli", "demo", "--no-serve"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    stop.set()
    if done.returncode:
        raise SystemExit(f"the build failed ({done.returncode}):\n{done.stderr[-4000:]}")
    ref_after = _reference(args.home)
    refs = [r for r in (ref_before, ref_after) if r is not None]
    ref = sum(refs) / len(refs)
    steps = _steps(args.home, skip=reused)
    result = {
        "complete": True,
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 1),
        "load_1min": {
            "before": round(load_before, 2),
            "mean": round(float(np.mean(samples)), 2) if samples else None,
            "max": round(max(samples), 2) if samples else None,
        },
        "reference_step_s": [round(r, 3) for r in refs],
        "idle_reference_step_s": IDLE_REFERENCE_STEP_S,
        "idle_estimate_s": round(wall * IDLE_REFERENCE_STEP_S / ref, 1),
        "steps": steps,
        "reused_steps": reused,
        "summary": [line for line in done.stdout.splitlines() if not line.startswith("  ")],
    }
    write_results(args.results, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
