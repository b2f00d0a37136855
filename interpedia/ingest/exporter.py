"""Writing the Neuronpedia public dataset layout back out (what :mod:`npexport` reads)."""

from __future__ import annotations

import gzip
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from tqdm import tqdm

from interpedia.db.codec import decode_activation, float32_to_floats
from interpedia.db.tables import (
    Activation,
    Explanation,
    Feature,
    Model,
    Source,
    SourceRelease,
    SourceSet,
)
from interpedia.ingest.npexport import CONFIG_TABLES
from interpedia.store.documents import activation_doc
from interpedia.store.formats import iso
from interpedia.store.records import NP_FEATURE_NAMES
from interpedia.store.vocab import vocab_cache

log = logging.getLogger(__name__)


@dataclass
class ExportSummary:
    """What an export wrote."""

    sources: int = 0
    features: int = 0
    activations: int = 0
    explanations: int = 0


def _snake_to_camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


# Columns Neuronpedia names in snake_case in these tables.
_SNAKE_COLUMNS = {"num_prompts", "num_tokens_in_prompt"}
# interpedia's own bookkeeping, not Neuronpedia's data: the cache stamp every write replaces (store/versions.py).
INTERNAL_COLUMNS = frozenset({"doc_version"})


def row_json(row: Any, *, rename: dict[str, str] | None = None, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """A table row with Neuronpedia's column names."""
    out: dict[str, Any] = {}
    for col in row.__table__.columns:
        if col.key in skip or col.key in INTERNAL_COLUMNS:
            continue
        value = getattr(row, col.key)
        name = (rename or {}).get(col.key) or (col.key if col.key in _SNAKE_COLUMNS else _snake_to_camel(col.key))
        out[name] = iso(value) if hasattr(value, "isoformat") else value
    return out


def _write_jsonl(path: Path, rows: list[dict[str, Any]], *, gz: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"".join(orjson.dumps(r) + b"\n" for r in rows)
    tmp = path.with_name(path.name + ".tmp")
    if gz:
        tmp.write_bytes(gzip.compress(data, compresslevel=5, mtime=0))
    else:
        tmp.write_bytes(data)
    tmp.replace(path)


def _feature_chunks(session: Session, source: Source, size: int) -> Iterator[list[Feature]]:
    last = -1
    while True:
        chunk = list(
            session.scalars(
                select(Feature)
                .where(Feature.source_id == source.id, Feature.index > last)
                .order_by(Feature.index)
                .limit(size)
            )
        )
        if not chunk:
            return
        yield chunk
        last = chunk[-1].index


def _feature_row(model_id: str, source: Source, f: Feature) -> dict[str, Any]:
    row = {
        "modelId": model_id,
        "layer": source.name,
        "index": str(f.index),
        "sourceSetName": source.set_name,
        "creatorId": f.creator_id,
        "createdAt": iso(f.created_at),
    }
    row.update({np_name: getattr(f, col) for col, np_name in NP_FEATURE_NAMES.items()})
    return row


def _activation_rows(session: Session, model_id: str, source: Source, feats: list[Feature]) -> list[dict[str, Any]]:
    index_of = {f.id: f.index for f in feats}
    acts = list(
        session.scalars(
            select(Activation)
            .where(Activation.feature_id.in_(list(index_of)))
            .order_by(Activation.feature_id, Activation.max_value.desc(), Activation.id)
        )
    )
    decoded = [decode_activation(a.data) for a in acts]
    vocab_cache.strings(session, model_id, {int(i) for ids, _ in decoded for i in ids})
    rows = []
    for act, (ids, values) in zip(acts, decoded, strict=True):
        row: dict[str, Any] = dict(
            activation_doc(
                model_id, source.name, index_of[act.feature_id], act, vocab_cache.decode(session, model_id, ids), values
            )
        )
        # The export layout stores the attention pattern as zIndices = [zKIndices, zQIndices].
        row["zIndices"] = [row.pop("zKIndices"), row.pop("zQIndices")]
        rows.append(row)
    return rows


def _explanation_rows(session: Session, model_id: str, source: Source, feats: list[Feature]) -> list[dict[str, Any]]:
    index_of = {f.id: f.index for f in feats}
    rows = []
    for exp in session.scalars(
        select(Explanation)
        .where(Explanation.feature_id.in_(list(index_of)))
        .order_by(Explanation.feature_id, Explanation.created_at, Explanation.id)
    ):
        emb = None if exp.embedding is None else float32_to_floats(np.frombuffer(exp.embedding, dtype="<f4"))
        rows.append(
            {
                "id": exp.id,
                "modelId": model_id,
                "layer": source.name,
                "index": str(index_of[exp.feature_id]),
                "description": exp.description,
                "authorId": exp.author_id,
                "embedding": emb,
                "triggeredById": exp.triggered_by_user_id,
                "typeName": exp.type_name,
                "explanationModelName": exp.explanation_model_name,
                "notes": exp.notes,
                "scoreV1": exp.score_v1,
                "scoreV2": exp.score_v2,
                "createdAt": iso(exp.created_at),
            }
        )
    return rows


def export_np(
    factory: sessionmaker[Session],
    out: Path,
    *,
    model_id: str | None = None,
    source_ids: list[str] | None = None,
    batch_size: int = 1024,
) -> ExportSummary:
    """Write the chosen sources (default: all) in the Neuronpedia export layout under ``out``."""
    summary = ExportSummary()
    with factory() as session:
        for filename, table in CONFIG_TABLES.items():
            rows = [row_json(r) for r in session.scalars(select(table).order_by(table.name))]
            if rows:
                _write_jsonl(out / "config" / filename, rows)
        stmt = select(Source).order_by(Source.model_id, Source.name)
        if model_id:
            stmt = stmt.where(Source.model_id == model_id)
        if source_ids:
            stmt = stmt.where(Source.name.in_(source_ids))
        for source in session.scalars(stmt).all():
            _export_source(session, source, out, batch_size, summary)
    return summary


def _export_source(session: Session, source: Source, out: Path, batch_size: int, summary: ExportSummary) -> None:
    model = session.get(Model, source.model_id)
    set_row = session.get(SourceSet, source.set_id)
    assert model is not None and set_row is not None
    base = out / model.id / source.name
    _write_jsonl(base / "model.jsonl", [row_json(model)])
    _write_jsonl(base / "sourceset.jsonl", [row_json(set_row, skip=("id",))])
    _write_jsonl(base / "source.jsonl", [row_json(source, rename={"name": "id"}, skip=("id", "set_id"))])
    if set_row.release_name:
        release = session.get(SourceRelease, set_row.release_name)
        if release is not None:
            _write_jsonl(base / "release.jsonl", [row_json(release)])
    summary.sources += 1
    for n, feats in enumerate(
        tqdm(_feature_chunks(session, source, batch_size), desc=f"export {source.name}", unit="batch", disable=None)
    ):
        _write_jsonl(
            base / "features" / f"batch-{n}.jsonl.gz", [_feature_row(model.id, source, f) for f in feats], gz=True
        )
        acts = _activation_rows(session, model.id, source, feats)
        if acts:
            _write_jsonl(base / "activations" / f"batch-{n}.jsonl.gz", acts, gz=True)
        exps = _explanation_rows(session, model.id, source, feats)
        if exps:
            _write_jsonl(base / "explanations" / f"batch-{n}.jsonl.gz", exps, gz=True)
        summary.features += len(feats)
        summary.activations += len(acts)
        summary.explanations += len(exps)
