"""Import throughput: interpedia's importer vs Neuronpedia's own import method, on the same export files.

One synthetic Neuronpedia export (bench/synthetic.py) is imported, end to end (reading the gz files
included), several times each:

- ``interpedia-sqlite``: ``interpedia.ingest.import_path`` into a fresh, migrated SQLite file;
- ``interpedia-postgres``: the same into a fresh database cloned from a migrated template;
- ``neuronpedia-postgres``: Neuronpedia's admin importer reproduced (bench/npbaseline.py: whole-file
  reads, 65,000-line ``jsonb_to_recordset`` inserts, ``work_mem=2GB``) into its Prisma schema.

Both Postgres methods run on the same throwaway cluster in the same process, interleaved, each after a
``CHECKPOINT``; schema creation and migrations are outside the timings. Medians are reported, and the
ratio of interpedia's Postgres throughput to Neuronpedia's, by wall time and by CPU seconds (client
process plus the Postgres cluster's processes, read from /proc): on a shared machine the wall times
include waiting for a CPU, so the load average is sampled around every run and reported. ``--profile``
adds one cProfile'd interpedia Postgres import and reports where the time goes. ``--before DIR``
adds ``interpedia-before-postgres``: the same import by the code checked out in DIR (e.g. ``git
worktree add /tmp/before <commit>``), run in a child process that times itself, so that the
speed-up of a change is measured in the same run as the rest. ``--saedashboard``
also times importing the same features from SAEDashboard ``batch-N.json`` files (no Neuronpedia
counterpart: its flow converts them to the export layout first).

    .venv/bin/python bench/import_throughput.py [--small] [--n-features N] [--reps R] [--saedashboard] [--profile]
        [--before DIR]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

import npbaseline  # noqa: E402
from _common import (  # noqa: E402
    RESULTS_DIR,
    command_line,
    median,
    pg_settings,
    postgres,
    setup_logging,
    table,
    write_results,
)
from pgcluster import PostgresCluster  # noqa: E402
from synthetic import ExportInfo, SyntheticConfig, build_vocab, write_np_export, write_saedashboard  # noqa: E402

from interpedia.db import make_engine, make_sessionmaker, migrate  # noqa: E402
from interpedia.ingest import import_path  # noqa: E402
from interpedia.store.vocab import vocab_cache  # noqa: E402

log = logging.getLogger("bench.import_throughput")

TARGET_RATIO = 5.0
METHODS = ("interpedia-sqlite", "interpedia-postgres", "neuronpedia-postgres")
# With --saedashboard: the same features as SAEDashboard batch-N.json files (Neuronpedia has no importer
# for these: its flow converts them to the export layout first), so these have no Neuronpedia ratio.
SD_METHODS = ("interpedia-sqlite-saedashboard", "interpedia-postgres-saedashboard")
# Functions whose cumulative time tells where an interpedia import goes (name -> label).
_PHASES = {
    "_np_tables": "read + gunzip + parse activation files (Arrow, _np_tables)",
    "_np_batch": "check examples + columns (_np_batch)",
    "iter_jsonl": "read + gunzip + orjson.loads (iter_jsonl: features, validating reader)",
    "feature_stats": "validate feature rows (feature_stats)",
    "ensure_tokens": "vocabulary step (ensure_tokens)",
    "write_features": "write batch (write_features)",
    "_upsert_features": "  upsert features",
    "_replace_activations": "  replace activations",
    "encode_activations": "    encode_activations",
    "_copy_rows": "    COPY rows (_copy_rows)",
    "commit": "commit",
}


class Timing:
    """Wall, client-CPU and server-CPU seconds of one run."""

    def __init__(self, wall: float, cpu: float, features: int, activations: int, server_cpu: float = 0.0) -> None:
        self.wall = wall
        self.cpu = cpu
        self.server_cpu = server_cpu
        self.features = features
        self.activations = activations


_SERVER: list[PostgresCluster] = []


def _proc_times(pid: int) -> tuple[int, int, int]:
    """(parent pid, own utime+stime, reaped children's cutime+cstime) in clock ticks."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def server_cpu_seconds() -> float:
    """CPU seconds the Postgres cluster has used: the postmaster, its exited children and its live ones."""
    if not _SERVER:
        return 0.0
    postmaster = int((_SERVER[0].data_dir / "postmaster.pid").read_text().split()[0])
    _, own, reaped = _proc_times(postmaster)
    total = own + reaped
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid, child_own, child_reaped = _proc_times(int(entry))
            except (OSError, IndexError, ValueError):
                continue
            if ppid == postmaster:
                total += child_own + child_reaped
    return total / os.sysconf("SC_CLK_TCK")


# One-minute load averages sampled around every timed run: on a shared machine they say how much of
# the wall time was waiting for a CPU.
_LOAD: list[float] = []


def _timed(fn: Callable[[], None]) -> tuple[float, float, float]:
    _LOAD.append(os.getloadavg()[0])
    server0, cpu0, wall0 = server_cpu_seconds(), time.process_time(), time.perf_counter()
    fn()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    _LOAD.append(os.getloadavg()[0])
    return wall, cpu, server_cpu_seconds() - server0


def _checkpoint(pg: PostgresCluster) -> None:
    pg.psql("CHECKPOINT")


def _count(dsn: str, sql: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql).fetchone()
        return int(row[0]) if row else 0


def run_ours_sqlite(workdir: Path, path: Path, rep: int, batch_size: int) -> Timing:
    """One import into a fresh SQLite file."""
    db = workdir / f"ours-{rep}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{db}"
    migrate(url)
    vocab_cache.clear()
    engine = make_engine(url)
    try:
        factory = make_sessionmaker(engine)
        wall, cpu, _ = _timed(lambda: import_path(path, factory, batch_size=batch_size))
        with engine.connect() as conn:
            n_acts = conn.exec_driver_sql("SELECT count(*) FROM activations").scalar_one()
            n_feats = conn.exec_driver_sql("SELECT count(*) FROM features").scalar_one()
    finally:
        engine.dispose()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    return Timing(wall, cpu, int(n_feats), int(n_acts))


def run_ours_postgres(
    pg: PostgresCluster, path: Path, rep: int, batch_size: int, profile: cProfile.Profile | None = None
) -> Timing:
    """One import into a fresh database cloned from the migrated template."""
    name = f"ours_{rep}"
    pg.psql(f'CREATE DATABASE "{name}" TEMPLATE ours_template')
    vocab_cache.clear()
    engine = make_engine(pg.url(name))
    try:
        factory = make_sessionmaker(engine)
        _checkpoint(pg)
        if profile is not None:
            profile.enable()
        try:
            wall, cpu, server = _timed(lambda: import_path(path, factory, batch_size=batch_size))
        finally:
            if profile is not None:
                profile.disable()
    finally:
        engine.dispose()
    timing = Timing(
        wall,
        cpu,
        _count(pg.dsn(name), "SELECT count(*) FROM features"),
        _count(pg.dsn(name), "SELECT count(*) FROM activations"),
        server,
    )
    pg.psql(f'DROP DATABASE "{name}"')
    return timing


_BEFORE_SCRIPT = """
import json, sys, time
from pathlib import Path
from interpedia.db import make_engine, make_sessionmaker
from interpedia.ingest import import_path
engine = make_engine(sys.argv[1])
factory = make_sessionmaker(engine)
cpu0, wall0 = time.process_time(), time.perf_counter()
import_path(Path(sys.argv[2]), factory, batch_size=int(sys.argv[3]))
print(json.dumps({"wall": time.perf_counter() - wall0, "cpu": time.process_time() - cpu0}))
"""


def run_before(pg: PostgresCluster, before: Path, path: Path, rep: int, batch_size: int) -> Timing:
    """One import by the earlier code in ``before``, in a child process timing only the import itself."""
    name = f"before_{rep}"
    pg.psql(f'CREATE DATABASE "{name}" TEMPLATE ours_template')
    _checkpoint(pg)
    env = {**os.environ, "PYTHONPATH": str(before)}
    _LOAD.append(os.getloadavg()[0])
    server0 = server_cpu_seconds()
    out = subprocess.run(
        [sys.executable, "-c", _BEFORE_SCRIPT, pg.url(name), str(path), str(batch_size)],
        env=env,
        cwd=before,
        capture_output=True,
        text=True,
        check=True,
    )
    server = server_cpu_seconds() - server0
    _LOAD.append(os.getloadavg()[0])
    own = json.loads(out.stdout.strip().splitlines()[-1])
    timing = Timing(
        own["wall"],
        own["cpu"],
        _count(pg.dsn(name), "SELECT count(*) FROM features"),
        _count(pg.dsn(name), "SELECT count(*) FROM activations"),
        server,
    )
    pg.psql(f'DROP DATABASE "{name}"')
    return timing


def run_theirs(pg: PostgresCluster, export: ExportInfo, rep: int) -> Timing:
    """One import with Neuronpedia's method into a fresh database with its schema."""
    name = f"theirs_{rep}"
    pg.psql(f'CREATE DATABASE "{name}"')
    dsn = pg.dsn(name)
    npbaseline.create_schema(dsn)
    _checkpoint(pg)
    wall, cpu, server = _timed(lambda: npbaseline.import_source_dir(dsn, export.source_dir))
    timing = Timing(
        wall,
        cpu,
        _count(dsn, 'SELECT count(*) FROM "Neuron"'),
        _count(dsn, 'SELECT count(*) FROM "Activation"'),
        server,
    )
    pg.psql(f'DROP DATABASE "{name}"')
    return timing


def profile_summary(profile: cProfile.Profile, wall: float) -> dict[str, Any]:
    """Cumulative seconds of the phases in _PHASES and the top functions by own time."""
    stats = pstats.Stats(profile)
    phases: dict[str, float] = {}
    for (_file, _line, func), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if func in _PHASES and (func != "commit" or "sqlalchemy" in _file and "session.py" in _file):
            phases[_PHASES[func]] = round(phases.get(_PHASES[func], 0.0) + ct, 3)
    buf = io.StringIO()
    pstats.Stats(profile, stream=buf).sort_stats("tottime").print_stats(25)
    return {"wall_seconds": round(wall, 3), "phases_cumulative_seconds": phases, "top_tottime": buf.getvalue()}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="quick run: 200 features, 2 repetitions")
    parser.add_argument("--n-features", type=int, default=None, help="features to generate (default 1000)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per method (default 3)")
    parser.add_argument("--batch-size", type=int, default=256, help="interpedia import batch size (features)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-sqlite", action="store_true", help="skip the SQLite runs")
    parser.add_argument(
        "--saedashboard", action="store_true", help="also import the same features from SAEDashboard batch-N.json files"
    )
    parser.add_argument("--profile", action="store_true", help="add one cProfile'd interpedia Postgres import")
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        help="a checkout of earlier code: also time its Postgres import (interpedia-before-postgres)",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="where to write the export (default: temp)")
    parser.add_argument("--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write bench/results/import_throughput.json."""
    args = parse_args(argv)
    setup_logging(args.verbose)
    n_features = args.n_features or (200 if args.small else 1000)
    reps = args.reps or (2 if args.small else 3)
    cfg = SyntheticConfig(n_features=n_features, seed=args.seed)
    params = {
        "small": args.small,
        "n_features": n_features,
        "reps": reps,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "sqlite": not args.no_sqlite,
        "profile": args.profile,
        "before": str(args.before) if args.before else None,
        "neuronpedia_chunk_lines": npbaseline.CHUNK_LINES,
        "neuronpedia_work_mem": npbaseline.WORK_MEM,
        "synthetic": cfg.to_dict(),
    }
    log.info("command: %s", command_line())
    log.info("parameters: %s", params)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="interpedia-bench-"))
    methods = [
        m
        for m in METHODS
        + (SD_METHODS if args.saedashboard else ())
        + (("interpedia-before-postgres",) if args.before else ())
        if not (args.no_sqlite and "-sqlite" in m)
    ]
    runs: dict[str, list[Timing]] = {m: [] for m in methods}
    profiled: dict[str, Any] | None = None
    try:
        vocab = build_vocab(cfg)
        export = write_np_export(cfg, workdir / "np-export", vocab=vocab)
        sd_dir = workdir / "saedashboard"
        if args.saedashboard:
            write_saedashboard(cfg, sd_dir, vocab=vocab)
        with postgres() as pg:
            _SERVER[:] = [pg]
            settings = pg_settings(pg)
            migrate(pg.create_database("ours_template"))
            for rep in range(reps):
                for method in methods:
                    path = sd_dir if method.endswith("-saedashboard") else export.root
                    if method == "interpedia-before-postgres":
                        timing = run_before(pg, args.before, path, rep, args.batch_size)
                    elif method.startswith("interpedia-sqlite"):
                        timing = run_ours_sqlite(workdir, path, rep, args.batch_size)
                    elif method.startswith("interpedia-postgres"):
                        timing = run_ours_postgres(pg, path, rep, args.batch_size)
                    else:
                        timing = run_theirs(pg, export, rep)
                    if (timing.features, timing.activations) != (export.n_features, export.n_activations):
                        log.error(
                            "%s imported %d features / %d activations, expected %d / %d",
                            method,
                            timing.features,
                            timing.activations,
                            export.n_features,
                            export.n_activations,
                        )
                        return 1
                    runs[method].append(timing)
                    log.info(
                        "rep %d %-32s %6.2fs wall %6.2fs client cpu %6.2fs server cpu %8.0f activations/s",
                        rep,
                        method,
                        timing.wall,
                        timing.cpu,
                        timing.server_cpu,
                        timing.activations / timing.wall,
                    )
            if args.profile:
                RESULTS_DIR.mkdir(parents=True, exist_ok=True)
                profile = cProfile.Profile()
                timing = run_ours_postgres(pg, export.root, reps, args.batch_size, profile=profile)
                profiled = profile_summary(profile, timing.wall)
                (RESULTS_DIR / "import_throughput_profile.txt").write_text(profiled["top_tottime"])
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    results: dict[str, Any] = {}
    for method, timings in runs.items():
        wall = median([t.wall for t in timings])
        results[method] = {
            "wall_seconds": [round(t.wall, 3) for t in timings],
            "client_cpu_seconds": [round(t.cpu, 3) for t in timings],
            "median_wall_seconds": round(wall, 3),
            "server_cpu_seconds": [round(t.server_cpu, 3) for t in timings],
            "median_client_cpu_seconds": round(median([t.cpu for t in timings]), 3),
            "median_server_cpu_seconds": round(median([t.server_cpu for t in timings]), 3),
            "median_total_cpu_seconds": round(median([t.cpu + t.server_cpu for t in timings]), 3),
            "features_per_second": round(export.n_features / wall, 1),
            "activations_per_second": round(export.n_activations / wall, 1),
        }
    theirs = results["neuronpedia-postgres"]["median_wall_seconds"]
    ratios = {
        m: round(theirs / results[m]["median_wall_seconds"], 2)
        for m in methods
        if m != "neuronpedia-postgres" and m not in SD_METHODS
    }
    theirs_cpu = results["neuronpedia-postgres"]["median_total_cpu_seconds"]
    cpu_ratios = {
        m: round(theirs_cpu / results[m]["median_total_cpu_seconds"], 2)
        for m in methods
        if m.endswith("-postgres") and m != "neuronpedia-postgres"
    }
    speedup: dict[str, float] = {}
    if args.before:
        before, after = results["interpedia-before-postgres"], results["interpedia-postgres"]
        speedup = {
            "wall": round(before["median_wall_seconds"] / after["median_wall_seconds"], 2),
            "total_cpu": round(before["median_total_cpu_seconds"] / after["median_total_cpu_seconds"], 2),
        }
    figures = {
        "speedup_over_before": speedup,
        "n_features": export.n_features,
        "n_activations": export.n_activations,
        "export": export.to_dict(),
        "methods": results,
        "ratio_throughput_ours_over_neuronpedia": ratios,
        "ratio_total_cpu_neuronpedia_over_ours": cpu_ratios,
        "target_ratio": TARGET_RATIO,
        "meets_target": ratios["interpedia-postgres"] >= TARGET_RATIO,
        "postgres": settings,
        "load_average_after": os.getloadavg(),
        "load_average_1min_during_runs": {
            "min": min(_LOAD),
            "median": round(median(_LOAD), 2),
            "max": max(_LOAD),
            "samples": len(_LOAD),
        },
    }
    if profiled is not None:
        figures["profile"] = {k: v for k, v in profiled.items() if k != "top_tottime"}
    write_results("import_throughput", {"parameters": params, "figures": figures})

    rows = [
        [
            m,
            results[m]["median_wall_seconds"],
            results[m]["median_client_cpu_seconds"],
            results[m]["median_server_cpu_seconds"] if "-postgres" in m else "-",
            results[m]["features_per_second"],
            results[m]["activations_per_second"],
            ratios.get(m, 1.0 if m == "neuronpedia-postgres" else "-"),
            cpu_ratios.get(m, 1.0 if m == "neuronpedia-postgres" else "-"),
        ]
        for m in methods
    ]
    print(f"command: {command_line()}")
    print(
        f"parameters: {export.n_features} features, {export.n_activations} activations x {cfg.n_tokens} tokens "
        f"({export.gz_bytes / 1e6:.1f} MB gz), {reps} repetitions, interpedia batch size {args.batch_size}, "
        f"Neuronpedia chunk {npbaseline.CHUNK_LINES} lines; Postgres {settings['server_version']}"
    )
    print("import throughput, medians (end to end, gz reading included)")
    print(
        table(
            rows,
            [
                "method",
                "wall s",
                "client cpu s",
                "server cpu s",
                "features/s",
                "activations/s",
                "x NP (wall)",
                "x NP (cpu)",
            ],
        )
    )
    verdict = "meets" if figures["meets_target"] else "MISSES"
    print(
        f"target: interpedia-postgres >= {TARGET_RATIO:g}x Neuronpedia's throughput -> {verdict} "
        f"({ratios['interpedia-postgres']}x)"
    )
    print(
        f"load average (1 min) around the timed runs: min {min(_LOAD):.2f}, median {median(_LOAD):.2f}, "
        f"max {max(_LOAD):.2f} on {os.cpu_count()} cpus (wall times include waiting for a CPU; "
        "cpu = client + Postgres server CPU seconds)"
    )
    if speedup:
        print(
            f"interpedia-postgres over interpedia-before-postgres ({args.before}): {speedup['wall']}x wall, "
            f"{speedup['total_cpu']}x total cpu"
        )
    if profiled is not None:
        print(
            f"profile of one interpedia-postgres import ({profiled['wall_seconds']}s under cProfile), "
            "cumulative seconds:"
        )
        for phase, secs in sorted(profiled["phases_cumulative_seconds"].items(), key=lambda kv: -kv[1]):
            print(f"  {secs:8.3f}  {phase}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
