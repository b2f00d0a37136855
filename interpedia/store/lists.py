"""Feature lists: a user's named lists of features, each member with the owner's note.

Every write checks the whole request before touching a row: an unknown feature, a list that would
grow past its limit or somebody else's list is an error and nothing is written. Only the owner edits
a list; an admin may also remove features from it or delete it (admins can remove anything).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

from sqlalchemy import Select, bindparam, delete, exists, func, select, tuple_
from sqlalchemy.orm import Session

from interpedia.db.community import FeatureList, ListFeature
from interpedia.db.tables import Activation, Feature, Model, Source, SourceSet, User
from interpedia.errors import Forbidden, Invalid, NotFound, UserError
from interpedia.store.activations import activation_json
from interpedia.store.catalogue import VISIBILITY_COLUMNS, chain_visible
from interpedia.store.documents.explanation import ExplanationDoc
from interpedia.store.documents.feature import ActivationDoc
from interpedia.store.documents.list import (
    ListDetailsDoc,
    ListNeuronDoc,
    MemberDoc,
    MemberWithNeuronDoc,
    list_json,
    member_json,
)
from interpedia.store.features import list_explanations
from interpedia.store.formats import parse_index
from interpedia.store.users import can_modify

log = logging.getLogger(__name__)

MAX_NAME = 200
MAX_DESCRIPTION = 10_000
MAX_TEST_TEXT = 2_000
MAX_ADD_PER_CALL = 100  # neuronpedia.org's limit for /api/list/add-features
DETAIL_ACTIVATIONS = 3  # top examples per feature in a list's details, as neuronpedia.org sends
DETAIL_ACTIVATION_FEATURES = 300  # beyond this many members, details carry no examples (one query each)
_CHUNK = 500  # (source, index) pairs per lookup query


class TooMany(UserError):
    """More features than one call or one list may hold."""


@dataclass(frozen=True)
class FeatureRef:
    """A feature named by a request: model id, source id (``layer``) and index, with an optional note."""

    model_id: str
    layer: str
    index: int
    description: str | None = None


class ListChoiceDoc(TypedDict):
    """One of the viewer's lists in the feature page's "add to list" menu."""

    id: str
    name: str
    hasFeature: bool


class OwnedListDoc(TypedDict):
    """One of the user's lists on the account page."""

    id: str
    name: str
    description: str
    featureCount: int
    url: str


@dataclass(frozen=True)
class Resolved:
    """A request's feature found in the database."""

    ref: FeatureRef
    feature_id: int


def check_text(value: str | None, field: str, limit: int, *, required: bool = False) -> str | None:
    """Trim-free validation of a free-text field: a length limit, and non-blank when required."""
    if value is None:
        if required:
            raise Invalid(f"{field} is required", field=field)
        return None
    if required and not value.strip():
        raise Invalid(f"{field} must not be empty", field=field)
    if len(value) > limit:
        raise Invalid(f"{field} must be at most {limit:,} characters", field=field)
    return value


def resolve_features(session: Session, refs: Sequence[FeatureRef], field: str) -> list[Resolved]:
    """Find every requested feature; NotFound names the first unknown one (``field[i]``)."""
    sources: dict[tuple[str, str], int] = {}
    for i, ref in enumerate(refs):
        key = (ref.model_id, ref.layer)
        if key in sources:
            continue
        row = session.execute(
            select(Source.id, *VISIBILITY_COLUMNS)
            .join(Model, Model.id == Source.model_id)
            .outerjoin(SourceSet, SourceSet.id == Source.set_id)
            .where(Model.id == ref.model_id, Source.name == ref.layer)
        ).first()
        if row is None or not chain_visible(row):
            raise NotFound(f"source {ref.model_id}/{ref.layer} not found", field=f"{field}[{i}]")
        sources[key] = row[0]
    wanted = [(sources[(r.model_id, r.layer)], r.index) for r in refs]
    found: dict[tuple[int, int], int] = {}
    unique = list(dict.fromkeys(wanted))
    for start in range(0, len(unique), _CHUNK):
        chunk = unique[start : start + _CHUNK]
        for fid, sid, idx in session.execute(
            select(Feature.id, Feature.source_id, Feature.index).where(
                tuple_(Feature.source_id, Feature.index).in_(chunk)
            )
        ):
            found[(sid, idx)] = fid
    out = []
    for i, (ref, pair) in enumerate(zip(refs, wanted, strict=True)):
        if pair not in found:
            raise NotFound(f"feature {ref.model_id}/{ref.layer}/{ref.index} not found", field=f"{field}[{i}]")
        out.append(Resolved(ref, found[pair]))
    return out


def get_list(session: Session, list_id: Any) -> FeatureList:
    """The list, or NotFound."""
    lst = session.get(FeatureList, list_id) if isinstance(list_id, str) and len(list_id) <= 32 else None
    if lst is None:
        raise NotFound(f"list {list_id!r} not found", field="listId")
    return lst


def list_for_change(session: Session, list_id: Any, user: User, *, removal: bool = False) -> FeatureList:
    """The list when ``user`` may change it: its owner, or an admin for removals; else 403."""
    lst = get_list(session, list_id)
    allowed = can_modify(user, lst.user_id) if removal else user.id == lst.user_id
    if not allowed:
        raise Forbidden("this list belongs to someone else", field="listId")
    return lst


def count_members(session: Session, list_id: str) -> int:
    """How many features the list holds."""
    return int(session.scalar(select(func.count()).select_from(ListFeature).where(ListFeature.list_id == list_id)) or 0)


def create_list(
    session: Session, user: User, name: str, description: str | None = "", test_text: str | None = None
) -> FeatureList:
    """A new, empty list owned by ``user``."""
    check_text(name, "name", MAX_NAME, required=True)
    check_text(description, "description", MAX_DESCRIPTION)
    check_text(test_text, "testText", MAX_TEST_TEXT)
    if test_text is not None and not test_text.strip():
        raise Invalid("testText must not be empty", field="testText")
    lst = FeatureList(name=name.strip(), description=description or "", default_test_text=test_text, user_id=user.id)
    session.add(lst)
    session.flush()
    return lst


def add_features(
    session: Session,
    lst: FeatureList,
    user: User,
    refs: Sequence[FeatureRef],
    *,
    max_features: int,
    field: str = "featuresToAdd",
) -> list[MemberDoc]:
    """Add features (already-present ones are left as they are); returns the memberships added."""
    for i, ref in enumerate(refs):
        check_text(ref.description, f"{field}[{i}].description", MAX_DESCRIPTION)
    resolved = resolve_features(session, refs, field)
    present = set(session.scalars(select(ListFeature.feature_id).where(ListFeature.list_id == lst.id)))
    new: dict[int, Resolved] = {}
    for item in resolved:
        if item.feature_id not in present and item.feature_id not in new:
            new[item.feature_id] = item
    if len(present) + len(new) > max_features:
        raise TooMany(
            f"a list holds at most {max_features:,} features (INTERPEDIA_LIST_MAX_FEATURES); this one "
            f"has {len(present):,} and {len(new):,} would be added",
            field=field,
        )
    rows = []
    for item in new.values():
        row = ListFeature(
            list_id=lst.id, feature_id=item.feature_id, description=item.ref.description or "", user_id=user.id
        )
        session.add(row)
        rows.append((row, item.ref))
    session.flush()
    lst.updated_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    return [member_json(row, ref.model_id, ref.layer, ref.index) for row, ref in rows]


def _membership(session: Session, lst: FeatureList, model_id: str, layer: str, index: Any) -> ListFeature:
    ref = FeatureRef(model_id, layer, parse_index(index))
    feature_id = resolve_features(session, [ref], "feature")[0].feature_id
    row = session.get(ListFeature, (lst.id, feature_id))
    if row is None:
        raise NotFound(f"feature {model_id}/{layer}/{ref.index} is not in this list", field="index")
    return row


def remove_feature(session: Session, lst: FeatureList, model_id: str, layer: str, index: Any) -> MemberDoc:
    """Take a feature out of the list; returns the removed membership."""
    row = _membership(session, lst, model_id, layer, index)
    doc = member_json(row, model_id, layer, parse_index(index))
    session.delete(row)
    session.flush()
    return doc


def edit_feature(
    session: Session, lst: FeatureList, model_id: str, layer: str, index: Any, description: str | None
) -> MemberDoc:
    """Change the note on one of the list's features; returns the membership."""
    check_text(description, "description", MAX_DESCRIPTION)
    row = _membership(session, lst, model_id, layer, index)
    row.description = description or ""
    session.flush()
    return member_json(row, model_id, layer, parse_index(index))


def update_list(
    session: Session, lst: FeatureList, name: str, description: str | None, test_text: str | None
) -> FeatureList:
    """Rename the list, change its description and its shared test text (empty text: none)."""
    check_text(name, "name", MAX_NAME, required=True)
    check_text(description, "description", MAX_DESCRIPTION)
    check_text(test_text, "defaultTestText", MAX_TEST_TEXT)
    lst.name, lst.description = name.strip(), description or ""
    lst.default_test_text = test_text if test_text and test_text.strip() else None
    session.flush()
    return lst


def delete_list(session: Session, lst: FeatureList) -> None:
    """Delete the list and its memberships."""
    session.execute(delete(ListFeature).where(ListFeature.list_id == lst.id))
    session.delete(lst)
    session.flush()


def user_lists(session: Session, user: User) -> list[FeatureList]:
    """The user's lists, oldest first (as neuronpedia.org orders them)."""
    return list(
        session.scalars(
            select(FeatureList).where(FeatureList.user_id == user.id).order_by(FeatureList.created_at, FeatureList.id)
        )
    )


@functools.cache
def _lists_with_feature_statement() -> Select[str, str, bool]:
    # Built once: every signed-in feature page runs it.
    holds = exists().where(ListFeature.list_id == FeatureList.id, ListFeature.feature_id == bindparam("feature_id"))
    return (
        select(FeatureList.id, FeatureList.name, holds.label("has_feature"))
        .where(FeatureList.user_id == bindparam("user_id"))
        .order_by(FeatureList.created_at, FeatureList.id)
    )


def lists_with_feature(session: Session, user: User, feature_id: int) -> list[ListChoiceDoc]:
    """The user's lists, each saying whether it already holds the feature (the feature page's menu)."""
    rows = session.execute(_lists_with_feature_statement(), {"user_id": user.id, "feature_id": feature_id})
    return [{"id": r.id, "name": r.name, "hasFeature": bool(r.has_feature)} for r in rows]


def owned_lists(session: Session, user: User) -> list[OwnedListDoc]:
    """The user's lists with how many features each holds, oldest first (the account page)."""
    counts = select(ListFeature.list_id, func.count().label("n")).group_by(ListFeature.list_id).subquery()
    rows = session.execute(
        select(FeatureList, counts.c.n)
        .outerjoin(counts, counts.c.list_id == FeatureList.id)
        .where(FeatureList.user_id == user.id)
        .order_by(FeatureList.created_at)
    ).all()
    return [
        {
            "id": lst.id,
            "name": lst.name,
            "description": lst.description,
            "featureCount": n or 0,
            "url": f"/list/{lst.id}",
        }
        for lst, n in rows
    ]


def list_details(session: Session, lst: FeatureList, base_url: str) -> ListDetailsDoc:
    """The list with its features, each with explanations (and its top examples for the first 300).

    A feature of a model, set or source the current viewer may not open is left out, as if it were not there."""
    owner = session.get(User, lst.user_id)
    rows = [
        r
        for r in session.execute(
            select(
                ListFeature,
                Feature,
                Source.name.label("source_name"),
                Source.model_id,
                Source.inference_enabled.label("source_inference"),
                Model.inference_enabled.label("model_inference"),
                *VISIBILITY_COLUMNS,
            )
            .join(Feature, Feature.id == ListFeature.feature_id)
            .join(Source, Source.id == Feature.source_id)
            .join(Model, Model.id == Source.model_id)
            .outerjoin(SourceSet, SourceSet.id == Source.set_id)
            .where(ListFeature.list_id == lst.id)
            .order_by(ListFeature.added_at, Feature.source_id, Feature.index)
        ).all()
        if chain_visible(r)
    ]
    by_source: dict[tuple[str, str], list[Feature]] = defaultdict(list)
    for r in rows:
        by_source[(r.model_id, r.source_name)].append(r.Feature)
    explanations: dict[int, list[ExplanationDoc]] = {}
    for (model_id, src_name), feats in by_source.items():
        explanations.update(list_explanations(session, model_id, src_name, feats))
    examples = top_examples(
        session, [(r.Feature, r.source_name, r.model_id) for r in rows[:DETAIL_ACTIVATION_FEATURES]]
    )
    neurons: list[MemberWithNeuronDoc] = [
        {
            **member_json(r.ListFeature, r.model_id, r.source_name, r.Feature.index),
            "neuron": neuron_doc(
                r.Feature,
                r.model_id,
                r.source_name,
                bool(r.source_inference and r.model_inference),
                explanations.get(r.Feature.id, []),
                examples.get(r.Feature.id, []),
            ),
        }
        for r in rows
    ]
    return {**list_json(lst, owner.name if owner else None, base_url), "neurons": neurons, "activations": []}


def neuron_doc(
    feat: Feature,
    model_id: str,
    source_name: str,
    inference: bool,
    explanations: list[ExplanationDoc],
    activations: list[ActivationDoc],
) -> ListNeuronDoc:
    """What a list (or a quick list) says of one feature."""
    return {
        "modelId": model_id,
        "layer": source_name,
        "index": str(feat.index),
        "maxActApprox": feat.max_act_approx,
        "frac_nonzero": feat.frac_nonzero,
        "inferenceEnabled": inference,
        "explanations": explanations,
        "activations": activations,
    }


def top_examples(session: Session, features: Sequence[tuple[Feature, str, str]]) -> dict[int, list[ActivationDoc]]:
    """The top examples of many features in one query per chunk (a window function ranks them per feature)."""
    out: dict[int, list[ActivationDoc]] = defaultdict(list)
    where = {feat.id: (feat, src_name, model_id) for feat, src_name, model_id in features}
    ids = list(where)
    for start in range(0, len(ids), _CHUNK):
        rank = (
            func.row_number()
            .over(partition_by=Activation.feature_id, order_by=(Activation.max_value.desc(), Activation.id))
            .label("rank")
        )
        ranked = select(Activation.id, rank).where(Activation.feature_id.in_(ids[start : start + _CHUNK])).subquery()
        acts = session.scalars(
            select(Activation)
            .join(ranked, ranked.c.id == Activation.id)
            .where(ranked.c.rank <= DETAIL_ACTIVATIONS)
            .order_by(Activation.feature_id, Activation.max_value.desc(), Activation.id)
        )
        for act in acts:
            feat, src_name, model_id = where[act.feature_id]
            out[act.feature_id].append(activation_json(session, model_id, src_name, feat.index, act))
    return out
