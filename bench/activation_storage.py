"""Bytes per stored activation in Postgres: interpedia's compact rows vs Neuronpedia's ``Activation`` rows.

The same synthetic export (bench/synthetic.py) goes into two databases of one throwaway cluster:
through interpedia's real importer (``interpedia.ingest.import_path``) into a migrated database, and
through Neuronpedia's own import method (bench/npbaseline.py) into its Prisma schema. After
``VACUUM ANALYZE`` both are measured with ``pg_table_size`` (heap + TOAST + free-space/visibility
maps), ``pg_indexes_size`` and ``pg_total_relation_size``. Our total includes ``vocab_tokens``: the
token strings have to live somewhere. The features tables are reported too, per feature, but are not
part of the per-activation figures.

    .venv/bin/python bench/activation_storage.py [--small] [--n-features N] [--workdir DIR]

Results go to bench/results/activation_storage.json (default or --small size), or
activation_storage_<N>.json for other sizes.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

import npbaseline  # noqa: E402
from _common import (  # noqa: E402
    command_line,
    pg_settings,
    postgres,
    setup_logging,
    table,
    write_results,
)
from synthetic import SyntheticConfig, build_vocab, write_np_export  # noqa: E402

from interpedia.db import make_engine, make_sessionmaker, migrate  # noqa: E402
from interpedia.ingest import import_path  # noqa: E402
from interpedia.store.vocab import vocab_cache  # noqa: E402

log = logging.getLogger("bench.activation_storage")

TARGET_RATIO = 3.0

_SIZE_SQL = """
SELECT pg_relation_size(c.oid),
       COALESCE(pg_total_relation_size(NULLIF(c.reltoastrelid, 0)), 0),
       pg_table_size(c.oid), pg_indexes_size(c.oid), pg_total_relation_size(c.oid)
FROM pg_class c WHERE c.oid = %s::regclass
"""
_INDEX_SQL = """
SELECT i.indexrelid::regclass::text, pg_relation_size(i.indexrelid)
FROM pg_index i WHERE i.indrelid = %s::regclass ORDER BY 1
"""


def relation_sizes(conn: psycopg.Connection[Any], relation: str) -> dict[str, Any]:
    """Heap, TOAST, data (heap+TOAST+maps), indexes and total bytes of a table, plus each index."""
    heap, toast, data, indexes, total = conn.execute(_SIZE_SQL, (relation,)).fetchone()  # type: ignore[misc]
    per_index = dict(conn.execute(_INDEX_SQL, (relation,)).fetchall())
    return {"heap": heap, "toast": toast, "data": data, "indexes": indexes, "total": total, "index_sizes": per_index}


def vacuum_analyze(dsn: str, tables: list[str]) -> None:
    """VACUUM ANALYZE the given tables (outside a transaction)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name in tables:
            conn.execute(f"VACUUM ANALYZE {name}")


def load_ours(url: str, export_root: Path) -> dict[str, Any]:
    """Migrate and import the export with interpedia's importer."""
    migrate(url)
    vocab_cache.clear()
    engine = make_engine(url)
    try:
        started = time.perf_counter()
        summary = import_path(export_root, make_sessionmaker(engine))
        return {"seconds": time.perf_counter() - started, "activations": summary.counts.activations}
    finally:
        engine.dispose()


def load_theirs(dsn: str, source_dir: Path) -> dict[str, Any]:
    """Create Neuronpedia's schema and import the export the way its admin importer does."""
    npbaseline.create_schema(dsn)
    started = time.perf_counter()
    counts = npbaseline.import_source_dir(dsn, source_dir)
    return {"seconds": time.perf_counter() - started, "activations": counts.activations}


def column_stats_ours(conn: psycopg.Connection[Any]) -> dict[str, float]:
    """Average stored widths of our activation rows."""
    row = conn.execute("""
        SELECT count(*), avg(octet_length(data)), avg(pg_column_size(data)), avg(pg_column_size(a.*)),
               avg(pg_column_size(creator_id)), avg(pg_column_size(extras)),
               (SELECT count(*) FROM vocab_tokens), (SELECT avg(octet_length(token)) FROM vocab_tokens)
        FROM activations a""").fetchone()
    assert row is not None
    keys = (
        "rows",
        "blob_bytes",
        "blob_stored",
        "row_stored",
        "creator_id_stored",
        "extras_stored",
        "vocab_rows",
        "vocab_token_bytes",
    )
    return {k: round(float(v or 0), 2) for k, v in zip(keys, row, strict=True)}


def column_stats_theirs(conn: psycopg.Connection[Any]) -> dict[str, float]:
    """Average stored (possibly compressed) and raw widths of Neuronpedia's activation arrays."""
    row = conn.execute("""
        SELECT count(*), avg(pg_column_size(t.*)),
               avg(pg_column_size("tokens")), avg(pg_column_size("tokens" || ARRAY[]::text[])),
               avg(pg_column_size("values")), avg(pg_column_size("values" || ARRAY[]::float8[])),
               avg(pg_column_size("id")), avg(pg_column_size("creatorId")),
               count(*) FILTER (WHERE pg_column_compression("values") IS NOT NULL),
               count(*) FILTER (WHERE pg_column_compression("tokens") IS NOT NULL)
        FROM "Activation" t""").fetchone()
    assert row is not None
    keys = (
        "rows",
        "row_stored",
        "tokens_stored",
        "tokens_raw",
        "values_stored",
        "values_raw",
        "id_stored",
        "creator_id_stored",
        "rows_values_compressed",
        "rows_tokens_compressed",
    )
    return {k: round(float(v or 0), 2) for k, v in zip(keys, row, strict=True)}


def per(n: int, value: float) -> float:
    """Bytes per item, one decimal."""
    return round(value / n, 1) if n else 0.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="quick run: 200 features")
    parser.add_argument("--n-features", type=int, default=None, help="features to generate (default 2000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="where to write the export (default: temp)")
    parser.add_argument("--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write bench/results/activation_storage.json."""
    args = parse_args(argv)
    setup_logging(args.verbose)
    n_features = args.n_features or (200 if args.small else 2000)
    cfg = SyntheticConfig(n_features=n_features, seed=args.seed)
    params = {"small": args.small, "n_features": n_features, "seed": args.seed, "synthetic": cfg.to_dict()}
    log.info("command: %s", command_line())
    log.info("parameters: %s", params)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="interpedia-bench-"))
    try:
        export = write_np_export(cfg, workdir / "np-export", vocab=build_vocab(cfg))
        with postgres() as pg:
            settings = pg_settings(pg)
            ours_url = pg.create_database("ours")
            log.info("loading %d activations through interpedia's importer", export.n_activations)
            ours_load = load_ours(ours_url, export.root)
            theirs_dsn = pg.dsn("theirs")
            pg.create_database("theirs")
            log.info("loading the same rows into Neuronpedia's Activation table")
            theirs_load = load_theirs(theirs_dsn, export.source_dir)
            vacuum_analyze(pg.dsn("ours"), ["activations", "vocab_tokens", "features"])
            vacuum_analyze(theirs_dsn, ['"Activation"', '"Neuron"'])
            with psycopg.connect(pg.dsn("ours")) as conn:
                ours = {t: relation_sizes(conn, t) for t in ("activations", "vocab_tokens", "features")}
                ours_cols = column_stats_ours(conn)
            with psycopg.connect(theirs_dsn) as conn:
                theirs = {t: relation_sizes(conn, f'"{t}"') for t in ("Activation", "Neuron")}
                theirs_cols = column_stats_theirs(conn)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    n = export.n_activations
    if ours_cols["rows"] != n or theirs_cols["rows"] != n:
        log.error("row counts differ: export %d, ours %d, theirs %d", n, ours_cols["rows"], theirs_cols["rows"])
        return 1
    acts, vocab = ours["activations"], ours["vocab_tokens"]
    ours_fig = {k: acts[k] + vocab[k] for k in ("heap", "toast", "data", "indexes", "total")}
    theirs_fig = {k: theirs["Activation"][k] for k in ("heap", "toast", "data", "indexes", "total")}
    ratio = {k: round(theirs_fig[k] / ours_fig[k], 2) if ours_fig[k] else None for k in ("data", "indexes", "total")}
    figures = {
        "n_activations": n,
        "n_features": n_features,
        "export": export.to_dict(),
        "bytes_per_activation": {
            "ours": {k: per(n, v) for k, v in ours_fig.items()},
            "ours_activations_table_only": {k: per(n, acts[k]) for k in ("heap", "toast", "data", "indexes", "total")},
            "ours_vocab_tokens_share": {k: per(n, vocab[k]) for k in ("data", "indexes", "total")},
            "neuronpedia": {k: per(n, v) for k, v in theirs_fig.items()},
        },
        "ratio_neuronpedia_over_ours": ratio,
        "target_ratio": TARGET_RATIO,
        "meets_target": bool(ratio["total"] and ratio["total"] >= TARGET_RATIO),
        "bytes_per_feature_row": {
            "ours_features": per(n_features, ours["features"]["total"]),
            "neuronpedia_Neuron": per(n_features, theirs["Neuron"]["total"]),
        },
        "relations": {"ours": ours, "neuronpedia": theirs},
        "columns": {"ours": ours_cols, "neuronpedia": theirs_cols},
        "load_seconds": {"ours": round(ours_load["seconds"], 2), "neuronpedia": round(theirs_load["seconds"], 2)},
        "postgres": settings,
    }
    # The default size keeps the plain name; other sizes get their own file, so that both can be kept.
    name = "activation_storage" if n_features in (200, 2000) else f"activation_storage_{n_features}"
    write_results(name, {"parameters": params, "figures": figures})

    bpa = figures["bytes_per_activation"]
    rows = [
        ["interpedia (activations + vocab_tokens)", bpa["ours"]["data"], bpa["ours"]["indexes"], bpa["ours"]["total"]],
        [
            "  of which vocab_tokens",
            bpa["ours_vocab_tokens_share"]["data"],
            bpa["ours_vocab_tokens_share"]["indexes"],
            bpa["ours_vocab_tokens_share"]["total"],
        ],
        [
            'Neuronpedia "Activation"',
            bpa["neuronpedia"]["data"],
            bpa["neuronpedia"]["indexes"],
            bpa["neuronpedia"]["total"],
        ],
        ["ratio Neuronpedia / interpedia", ratio["data"], ratio["indexes"], ratio["total"]],
    ]
    print(f"command: {command_line()}")
    print(
        f"parameters: {n_features} features x {cfg.acts_per_feature} activations x {cfg.n_tokens} tokens = "
        f"{n} activations; vocab {cfg.vocab_size} ({export.distinct_tokens} used); seed {args.seed}; "
        f"Postgres {settings['server_version']}"
    )
    print("bytes per activation (after VACUUM ANALYZE; data = heap + TOAST + maps)")
    print(table(rows, ["", "data", "indexes", "total"]))
    verdict = "meets" if figures["meets_target"] else "MISSES"
    print(f"target: ours <= 1/{TARGET_RATIO:g} of Neuronpedia's total -> {verdict} (ratio {ratio['total']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
