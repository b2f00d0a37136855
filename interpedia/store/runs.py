"""The record of one ``interpedia generate`` run (``run.json``), typed, and its rows in ``generate_runs``.

``generate`` writes a :class:`RunRecord` next to its output and into the database; live inference reads it
back (:func:`latest_run`) to load the same weights and read activations the way the dashboards were made
(hook, BOS, decoder-norm folding, excluded tokens). The parts inference relies on are typed fields; what is
only reported (timings, versions, definitions) stays a plain mapping. ``to_dict``/``from_dict`` round-trip,
and keys this version does not know are kept in ``extra``, so older and newer ``run.json`` files load.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from interpedia.db.tables import GenerateRunRow, Source
from interpedia.store.memo import remembered

__all__ = [
    "RunCatalogue",
    "RunModel",
    "RunRecord",
    "RunSae",
    "RunTokens",
    "latest_run",
    "latest_run_query",
    "record_run",
    "remember_latest_run",
    "sources_with_runs",
]


def _build(cls: Any, data: Any) -> Any:
    """A dataclass from a mapping: known keys to fields, the rest into ``extra``."""
    data = dict(data) if isinstance(data, dict) else {}
    names = {f.name for f in dataclasses.fields(cls)} - {"extra"}  # type: ignore[arg-type]
    known = {k: v for k, v in data.items() if k in names}
    extra = {k: v for k, v in data.items() if k not in names}
    return cls(**known, extra=extra)


def _flat(obj: Any) -> dict[str, Any]:
    """A part as a plain dict: its fields, then its extra keys."""
    out = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.name != "extra"}
    out.update(obj.extra)
    return out


@dataclass(frozen=True)
class RunCatalogue:
    """Where the dashboards went: model id, source id and its parts."""

    model_id: str = ""
    source_id: str = ""
    layer: str = ""
    source_set: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunModel:
    """The model that was run."""

    spec: str = ""  # what --model said: a directory or a pretrained name
    name: str | None = None
    loaded_from: str | None = None
    n_layers: int | None = None
    d_model: int | None = None
    d_vocab: int | None = None
    dtype: str | None = None
    device: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunSae:
    """The SAE (or transcoder) that was encoded with."""

    spec: str = ""  # what --sae said: a directory or RELEASE/SAE_ID
    architecture: str | None = None
    d_in: int | None = None
    d_sae: int | None = None
    hook_name: str | None = None
    decoder_norm_folded: bool | None = None
    folded_by: str | None = None
    cfg: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunTokens:
    """How the token stream was made: what live inference must repeat to read the same activations."""

    context_size: int | None = None
    n_tokens: int | None = None
    prepend_bos: bool | None = None
    bos_excluded_from_statistics: bool = True
    excluded_token_ids: list[int] = field(default_factory=list)
    concat_documents: bool | None = None
    example_window: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # the token source's own facts (kind, n_prompts, ...)


@dataclass(frozen=True)
class RunRecord:
    """One generation run: settings, catalogue names, model, SAE, tokens, and what it reported."""

    output_key: str
    fingerprint: str = ""
    generator: str = "interpedia generate"
    created_at: str | None = None
    config: dict[str, Any] = field(default_factory=dict)  # GenerateConfig.to_dict()
    catalogue: RunCatalogue = field(default_factory=RunCatalogue)
    model: RunModel = field(default_factory=RunModel)
    sae: RunSae = field(default_factory=RunSae)
    tokens: RunTokens = field(default_factory=RunTokens)
    features_written: int = 0
    dead_features: list[int] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # timings, versions, definitions, ray, ...

    @property
    def model_spec(self) -> str:
        """The model the run loaded (the run's own --model)."""
        return self.model.spec or str(self.config.get("model") or "")

    @property
    def sae_spec(self) -> str:
        """The SAE the run loaded (the run's own --sae)."""
        return self.sae.spec or str(self.config.get("sae") or "")

    def to_dict(self) -> dict[str, Any]:
        """The ``run.json`` document (JSON-safe: what does not serialise becomes a string)."""
        out: dict[str, Any] = {
            "generator": self.generator,
            "created_at": self.created_at,
            "fingerprint": self.fingerprint,
            "output_key": self.output_key,
            "config": self.config,
            "catalogue": _flat(self.catalogue),
            "model": _flat(self.model),
            "sae": _flat(self.sae),
            "tokens": _flat(self.tokens),
            "features_written": self.features_written,
            "dead_features": list(self.dead_features),
            "n_dead_features": len(self.dead_features),
        }
        out.update({k: v for k, v in self.extra.items() if k not in out})
        return json.loads(json.dumps(out, default=str))  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        """The inverse of :meth:`to_dict`; unknown keys are kept in ``extra`` (older or newer files)."""
        parts = {"catalogue": RunCatalogue, "model": RunModel, "sae": RunSae, "tokens": RunTokens}
        plain = {"generator", "created_at", "fingerprint", "output_key", "config", "features_written", "dead_features"}
        kwargs: dict[str, Any] = {name: _build(kind, data.get(name)) for name, kind in parts.items()}
        kwargs.update({k: data[k] for k in plain if k in data})
        kwargs.setdefault("output_key", str(data.get("output_key") or ""))
        extra = {k: v for k, v in data.items() if k not in plain and k not in parts and k != "n_dead_features"}
        return cls(**kwargs, extra=extra)


def record_run(session: Session, source: Source, record: RunRecord) -> None:
    """Keep the run in ``generate_runs`` (one row per run; a resumed run updates its row)."""
    row = session.get(GenerateRunRow, record.output_key)
    if row is None:
        row = GenerateRunRow(id=record.output_key)
        session.add(row)
    row.source_id = source.id
    row.model_id = source.model_id
    row.source_name = source.name
    row.run = record.to_dict()
    remembered(session, "latest_runs").clear()  # the newest runs may have changed


def latest_run_query(*, model_id: Any = None, source_pk: Any = None) -> Select[tuple[dict[str, Any]]]:
    """The statement reading the newest run (``run.json``) of a model, or of a source; the arguments may be
    values or columns, so a caller can embed it as a scalar subquery."""
    stmt = select(GenerateRunRow.run)
    if model_id is not None:
        stmt = stmt.where(GenerateRunRow.model_id == model_id)
    if source_pk is not None:
        stmt = stmt.where(GenerateRunRow.source_id == source_pk)
    return stmt.order_by(GenerateRunRow.updated_at.desc(), GenerateRunRow.created_at.desc()).limit(1)


def remember_latest_run(
    session: Session, run: dict[str, Any] | None, *, model_id: str | None = None, source_pk: int | None = None
) -> None:
    """Keep a newest run read elsewhere (``run.json`` or None) for ``latest_run`` calls in this transaction."""
    remembered(session, "latest_runs")[(model_id, source_pk)] = run


def latest_run(session: Session, *, model_id: str | None = None, source_pk: int | None = None) -> RunRecord | None:
    """The newest run of a model, or of a source (by its primary key), or None."""
    memo = remembered(session, "latest_runs")
    key = (model_id, source_pk)
    if key not in memo:
        memo[key] = session.scalar(latest_run_query(model_id=model_id, source_pk=source_pk))
    run = memo[key]
    return RunRecord.from_dict(run) if isinstance(run, dict) else None


def sources_with_runs(session: Session, source_pks: Iterable[int] | None = None) -> set[int]:
    """Primary keys of the sources (of those given, or of all) that a generate run wrote."""
    stmt = select(GenerateRunRow.source_id).where(GenerateRunRow.source_id.is_not(None)).distinct()
    if source_pks is not None:
        stmt = stmt.where(GenerateRunRow.source_id.in_(list(source_pks)))
    return {int(pk) for pk in session.scalars(stmt) if pk is not None}
