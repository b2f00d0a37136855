"""Explanation search: recall@10 against exact search, and query latency, on Postgres (pgvector HNSW) and SQLite.

Postgres: ``--pg-n`` explanations (one per feature, spread over 8 sources) with synthetic 384-dim
embeddings are loaded by binary COPY into a migrated database; the HNSW index (``vector_cosine_ops``,
m=16, ef_construction=100: the migration's and ``interpedia embed --reindex``'s defaults) is built
after loading, with its build time and size reported. Queries go through
``interpedia.search.index.search_vectors`` (the API's code path: SQL via SQLAlchemy, ``SET LOCAL``
of ``hnsw.ef_search``/``hnsw.iterative_scan``), unfiltered and filtered to one source, for each
``--ef-search``. Ground truth is exact cosine top-10 by numpy. ``--real N`` adds a correctness run
on N real all-MiniLM-L6-v2 embeddings of sentences from the local Python documentation.

SQLite: ``--sqlite-n`` explanations; the in-process exact index (recall 1.0 by construction, checked),
its load time, memory and query latency.

End to end, on both backends (Postgres at the default ``ef_search``): whole searches as the API runs them
(``interpedia.search.query.search_explanations``: the query text embedded by all-MiniLM-L6-v2 on this CPU, the
visible sources looked up, the vector index asked for a page, the 20 results read with their features), one at
a time, for ``--queries`` held-out documentation sentences; and the query's embedding alone. The index-only
figures above leave the embedding out; a user waits for both.

Synthetic vectors (``--vectors``): ``calibrated`` (default) draws each around a real all-MiniLM-L6-v2
embedding of a documentation sentence, with Gaussian noise shaped by the real set's covariance;
``clustered`` is topic centres on an equal-variance 48-dim subspace (much harder than real text);
``isotropic`` is pure noise, the worst case for any graph index and nothing a sentence model produces.

    .venv/bin/python bench/explanation_search.py [--pg-n 200000] [--sqlite-n 100000] [--queries 200]
        [--ef-search 40,100,200] [--real 3000] [--vectors calibrated|clustered|isotropic]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import log, pg_settings, postgres, setup_logging, table, write_results  # noqa: E402

from interpedia.config import Settings  # noqa: E402
from interpedia.db import make_engine, make_sessionmaker, migrate  # noqa: E402
from interpedia.search.index import HNSW_INDEX, search_vectors  # noqa: E402

DIM = 384
K = 10
N_SOURCES = 8
Vecs = npt.NDArray[np.float32]


def synthetic(n: int, seed: int, *, isotropic: bool = False, topics: int = 2000) -> Vecs:
    """Unit vectors with the structure of sentence embeddings (topic clusters on a low-rank subspace)."""
    rng = np.random.default_rng(seed)
    if isotropic:
        x = rng.standard_normal((n, DIM), dtype=np.float32)
    else:
        base = np.random.default_rng(1234)  # the same topics and subspace for every call
        centres = base.standard_normal((topics, DIM), dtype=np.float32)
        basis = base.standard_normal((48, DIM), dtype=np.float32) / np.sqrt(48)
        x = np.empty((n, DIM), dtype=np.float32)
        for start in range(0, n, 100_000):
            m = min(100_000, n - start)
            topic = rng.integers(0, topics, m)
            x[start : start + m] = (
                0.6 * centres[topic]
                + rng.standard_normal((m, 48), dtype=np.float32) @ basis
                + 0.35 * rng.standard_normal((m, DIM), dtype=np.float32)
            )
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def calibrated(n: int, seed: int, real: Vecs) -> Vecs:
    """Unit vectors drawn around real sentence embeddings: a real vector plus Gaussian noise with the real
    set's own covariance (its PCA spectrum), so neighbourhoods look like paraphrase clusters of real text."""
    rng = np.random.default_rng(seed)
    centred = real - real.mean(axis=0)
    _, svals, vt = np.linalg.svd(centred, full_matrices=False)
    scale = (svals / np.sqrt(len(real) - 1)).astype(np.float32)  # per-component standard deviations
    x = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        noise = (rng.standard_normal((m, len(scale)), dtype=np.float32) * scale) @ vt
        x[start : start + m] = real[rng.integers(0, len(real), m)] + 0.8 * noise
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def exact_topk(data: Vecs, queries: Vecs, k: int, mask: npt.NDArray[np.bool_] | None = None) -> list[set[int]]:
    """Row numbers of the exact cosine top-k of each query (optionally among ``mask`` rows)."""
    out = []
    for q in queries:
        sims = data @ q
        if mask is not None:
            sims = np.where(mask, sims, -np.inf)
        top = np.argpartition(-sims, k)[:k]
        out.append(set(top.tolist()))
    return out


def _ids(n: int) -> list[str]:
    return [f"e{i:09d}" for i in range(n)]


def _percentiles(ms: list[float]) -> dict[str, float]:
    arr = np.asarray(ms)
    return {
        "p50_ms": round(float(np.percentile(arr, 50)), 2),
        "p95_ms": round(float(np.percentile(arr, 95)), 2),
        "mean_ms": round(float(arr.mean()), 2),
    }


def _measure(
    factory: Any,
    settings: Settings,
    queries: Vecs,
    truth: list[set[int]],
    source_ids: list[int] | None,
    warmup: int = 20,
) -> dict[str, float]:
    found: list[set[int]] = []
    times: list[float] = []
    with factory() as session:
        for i, q in enumerate(np.concatenate([queries[:warmup], queries])):
            session.rollback()
            t0 = time.perf_counter()
            hits = search_vectors(session, settings, q, source_ids=source_ids, n=K)
            dt = (time.perf_counter() - t0) * 1000
            if i >= warmup:
                times.append(dt)
                found.append({int(h.explanation_id[1:]) for h in hits})
    recall = float(np.mean([len(f & t) / K for f, t in zip(found, truth, strict=True)]))
    return {"recall_at_10": round(recall, 4), **_percentiles(times)}


_EMBEDDER: list[Any] = []


def _embedder() -> Any:
    """The local all-MiniLM-L6-v2, loaded once (the load is not timed: a server loads it at start)."""
    if not _EMBEDDER:
        from interpedia.search.embeddings import LocalEmbedder

        _EMBEDDER.append(LocalEmbedder())
        _EMBEDDER[0].embed(["warm up"])
    return _EMBEDDER[0]


def _query_texts(n: int) -> list[str]:
    """Documentation sentences held out of the ones the calibrated vectors are drawn around."""
    return _real_sentences(2000 + n)[2000:]


def _measure_end_to_end(factory: Any, settings: Settings, texts: list[str], warmup: int = 10) -> dict[str, Any]:
    """Whole searches (embedding + index + the page's results) and the embedding alone, in ms."""
    from interpedia.search.query import SearchScope, search_explanations

    embedder = _embedder()
    whole: list[float] = []
    embedding: list[float] = []
    with factory() as session:
        for i, text in enumerate(texts[:warmup] + texts):
            session.rollback()
            t0 = time.perf_counter()
            embedder.embed([text])
            t1 = time.perf_counter()
            doc = search_explanations(session, settings, embedder, query=text, scope=SearchScope())
            t2 = time.perf_counter()
            assert doc["results"], "a search found nothing"
            if i >= warmup:
                embedding.append((t1 - t0) * 1000)
                whole.append((t2 - t1) * 1000)
    return {"queries": len(texts), "end_to_end": _percentiles(whole), "embedding": _percentiles(embedding)}


def _load_postgres(url: str, data: Vecs) -> None:
    import psycopg
    from pgvector.psycopg import register_vector

    n = len(data)
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        register_vector(conn)
        conn.execute(
            "INSERT INTO models (id, display_name, layers, visibility, inference_enabled, instruct, "
            "thinking, updated_at) VALUES ('bench', 'bench', 8, 'PUBLIC', false, false, false, now())"
        )
        conn.execute(
            "INSERT INTO source_sets (model_id, name, description, visibility, has_dashboards, "
            "allow_inference_search, default_range, default_show_breaks, show_dfa, show_correlated, "
            "show_head_attribution, show_umap, urls) VALUES ('bench', 'res', '', 'PUBLIC', true, false, 1, "
            "true, false, false, false, false, '[]')"
        )
        for s in range(N_SOURCES):
            conn.execute(
                "INSERT INTO sources (model_id, name, set_id, set_name, visibility, has_dashboards, "
                "inference_enabled, has_umap, has_umap_log_sparsity, has_umap_clusters) VALUES "
                "('bench', %s, 1, 'res', 'PUBLIC', true, false, false, false, false)",
                (f"{s}-res",),
            )
        conn.execute(f"DROP INDEX {HNSW_INDEX}")
        t0 = time.perf_counter()
        with conn.cursor() as cur, cur.copy("COPY features (id, source_id, index, has_vector) FROM STDIN") as copy:
            for i in range(n):
                copy.write_row((i + 1, i % N_SOURCES + 1, i // N_SOURCES, False))
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY explanations (id, feature_id, description, score_v1, embedding, "
                "updated_at) FROM STDIN WITH (FORMAT BINARY)"
            ) as copy,
        ):
            copy.set_types(["varchar", "int8", "text", "float8", "vector", "timestamp"])
            stamp = dt.datetime.now().replace(microsecond=0)
            for i, (eid, vec) in enumerate(zip(_ids(n), data, strict=True)):
                copy.write_row((eid, i + 1, f"synthetic explanation {i}", 0.0, vec, stamp))
        conn.commit()
        log.info("loaded %d explanations by COPY in %.1fs", n, time.perf_counter() - t0)
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE features")
        conn.execute("VACUUM ANALYZE explanations")


def _build_hnsw(url: str, settings: Settings) -> dict[str, Any]:
    from interpedia.search.maintenance import reindex_postgres

    engine = make_engine(url)
    phases: list[str] = []

    def report(row: dict[str, Any]) -> None:
        line = f"{row.get('phase')}: {row.get('tuples_done')}/{row.get('tuples_total')} tuples"
        phases.append(line)
        log.info("index build: %s", line)

    seconds = reindex_postgres(engine, settings, report=report, every_s=15.0)
    with engine.connect() as conn:
        size = conn.exec_driver_sql(f"SELECT pg_relation_size('{HNSW_INDEX}')").scalar()
    engine.dispose()
    return {"build_s": round(seconds, 1), "index_mb": round(int(size or 0) / 1e6, 1), "progress_samples": phases[-3:]}


def vectors(kind: str, n: int, seed: int) -> Vecs:
    """``n`` unit vectors of the chosen kind (see the module docstring)."""
    if kind == "calibrated":
        return calibrated(n, seed, _real_sample())
    return synthetic(n, seed, isotropic=kind == "isotropic")


_REAL: list[Vecs] = []


def _real_sample(n: int = 2000) -> Vecs:
    """Real all-MiniLM-L6-v2 embeddings of documentation sentences (computed once per run)."""
    if not _REAL:
        from interpedia.search.embeddings import LocalEmbedder

        t0 = time.perf_counter()
        _REAL.append(LocalEmbedder(batch_size=64).embed(_real_sentences(n)))
        log.info("embedded %d real sentences in %.0fs", n, time.perf_counter() - t0)
    return _REAL[0]


def _prewarm(cluster: Any, database: str) -> None:
    cluster.psql("CREATE EXTENSION IF NOT EXISTS pg_prewarm", database=database)
    for rel in (HNSW_INDEX, "explanations", "features", "features_pkey", "explanations_pkey"):
        cluster.psql(f"SELECT pg_prewarm('{rel}')", database=database)


def bench_postgres(n: int, n_queries: int, efs: list[int], kind: str, real: int) -> dict[str, Any]:
    """Load, build, then measure recall@10 and latency for each ef_search (unfiltered and one source)."""
    data = vectors(kind, n, seed=1)
    queries = vectors(kind, n_queries, seed=2)
    truth = exact_topk(data, queries, K)
    source_mask = (np.arange(n) % N_SOURCES) == 0
    truth_filtered = exact_topk(data, queries, K, source_mask)
    out: dict[str, Any] = {"n": n, "queries": n_queries, "vectors": kind}
    with postgres() as cluster:
        # Size the server as a deployment would: the index fits in shared buffers, and is prewarmed.
        cluster.psql("ALTER SYSTEM SET shared_buffers = '3GB'")
        cluster.psql("ALTER SYSTEM SET max_parallel_maintenance_workers = 2")
        cluster.restart()
        out["server"] = pg_settings(cluster)
        url = cluster.create_database("bench")
        migrate(url)
        _load_postgres(url, data)
        settings = Settings(database_url=url, vector_maintenance_work_mem="4GB")
        out["build"] = _build_hnsw(url, settings)
        _prewarm(cluster, "bench")
        log.info("HNSW build: %s", out["build"])
        factory = make_sessionmaker(make_engine(url))
        rows = []
        for ef in efs:
            settings.vector_ef_search = ef
            rows.append({"ef_search": ef, "filter": "none", **_measure(factory, settings, queries, truth, None)})
            rows.append(
                {
                    "ef_search": ef,
                    "filter": "1 of 8 sources",
                    **_measure(factory, settings, queries, truth_filtered, [1]),
                }
            )
            log.info("%s", rows[-2:])
        out["rows"] = rows
        settings.vector_ef_search = Settings().vector_ef_search
        out["end_to_end"] = {
            "ef_search": settings.vector_ef_search,
            **_measure_end_to_end(factory, settings, _query_texts(n_queries)),
        }
        log.info("end to end: %s", out["end_to_end"])
        if real:
            out["real"] = _bench_real(cluster, real, n_queries, efs)
    return out


def _real_sentences(n: int) -> list[str]:
    import re

    from interpedia.demo.corpus import PY_DOC_SOURCES

    seen: set[str] = set()
    out: list[str] = []
    for path in sorted(PY_DOC_SOURCES.rglob("*.txt")):
        for sent in re.split(r"(?<=[.!?])\s+", path.read_text(errors="ignore").replace("\n", " ")):
            sent = re.sub(r"[`*:_|]+", "", sent).strip()
            if 30 <= len(sent) <= 160 and sent not in seen:
                seen.add(sent)
                out.append(sent)
                if len(out) >= n:
                    return out
    return out


def _bench_real(cluster: Any, n: int, n_queries: int, efs: list[int]) -> dict[str, Any]:
    """Recall on real MiniLM embeddings of documentation sentences (queries: held-out sentences)."""
    from interpedia.search.embeddings import LocalEmbedder

    sentences = _real_sentences(n + n_queries)
    t0 = time.perf_counter()
    vecs = LocalEmbedder(batch_size=128).embed(sentences)
    embed_s = time.perf_counter() - t0
    rng = np.random.default_rng(3)
    order = rng.permutation(len(sentences))
    data, queries = vecs[order[n_queries:]], vecs[order[:n_queries]]
    truth = exact_topk(data, queries, K)
    url = cluster.create_database("bench_real")
    migrate(url)
    _load_postgres(url, data)
    settings = Settings(database_url=url, vector_maintenance_work_mem="2GB")
    build = _build_hnsw(url, settings)
    _prewarm(cluster, "bench_real")
    factory = make_sessionmaker(make_engine(url))
    rows = []
    for ef in efs:
        settings.vector_ef_search = ef
        rows.append({"ef_search": ef, **_measure(factory, settings, queries, truth, None)})
    return {
        "n": len(data),
        "queries": n_queries,
        "embed_s": round(embed_s, 1),
        "embed_per_s": round(len(sentences) / embed_s, 1),
        "build": build,
        "rows": rows,
    }


def bench_sqlite(n: int, n_queries: int, kind: str) -> dict[str, Any]:
    """The exact in-process index over a migrated SQLite file of ``n`` explanations."""
    data = vectors(kind, n, seed=1)
    queries = vectors(kind, n_queries, seed=2)
    truth = exact_topk(data, queries, K)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        url = f"sqlite:///{path}"
        migrate(url)
        t0 = time.perf_counter()
        con = sqlite3.connect(path)
        con.execute(
            "INSERT INTO models (id, display_name, layers, visibility, inference_enabled, instruct, thinking, "
            "updated_at) VALUES ('bench', 'bench', 1, 'PUBLIC', 0, 0, 0, CURRENT_TIMESTAMP)"
        )
        con.execute(
            "INSERT INTO source_sets (model_id, name, description, visibility, has_dashboards, "
            "allow_inference_search, default_range, default_show_breaks, show_dfa, show_correlated, "
            "show_head_attribution, show_umap, urls) VALUES ('bench','res','','PUBLIC',1,0,1,1,0,0,0,0,'[]')"
        )
        con.execute(
            "INSERT INTO sources (model_id, name, set_id, set_name, visibility, has_dashboards, "
            "inference_enabled, has_umap, has_umap_log_sparsity, has_umap_clusters) VALUES "
            "('bench', '0-res', 1, 'res', 'PUBLIC', 1, 0, 0, 0, 0)"
        )
        con.executemany(
            'INSERT INTO features (id, source_id, "index", has_vector) VALUES (?, 1, ?, 0)',
            ((i + 1, i) for i in range(n)),
        )
        con.executemany(
            "INSERT INTO explanations (id, feature_id, description, score_v1, embedding, updated_at) "
            "VALUES (?, ?, ?, 0, ?, CURRENT_TIMESTAMP)",
            (
                (eid, i + 1, f"synthetic explanation {i}", vec.astype("<f4").tobytes())
                for i, (eid, vec) in enumerate(zip(_ids(n), data, strict=True))
            ),
        )
        con.commit()
        con.close()
        load_s = time.perf_counter() - t0
        settings = Settings(database_url=url)
        factory = make_sessionmaker(make_engine(url))
        t0 = time.perf_counter()
        with factory() as session:
            search_vectors(session, settings, queries[0], source_ids=None, n=K)
        index_load_s = time.perf_counter() - t0
        from interpedia.search.index import memory_index

        with factory() as session:
            mem = memory_index(session).nbytes
        row = _measure(factory, settings, queries, truth, None)
        end_to_end = _measure_end_to_end(factory, settings, _query_texts(n_queries))
    return {
        "n": n,
        "queries": n_queries,
        "insert_s": round(load_s, 1),
        "index_load_s": round(index_load_s, 2),
        "index_memory_mb": round(mem / 1e6, 1),
        **row,
        "end_to_end": end_to_end,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg-n", type=int, default=200_000)
    parser.add_argument("--sqlite-n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ef-search", default="40,100,200")
    parser.add_argument("--real", type=int, default=0, help="also measure N real MiniLM embeddings on Postgres")
    parser.add_argument(
        "--vectors",
        choices=["calibrated", "clustered", "isotropic"],
        default="calibrated",
        help="synthetic vectors: around real embeddings (default), topic clusters on a 48-dim "
        "subspace, or isotropic noise (the worst case)",
    )
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--tag", default="", help="suffix of the result file name (e.g. 1m)")
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    setup_logging()
    efs = [int(x) for x in args.ef_search.split(",")]
    result: dict[str, Any] = {"k": K, "dim": DIM}
    if not args.skip_sqlite:
        result["sqlite"] = bench_sqlite(args.sqlite_n, args.queries, args.vectors)
        log.info("sqlite: %s", result["sqlite"])
    if not args.skip_postgres:
        result["postgres"] = bench_postgres(args.pg_n, args.queries, efs, args.vectors, args.real)
    name = "explanation_search" + ("" if args.vectors == "calibrated" else f"_{args.vectors}")
    name += f"_{args.tag}" if args.tag else ""
    write_results(name, result)
    if "sqlite" in result:
        s = result["sqlite"]
        print(
            table(
                [
                    [
                        "sqlite (exact, in-process)",
                        s["n"],
                        "-",
                        "none",
                        s["recall_at_10"],
                        s["p50_ms"],
                        s["p95_ms"],
                        s["end_to_end"]["end_to_end"]["p50_ms"],
                        s["end_to_end"]["end_to_end"]["p95_ms"],
                    ]
                ],
                ["backend", "n", "ef_search", "filter", "recall@10", "p50 ms", "p95 ms", "e2e p50 ms", "e2e p95 ms"],
            )
        )
    if "postgres" in result:
        pg = result["postgres"]
        print(
            f"\npostgres HNSW (m=16, ef_construction=100) over {pg['n']} {pg['vectors']} vectors: "
            f"build {pg['build']['build_s']}s, index {pg['build']['index_mb']} MB"
        )
        print(
            table(
                [[r["ef_search"], r["filter"], r["recall_at_10"], r["p50_ms"], r["p95_ms"]] for r in pg["rows"]],
                ["ef_search", "filter", "recall@10", "p50 ms", "p95 ms"],
            )
        )
        e2e = pg["end_to_end"]
        print(
            f"end to end at ef_search {e2e['ef_search']} (embedding + search + 20 results): "
            f"p50 {e2e['end_to_end']['p50_ms']} ms, p95 {e2e['end_to_end']['p95_ms']} ms; the embedding alone: "
            f"p50 {e2e['embedding']['p50_ms']} ms, p95 {e2e['embedding']['p95_ms']} ms"
        )
        if "real" in pg:
            real = pg["real"]
            print(f"\nreal all-MiniLM-L6-v2 embeddings ({real['n']} sentences, embedded at {real['embed_per_s']}/s):")
            print(
                table(
                    [[r["ef_search"], r["recall_at_10"], r["p50_ms"], r["p95_ms"]] for r in real["rows"]],
                    ["ef_search", "recall@10", "p50 ms", "p95 ms"],
                )
            )


if __name__ == "__main__":
    main()
