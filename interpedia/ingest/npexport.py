"""The Neuronpedia public dataset layout (reference/neuronpedia.md §7.1): reading it in.

::

    config/{explanation_type,explanation_model_type,explanation_score_model,explanation_score_type,eval_type}.jsonl
    <modelId>/<sourceId>/{release,model,sourceset,source}.jsonl
    <modelId>/<sourceId>/{features,activations,explanations}/batch-<n>.jsonl.gz

Each line is a table row with Neuronpedia's column names. Files are streamed line by line and
written in batches, so memory stays flat however large the export is.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from tqdm import tqdm

from interpedia.db.engine import transaction
from interpedia.db.tables import (
    EvalType,
    ExplanationModelType,
    ExplanationScoreModel,
    ExplanationScoreType,
    ExplanationType,
    Source,
    SourceRelease,
)
from interpedia.ingest.exportfiles import ExportFiles, LocalFiles, check_owner, display_name, iter_jsonl
from interpedia.ingest.npactivations import ActivationReadahead, import_activation_file
from interpedia.ingest.pipeline import Batch, BatchImporter, ImportSummary, SourceTarget, skip_done
from interpedia.ingest.validate import (
    BadInput,
    as_float,
    as_float_list,
    as_int,
    as_int_list,
    as_str,
    as_str_list,
    explanation_record,
)
from interpedia.store.records import NP_FEATURE_NAMES, FeatureRecord

log = logging.getLogger(__name__)

CONFIG_TABLES: dict[str, Any] = {
    "explanation_type.jsonl": ExplanationType,
    "explanation_model_type.jsonl": ExplanationModelType,
    "explanation_score_model.jsonl": ExplanationScoreModel,
    "explanation_score_type.jsonl": ExplanationScoreType,
    "eval_type.jsonl": EvalType,
}
_INT_STATS = {
    "neuron_alignment_indices",
    "correlated_neurons_indices",
    "correlated_features_indices",
    "topk_cos_sim_indices",
}
_STR_STATS = {"pos_str", "neg_str"}
_SCALAR_STATS = {
    "max_act_approx",
    "frac_nonzero",
    "vector_default_steer_strength",
    "umap_x",
    "umap_y",
    "umap_log_feature_sparsity",
}


def camel_to_snake(name: str) -> str:
    """``displayNameShort`` -> ``display_name_short`` (snake names pass through)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def is_source_dir(path: Path) -> bool:
    """A ``<modelId>/<sourceId>`` directory of the export layout."""
    return path.is_dir() and ((path / "source.jsonl").exists() or (path / "features").is_dir())


def find_source_dirs(path: Path) -> list[Path]:
    """Every source directory at or below ``path`` (the root, a model directory or a source directory)."""
    if is_source_dir(path):
        return [path]
    found = [p for p in sorted(path.glob("*")) if is_source_dir(p)]
    found += [p for p in sorted(path.glob("*/*")) if is_source_dir(p)]
    return found


def is_np_export(path: Path) -> bool:
    """True when ``path`` is (or contains) the Neuronpedia export layout."""
    return path.is_dir() and (bool(find_source_dirs(path)) or (path / "config").is_dir())


def _read_one(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    for _, row in iter_jsonl(path):
        return row
    return None


def _fields_for(table: Any, row: dict[str, Any]) -> dict[str, Any]:
    cols = {c.key for c in table.__table__.columns}
    out = {}
    for key, value in row.items():
        col = camel_to_snake(key)
        if col in cols and col not in ("created_at", "updated_at", "creator_id", "doc_version"):
            out[col] = value
    return out


def import_config(path: Path, factory: Any) -> int:
    """Upsert explanation, score and eval type catalogues from ``config/*.jsonl``."""
    written = 0
    for filename, table in CONFIG_TABLES.items():
        file = path / filename
        if not file.exists():
            continue
        with transaction(factory) as session:
            insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
            for _, row in iter_jsonl(file):
                values = _fields_for(table, row)
                if "name" not in values:
                    raise BadInput("row without 'name'", file=f"config/{filename}", field="name")
                stmt = insert(table.__table__).values(**values)
                update = {k: stmt.excluded[k] for k in values if k != "name"}
                stmt = (
                    stmt.on_conflict_do_update(index_elements=["name"], set_=update)
                    if update
                    else stmt.on_conflict_do_nothing(index_elements=["name"])
                )
                session.execute(stmt)
                written += 1
    return written


def _target(src_dir: Path) -> SourceTarget:
    model_row = _read_one(src_dir / "model.jsonl") or {}
    set_row = _read_one(src_dir / "sourceset.jsonl") or {}
    source_row = _read_one(src_dir / "source.jsonl") or {}
    model_id = model_row.get("id") or source_row.get("modelId") or src_dir.parent.name
    source_id = source_row.get("id") or src_dir.name
    from interpedia.db.tables import Model, SourceSet

    model_fields = _fields_for(Model, model_row)
    model_fields.pop("id", None)
    set_fields = _fields_for(SourceSet, set_row)
    for key in ("model_id", "name", "id"):
        set_fields.pop(key, None)
    set_fields.pop("release_name", None)
    source_fields = _fields_for(Source, source_row)
    for key in ("model_id", "id", "set_name", "name", "set_id"):
        source_fields.pop(key, None)
    return SourceTarget(
        model_id=as_str(model_id, "modelId") or "",
        source_id=as_str(source_id, "id") or "",
        model_fields=model_fields,
        set_fields=set_fields,
        source_fields=source_fields,
    )


def _import_release(src_dir: Path, session: Session, model_id: str, set_name: str) -> None:
    row = _read_one(src_dir / "release.jsonl")
    if not row or not row.get("name"):
        return
    from interpedia.db.tables import SourceSet

    if session.get(SourceRelease, row["name"]) is None:
        session.add(SourceRelease(**_fields_for(SourceRelease, row)))
        session.flush()
    set_row = session.query(SourceSet).filter_by(model_id=model_id, name=set_name).one_or_none()
    if set_row is not None and set_row.release_name is None:
        set_row.release_name = row["name"]


def feature_stats(row: dict[str, Any]) -> dict[str, Any]:
    """Neuronpedia feature columns to our stat columns, validated."""
    stats: dict[str, Any] = {}
    for col, np_name in NP_FEATURE_NAMES.items():
        if np_name not in row:
            continue
        value = row[np_name]
        if col in _INT_STATS:
            stats[col] = as_int_list(value, np_name)
        elif col in _STR_STATS:
            stats[col] = as_str_list(value, np_name) if value is not None else None
        elif col in _SCALAR_STATS:
            stats[col] = as_float(value, np_name, allow_none=True)
        elif col == "umap_cluster":
            stats[col] = None if value is None else as_int(value, np_name)
        elif col == "has_vector":
            stats[col] = bool(value)
        elif col in ("vector_label", "hook_name"):
            stats[col] = as_str(value, np_name, allow_none=True)
        else:
            stats[col] = as_float_list(value, np_name)
    return stats


def _feature_batches(file: Path, target: SourceTarget, size: int) -> Iterator[list[FeatureRecord]]:
    name = display_name(file)
    batch: list[FeatureRecord] = []
    for lineno, row in iter_jsonl(file):
        idx = check_owner(row, target, name, lineno)
        try:
            batch.append(FeatureRecord(index=idx, stats=feature_stats(row), activations=None))
        except BadInput as exc:
            raise BadInput(f"line {lineno}: {exc.reason}", file=name, feature=idx, field=exc.field) from None
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _explanation_batches(file: Path, target: SourceTarget, size: int, author_id: str) -> Iterator[list[FeatureRecord]]:
    name = display_name(file)
    current: dict[int, FeatureRecord] = {}
    n_lines = 0
    for lineno, row in iter_jsonl(file):
        idx = check_owner(row, target, name, lineno)
        try:
            emb = as_float_list(row.get("embedding"), "embedding")
            exp = explanation_record(
                row.get("description"),
                field="description",
                id=as_str(row.get("id"), "id", allow_none=True),
                type_name=as_str(row.get("typeName"), "typeName", allow_none=True),
                explanation_model_name=as_str(row.get("explanationModelName"), "explanationModelName", allow_none=True),
                notes=as_str(row.get("notes"), "notes", allow_none=True),
                author_id=author_id,
                embedding=emb,
                # Not in Neuronpedia's export, but in ours: without them import(export(x)) would lose scores.
                score_v1=as_float(row.get("scoreV1") or 0.0, "scoreV1"),
                score_v2=as_float(row.get("scoreV2"), "scoreV2", allow_none=True),
            )
        except BadInput as exc:
            raise BadInput(f"line {lineno}: {exc.reason}", file=name, feature=idx, field=exc.field) from None
        current.setdefault(idx, FeatureRecord(index=idx, activations=None)).explanations.append(exp)
        n_lines += 1
        if n_lines >= size:
            yield list(current.values())
            current, n_lines = {}, 0
    if current:
        yield list(current.values())


def import_source_dir(
    src_dir: Path, importer: BatchImporter, batch_size: int, files: ExportFiles | None = None
) -> None:
    """Import one ``<modelId>/<sourceId>`` directory; ``files`` gives its batch files (default: what is on disk).

    The catalogue files (``source.jsonl`` ...) must be on disk; batch files already imported are not read.
    """
    files = files or LocalFiles()
    try:
        target = _target(src_dir)
    except BadInput as exc:
        raise exc.located(file=display_name(src_dir / "source.jsonl")) from None
    source = importer.prepare_source(target, file="/".join(src_dir.parts[-2:]))
    with transaction(importer.factory) as session:
        _import_release(src_dir, session, target.model_id, source.set_name)
    seen: set[int] = set()
    plan: list[tuple[str, Path]] = []
    file_keys: dict[Path, str] = {}
    for kind in ("features", "activations", "explanations"):
        for f, nbytes in files.batches(src_dir / kind):
            plan.append((kind, f))
            file_keys[f] = f"np/{kind}/{f.name}:{nbytes}"
    done = skip_done(importer, source, file_keys.values())
    files.fetch([f for _, f in plan if file_keys[f] not in done])
    size = batch_size * 45
    todo = {f: file_keys[f] for kind, f in plan if kind == "activations" and file_keys[f] not in done}
    ahead = ActivationReadahead(importer, source, target, todo, size, seen, files)
    try:
        ahead.start(0)
        for kind, file in tqdm(plan, desc=f"import {target.model_id}/{target.source_id}", unit="file", disable=None):
            key = file_keys[file]
            if key in done:
                importer.summary.skipped_batches += 1
                continue
            name = display_name(file)
            if kind == "activations":
                reader, start_next = ahead.take(file)
                import_activation_file(importer, source, target, reader, size, seen, start_next)
            else:
                batches = (
                    _feature_batches(files.local(file), target, batch_size)
                    if kind == "features"
                    else _explanation_batches(files.local(file), target, batch_size * 4, importer.creator_id)
                )
                for part, records in enumerate(batches):
                    importer.write(source, Batch(key=f"{key}#{part}", records=records, file=name))
            # The whole file is done: mark it so a rerun does not even parse it.
            importer.write(source, Batch(key=key, records=[], file=name))
            files.release(file)
    except BaseException:
        files.stop()  # a reader waiting for a download must not hold the error up
        raise
    finally:
        ahead.close()


def import_np_export(path: Path, importer: BatchImporter, *, batch_size: int = 256) -> ImportSummary:
    """Import config catalogues and every source directory under ``path``."""
    root_config = next((p / "config" for p in (path, path.parent, path.parent.parent) if (p / "config").is_dir()), None)
    if root_config is not None:
        import_config(root_config, importer.factory)
    src_dirs = find_source_dirs(path)
    if not src_dirs and root_config is None:
        raise BadInput(
            "no Neuronpedia export here (expected <modelId>/<sourceId>/source.jsonl or features/)", file=str(path)
        )
    for src_dir in src_dirs:
        import_source_dir(src_dir, importer, batch_size)
    return importer.summary
