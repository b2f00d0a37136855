"""Throwaway PostgreSQL 15 + pgvector clusters for tests.

Usage::

    with PostgresCluster() as pg:
        url = pg.create_database("interpedia_test")  # postgresql+psycopg://postgres@127.0.0.1:PORT/...

The cluster lives in a fresh temporary directory, listens on a free port on 127.0.0.1 only, uses
trust authentication for the ``postgres`` role and runs with durability turned off (fsync,
synchronous_commit, full_page_writes) because its data is thrown away. PostgreSQL refuses to run
as root, so under root the server runs as the ``postgres`` system user.

Only the standard library is used; the server tools (initdb, pg_ctl, psql) come from
``/usr/lib/postgresql/15/bin`` and are installed, with pgvector, by ``scripts/install-system.sh``.
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["PostgresCluster", "find_bindir"]

PG_MAJOR = 15
DEFAULT_BINDIR = Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin")
SUPERUSER = "postgres"
HOST = "127.0.0.1"
_FIX = "run scripts/install-system.sh (as root) to install PostgreSQL 15 and pgvector"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# sun_path is 108 bytes; keep the socket path (dir + "/.s.PGSQL.NNNNN") safely below it.
_MAX_SOCKET_DIR_LEN = 80
_START_ATTEMPTS = 3
_START_TIMEOUT_S = 60


def find_bindir() -> Path:
    """Return the directory holding PostgreSQL 15's initdb and pg_ctl, or raise RuntimeError."""
    if (DEFAULT_BINDIR / "initdb").is_file() and (DEFAULT_BINDIR / "pg_ctl").is_file():
        return DEFAULT_BINDIR
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=30
            ).stdout.strip()
        except (subprocess.SubprocessError, OSError):
            out = ""
        if out and (Path(out) / "initdb").is_file() and (Path(out) / "pg_ctl").is_file():
            return Path(out)
    raise RuntimeError(
        f"PostgreSQL {PG_MAJOR} server binaries not found: no initdb/pg_ctl in {DEFAULT_BINDIR} "
        f"(nor in `pg_config --bindir`). Fix: {_FIX}."
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class PostgresCluster:
    """A throwaway PostgreSQL cluster on 127.0.0.1, removed by ``stop()`` or at interpreter exit."""

    def __init__(self, base_dir: Path | None = None) -> None:
        """Prepare (but do not start) a cluster whose temp directory is created inside base_dir."""
        self._parent_dir = base_dir
        self._bindir: Path | None = None
        self._dir: Path | None = None
        self._socket_dir: Path | None = None
        self._port: int | None = None
        self._running = False
        self._owner_pid = os.getpid()
        self._atexit_registered = False
        self._run_as = SUPERUSER if os.geteuid() == 0 else None

    # -- public API ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """TCP port the server listens on (fixed for the cluster's lifetime, also over restarts)."""
        if self._port is None:
            raise RuntimeError("PostgresCluster has not been started")
        return self._port

    @property
    def host(self) -> str:
        """Host the server listens on."""
        return HOST

    @property
    def running(self) -> bool:
        """Whether the server process is (believed to be) running."""
        return self._running

    @property
    def data_dir(self) -> Path:
        """The cluster's PGDATA directory."""
        return self._base() / "data"

    @property
    def log_path(self) -> Path:
        """The server log file."""
        return self._base() / "postgres.log"

    def url(self, name: str = "postgres") -> str:
        """Return the SQLAlchemy URL (psycopg 3 driver) of database ``name`` in this cluster."""
        return f"postgresql+psycopg://{SUPERUSER}@{HOST}:{self.port}/{name}"

    def dsn(self, name: str = "postgres") -> str:
        """Return a libpq connection string for database ``name`` (for psycopg.connect)."""
        return f"host={HOST} port={self.port} user={SUPERUSER} dbname={name}"

    def start(self) -> None:
        """Create the cluster on first call (initdb), then start the server and wait until ready."""
        if self._running:
            return
        if self._dir is not None:
            self._start_server()
            return
        try:
            self._init_cluster()
            self._start_server()
        except BaseException:
            self._remove_dirs()
            raise

    def stop(self) -> None:
        """Stop the server immediately and delete the cluster's directory (idempotent)."""
        try:
            if self._running:
                self.stop_server(mode="immediate")
        finally:
            self._remove_dirs()
            if self._atexit_registered:
                atexit.unregister(self._atexit)
                self._atexit_registered = False

    def stop_server(self, mode: str = "fast") -> None:
        """Stop the server but keep its data (``mode``: smart, fast or immediate); start() resumes."""
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"unknown pg_ctl stop mode {mode!r}")
        if not self._running:
            return
        result = self._run_server_tool(
            ["pg_ctl", "stop", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "60"], check=False
        )
        # A server that already died (e.g. killed by a fault test) is fine: it is stopped.
        if result.returncode != 0 and self._postmaster_alive():
            raise RuntimeError(f"pg_ctl stop failed:\n{result.stdout}{result.stderr}")
        self._running = False

    def restart(self, mode: str = "fast") -> None:
        """Stop the server (``mode`` as for stop_server) and start it again on the same port."""
        self.stop_server(mode=mode)
        self._start_server()

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL through psql (unaligned, tuples only) and return its stdout; raise on error."""
        psql = self._bin("psql")
        env = self._client_env()
        cmd = [str(psql), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
        cmd += ["-h", HOST, "-p", str(self.port), "-U", SUPERUSER, "-d", database, "-c", sql]
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"psql failed ({database}): {sql!r}\n{result.stderr.strip()}")
        return result.stdout

    def create_database(self, name: str) -> str:
        """Create database ``name`` with the pgvector extension and return its SQLAlchemy URL."""
        if not _IDENTIFIER.match(name):
            raise ValueError(f"database name must be a plain identifier, got {name!r}")
        if not self._running:
            raise RuntimeError("PostgresCluster is not running; call start() first")
        available = self.psql("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
        if available.strip() != "1":
            raise RuntimeError(
                f"pgvector is not installed for PostgreSQL {PG_MAJOR} (no vector.control in the "
                f"server's extension directory). Fix: {_FIX}."
            )
        self.psql(f'CREATE DATABASE "{name}"')
        self.psql("CREATE EXTENSION IF NOT EXISTS vector", database=name)
        return self.url(name)

    def __enter__(self) -> PostgresCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        return f"<PostgresCluster {state} port={self._port} dir={self._dir}>"

    # -- internals -----------------------------------------------------------------------------

    def _base(self) -> Path:
        if self._dir is None:
            raise RuntimeError("PostgresCluster has not been started")
        return self._dir

    def _bin(self, name: str) -> Path:
        if self._bindir is None:
            self._bindir = find_bindir()
        path = self._bindir / name
        if path.is_file():
            return path
        found = shutil.which(name)
        if found is None:
            raise RuntimeError(f"PostgreSQL binary {name!r} not found in {self._bindir}. Fix: {_FIX}.")
        return Path(found)

    def _init_cluster(self) -> None:
        self._bindir = find_bindir()
        if self._run_as is not None:
            _ensure_system_user(self._run_as)
        parent = None if self._parent_dir is None else str(self._parent_dir)
        if self._parent_dir is not None:
            self._parent_dir.mkdir(parents=True, exist_ok=True)
        base = Path(tempfile.mkdtemp(prefix="interpedia-pg-", dir=parent))
        self._dir = base
        if not self._atexit_registered:
            atexit.register(self._atexit)
            self._atexit_registered = True
        if len(str(base)) <= _MAX_SOCKET_DIR_LEN:
            self._socket_dir = base
        else:
            self._socket_dir = Path(tempfile.mkdtemp(prefix="interpedia-pgsock-"))
        if self._run_as is not None:
            user = pwd.getpwnam(self._run_as)
            os.chown(base, user.pw_uid, user.pw_gid)
            os.chown(self._socket_dir, user.pw_uid, user.pw_gid)
            self._check_accessible(base)
        result = self._run_server_tool(
            [
                "initdb",
                "-D",
                str(self.data_dir),
                "-A",
                "trust",
                "-U",
                SUPERUSER,
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{result.stdout}{result.stderr}")

    def _check_accessible(self, base: Path) -> None:
        # mkdtemp inside e.g. /root/... is unreachable for the postgres user; say so plainly.
        probe = ["runuser", "-u", str(self._run_as), "--", "test", "-w", str(base)]
        if subprocess.run(probe, capture_output=True, timeout=30).returncode != 0:
            raise RuntimeError(
                f"{base} is not writable by the {self._run_as!r} user that runs PostgreSQL "
                f"(is a parent directory private to root?); pass a base_dir such as /tmp"
            )

    def _start_server(self) -> None:
        first_start = self._port is None
        attempts = _START_ATTEMPTS if first_start else 1
        last_error = ""
        for _ in range(attempts):
            if first_start:
                self._port = _free_port()
            options = (
                f"-c listen_addresses={HOST} -p {self._port} -k {self._socket_dir} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            result = self._run_server_tool(
                [
                    "pg_ctl",
                    "start",
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_path),
                    "-w",
                    "-t",
                    str(_START_TIMEOUT_S),
                    "-o",
                    options,
                ],
                check=False,
            )
            if result.returncode == 0 and self._wait_ready():
                self._running = True
                return
            last_error = f"{result.stdout}{result.stderr}\n--- server log ---\n{self._log_tail()}"
            # Stop anything half-started before retrying on another port.
            self._run_server_tool(["pg_ctl", "stop", "-D", str(self.data_dir), "-m", "immediate"], check=False)
            if "already in use" not in last_error:
                break
        raise RuntimeError(f"PostgreSQL did not start (port {self._port}):\n{last_error}")

    def _wait_ready(self) -> bool:
        pg_isready = self._bin("pg_isready")
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            ready = subprocess.run(
                [str(pg_isready), "-q", "-h", HOST, "-p", str(self._port), "-U", SUPERUSER],
                env=self._client_env(),
                timeout=30,
            )
            if ready.returncode == 0:
                return True
            if ready.returncode == 2 and not self._postmaster_alive():  # 2: no response
                return False
            time.sleep(0.05)
        return False

    def _postmaster_alive(self) -> bool:
        pid_file = self.data_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def _client_env(self) -> dict[str, str]:
        # Keep the caller's PG* settings (PGPASSWORD, PGSSLMODE, ...) from leaking into our calls.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["PGCONNECT_TIMEOUT"] = "10"
        return env

    def _run_server_tool(self, argv: list[str], *, check: bool) -> subprocess.CompletedProcess[str]:
        cmd = [str(self._bin(argv[0])), *argv[1:]]
        if self._run_as is not None:
            cmd = ["runuser", "-u", self._run_as, "--", *cmd]
        env = self._client_env()
        env["LC_ALL"] = "C"
        # Run from the cluster directory: the postgres user may not be able to enter our cwd.
        # pg_ctl start leaves the server running with its stdout/stderr -> log file; capture only
        # the tool's own output (the server inherits no pipe because of -l).
        return subprocess.run(
            cmd,
            cwd=str(self._base()),
            env=env,
            capture_output=True,
            text=True,
            check=check,
            timeout=_START_TIMEOUT_S + 30,
            stdin=subprocess.DEVNULL,
        )

    def _remove_dirs(self) -> None:
        for path in (self._socket_dir, self._dir):
            if path is not None:
                shutil.rmtree(path, ignore_errors=True)
        self._dir = None
        self._socket_dir = None
        self._port = None
        self._running = False

    def _atexit(self) -> None:
        # A forked child inherits atexit handlers; only the process that started us tears down.
        if os.getpid() != self._owner_pid:
            return
        try:
            self.stop()
        except Exception:  # best effort at interpreter exit
            self._remove_dirs()


def _ensure_system_user(name: str) -> None:
    try:
        pwd.getpwnam(name)
        return
    except KeyError:
        pass
    if shutil.which("useradd") is None:
        raise RuntimeError(f"running as root but system user {name!r} is missing and no useradd")
    subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=True,
        capture_output=True,
        timeout=30,
    )
