"""Neuronpedia's own storage and import method, reproduced for comparison.

Schema: the ``User``, ``Neuron`` and ``Activation`` tables as Prisma creates them from
``apps/webapp/prisma/schema.prisma`` (reference/neuronpedia.md §2.3/§2.4): the same columns in the
same order, Prisma's types (``String`` -> text, ``Float`` -> double precision, ``Int`` -> integer,
``DateTime`` -> timestamp(3), lists -> arrays), the same indexes, and the foreign keys from
``Activation`` to ``Neuron`` and ``User``. ``User`` keeps only what the keys need; ``Neuron``'s keys to
``Model``/``Source``/``SourceSet`` are left out (they would only add checks on the Neuron insert).

Import: ``importJsonlString`` of ``apps/webapp/lib/db/import.ts`` as called by
``app/api/admin/import/route.ts`` (reference/neuronpedia.md §7.1): each gz file is read whole and
decompressed, ``\\u0000`` escapes are replaced by a space, activation lines are parsed and their
``zIndices`` split into ``zKIndices``/``zQIndices`` and serialised again, the column list comes from
the first line's keys matched against ``information_schema.columns``, ``work_mem`` is set to 2GB, and
the lines go in chunks of 65,000 as one jsonb parameter to
``INSERT ... SELECT ... FROM jsonb_to_recordset($1::jsonb) ... ON CONFLICT DO NOTHING`` (autocommit,
one statement per chunk, as node-postgres does without BEGIN).
"""

from __future__ import annotations

import gzip
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psycopg

log = logging.getLogger(__name__)

WORK_MEM = "2GB"
CHUNK_LINES = 65_000
CREATOR_ID = "clsxbench0000000000000000"

SCHEMA_SQL = """
CREATE TABLE "User" (
    "id" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "bot" BOOLEAN NOT NULL DEFAULT false,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "User_pkey" PRIMARY KEY ("id")
);
CREATE UNIQUE INDEX "User_name_key" ON "User"("name");

CREATE TABLE "Neuron" (
    "modelId" TEXT NOT NULL,
    "layer" TEXT NOT NULL,
    "index" TEXT NOT NULL,
    "sourceSetName" TEXT,
    "creatorId" TEXT,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "maxActApprox" DOUBLE PRECISION DEFAULT 0,
    "hasVector" BOOLEAN NOT NULL DEFAULT false,
    "vector" DOUBLE PRECISION[] DEFAULT ARRAY[]::DOUBLE PRECISION[],
    "vectorLabel" TEXT,
    "vectorDefaultSteerStrength" DOUBLE PRECISION DEFAULT 10,
    "hookName" TEXT,
    "topkCosSimIndices" INTEGER[] DEFAULT ARRAY[]::INTEGER[],
    "topkCosSimValues" DOUBLE PRECISION[] DEFAULT ARRAY[]::DOUBLE PRECISION[],
    "neuron_alignment_indices" INTEGER[] DEFAULT ARRAY[]::INTEGER[],
    "neuron_alignment_values" DOUBLE PRECISION[] DEFAULT ARRAY[]::DOUBLE PRECISION[],
    "neuron_alignment_l1" DOUBLE PRECISION[] DEFAULT ARRAY[]::DOUBLE PRECISION[],
    "correlated_neurons_indices" INTEGER[] DEFAULT ARRAY[]::INTEGER[],
    "correlated_neurons_pearson" DOUBLE PRECISION[] DEFAULT ARRAY[]::DOUBLE PRECISION[],
    "correlated_neurons_l1" DOUBLE PRECISION[] DEFAULT ARRAY[]::DOUBLE PRECISION[],
    "correlated_features_indices" INTEGER[] DEFAULT ARRAY[]::INTEGER[],
    "correlated_features_pearson" DOUBLE PRECISION[] DEFAULT ARRAY[]::DOUBLE PRECISION[],
    "correlated_features_l1" DOUBLE PRECISION[] DEFAULT ARRAY[]::DOUBLE PRECISION[],
    "neg_str" TEXT[] DEFAULT ARRAY[]::TEXT[],
    "neg_values" DOUBLE PRECISION[] DEFAULT ARRAY[]::DOUBLE PRECISION[],
    "pos_str" TEXT[] DEFAULT ARRAY[]::TEXT[],
    "pos_values" DOUBLE PRECISION[] DEFAULT ARRAY[]::DOUBLE PRECISION[],
    "frac_nonzero" DOUBLE PRECISION NOT NULL DEFAULT 0,
    "freq_hist_data_bar_heights" DOUBLE PRECISION[] DEFAULT ARRAY[]::DOUBLE PRECISION[],
    "freq_hist_data_bar_values" DOUBLE PRECISION[] DEFAULT ARRAY[]::DOUBLE PRECISION[],
    "logits_hist_data_bar_heights" DOUBLE PRECISION[] DEFAULT ARRAY[]::DOUBLE PRECISION[],
    "logits_hist_data_bar_values" DOUBLE PRECISION[] DEFAULT ARRAY[]::DOUBLE PRECISION[],
    "decoder_weights_dist" DOUBLE PRECISION[] DEFAULT ARRAY[]::DOUBLE PRECISION[],
    "umap_cluster" INTEGER,
    "umap_log_feature_sparsity" DOUBLE PRECISION,
    "umap_x" DOUBLE PRECISION,
    "umap_y" DOUBLE PRECISION
);
CREATE UNIQUE INDEX "Neuron_modelId_layer_index_key" ON "Neuron"("modelId", "layer", "index");
CREATE INDEX "Neuron_modelId_idx" ON "Neuron"("modelId");
CREATE INDEX "Neuron_modelId_layer_idx" ON "Neuron"("modelId", "layer");
CREATE INDEX "Neuron_maxActApprox_idx" ON "Neuron"("maxActApprox");
CREATE INDEX "Neuron_creatorId_idx" ON "Neuron"("creatorId");
CREATE INDEX "Neuron_creatorId_hasVector_idx" ON "Neuron"("creatorId", "hasVector");
CREATE INDEX "Neuron_modelId_creatorId_hasVector_idx" ON "Neuron"("modelId", "creatorId", "hasVector");
CREATE INDEX "Neuron_hasVector_idx" ON "Neuron"("hasVector");
CREATE INDEX "Neuron_modelId_hasVector_idx" ON "Neuron"("modelId", "hasVector");
ALTER TABLE "Neuron" ADD CONSTRAINT "Neuron_creatorId_fkey" FOREIGN KEY ("creatorId")
    REFERENCES "User"("id") ON DELETE CASCADE ON UPDATE CASCADE;

CREATE TABLE "Activation" (
    "id" TEXT NOT NULL,
    "tokens" TEXT[],
    "dataIndex" TEXT,
    "index" TEXT NOT NULL,
    "layer" TEXT NOT NULL,
    "modelId" TEXT NOT NULL,
    "dataSource" TEXT,
    "maxValue" DOUBLE PRECISION NOT NULL,
    "maxValueTokenIndex" INTEGER NOT NULL,
    "minValue" DOUBLE PRECISION NOT NULL,
    "values" DOUBLE PRECISION[],
    "dfaValues" DOUBLE PRECISION[] DEFAULT ARRAY[]::DOUBLE PRECISION[],
    "dfaTargetIndex" INTEGER,
    "dfaMaxValue" DOUBLE PRECISION,
    "zQIndices" INTEGER[] DEFAULT ARRAY[]::INTEGER[],
    "zKIndices" INTEGER[] DEFAULT ARRAY[]::INTEGER[],
    "zValues" DOUBLE PRECISION[] DEFAULT ARRAY[]::DOUBLE PRECISION[],
    "creatorId" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "lossValues" DOUBLE PRECISION[] DEFAULT ARRAY[]::DOUBLE PRECISION[],
    "logitContributions" TEXT,
    "binMin" DOUBLE PRECISION,
    "binMax" DOUBLE PRECISION,
    "binContains" DOUBLE PRECISION,
    "qualifyingTokenIndex" INTEGER,
    CONSTRAINT "Activation_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "activation_model_layer_index" ON "Activation"("modelId", "layer", "index");
ALTER TABLE "Activation" ADD CONSTRAINT "Activation_modelId_layer_index_fkey" FOREIGN KEY ("modelId", "layer", "index")
    REFERENCES "Neuron"("modelId", "layer", "index") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "Activation" ADD CONSTRAINT "Activation_creatorId_fkey" FOREIGN KEY ("creatorId")
    REFERENCES "User"("id") ON DELETE CASCADE ON UPDATE CASCADE;
"""

# apps/webapp/lib/db/import.ts, verbatim in what it asks the catalogue.
_COLUMN_QUERY = """
      SELECT
        column_name,
        CASE
          WHEN data_type = 'ARRAY' THEN
            udt_name::regtype::text || '[]'
          WHEN data_type = 'USER-DEFINED' THEN (
            SELECT t.typname::text
            FROM pg_type t
            WHERE t.typname = c.udt_name
          )
          ELSE
            data_type
        END as data_type
      FROM information_schema.columns c
      WHERE table_name = %s
        AND column_name = ANY(%s)
      ORDER BY ordinal_position;
"""


def create_schema(dsn: str) -> None:
    """Create the tables and the default creator the export's rows point at."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SCHEMA_SQL)
        conn.execute('INSERT INTO "User" ("id", "name", "bot") VALUES (%s, %s, true)', (CREATOR_ID, "bench"))


def _is_number_array(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)


def normalize_activation_line(line: str) -> str:
    """``zIndices = [zKIndices, zQIndices]`` split into the two columns (normalizeActivationJsonlLine)."""
    parsed = orjson.loads(line)
    z = parsed.get("zIndices")
    if isinstance(z, list):
        k = z[0] if len(z) > 0 else None
        q = z[1] if len(z) > 1 else None
        if _is_number_array(k):
            parsed["zKIndices"] = k
        if _is_number_array(q):
            parsed["zQIndices"] = q
    return orjson.dumps(parsed).decode()


def import_jsonl_string(dsn: str, table: str, jsonl: str) -> int:
    """Insert a JSONL string's rows into ``table`` the way importJsonlString does; returns lines sent."""
    jsonl = jsonl.replace("\\u0000", " ")
    if table == "Activation":
        jsonl = "\n".join(normalize_activation_line(line) for line in jsonl.strip().split("\n") if line.strip())
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"SET work_mem = '{WORK_MEM}'")
        first = jsonl.strip().split("\n")[0]
        available = list(orjson.loads(first).keys())
        columns = conn.execute(_COLUMN_QUERY, (table, available)).fetchall()
        defs = ", ".join(f'"{name}" {dtype}' for name, dtype in columns)
        names = ", ".join(f'"{name}"' for name, _ in columns)
        query = (
            f'INSERT INTO "{table}" ({names}) SELECT {names} FROM jsonb_to_recordset(%s::jsonb) '
            f"as t({defs}) ON CONFLICT DO NOTHING"
        )
        lines = jsonl.strip().split("\n")
        for start in range(0, len(lines), CHUNK_LINES):
            conn.execute(query, ("[" + ",".join(lines[start : start + CHUNK_LINES]) + "]",))
        return len(lines)


def _batch_files(directory: Path) -> list[Path]:
    files = [p for p in directory.glob("batch-*.jsonl.gz")]
    return sorted(files, key=lambda p: int(p.name.split("-", 1)[1].split(".", 1)[0]))


@dataclass
class BaselineCounts:
    """Lines the baseline sent."""

    features: int = 0
    activations: int = 0


def import_source_dir(dsn: str, source_dir: Path) -> BaselineCounts:
    """Features then activations of one ``<model>/<source>`` directory, file by file, as the admin route does."""
    counts = BaselineCounts()
    for path in _batch_files(source_dir / "features"):
        counts.features += import_jsonl_string(dsn, "Neuron", gzip.decompress(path.read_bytes()).decode())
    for path in _batch_files(source_dir / "activations"):
        counts.activations += import_jsonl_string(dsn, "Activation", gzip.decompress(path.read_bytes()).decode())
    return counts
