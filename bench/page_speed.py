"""Server time of the feature dashboard page on a database of 100,000 features, on SQLite and on Postgres.

What is built, through the real importer (``interpedia.ingest.import_path``) from
:mod:`bench.synthetic` Neuronpedia exports of ``gpt2-small/0-res-jb``:

1. ``--n-features`` features (default 100,000) with every dashboard statistic (50-bin histograms,
   10+10 logits, alignment lists) and 2 short examples each;
2. then the first ``--n-full`` of them (default 2,000) imported again with full dashboards: 20 top
   examples + 5 quantile intervals x 5 = 45 examples x 128 tokens (GPT-2-like 50k vocabulary, about
   6% non-zero values), and two explanations each. The re-import replaces their examples;
3. then every feature's document stored in the database (``interpedia documents build``).

So the database holds 100k features and the measured pages are the full 45 x 128 ones. Giving
every feature 45 x 128 examples (``--n-full 100000``) works too but the import then takes
about half an hour per backend on a 2-core machine.

How it is measured: in process, no network. The app (``create_app``) is wrapped in an ASGI timer
that takes ``perf_counter`` when the request enters the app and when the last body byte is sent;
that interval is the **server time** reported (routing, queries, decoding, rendering). Requests are
made with Starlette's TestClient; its round trip is reported too (server time plus the client's
own overhead). The timer also takes the process's CPU time over the same interval (the client
thread is blocked meanwhile), the **server CPU** per request, which other load on the machine
disturbs much less than wall time. ``--requests`` pages (default
500) on features drawn at random (seeded) from the full ones, after ``--warmup`` requests
(default 50), one at a time. The JSON twin of the same page is timed the same way, and so is the HTML page
asked by a caller signed in with an API key (``html_key``: the ``x-api-key`` header).

    .venv/bin/python bench/page_speed.py [--backends sqlite,postgres] [--n-features 100000] [--n-full 2000]

Before and after a change: ``--before PATH`` names another checkout (e.g. ``git worktree add --detach
/tmp/before main``). Each backend's database is then built once and both checkouts are measured on it, one
right after the other, each in a subprocess that imports ``interpedia`` from its checkout, alternating
``--rounds`` times (default 3; each round a third of the requests, the samples pooled); the results go to
``page_speed_before.json`` and ``page_speed_after.json``, the latter with the server-CPU ratios.
"""

from __future__ import annotations

import argparse
import gzip
import logging
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import log, pg_settings, postgres, setup_logging, table, write_results  # noqa: E402
from synthetic import SyntheticConfig, build_vocab, write_np_export  # noqa: E402

from interpedia.config import Settings, get_settings  # noqa: E402
from interpedia.db import make_engine, make_sessionmaker, migrate  # noqa: E402
from interpedia.ingest import import_path  # noqa: E402
from interpedia.store.feature_documents import fill_source_documents  # noqa: E402
from interpedia.store.vocab import vocab_cache  # noqa: E402

EXPECTED_EXAMPLES = 45


def _configs(n_features: int, n_full: int) -> tuple[SyntheticConfig, SyntheticConfig]:
    light = SyntheticConfig(
        n_features=n_features, n_top=2, n_quantiles=0, per_quantile=0, n_tokens=24, features_per_file=8192
    )
    full = SyntheticConfig(n_features=n_full)  # 20 top + 5 x 5 interval samples, 128 tokens
    return light, full


def _write_explanations(cfg: SyntheticConfig, root: Path) -> None:
    """Two explanations per full feature, in the export layout (so the page lists and sorts them)."""
    rng = random.Random(7)
    words = ["the", "cats", "legal text", "code", "numbers", "names", "Bible verses", "punctuation", "plurals"]
    rows = []
    for i in range(cfg.n_features):
        for k in range(2):
            rows.append(
                {
                    "id": f"cbench{i:09d}{k:010d}",
                    "modelId": cfg.model_id,
                    "layer": cfg.source_id,
                    "index": str(i),
                    "description": f"{rng.choice(words)} after {rng.choice(words)}",
                    "authorId": "bench",
                    "typeName": "oai_token-act-pair",
                    "explanationModelName": "gpt-4o-mini",
                    "notes": None,
                    "scoreV1": rng.random(),
                    "createdAt": "2024-05-01T00:00:00.000Z",
                }
            )
    path = root / cfg.model_id / cfg.source_id / "explanations" / "batch-0.jsonl.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(b"".join(orjson.dumps(r) + b"\n" for r in rows), mtime=0))


def build_exports(work: Path, n_features: int, n_full: int) -> tuple[Path, Path]:
    """Write (or reuse) the two exports under ``work``."""
    light_cfg, full_cfg = _configs(n_features, n_full)
    light, full = work / f"light-{n_features}", work / f"full-{n_full}"
    vocab = None
    for cfg, root in ((light_cfg, light), (full_cfg, full)):
        if (root / ".done").exists():
            continue
        shutil.rmtree(root, ignore_errors=True)
        vocab = vocab or build_vocab(cfg)  # same seed and vocab_size: the same vocabulary for both
        t0 = time.perf_counter()
        write_np_export(cfg, root, vocab=vocab)
        if root is full:
            _write_explanations(cfg, root)
        (root / ".done").write_text("ok")
        log.info("wrote %s in %.1fs", root, time.perf_counter() - t0)
    return light, full


class ServerTimer:
    """ASGI wrapper: how long the app takes from receiving a request to sending the last body byte."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.samples: list[float] = []
        self.cpu_samples: list[float] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Time one request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, cpu_start = time.perf_counter(), time.process_time()

        async def timed_send(message: Any) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self.samples.append(time.perf_counter() - start)
                # The client thread is blocked meanwhile, so this is the server's CPU time.
                self.cpu_samples.append(time.process_time() - cpu_start)

        await self.app(scope, receive, timed_send)


def _stats(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples)
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return {
        "p50_ms": round(q[49], 2),
        "p90_ms": round(q[89], 2),
        "p99_ms": round(q[98], 2),
        "mean_ms": round(statistics.fmean(ms), 2),
        "max_ms": round(ms[-1], 2),
        "n": len(ms),
    }


def _api_key(url: str) -> str:
    """A fresh API key (user ``bench``) on the database at ``url``."""
    from interpedia.db import transaction
    from interpedia.store.users import create_api_key, ensure_user

    engine = make_engine(url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            return create_api_key(session, ensure_user(session, "bench"))
    finally:
        engine.dispose()


# What is timed: the HTML page, its JSON twin, and the HTML page asked by a caller signed in with an API key, each
# on features drawn at random (a document seldom in the server's cache), then the HTML page and its twin asked
# right after the same request (``*_cached``: the document is in the cache, where the tree has one).
KINDS = (
    ("html", "", False),
    ("json", ".json", False),
    ("html_key", "", True),
    ("html_cached", "", False),
    ("json_cached", ".json", False),
)


def measure(url: str, home: Path, n_full: int, requests: int, warmup: int, seed: int) -> dict[str, Any]:
    """Time feature pages (HTML, JSON twin, HTML with ``x-api-key``) on the database at ``url``."""
    from fastapi.testclient import TestClient

    from interpedia.web.app import create_app

    vocab_cache.clear()
    headers = {"x-api-key": _api_key(url)}
    app = create_app(Settings(database_url=url, home=home))
    timer = ServerTimer(app)
    rng = random.Random(seed)
    out: dict[str, Any] = {}
    with TestClient(timer) as client:
        for kind, suffix, keyed in KINDS:
            paths = [f"/gpt2-small/0-res-jb/{rng.randrange(n_full)}{suffix}" for _ in range(warmup + requests)]
            round_trips: list[float] = []
            cpu: list[float] = []
            load_before = os.getloadavg()[0]
            for n, path in enumerate(paths):
                if kind.endswith("_cached"):  # the same page once before, untimed
                    if client.get(path).status_code != 200:
                        raise RuntimeError(f"{path}: not 200")
                    del timer.samples[-1], timer.cpu_samples[-1]
                c0, t0 = time.process_time(), time.perf_counter()
                resp = client.get(path, headers=headers if keyed else None)
                elapsed, used = time.perf_counter() - t0, time.process_time() - c0
                if resp.status_code != 200:
                    raise RuntimeError(f"{path}: {resp.status_code} {resp.text[:200]}")
                if n == 0:
                    examples = (
                        len(resp.json()["feature"]["activations"])
                        if suffix
                        else resp.text.count('<li class="ex"><span class="mv">')  # not the live test box's
                    )
                    if examples != EXPECTED_EXAMPLES:
                        raise RuntimeError(f"{path} shows {examples} examples, expected {EXPECTED_EXAMPLES}")
                    out[f"{kind}_bytes"] = len(resp.content)
                if n >= warmup:
                    round_trips.append(elapsed)
                    cpu.append(used)
            server, server_cpu = timer.samples[-requests:], timer.cpu_samples[-requests:]
            timer.samples.clear()
            timer.cpu_samples.clear()
            out[kind] = {
                "server": _stats(server),
                "server_cpu": _stats(server_cpu),
                "testclient_round_trip": _stats(round_trips),
                "process_cpu": _stats(cpu),
                "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                "samples": {"server": server, "server_cpu": server_cpu, "round_trip": round_trips, "cpu": cpu},
            }
    return out


def _pooled(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from several :func:`measure` runs of the same code: their samples pooled."""
    out: dict[str, Any] = {k: v for k, v in runs[0].items() if k.endswith("_bytes") or k == "tree"}
    for kind, _, _ in KINDS:
        samples = {name: [x for r in runs for x in r[kind]["samples"][name]] for name in runs[0][kind]["samples"]}
        loads = [x for r in runs for x in r[kind]["load_average_1min"]]
        out[kind] = {
            "server": _stats(samples["server"]),
            "server_cpu": _stats(samples["server_cpu"]),
            "testclient_round_trip": _stats(samples["round_trip"]),
            "process_cpu": _stats(samples["cpu"]),
            "load_average_1min": [min(loads), max(loads)],
        }
    return out


def build_backend(name: str, url: str, light: Path, full: Path) -> dict[str, float]:
    """Migrate and fill the database at ``url``; the import times."""
    migrate(url)
    factory = make_sessionmaker(make_engine(url))
    t0 = time.perf_counter()
    s1 = import_path(light, factory)
    t1 = time.perf_counter()
    s2 = import_path(full, factory)
    t2 = time.perf_counter()
    # What a lab runs after a bulk import (`interpedia documents build`): every feature's document stored.
    stored = fill_source_documents(factory, "gpt2-small", "0-res-jb")
    t3 = time.perf_counter()
    log.info(
        "%s: imported %s (%.0fs) and %s (%.0fs); stored %d documents (%.0fs)",
        *(name, s1.describe(), t1 - t0, s2.describe(), t2 - t1, stored, t3 - t2),
    )
    return {"light": round(t1 - t0, 1), "full": round(t2 - t1, 1), "documents": round(t3 - t2, 1)}


def measure_tree(tree: Path, url: str, home: Path, args: argparse.Namespace) -> dict[str, Any]:
    """:func:`measure` run in a subprocess that imports ``interpedia`` from the checkout at ``tree``."""
    out = args.work / f"measure-{os.getpid()}.json"
    cmd = [
        sys.executable,
        __file__,
        "--measure-only",
        url,
        "--home",
        str(home),
        *("--n-full", str(args.n_full), "--requests", str(math.ceil(args.requests / args.rounds))),
        *("--warmup", str(args.warmup), "--seed", str(args.seed), "--out", str(out)),
    ]
    # A tree that loads the embedding model as the app starts would count that thread's CPU in the first pages.
    env = {**os.environ, "PYTHONPATH": str(tree), "INTERPEDIA_EMBEDDING_PRELOAD": "false"}
    subprocess.run(cmd, check=True, env=env)
    result: dict[str, Any] = orjson.loads(out.read_bytes())
    out.unlink()
    commit = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True)
    result["tree"] = {"path": str(tree), "commit": commit.stdout.strip()}
    return result


def run_backend(name: str, url: str, light: Path, full: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Build the database on one backend and measure."""
    imported = build_backend(name, url, light, full)
    result = measure(url, args.work / f"home-{name}", args.n_full, args.requests, args.warmup, args.seed)
    for kind, _, _ in KINDS:
        del result[kind]["samples"]  # the statistics are kept, not every sample
    result["import_seconds"] = imported
    log.info(
        "%s: html server p50 %.1f ms, p99 %.1f ms",
        name,
        result["html"]["server"]["p50_ms"],
        result["html"]["server"]["p99_ms"],
    )
    return result


def compare_backend(
    name: str, url: str, light: Path, full: Path, args: argparse.Namespace
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Build the database on one backend once, then measure the ``--before`` checkout and this one, one right
    after the other, on the same data; ``--rounds`` times over, alternating, each round a share of the requests
    (their samples pooled), so a change of load on the machine weighs on both alike."""
    imported = build_backend(name, url, light, full)
    here = Path(__file__).resolve().parent.parent
    runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    for n in range(args.rounds):
        for label, tree in (("before", args.before), ("after", here)):
            log.info("%s: round %d of %d, %s (%s)", name, n + 1, args.rounds, label, tree)
            runs[label].append(measure_tree(tree, url, args.work / f"home-{name}-{label}", args))
    before, after = _pooled(runs["before"]), _pooled(runs["after"])
    before["import_seconds"] = after["import_seconds"] = imported
    return before, after


def _table(results: dict[str, Any]) -> str:
    rows = []
    for backend, res in results.items():
        for kind, _, _ in KINDS:
            s, rt, cpu = res[kind]["server"], res[kind]["testclient_round_trip"], res[kind]["server_cpu"]
            rows.append(
                [
                    backend,
                    kind,
                    s["p50_ms"],
                    s["p90_ms"],
                    s["p99_ms"],
                    s["mean_ms"],
                    rt["p50_ms"],
                    rt["p99_ms"],
                    cpu["p50_ms"],
                    cpu["p99_ms"],
                    res[f"{kind}_bytes"],
                    max(res[kind]["load_average_1min"]),
                ]
            )
    headers = ["backend", "page", "p50 ms", "p90 ms", "p99 ms", "mean ms", "rt p50", "rt p99", "cpu p50", "cpu p99"]
    return table(rows, [*headers, "bytes", "load"])


def _ratios(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Server CPU (p50 and mean) before / after, per backend and page kind: above 1 means faster now."""
    out: dict[str, dict[str, float]] = {}
    for backend in after:
        for kind, _, _ in KINDS:
            b, a = before[backend][kind]["server_cpu"], after[backend][kind]["server_cpu"]
            out[f"{backend}/{kind}"] = {
                "cpu_p50_before_ms": b["p50_ms"],
                "cpu_p50_after_ms": a["p50_ms"],
                "cpu_p50_ratio": round(b["p50_ms"] / a["p50_ms"], 2),
                "cpu_mean_ratio": round(b["mean_ms"] / a["mean_ms"], 2),
            }
    return out


def main() -> None:
    """Build the databases, measure, print the table and write ``bench/results/page_speed.json`` (with
    ``--before``: ``page_speed_before.json``, ``page_speed_after.json`` and the ratios)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--n-features", type=int, default=100_000)
    parser.add_argument("--n-full", type=int, default=2_000)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--work",
        type=Path,
        default=Path("/tmp/interpedia-page-speed"),
        help="where exports (kept and reused) and the SQLite file go",
    )
    parser.add_argument(
        "--before",
        type=Path,
        help="a checkout of the code to compare with (e.g. a git worktree of main): each database is built once "
        "and both checkouts are measured on it, one right after the other",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="with --before: alternate the two checkouts this many times"
    )
    parser.add_argument("--measure-only", metavar="URL", help=argparse.SUPPRESS)  # measure_tree's subprocess
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--tag", default="", help="after page_speed in the result file names (e.g. _serving)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    setup_logging(args.verbose)
    # Pages are measured, not the sentence embedder: imported explanations keep no embedding.
    os.environ["INTERPEDIA_EMBED_ON_IMPORT"] = "false"
    get_settings.cache_clear()
    for noisy in ("interpedia", "httpx", "httpx2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.measure_only:
        result = measure(args.measure_only, args.home, args.n_full, args.requests, args.warmup, args.seed)
        args.out.write_bytes(orjson.dumps(result))  # with the samples: the caller pools rounds
        return
    if args.n_full > args.n_features:
        parser.error("--n-full must not exceed --n-features")
    args.work.mkdir(parents=True, exist_ok=True)
    light, full = build_exports(args.work, args.n_features, args.n_full)
    results: dict[str, Any] = {}
    befores: dict[str, Any] = {}
    extra: dict[str, Any] = {}

    def run(name: str, url: str) -> dict[str, Any]:
        if args.before is None:
            return run_backend(name, url, light, full, args)
        befores[name], after = compare_backend(name, url, light, full, args)
        return after

    for backend in [b for b in args.backends.split(",") if b]:
        if backend == "sqlite":
            db = args.work / "page_speed.db"
            for p in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
                p.unlink(missing_ok=True)
            results["sqlite"] = run("sqlite", f"sqlite:///{db}")
            results["sqlite"]["db_bytes"] = os.path.getsize(db)
        elif backend == "postgres":
            with postgres() as cluster:
                url = cluster.create_database("page_speed")
                results["postgres"] = run("postgres", url)
                extra["postgres_settings"] = pg_settings(cluster)
        else:
            parser.error(f"unknown backend {backend!r}")
    print(
        f"Feature page, {EXPECTED_EXAMPLES} examples x 128 tokens, {args.n_features:,} features in the database, "
        f"{args.requests} requests (server time = inside the ASGI app; round trip = TestClient); html_key = the "
        "HTML page signed in with an API key"
    )
    if befores:
        print("before:", args.before)
        print(_table(befores))
        print("after:")
    print(_table(results))
    print(
        "cpu = the server's CPU time per request (process CPU while the app handles it; the client waits); "
        f"load = 1-minute load average during the run, on {os.cpu_count()} CPUs (other work on the machine "
        "inflates wall times)"
    )
    payload = {
        "parameters": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "targets": {"p50_ms": 20, "p99_ms": 60},
        **extra,
    }
    if not befores:
        write_results(f"page_speed{args.tag}", {**payload, "results": results})
        return
    ratios = _ratios(befores, results)
    print(
        table(
            [
                [k, v["cpu_p50_before_ms"], v["cpu_p50_after_ms"], v["cpu_p50_ratio"], v["cpu_mean_ratio"]]
                for k, v in ratios.items()
            ],
            ["page", "cpu p50 before", "cpu p50 after", "ratio p50", "ratio mean"],
        )
    )
    write_results(f"page_speed{args.tag}_before", {**payload, "results": befores})
    write_results(f"page_speed{args.tag}_after", {**payload, "results": results, "cpu_before_over_after": ratios})


if __name__ == "__main__":
    main()
