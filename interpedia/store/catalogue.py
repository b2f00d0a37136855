"""Models, source sets (``res-jb``) and sources (``6-res-jb``): lookups and creation."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from interpedia.db.tables import (
    ExplanationModelType,
    ExplanationScoreModel,
    ExplanationScoreType,
    ExplanationType,
    Feature,
    Model,
    Source,
    SourceRelease,
    SourceSet,
)
from interpedia.errors import Conflict, Invalid, NotFound
from interpedia.store.access import current_viewer, listed_condition, may_see
from interpedia.store.documents.catalogue import model_json
from interpedia.store.formats import iso
from interpedia.store.memo import remembered

# /api/model/new's rule for new ids; imported ids may also carry upper case and '_'.
NEW_MODEL_ID_RE = re.compile(r"^[a-z][a-z0-9.-]*[a-z0-9]$")
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
SOURCE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*-[A-Za-z0-9][A-Za-z0-9._-]*$")
# First path segments the site serves itself: a model with one of these ids would be unreachable at /{model}.
# tests/integration/test_reserved_ids.py checks this covers every literal top-level route of the app.
RESERVED_MODEL_IDS = frozenset(
    {
        "api",
        "v1",
        "static",
        "docs",
        "redoc",
        "openapi.json",
        "health",
        "signin",
        "signout",
        "signup",
        "model",
        "sae",
        "random",
        "jump",
        "index.json",
        "favicon.ico",
        "robots.txt",
        "search",
        "search-explanations",
        "search-topk-by-token",
        "steer",
        "list",
        "quick-list",
        "quick-list.json",
        "user",
        "account",
        "admin",
        "sae-bench",
        "umap",
        "comment",
        "bookmark",
        "explanation",
        "vector",
        "graph",
        "graph.json",
    }
)


def source_set_name_of(source_id: str) -> str:
    """The set part of a source id: ``6-res-jb`` -> ``res-jb``, ``6-res-jb__x`` -> ``res-jb``."""
    if "-" not in source_id:
        raise Invalid(f"source id {source_id!r} must look like '<layer>-<sourceSet>', e.g. '6-res-jb'", field="source")
    return source_id.split("-", 1)[1].split("__", 1)[0]


def layer_num_of(source_id: str) -> int | None:
    """The layer number of a source id, when its first part is one (``6-res-jb`` -> 6)."""
    head = source_id.split("-", 1)[0]
    return int(head) if head.isdigit() else None


def check_id(value: str, what: str, pattern: re.Pattern[str] = ID_RE, max_len: int = 200) -> str:
    """Validate an identifier, raising Invalid with the field's name."""
    if not isinstance(value, str) or not value or len(value) > max_len or not pattern.match(value):
        raise Invalid(f"{what} {value!r} is not a valid id (letters, digits, '.', '_', '-')", field=what)
    return value


def get_model(session: Session, model_id: str) -> Model:
    """The model, or NotFound."""
    model = session.get(Model, model_id)
    if model is None or not may_see((model.visibility,), (model.creator_id,)):
        raise NotFound(f"model {model_id!r} not found", field="modelId")
    return model


def list_models(session: Session) -> list[Model]:
    """Every visible model, by id."""
    return list(
        session.scalars(select(Model).where(listed_condition(Model.visibility, Model.creator_id)).order_by(Model.id))
    )


def create_model(
    session: Session,
    model_id: str,
    *,
    layers: int,
    display_name: str | None = None,
    creator_id: str | None = None,
    strict_id: bool = True,
    **fields: Any,
) -> Model:
    """Create a model; Conflict when the id is taken."""
    if strict_id:
        if not (2 <= len(model_id) <= 32) or not NEW_MODEL_ID_RE.match(model_id):
            raise Invalid(
                "model id must be 2-32 characters: lower-case letters, digits, '.' and '-', starting with a letter",
                field="id",
            )
    else:
        check_id(model_id, "modelId")
    if model_id.lower() in RESERVED_MODEL_IDS:
        raise Invalid(f"model id {model_id!r} is a path the site uses itself; choose another id", field="id")
    if not isinstance(layers, int) or isinstance(layers, bool) or not 0 <= layers <= 1000:
        raise Invalid("layers must be an integer from 0 to 1000", field="layers")
    if session.get(Model, model_id) is not None:
        raise Conflict(f"model {model_id!r} already exists", field="id")
    model = Model(id=model_id, layers=layers, display_name=display_name or model_id, creator_id=creator_id, **fields)
    session.add(model)
    session.flush()
    return model


def ensure_model(session: Session, model_id: str, **fields: Any) -> Model:
    """The model, created with ``fields`` when missing."""
    model = session.get(Model, model_id)
    if model is not None:
        return model
    fields.setdefault("layers", 0)
    return create_model(session, model_id, strict_id=False, **fields)


def find_source_set(session: Session, model_id: str, name: str) -> SourceSet | None:
    """The source set when it exists and the current viewer may open it (its model counts too), else None."""
    row = session.scalar(select(SourceSet).where(SourceSet.model_id == model_id, SourceSet.name == name))
    if row is None or current_viewer() is None:
        return row
    chain = [r for r in (session.get(Model, model_id), row) if r is not None]
    return row if may_see(tuple(r.visibility for r in chain), tuple(r.creator_id for r in chain)) else None


def get_source_set(session: Session, model_id: str, name: str) -> SourceSet:
    """The source set, or NotFound (also for one the current viewer may not open)."""
    row = find_source_set(session, model_id, name)
    if row is None:
        raise NotFound(f"source set {model_id}/{name} not found", field="sourceSet")
    return row


def create_source_set(session: Session, model_id: str, name: str, **fields: Any) -> SourceSet:
    """Create a source set on an existing model; Conflict when it exists."""
    get_model(session, model_id)
    check_id(name, "name")
    if "__" in name:
        raise Invalid("source set name may not contain '__'", field="name")
    exists = session.scalar(select(SourceSet.id).where(SourceSet.model_id == model_id, SourceSet.name == name))
    if exists is not None:
        raise Conflict(f"source set {model_id}/{name} already exists", field="name")
    row = SourceSet(model_id=model_id, name=name, **fields)
    session.add(row)
    session.flush()
    return row


def ensure_source_set(session: Session, model_id: str, name: str, **fields: Any) -> SourceSet:
    """The source set, created when missing."""
    row = session.scalar(select(SourceSet).where(SourceSet.model_id == model_id, SourceSet.name == name))
    return row if row is not None else create_source_set(session, model_id, name, **fields)


def list_source_sets(session: Session, model_id: str) -> list[SourceSet]:
    """The model's visible source sets."""
    return list(
        session.scalars(
            select(SourceSet)
            .where(SourceSet.model_id == model_id, listed_condition(SourceSet.visibility, SourceSet.creator_id))
            .order_by(SourceSet.name)
        )
    )


def get_source(session: Session, model_id: str, source_id: str) -> Source:
    """The source (SAE) ``source_id`` of a model, or NotFound."""
    row = _known_source(session, model_id, source_id)
    if row is None:
        row = session.scalar(select(Source).where(Source.model_id == model_id, Source.name == source_id))
    if row is None or not source_visible(session, row):
        raise NotFound(f"source {model_id}/{source_id} not found", field="source")
    remember_source(session, row)
    return row


def remember_source(session: Session, row: Source) -> None:
    """Let later ``get_source`` calls in this transaction find ``row`` without a query."""
    remembered(session, "sources")[(row.model_id, row.name)] = row.id


def _known_source(session: Session, model_id: str, name: str) -> Source | None:
    pk = remembered(session, "sources").get((model_id, name))
    # By primary key: the identity map answers without a query while the row is loaded (and not deleted).
    row = session.get(Source, pk) if pk is not None else None
    return row if row is not None and row.model_id == model_id and row.name == name else None


Chain = tuple[tuple[str | None, ...], tuple[str | None, ...]]  # (visibilities, creator ids), model first


def source_chain(session: Session, row: Source, model: Model | None = None) -> Chain:
    """The visibility and creator of the source's model, set and itself, for ``may_see`` (a cache keeps this
    beside what it caches of a source, and asks ``may_see(*chain)`` for each viewer)."""
    model = model or session.get(Model, row.model_id)
    set_row = session.get(SourceSet, row.set_id)
    chain = [r for r in (model, set_row, row) if r is not None]
    return tuple(r.visibility for r in chain), tuple(r.creator_id for r in chain)


def model_chain(session: Session, model_id: str) -> Chain | None:
    """The model's visibility and creator (``source_chain`` of a model), or None when there is no such model."""
    model = session.get(Model, model_id)
    return None if model is None else ((model.visibility,), (model.creator_id,))


def source_visible(session: Session, row: Source, model: Model | None = None) -> bool:
    """Whether the current viewer may open the source (its model, set and itself all count)."""
    if current_viewer() is None:
        return True
    return may_see(*source_chain(session, row, model))


# The visibility and creator of a source's model, set and source: select these (joining Model and, outer,
# SourceSet) with rows of a listing, then keep the rows ``chain_visible`` accepts.
VISIBILITY_COLUMNS = (
    Model.visibility.label("model_visibility"),
    Model.creator_id.label("model_creator"),
    SourceSet.visibility.label("set_visibility"),
    SourceSet.creator_id.label("set_creator"),
    Source.visibility.label("source_visibility"),
    Source.creator_id.label("source_creator"),
)


def chain_visible(row: Any) -> bool:
    """Whether the current viewer may open something of this model, set and source (``VISIBILITY_COLUMNS``)."""
    return may_see(
        (row.model_visibility, row.set_visibility, row.source_visibility),
        (row.model_creator, row.set_creator, row.source_creator),
    )


def list_sources(session: Session, set_row: SourceSet) -> list[Source]:
    """Sources of a set, by layer then name."""
    rows = list(
        session.scalars(
            select(Source).where(Source.set_id == set_row.id, listed_condition(Source.visibility, Source.creator_id))
        )
    )
    return sorted(rows, key=lambda s: (s.layer_num if s.layer_num is not None else 1 << 30, s.name))


def listed_catalogue(session: Session) -> list[dict[str, Any]]:
    """The models, source sets and sources the viewer may list, for pickers: ``[{id, displayName, sourceSets:
    [{name, sources: [source id, ...]}]}]``; a set or source shows only when it and everything above it are listed."""
    sets: dict[int, dict[str, Any]] = {}
    by_model: dict[str, list[dict[str, Any]]] = {}
    for row in session.scalars(
        select(SourceSet)
        .where(listed_condition(SourceSet.visibility, SourceSet.creator_id))
        .order_by(SourceSet.model_id, SourceSet.name)
    ):
        sets[row.id] = {"name": row.name, "sources": []}
        by_model.setdefault(row.model_id, []).append(sets[row.id])
    for src in session.scalars(
        select(Source)
        .join(SourceSet, SourceSet.id == Source.set_id)
        .where(
            listed_condition(SourceSet.visibility, SourceSet.creator_id),
            listed_condition(Source.visibility, Source.creator_id),
        )
        .order_by(Source.model_id, Source.layer_num, Source.name)
    ):
        sets[src.set_id]["sources"].append(src.name)
    return [
        {"id": m.id, "displayName": m.display_name or m.id, "sourceSets": by_model.get(m.id, [])}
        for m in list_models(session)
    ]


def listed_source_names(session: Session, model_id: str) -> list[str]:
    """The ids of a model's sources the viewer may list (their sets listed too), by layer then name."""
    return list(
        session.scalars(
            select(Source.name)
            .join(SourceSet, SourceSet.id == Source.set_id)
            .where(
                Source.model_id == model_id,
                listed_condition(Source.visibility, Source.creator_id),
                listed_condition(SourceSet.visibility, SourceSet.creator_id),
            )
            .order_by(Source.layer_num, Source.name)
        )
    )


def require_visible_sources(session: Session, model_id: str, names: Sequence[str]) -> None:
    """NotFound for the first of ``names`` that is a source of the model hidden from the viewer (its model, set or
    itself PRIVATE to someone else); names that are no source are left to the caller, which says why."""
    if current_viewer() is None or not names:
        return
    model = session.get(Model, model_id)
    rows = session.scalars(select(Source).where(Source.model_id == model_id, Source.name.in_(sorted(set(names)))))
    for row in sorted(rows, key=lambda r: list(names).index(r.name)):
        if not source_visible(session, row, model):
            raise NotFound(f"source {model_id}/{row.name} not found", field="source")


def listed_release_names(session: Session) -> list[str]:
    """The names of the releases the viewer may list, and the SAELens releases of the sources it may list, by name."""
    names = set(
        session.scalars(
            select(SourceRelease.name).where(listed_condition(SourceRelease.visibility, SourceRelease.creator_id))
        )
    )
    names.update(
        session.scalars(
            select(Source.saelens_release)
            .distinct()
            .join(SourceSet, SourceSet.id == Source.set_id)
            .join(Model, Model.id == Source.model_id)
            .where(
                Source.saelens_release.is_not(None),
                listed_condition(Model.visibility, Model.creator_id),
                listed_condition(SourceSet.visibility, SourceSet.creator_id),
                listed_condition(Source.visibility, Source.creator_id),
            )
        )
    )
    return sorted(n for n in names if n)


def ensure_source(session: Session, model_id: str, source_id: str, **fields: Any) -> Source:
    """The source, created (with its set, which must then exist or is created) when missing."""
    check_id(source_id, "source", SOURCE_ID_RE)
    row = session.scalar(select(Source).where(Source.model_id == model_id, Source.name == source_id))
    if row is not None:
        return row
    set_name = source_set_name_of(source_id)
    set_row = ensure_source_set(session, model_id, set_name)
    fields.setdefault("layer_num", layer_num_of(source_id))
    row = Source(model_id=model_id, name=source_id, set_id=set_row.id, set_name=set_name, **fields)
    session.add(row)
    session.flush()
    return row


def count_features(session: Session, source_ids: list[int]) -> dict[int, int]:
    """Feature counts per source id."""
    if not source_ids:
        return {}
    rows = session.execute(
        select(Feature.source_id, func.count()).where(Feature.source_id.in_(source_ids)).group_by(Feature.source_id)
    )
    return {sid: n for sid, n in rows}


def _rows(session: Session, table: Any) -> list[dict[str, Any]]:
    """Every row of a small catalogue table, its columns camelCased (``display_name`` -> ``displayName``)."""
    out = []
    for row in session.scalars(select(table).order_by(table.name)):
        doc = {}
        for col in table.__table__.columns:
            head, *rest = col.key.split("_")
            value = getattr(row, col.key)
            doc[head + "".join(p.title() for p in rest)] = iso(value) if hasattr(value, "isoformat") else value
        out.append(doc)
    return out


def global_catalogue(session: Session) -> dict[str, Any]:
    """``/api/global``: the listed models, releases, explanation types and models, score types and models."""
    return {
        "models": [model_json(m) for m in list_models(session)],
        "explanationTypes": _rows(session, ExplanationType),
        "explanationModels": _rows(session, ExplanationModelType),
        "releases": _rows(session, SourceRelease),
        "explanationScoreTypes": _rows(session, ExplanationScoreType),
        "explanationScoreModelTypes": _rows(session, ExplanationScoreModel),
    }
