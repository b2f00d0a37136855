"""SAEDashboard ``neuronpedia-runner`` output: a directory of ``batch-N.json`` (reference/generation.md §1.5)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from interpedia.ingest import columnar
from interpedia.ingest.pipeline import Batch, BatchImporter, ImportSummary, SourceTarget, skip_done
from interpedia.ingest.prefetch import prefetched
from interpedia.ingest.validate import (
    BadInput,
    activation_record,
    as_dict,
    as_float,
    as_float_list,
    as_int,
    as_int_list,
    as_str,
    as_str_list,
    loads,
)
from interpedia.store.records import ActivationRecord, FeatureRecord
from interpedia.store.writer import activation_extras

log = logging.getLogger(__name__)

BATCH_RE = re.compile(r"^batch-(\d+)\.json$")

_FLOAT_LISTS = columnar.SD_FLOAT_LISTS
_INT_LISTS = columnar.SD_INT_LISTS


@dataclass
class DashboardOptions:
    """Overrides for what the batch files do not carry (or carry differently)."""

    model_id: str | None = None
    source_set: str | None = None
    layer: str | None = None
    creator_name: str = "bot"


def is_saedashboard_dir(path: Path) -> bool:
    """True when ``path`` holds SAEDashboard ``batch-N.json`` files."""
    return path.is_dir() and any(BATCH_RE.match(p.name) for p in path.iterdir())


def batch_files(path: Path) -> list[Path]:
    """The batch files, in numeric order."""
    files = [p for p in path.iterdir() if BATCH_RE.match(p.name)]
    return sorted(files, key=lambda p: int(BATCH_RE.match(p.name).group(1)))  # type: ignore[union-attr]


def parse_feature(raw: Any, *, file: str) -> FeatureRecord:
    """One SAEDashboard feature object to a record."""
    obj = None
    try:
        obj = as_dict(raw, "features[]")
        index = as_int(obj.get("feature_index"), "feature_index", minimum=0)
    except BadInput as exc:
        raw_index = obj.get("feature_index") if obj is not None else None
        shown = (
            raw_index
            if isinstance(raw_index, int) and not isinstance(raw_index, bool)
            else (repr(raw_index) if isinstance(raw_index, str | float) else None)
        )
        raise exc.located(file=file, feature=shown) from None
    try:
        stats: dict[str, Any] = {}
        for key in _FLOAT_LISTS:
            if key in obj:
                stats[key] = as_float_list(obj[key], key)
        for key in _INT_LISTS:
            if key in obj:
                stats[key] = as_int_list(obj[key], key)
        for key in ("pos_str", "neg_str"):
            if key in obj:
                stats[key] = as_str_list(obj[key], key)
        if "frac_nonzero" in obj:
            stats["frac_nonzero"] = as_float(obj["frac_nonzero"], "frac_nonzero", allow_none=True)
        vector = as_float_list(obj.get("vector"), "vector")
        if vector:
            stats["vector"] = vector
        acts_raw = obj.get("activations", [])
        if not isinstance(acts_raw, list):
            raise BadInput("expected a list", field="activations")
        acts = [_activation(act, pos) for pos, act in enumerate(acts_raw)]
    except BadInput as exc:
        raise exc.located(file=file, feature=index) from None
    # Neuronpedia's maxActApprox: the largest value over the feature's examples (0 marks a dead feature).
    stats["max_act_approx"] = max((a.max_value for a in acts), default=0.0)
    return FeatureRecord(index=index, stats=stats, activations=acts)


def _activation(raw: Any, pos: int) -> ActivationRecord:
    act = as_dict(raw, f"activations[{pos}]")
    dfa = act.get("dfa_values") or None
    return activation_record(
        act.get("tokens"),
        act.get("values"),
        prefix=f"activations[{pos}]",
        bin_min=act.get("bin_min"),
        bin_max=act.get("bin_max"),
        bin_contains=act.get("bin_contains"),
        qualifying_token_index=act.get("qualifying_token_index"),
        dfa_target_index=act.get("dfa_targetIndex") if dfa else None,
        dfa_max_value=act.get("dfa_maxValue") if dfa else None,
        dfaValues=dfa,
        lossValues=act.get("loss_values") or None,
        logitContributions=act.get("logit_contributions"),
    )


def _rare_fields(raw: dict[str, Any], pos: int) -> dict[str, Any]:
    """What the fast reader takes from the validating code for an example with rare fields."""
    act = _activation(raw, pos)
    return {
        "bin_min": act.bin_min,
        "bin_max": act.bin_max,
        "bin_contains": act.bin_contains,
        "qualifying_token_index": act.qualifying_token_index,
        "extras": activation_extras(act),
    }


def read_batch_file(path: Path, data: bytes | None = None) -> dict[str, Any]:
    """Parse one batch file, with errors naming it."""
    doc = as_dict(loads(path.read_bytes() if data is None else data, file=path.name), "batch")
    if not isinstance(doc.get("features"), list):
        raise BadInput("expected a 'features' list", file=path.name, field="features")
    return doc


def read_batch(path: Path, data: bytes, doc: dict[str, Any] | None = None) -> Batch:
    """One batch file as a batch: Arrow's reader when it takes the file, else the validating one."""
    key = f"saedashboard/{path.name}:{len(data)}"
    try:
        records, columns = columnar.saedashboard_batch(data, _rare_fields)
        return Batch(key=key, records=records, file=path.name, columns=columns)
    except columnar.NotFast as exc:
        log.debug("%s: reading with the validating reader (%s)", path.name, exc)
    doc = doc if doc is not None else read_batch_file(path, data)
    return Batch(key=key, records=[parse_feature(f, file=path.name) for f in doc["features"]], file=path.name)


def _target(doc: dict[str, Any], opts: DashboardOptions, settings: dict[str, Any], file: str) -> SourceTarget:
    try:
        model_id = opts.model_id or as_str(doc.get("model_id"), "model_id")
        set_name = opts.source_set or as_str(doc.get("sae_set"), "sae_set")
        layer = opts.layer if opts.layer is not None else doc.get("layer")
        if layer is None:
            raise BadInput("is missing; pass --layer", field="layer")
        suffix = doc.get("sae_id_suffix")
    except BadInput as exc:
        raise exc.located(file=file) from None
    assert model_id and set_name
    source_id = f"{layer}-{set_name}" + (f"__{suffix}" if suffix else "")
    first = doc["features"][0] if doc["features"] else {}
    source_fields = {
        "num_prompts": first.get("n_prompts_total") or settings.get("n_prompts_total"),
        "num_tokens_in_prompt": first.get("n_tokens_in_prompt") or settings.get("n_tokens_in_prompt"),
        "dataset": first.get("dataset") or settings.get("huggingface_dataset_path") or None,
        "hook_name": settings.get("hook_name") or None,
    }
    return SourceTarget(
        model_id=model_id,
        source_id=source_id,
        model_fields={"display_name": model_id},
        set_fields={"description": f"{set_name} (imported from SAEDashboard)"},
        source_fields=source_fields,
    )


def _dead_indexes(path: Path) -> list[int]:
    skipped = path / "skipped_indexes.json"
    if not skipped.exists():
        return []
    doc = as_dict(loads(skipped.read_bytes(), file=skipped.name), "skipped_indexes")
    return [as_int(i, "skipped_indexes", minimum=0) for i in doc.get("skipped_indexes") or []]


def iter_batches(path: Path, opts: DashboardOptions, importer: BatchImporter) -> Iterator[tuple[SourceTarget, Batch]]:
    """Batches of a SAEDashboard directory, one per file; files already imported are not parsed again.

    After the first file, files are read by a background thread while the previous batch is written.
    """
    settings_file = path / "run_settings.json"
    settings = (
        as_dict(loads(settings_file.read_bytes(), file=settings_file.name), "run_settings")
        if settings_file.exists()
        else {}
    )
    files = batch_files(path)
    if not files:
        return
    keys = {f: f"saedashboard/{f.name}:{f.stat().st_size}" for f in files}
    with tqdm(total=len(files), desc=f"import {path.name}", unit="file", disable=None) as progress:
        # Only the first file's header is read: it names the model and source of them all.
        data = files[0].read_bytes()
        doc = read_batch_file(files[0], data)
        target = _target(doc, opts, settings, files[0].name)
        # Parsed before the source is created, so that a bad first file leaves no empty source behind.
        first = read_batch(files[0], data, doc)
        del doc, data
        source = importer.prepare_source(target, file=files[0].name)
        done = skip_done(importer, source, list(keys.values()))
        rest = files[1:]
        progress.update(1)
        if first.key in done:
            importer.summary.skipped_batches += 1
        else:
            yield target, first
        todo = [f for f in rest if keys[f] not in done]
        importer.summary.skipped_batches += len(rest) - len(todo)
        progress.update(len(rest) - len(todo))
        # The reader thread also hands out vocabulary ids and encodes (BatchImporter.prepare).
        ahead = (importer.prepare(source, read_batch(f, f.read_bytes())) for f in todo)
        with closing(prefetched(ahead)) as batches:
            for batch in batches:
                progress.update(1)
                yield target, batch
    dead = _dead_indexes(path)
    if dead:
        yield (
            target,
            Batch(
                key=f"saedashboard/skipped_indexes.json:{len(dead)}",
                file="skipped_indexes.json",
                records=[FeatureRecord(index=i, stats={"max_act_approx": 0.0}, activations=[]) for i in dead],
            ),
        )


def import_saedashboard(path: Path, importer: BatchImporter, opts: DashboardOptions) -> ImportSummary:
    """Import every batch file of a SAEDashboard output directory."""
    if not is_saedashboard_dir(path):
        raise BadInput("no batch-N.json files here", file=str(path))
    sources = {}
    for target, batch in iter_batches(path, opts, importer):
        if target.source_id not in sources:
            sources[target.source_id] = importer.prepare_source(target, file=batch.file)
        importer.write(sources[target.source_id], batch)
    return importer.summary
