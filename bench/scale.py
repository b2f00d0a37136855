"""Scale bench: a large synthetic database built through the real importer, then load and latency figures.

What is built (defaults: Postgres, 1,000,000 features across 40 sources; ``--backend sqlite`` defaults
to 100,000): a Neuronpedia export (reference/neuronpedia.md §7.1) of ``gpt2-small`` with sources
``0-res-scale`` .. ``39-res-scale``, written under ``--work`` and imported with
``interpedia.ingest.import_path`` (the code ``interpedia import`` runs, called per source directory):

- every feature has a full dashboard row (50-bin histograms, 10+10 logits, alignment lists) and one
  explanation with a synthetic, normalised 384-dim embedding (topic clusters on a low-rank subspace,
  as in bench/explanation_search.py) and a description made of varied words;
- ``--with-activations`` of them (default 20%, spread evenly over the sources) have 45 examples x 128
  tokens (20 top + 5 quantile intervals x 5) over a GPT-2-like 50k vocabulary, ~6% non-zero values.

To keep generating the input from dominating the run, ``--pool`` (default 1,000) distinct dashboards
are made with bench/synthetic.py and feature ``i`` of a source takes dashboard ``i % pool`` with its
own index and source; nothing in the database deduplicates them, so storage and query costs are
those of distinct data. The input is generated before the timed import (and kept for reruns with
``--keep``).

On Postgres the migration's HNSW index on explanation embeddings is dropped before the import and
built afterwards with ``interpedia.search.maintenance.reindex_postgres`` (``interpedia embed
--reindex``, m=16, ef_construction=100): building once is how a bulk load should be done, and its
time is reported separately. Then, against ``interpedia serve`` started as a subprocess:

- feature API ``GET /api/feature/{model}/{source}/{index}`` on uniformly random features of all
  sources, ``--connections`` (32) concurrent connections for ``--duration`` (60) s, with ``wrk`` and a
  Lua script choosing the URLs; p50/p99 and requests/s from wrk's own latency histogram;
- the browser page ``/{model}/{source}/{index}`` (HTML), ``--page-requests`` one at a time, on random
  features with examples and on random ones without: p50/p95;
- explanation search ``POST /api/explanation/search-all`` with ``--search-queries`` varied queries one
  at a time (the query is embedded by the local all-MiniLM-L6-v2 in the server): p50/p95.

The server runs with ``INTERPEDIA_RATE_LIMIT_ENABLED=false``: all the load comes from one address.

Results (written after every phase, so an interrupted run keeps what it measured):
``bench/results/scale_<backend>_<features>.json``.

    .venv/bin/python bench/scale.py [--backend postgres|sqlite] [--features N] [--with-activations M]
        [--sources 40] [--duration 60] [--connections 32] [--work DIR] [--keep]
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    ROOT,
    command_line,
    environment,
    kept_postgres,
    pg_settings,
    postgres,
    setup_logging,
    table,
)
from explanation_search import synthetic as synthetic_vectors  # noqa: E402
from synthetic import SyntheticConfig, build_vocab, catalogue_rows, make_feature  # noqa: E402

from interpedia.config import Settings  # noqa: E402
from interpedia.db import make_engine, make_sessionmaker, migrate  # noqa: E402
from interpedia.ingest import import_path  # noqa: E402
from interpedia.search.index import HNSW_INDEX  # noqa: E402
from interpedia.store.vocab import vocab_cache  # noqa: E402
from interpedia.store.writer import WriteCounts  # noqa: E402

log = logging.getLogger("bench.scale")

MODEL = "gpt2-small"
SOURCE_SET = "res-scale"
EXAMPLES = 45
FEATURES_PER_FILE = 8192
ACT_FEATURES_PER_FILE = 1024
_IDX, _LAYER = b"@@IDX@@", b"@@LAYER@@"
_WORDS = (
    "the",
    "legal",
    "code",
    "numbers",
    "names",
    "Bible verses",
    "punctuation",
    "plural nouns",
    "dates",
    "French",
    "Python keywords",
    "closing brackets",
    "medical terms",
    "sports teams",
    "past tense verbs",
    "URLs",
    "chemical names",
    "questions",
    "negation",
    "emotions",
    "cities",
    "currency",
    "HTML tags",
    "math symbols",
    "first names",
    "prepositions",
    "song lyrics",
    "German words",
    "weather",
    "food",
)
_QUERIES = (
    "words about the weather",
    "python code keywords",
    "legal contracts and law",
    "numbers in dates",
    "names of cities in Europe",
    "closing brackets in source code",
    "emotional language",
    "medical terminology",
    "sports results",
    "french text",
    "religious verses",
    "past tense verbs",
    "currency amounts",
    "html markup",
    "mathematical notation",
    "song lyrics and poetry",
)


# --- input -------------------------------------------------------------------------------------------------


def source_ids(n_sources: int) -> list[str]:
    """The sources' ids (``<layer>-res-scale``)."""
    return [f"{layer}-{SOURCE_SET}" for layer in range(n_sources)]


def split(total: int, parts: int) -> list[int]:
    """``total`` spread over ``parts`` as evenly as integers allow."""
    return [total // parts + (1 if k < total % parts else 0) for k in range(parts)]


def _templates(pool: int, seed: int) -> tuple[list[bytes], list[bytes]]:
    """Per pool dashboard: its Neuron line and its 45 Activation lines, with index and source left as holes."""
    cfg = SyntheticConfig(n_features=pool, seed=seed, model_id=MODEL, source_set=SOURCE_SET)
    vocab = build_vocab(cfg)
    neurons, acts = [], []
    for j in range(pool):
        feat = make_feature(cfg, vocab, j)
        neuron = {**feat.neuron, "index": "@@IDX@@", "layer": "@@LAYER@@"}
        neurons.append(orjson.dumps(neuron) + b"\n")
        lines = [orjson.dumps({**a, "index": "@@IDX@@", "layer": "@@LAYER@@"}) + b"\n" for a in feat.activations]
        acts.append(b"".join(lines))
    return neurons, acts


def _fill(template: bytes, index: int, layer: bytes) -> bytes:
    return template.replace(_IDX, str(index).encode()).replace(_LAYER, layer)


def _write_gz(path: Path, chunks: list[bytes]) -> int:
    """Write chunks gzip'd at level 1 (fast; the importer reads any level) and return the file's bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as gz:
        for chunk in chunks:
            gz.write(chunk)
    return path.stat().st_size


def _explanation_lines(layer: bytes, start: int, n: int, ordinal: int, rng: random.Random) -> list[bytes]:
    vecs = synthetic_vectors(n, seed=ordinal) if n else np.zeros((0, 384), dtype=np.float32)
    out = []
    for k in range(n):
        index = start + k
        words = rng.sample(_WORDS, 3)
        row = {
            "id": f"cscale{ordinal:04d}{index:09d}",
            "modelId": MODEL,
            "layer": layer.decode(),
            "index": str(index),
            "description": f"{words[0]} and {words[1]} near {words[2]}",
            "authorId": "bench",
            "typeName": "oai_token-act-pair",
            "explanationModelName": "gpt-4o-mini",
            "notes": None,
            "scoreV1": round(rng.random(), 4),
            "createdAt": "2024-05-01T00:00:00.000Z",
            "embedding": vecs[k],
        }
        out.append(orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
    return out


def write_input(root: Path, n_features: int, with_acts: int, n_sources: int, pool: int, seed: int) -> dict[str, Any]:
    """Write the export under ``root`` (reused when a finished one is there); what it holds."""
    marker = root / ".done.json"
    if marker.exists():
        info = json.loads(marker.read_text())
        if info["features"] == n_features and info["with_activations"] == with_acts and info["sources"] == n_sources:
            log.info("reusing the input in %s", root)
            return info  # type: ignore[no-any-return]
    shutil.rmtree(root, ignore_errors=True)
    t0 = time.perf_counter()
    neurons, acts = _templates(min(pool, max(with_acts, 1)), seed)
    log.info("%d pool dashboards made in %.1fs", len(neurons), time.perf_counter() - t0)
    rng = random.Random(seed)
    gz_bytes = 0
    counts = split(n_features, n_sources)
    act_counts = split(with_acts, n_sources)
    for ordinal, (source_id, n, n_act) in enumerate(zip(source_ids(n_sources), counts, act_counts, strict=True)):
        src = root / MODEL / source_id
        layer = source_id.encode()
        rows = catalogue_rows(SyntheticConfig(model_id=MODEL, source_set=SOURCE_SET, layer=ordinal))
        for name, row in rows.items():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_bytes(orjson.dumps(row) + b"\n")
        for part, start in enumerate(range(0, n, FEATURES_PER_FILE)):
            stop = min(n, start + FEATURES_PER_FILE)
            gz_bytes += _write_gz(
                src / "features" / f"batch-{part}.jsonl.gz",
                [_fill(neurons[i % len(neurons)], i, layer) for i in range(start, stop)],
            )
            gz_bytes += _write_gz(
                src / "explanations" / f"batch-{part}.jsonl.gz",
                _explanation_lines(layer, start, stop - start, ordinal * 1000 + part, rng),
            )
        for part, start in enumerate(range(0, n_act, ACT_FEATURES_PER_FILE)):
            stop = min(n_act, start + ACT_FEATURES_PER_FILE)
            gz_bytes += _write_gz(
                src / "activations" / f"batch-{part}.jsonl.gz",
                [_fill(acts[i % len(acts)], i, layer) for i in range(start, stop)],
            )
        log.info(
            "wrote %s: %d features, %d with examples (%.0fs so far, %.2f GB gz)",
            source_id,
            n,
            n_act,
            time.perf_counter() - t0,
            gz_bytes / 1e9,
        )
    info = {
        "features": n_features,
        "with_activations": with_acts,
        "sources": n_sources,
        "pool": len(neurons),
        "activations": with_acts * EXAMPLES,
        "explanations": n_features,
        "gz_bytes": gz_bytes,
        "per_source": counts,
        "per_source_with_activations": act_counts,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    marker.write_text(json.dumps(info))
    return info


# --- measuring ---------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``interpedia serve`` in a subprocess, on a free port."""

    def __init__(
        self, url: str, home: Path, log_path: Path, *, checkout: Path = ROOT, extra: list[str] | None = None
    ) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "INTERPEDIA_DATABASE_URL": url,
            "INTERPEDIA_HOME": str(home),
            "INTERPEDIA_LOG_LEVEL": "WARNING",
            "INTERPEDIA_EMBED_ON_IMPORT": "false",
            # Latency is measured here, not the per-IP limits (every request comes from 127.0.0.1).
            "INTERPEDIA_RATE_LIMIT_ENABLED": "false",
        }
        # The code of ``checkout`` (this tree, or an older one for before/after runs) under this interpreter.
        env["PYTHONPATH"] = str(checkout)
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "interpedia.cli", "serve", "--port", str(self.port), *(extra or [])],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=checkout,
        )

    def wait(self, timeout: float = 180.0) -> None:
        """Until the server answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"interpedia serve exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.base}/api/model/list", timeout=5).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError("interpedia serve did not come up")

    def stop(self) -> None:
        """Stop the server process (the one this object started)."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


_LUA = """
local sources = {%(sources)s}
local counts = {%(counts)s}
local thread_no = 0
function setup(thread)
  thread_no = thread_no + 1
  thread:set("seed", %(seed)d + thread_no)
end
function init(args)
  math.randomseed(seed)
end
local offsets = {%(offsets)s}
function request()
  local s = math.random(1, #sources)
  local i = (#offsets > 0) and offsets[s] or math.random(0, counts[s] - 1)
  return wrk.format("GET", "/api/feature/%(model)s/" .. sources[s] .. "/" .. i)
end
function done(summary, latency, requests)
  io.write(string.format('WRKJSON {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p90_us": %%d, ' ..
    '"p99_us": %%d, "max_us": %%d, "mean_us": %%.1f, "errors_connect": %%d, "errors_read": %%d, ' ..
    '"errors_write": %%d, "errors_status": %%d, "errors_timeout": %%d, "bytes": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout, summary.bytes))
end
"""


def run_wrk(
    server: Server,
    work: Path,
    sources: list[str],
    counts: list[int],
    connections: int,
    duration: int,
    seed: int,
    *,
    offsets: list[int] | None = None,
) -> dict[str, Any]:
    """Feature API under ``connections`` concurrent clients for ``duration`` seconds (wrk): random features of
    ``sources`` (``counts`` each), or with ``offsets`` the feature ``offsets[k]`` of ``sources[k]``."""
    script = work / "features.lua"
    script.write_text(
        _LUA
        % {
            "sources": ", ".join(f'"{s}"' for s in sources),
            "counts": ", ".join(map(str, counts)),
            "seed": seed,
            "model": MODEL,
            "offsets": ", ".join(map(str, offsets or [])),
        }
    )
    threads = min(connections, 2)
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--timeout",
        "30s",
        "-s",
        str(script),
        server.base,
    ]
    load0 = os.getloadavg()[0]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
    res: dict[str, Any] = json.loads(line.removeprefix("WRKJSON "))
    res.update(
        {
            "command": " ".join(cmd),
            "connections": connections,
            "threads": threads,
            "requests_per_s": round(res["requests"] / (res["duration_us"] / 1e6), 1),
            "p50_ms": round(res["p50_us"] / 1000, 2),
            "p99_ms": round(res["p99_us"] / 1000, 2),
            "load_average_1min": [round(load0, 2), round(os.getloadavg()[0], 2)],
        }
    )
    failed = sum(v for k, v in res.items() if k.startswith("errors_"))
    if failed:
        log.warning("feature API: %d of %d requests failed or answered non-2xx", failed, res["requests"])
    return res


def _pcts(ms: list[float]) -> dict[str, float]:
    q = statistics.quantiles(sorted(ms), n=100, method="inclusive")
    return {
        "p50_ms": round(q[49], 2),
        "p95_ms": round(q[94], 2),
        "p99_ms": round(q[98], 2),
        "mean_ms": round(statistics.fmean(ms), 2),
        "n": len(ms),
    }


def time_requests(client: httpx.Client, calls: list[tuple[str, str, Any]], warmup: int) -> dict[str, Any]:
    """Time requests one at a time (round trip over localhost); a non-200 answer stops the bench."""
    ms: list[float] = []
    for n, (method, path, body) in enumerate(calls):
        t0 = time.perf_counter()
        resp = client.request(method, path, json=body)
        elapsed = (time.perf_counter() - t0) * 1000
        if resp.status_code != 200:
            raise RuntimeError(f"{method} {path}: {resp.status_code} {resp.text[:300]}")
        if n >= warmup:
            ms.append(elapsed)
    return _pcts(ms)


def measure_pages(
    server: Server, sources: list[str], counts: list[int], act_counts: list[int], n: int, seed: int
) -> dict[str, Any]:
    """Browser page (HTML) p50 on features with examples and on features without."""
    rng = random.Random(seed)
    out: dict[str, Any] = {}
    with httpx.Client(base_url=server.base, timeout=60) as client:
        for kind in ("with_examples", "without_examples"):
            calls = []
            for _ in range(n + 10):
                s = rng.randrange(len(sources))
                lo, hi = (0, act_counts[s]) if kind == "with_examples" else (act_counts[s], counts[s])
                if hi <= lo:
                    continue
                calls.append(("GET", f"/{MODEL}/{sources[s]}/{rng.randrange(lo, hi)}", None))
            if len(calls) > 10:
                out[kind] = time_requests(client, calls, warmup=10)
    return out


def measure_search(server: Server, n: int, seed: int) -> dict[str, Any]:
    """Explanation search over everything, one query at a time (the server embeds each query)."""
    rng = random.Random(seed)
    calls = []
    for k in range(n + 5):
        query = f"{rng.choice(_QUERIES)} {rng.choice(_WORDS)}" if k % 2 else rng.choice(_QUERIES)
        calls.append(("POST", "/api/explanation/search-all", {"query": query}))
    with httpx.Client(base_url=server.base, timeout=120) as client:
        probe = client.post("/api/explanation/search-all", json={"query": _QUERIES[0]}).json()
        if not probe.get("results"):
            raise RuntimeError(f"explanation search found nothing: {str(probe)[:300]}")
        res = time_requests(client, calls, warmup=5)
    res["results_per_query"] = len(probe["results"])
    return res


# --- the run -----------------------------------------------------------------------------------------------


class Run:
    """Accumulates figures and writes them after every phase."""

    def __init__(self, path: Path, params: dict[str, Any]) -> None:
        self.path = path
        self.doc: dict[str, Any] = {
            "benchmark": "scale",
            "command": command_line(),
            "environment": environment(),
            "parameters": params,
            "figures": {},
            "complete": False,
        }

    def record(self, key: str, value: Any) -> None:
        """Add one figure and rewrite the results file."""
        self.doc["figures"][key] = value
        self.save()

    def save(self) -> None:
        """Write the results file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_bytes(orjson.dumps(self.doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")


def _drop_hnsw(url: str) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP INDEX IF EXISTS {HNSW_INDEX}")
    finally:
        engine.dispose()


def _build_hnsw(url: str, work_mem: str) -> float:
    from interpedia.search.maintenance import reindex_postgres

    # A bulk build wants the whole graph in memory (a 1M-vector index is about 2 GB).
    settings = Settings(database_url=url, vector_maintenance_work_mem=work_mem)
    engine = make_engine(url)
    try:
        return reindex_postgres(engine, settings)
    finally:
        engine.dispose()


def _has_hnsw(url: str) -> bool:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql(f"SELECT to_regclass('{HNSW_INDEX}')").scalar_one() is not None
    finally:
        engine.dispose()


def _complete_sources(url: str, info: dict[str, Any]) -> set[str]:
    """--resume: the sources an earlier, interrupted run imported completely (all their features there)."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT s.name, count(*) FROM features f JOIN sources s ON s.id = f.source_id GROUP BY s.name"
            ).all()
    finally:
        engine.dispose()
    want = dict(zip(source_ids(len(info["per_source"])), info["per_source"], strict=True))
    return {name for name, count in rows if want.get(name) == count}


def _db_bytes(url: str, backend: str, sqlite_path: Path | None) -> dict[str, int]:
    if backend == "sqlite":
        assert sqlite_path is not None
        engine = make_engine(url)
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        engine.dispose()
        return {"database": sum(p.stat().st_size for p in sqlite_path.parent.glob(sqlite_path.name + "*"))}
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            total = int(conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar_one())
            tables = {
                name: int(size)
                for name, size in conn.exec_driver_sql(
                    "SELECT relname, pg_total_relation_size(oid) FROM pg_class WHERE relkind = 'r' "
                    "AND relnamespace = 'public'::regnamespace ORDER BY 2 DESC LIMIT 6"
                )
            }
    finally:
        engine.dispose()
    return {"database": total, **{f"table_{k}": v for k, v in tables.items()}}


def build_and_measure(
    run: Run, args: argparse.Namespace, url: str, info: dict[str, Any], sqlite_path: Path | None
) -> None:
    """Import, size, then the three latency measurements."""
    if args.measure_only:
        measure(run, args, url, info, n_sources=args.sources)
        return
    migrate(url)
    done = _complete_sources(url, info) if args.resume else set()
    if args.backend == "postgres" and len(done) < args.sources:
        _drop_hnsw(url)  # a resumed import too: the index maintained row by row would slow it many times over
    vocab_cache.clear()
    engine = make_engine(url)
    factory = make_sessionmaker(engine)
    # One import per source directory (what `interpedia import` does for the whole tree, in the same
    # order), so that progress is on record if the run is cut short.
    c = WriteCounts()
    t0 = time.perf_counter()
    for n, source_id in enumerate(source_ids(args.sources), 1):
        if source_id in done:  # --resume: imported completely by an earlier run
            c.features += info["per_source"][n - 1]
            c.explanations += info["per_source"][n - 1]
            c.activations += EXAMPLES * info["per_source_with_activations"][n - 1]
            continue
        summary = import_path(args.work / "input" / MODEL / source_id, factory)
        c.add(summary.counts)
        seconds = time.perf_counter() - t0
        figures = {
            "seconds": round(seconds, 1),
            "sources_done": n,
            "features": c.features,
            "activations": c.activations,
            "explanations": c.explanations,
            "features_per_s": round(c.features / seconds, 1),
            "activations_per_s": round(c.activations / seconds, 1),
            "load_average_1min": round(os.getloadavg()[0], 2),
        }
        run.record("import" if n == args.sources else "import_progress", figures)
        log.info("imported %d/%d sources: %s", n, args.sources, figures)
        if args.import_budget and seconds > args.import_budget and n < args.sources:
            # Measure what is there rather than nothing: the table then names the size reached.
            log.warning("import budget spent: measuring the %d sources imported", n)
            run.record(
                "import_cut_short",
                {
                    "sources_imported": n,
                    "features": c.features,
                    "activations": c.activations,
                    "seconds": round(seconds, 1),
                },
            )
            break
    engine.dispose()
    n_sources = n
    want = (
        sum(info["per_source"][:n_sources]),
        EXAMPLES * sum(info["per_source_with_activations"][:n_sources]),
        sum(info["per_source"][:n_sources]),
    )
    if (c.features, c.activations, c.explanations) != want:
        raise RuntimeError(f"imported {c.features}/{c.activations}/{c.explanations}, expected {want}")
    run.record("database_bytes", _db_bytes(url, args.backend, sqlite_path))
    if not args.import_only:
        measure(run, args, url, info, n_sources=n_sources)
    elif args.backend == "postgres" and not _has_hnsw(url):
        run.record("hnsw_build_seconds", round(_build_hnsw(url, args.hnsw_work_mem), 1))
        run.record("database_bytes_with_hnsw", _db_bytes(url, args.backend, None))


def measure(run: Run, args: argparse.Namespace, url: str, info: dict[str, Any], *, n_sources: int) -> None:
    """Feature API under load, pages, (the HNSW build,) explanation search, on the first ``n_sources`` sources;
    with ``--before``, that checkout first and then this one, on the same database, one right after the other."""
    if not args.before:
        measure_tree(run, args, url, info, n_sources=n_sources, checkout=ROOT, label=None)
        return
    if args.backend == "postgres" and not _has_hnsw(url):
        run.record("hnsw_build_seconds", round(_build_hnsw(url, args.hnsw_work_mem), 1))
    # The older checkout knows only the older migrations: the database goes back to its newest one first.
    _downgrade(url, args.before_revision)
    measure_tree(run, args, url, info, n_sources=n_sources, checkout=args.before, label="before")
    measure_tree(run, args, url, info, n_sources=n_sources, checkout=ROOT, label="after")


def _downgrade(url: str, revision: str) -> None:
    from alembic import command

    from interpedia.db.engine import alembic_config

    command.downgrade(alembic_config(url), revision)


def _hot_lua(sources: list[str], counts: list[int], hot: int, seed: int) -> list[tuple[str, int]]:
    """``hot`` features drawn once (seeded): what a site's readers ask for again and again."""
    rng = random.Random(seed + 1)
    picks = []
    for _ in range(hot):
        s = rng.randrange(len(sources))
        picks.append((sources[s], rng.randrange(counts[s])))
    return picks


def build_documents(url: str, home: Path, workers: int) -> dict[str, Any]:
    """``interpedia documents build`` of this tree on the whole database, timed."""
    env = {**os.environ, "INTERPEDIA_DATABASE_URL": url, "INTERPEDIA_HOME": str(home), "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "interpedia.cli", "documents", "build", "--workers", str(max(1, workers))],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = time.perf_counter() - t0
    stored = re.search(r"stored (\d+) feature documents", done.stdout)
    return {
        "seconds": round(seconds, 1),
        "stored": int(stored.group(1)) if stored else None,
        "workers": max(1, workers),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "output": done.stdout.strip().splitlines()[-1:],
    }


def measure_tree(
    run: Run,
    args: argparse.Namespace,
    url: str,
    info: dict[str, Any],
    *,
    n_sources: int,
    checkout: Path,
    label: str | None,
) -> None:
    """The measurements against ``interpedia serve`` run from ``checkout`` (``--workers`` for this tree)."""
    sources = source_ids(n_sources)
    prefix = f"{label}." if label else ""
    extra = ["--workers", str(args.workers)] if checkout == ROOT and args.workers > 1 else []
    if checkout == ROOT:
        # What a lab does after a bulk import: store every feature's document (trees before 1f3ce41 have none).
        run.record(f"{prefix}documents_build", build_documents(url, args.work / "home", args.workers))
        log.info("%sdocuments: %s", prefix, run.doc["figures"][f"{prefix}documents_build"])
    server = Server(url, args.work / "home", args.work / "server.log", checkout=checkout, extra=extra)
    counts = info["per_source"][:n_sources]
    try:
        server.wait()
        if label:
            commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True)
            run.record(f"{prefix}tree", {"path": str(checkout), "commit": commit.stdout.strip(), "serve": extra})
        time.sleep(args.settle)  # the background embedder load, where the tree has one, is not the API's
        run.record(
            f"{prefix}feature_api",
            run_wrk(server, args.work, sources, counts, args.connections, args.duration, args.seed),
        )
        log.info("%sfeature API: %s", prefix, run.doc["figures"][f"{prefix}feature_api"])
        if args.hot:
            picks = _hot_lua(sources, counts, args.hot, args.seed)
            run.record(
                f"{prefix}feature_api_hot",
                {
                    "hot_features": args.hot,
                    **run_wrk(
                        server,
                        args.work,
                        [s for s, _ in picks],
                        [1] * len(picks),
                        args.connections,
                        args.duration,
                        args.seed,
                        offsets=[i for _, i in picks],
                    ),
                },
            )
            log.info("%sfeature API (hot): %s", prefix, run.doc["figures"][f"{prefix}feature_api_hot"])
        run.record(
            f"{prefix}page",
            measure_pages(
                server,
                sources,
                counts,
                info["per_source_with_activations"][:n_sources],
                args.page_requests,
                args.seed,
            ),
        )
        log.info("%spage: %s", prefix, run.doc["figures"][f"{prefix}page"])
        if args.backend == "postgres" and not _has_hnsw(url):
            # Built after the API figures so that a run cut short still has them.
            build_s = _build_hnsw(url, args.hnsw_work_mem)
            run.record("hnsw_build_seconds", round(build_s, 1))
            run.record("database_bytes_with_hnsw", _db_bytes(url, args.backend, None))
            log.info("HNSW index built in %.0fs", build_s)
        run.record(f"{prefix}explanation_search", measure_search(server, args.search_queries, args.seed))
        log.info("%ssearch: %s", prefix, run.doc["figures"][f"{prefix}explanation_search"])
    finally:
        server.stop()


def print_table(run: Run) -> None:
    """The scale table."""
    f, p = run.doc["figures"], run.doc["parameters"]
    imp = f.get("import", {})
    size = f.get("database_bytes_with_hnsw", f.get("database_bytes", {})).get("database")
    cut = f.get("import_cut_short")
    if cut:
        imp = {**f.get("import_progress", {}), "seconds": f"{cut['seconds']} (cut short)"}
    n_feat = cut["features"] if cut else p["features"]
    n_act = cut["activations"] // EXAMPLES if cut else p["with_activations"]
    labels = [x for x in ("before.", "after.") if f"{x}feature_api" in f] or [""]
    rows = [
        [
            p["backend"] + (f" ({label[:-1]})" if label else ""),
            f"{n_feat:,}",
            f"{n_act:,}",
            imp.get("seconds", "-"),
            f.get("hnsw_build_seconds", "-"),
            f"{size / 1e9:.2f}" if size else "-",
            f.get(f"{label}feature_api", {}).get("p50_ms", "-"),
            f.get(f"{label}feature_api", {}).get("p99_ms", "-"),
            f.get(f"{label}feature_api", {}).get("requests_per_s", "-"),
            f.get(f"{label}feature_api_hot", {}).get("requests_per_s", "-"),
            f.get(f"{label}page", {}).get("with_examples", {}).get("p50_ms", "-"),
            f.get(f"{label}page", {}).get("without_examples", {}).get("p50_ms", "-"),
            f.get(f"{label}explanation_search", {}).get("p95_ms", "-"),
        ]
        for label in labels
    ]
    print(f"command: {run.doc['command']}")
    print(
        table(
            rows,
            [
                "backend",
                "features",
                "with examples",
                "import s",
                "hnsw s",
                "db GB",
                "api p50 ms",
                "api p99 ms",
                "api req/s",
                "hot req/s",
                "page p50 ms (examples)",
                "page p50 ms (none)",
                "search p95 ms",
            ],
        )
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--features", type=int, default=None, help="default 1,000,000 (postgres) / 100,000 (sqlite)")
    parser.add_argument(
        "--with-activations",
        type=int,
        default=None,
        help="features with 45 x 128-token examples (default 20%% of --features)",
    )
    parser.add_argument("--sources", type=int, default=40)
    parser.add_argument("--pool", type=int, default=1000, help="distinct synthetic dashboards to draw from")
    parser.add_argument("--duration", type=int, default=60, help="seconds of wrk load")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--page-requests", type=int, default=200)
    parser.add_argument("--search-queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--import-budget",
        type=float,
        default=0.0,
        help="seconds after which no further source is imported and the rest is measured on "
        "what was imported (0: import everything)",
    )
    parser.add_argument(
        "--measure-only",
        action="store_true",
        help="SQLite: measure the database a previous run left in --work (its import figures kept)",
    )
    parser.add_argument("--hnsw-work-mem", default="4GB", help="maintenance_work_mem for the HNSW build")
    parser.add_argument(
        "--work", type=Path, default=None, help="input and SQLite file (default /tmp/interpedia-scale-N)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated input for reruns")
    parser.add_argument(
        "--pg-dir",
        type=Path,
        default=None,
        help="Postgres: keep the cluster in this directory (created on the first run; reused by "
        "--measure-only and bench/serving.py) instead of a throwaway one",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="with --pg-dir: go on with an import an earlier run left unfinished (input from --work, "
        "sources already complete are skipped)",
    )
    parser.add_argument("--import-only", action="store_true", help="stop after the import (measure later)")
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        help="another checkout (e.g. main) measured first on the same database, then this tree",
    )
    parser.add_argument(
        "--before-revision", default="0005", help="the newest migration --before knows (the database goes back to it)"
    )
    parser.add_argument("--workers", type=int, default=1, help="serve --workers for this tree")
    parser.add_argument("--hot", type=int, default=0, help="also wrk on this many fixed features (a hot set)")
    parser.add_argument("--settle", type=float, default=0.0, help="seconds between serve answering and the load")
    parser.add_argument("--results", default=None, help="results file name (default scale_<backend>_<features>)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    args.features = args.features or (1_000_000 if args.backend == "postgres" else 100_000)
    if args.with_activations is None:
        args.with_activations = args.features // 5
    if not 0 <= args.with_activations <= args.features or args.features < args.sources:
        parser.error("need 0 <= --with-activations <= --features and --features >= --sources")
    args.work = args.work or Path(f"/tmp/interpedia-scale-{args.features}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Generate, import, measure; print the table and write bench/results/scale_<backend>_<features>.json."""
    args = parse_args(argv)
    setup_logging(args.verbose)
    for noisy in ("interpedia", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # The explanations carry their embeddings; nothing is embedded on import.
    os.environ["INTERPEDIA_EMBED_ON_IMPORT"] = "false"
    from interpedia.config import get_settings

    get_settings.cache_clear()
    params = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    run = Run(ROOT / "bench" / "results" / f"{args.results or f'scale_{args.backend}_{args.features}'}.json", params)
    if args.resume:
        previous = orjson.loads(run.path.read_bytes())
        run.doc["figures"] = {k: v for k, v in previous["figures"].items() if k == "input"}
    if args.measure_only:
        if args.backend != "sqlite" and not args.pg_dir:
            raise SystemExit("--measure-only needs --backend sqlite or --pg-dir (a throwaway cluster is not kept)")
        previous = orjson.loads(run.path.read_bytes())
        run.doc["figures"] = {
            k: v
            for k, v in previous["figures"].items()
            if k in ("input", "import", "import_progress", "database_bytes")
        }
        run.doc["import_command"] = previous["command"]
    args.work.mkdir(parents=True, exist_ok=True)
    try:
        if args.measure_only or args.resume:
            info = run.doc["figures"]["input"]
        else:
            info = write_input(
                args.work / "input", args.features, args.with_activations, args.sources, args.pool, args.seed
            )
            run.record("input", info)
        if args.backend == "sqlite":
            db = args.work / "scale.db"
            for p in args.work.glob("scale.db*"):
                if not args.measure_only:
                    p.unlink()
            build_and_measure(run, args, f"sqlite:///{db}", info, db)
        elif args.pg_dir:
            with kept_postgres(args.pg_dir) as kept:
                run.doc["postgres"] = pg_settings(kept)
                url, existed = kept.database("scale")
                if existed != (args.measure_only or args.resume):
                    kept.stop()
                    raise SystemExit(
                        f"database 'scale' in {args.pg_dir} "
                        + ("exists: pass --measure-only, or remove the directory" if existed else "is not there")
                    )
                build_and_measure(run, args, url, info, None)
        else:
            with postgres() as cluster:
                run.doc["postgres"] = pg_settings(cluster)
                build_and_measure(run, args, cluster.create_database("scale"), info, None)
        run.doc["complete"] = True
        run.doc["load_average_after"] = os.getloadavg()
        run.save()
    finally:
        if not args.keep:
            shutil.rmtree(args.work / "input", ignore_errors=True)
        print_table(run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
