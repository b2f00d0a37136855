"""Plumbing the benchmarks share: logging, the command line they ran with, result files, Postgres."""

from __future__ import annotations

import atexit
import datetime as dt
import logging
import os
import platform
import shlex
import statistics
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))

from pgcluster import PostgresCluster  # noqa: E402

log = logging.getLogger("bench")


def setup_logging(verbose: bool = False) -> None:
    """Log to stderr; stdout is kept for the result table."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("alembic", "sqlalchemy"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("TQDM_DISABLE", "1")


def command_line() -> str:
    """The exact command this process was started with, relative to the repository root."""
    exe = Path(sys.executable)
    try:
        exe_s = str(exe.relative_to(ROOT)) if exe.is_relative_to(ROOT) else str(exe)
    except ValueError:
        exe_s = str(exe)
    return shlex.join([exe_s, *sys.argv])


def _commit() -> str | None:
    """The checkout's commit, ``+dirty`` when files differ from it (None outside git)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def environment() -> dict[str, Any]:
    """Where the figures were measured: the machine, its load (1/5/15-minute averages) and the code's commit."""
    return {
        "commit": _commit(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def write_results(name: str, payload: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>.json`` (command, parameters, environment and figures)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    doc = {"benchmark": name, "command": command_line(), "environment": environment(), **payload}
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    log.info("wrote %s", path.relative_to(ROOT))
    return path


def median(values: list[float]) -> float:
    """The median (of repetitions)."""
    return float(statistics.median(values))


def table(rows: list[list[Any]], headers: list[str]) -> str:
    """A plain fixed-width text table."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.rjust(w) if n else c.ljust(w) for n, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


@contextmanager
def postgres() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL 15 + pgvector cluster (fsync off, as in the test suite), removed afterwards."""
    cluster = PostgresCluster(base_dir=Path("/tmp"))
    cluster.start()
    try:
        log.info("postgres %s on port %d", cluster.psql("SHOW server_version").strip(), cluster.port)
        yield cluster
    finally:
        cluster.stop()


class KeptCluster(PostgresCluster):
    """A PostgreSQL cluster in a fixed directory that outlives the bench (for before/after runs on one database).

    The first start runs initdb there; later starts reuse the data. ``stop()`` stops the server and keeps
    the directory (remove it by hand when done).
    """

    def __init__(self, root: Path) -> None:
        super().__init__(base_dir=root.parent)
        self._root = root.resolve()

    def _init_cluster(self) -> None:
        if (self._root / "data" / "PG_VERSION").is_file():
            self._dir = self._socket_dir = self._root
            if not self._atexit_registered:
                atexit.register(self._atexit)
                self._atexit_registered = True
            return
        super()._init_cluster()
        assert self._dir is not None
        made = self._dir
        # initdb ran in a fresh temporary directory next to the root: move it into place.
        made.rename(self._root)
        self._dir = self._socket_dir = self._root

    def start(self) -> None:
        """Start the kept cluster (initdb on the first call)."""
        if self._dir is None:
            self._init_cluster()
        self._start_server()

    def stop(self) -> None:
        """Stop the server; keep its data."""
        self.stop_server(mode="fast")

    def _atexit(self) -> None:
        if os.getpid() == self._owner_pid:
            self.stop_server(mode="fast")

    def database(self, name: str) -> tuple[str, bool]:
        """The URL of database ``name`` and whether it was there already (else it is created)."""
        if self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'").strip() == "1":
            return self.url(name), True
        return self.create_database(name), False


@contextmanager
def kept_postgres(root: Path) -> Iterator[KeptCluster]:
    """A PostgreSQL cluster kept in ``root`` between runs (stopped, not removed, afterwards)."""
    cluster = KeptCluster(root)
    cluster.start()
    try:
        log.info("kept postgres %s in %s on port %d", cluster.psql("SHOW server_version").strip(), root, cluster.port)
        yield cluster
    finally:
        cluster.stop()


def pg_settings(cluster: PostgresCluster) -> dict[str, str]:
    """The server settings that matter for the figures."""
    names = (
        "server_version",
        "shared_buffers",
        "work_mem",
        "maintenance_work_mem",
        "fsync",
        "synchronous_commit",
        "full_page_writes",
        "default_toast_compression",
    )
    return {n: cluster.psql(f"SHOW {n}").strip() for n in names}
