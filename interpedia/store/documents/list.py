"""The list documents: a feature list, one membership (``ListsOnNeurons``), and a list with its features."""

from __future__ import annotations

from typing import NotRequired, TypedDict

from interpedia.db.community import FeatureList, ListFeature
from interpedia.store.documents.explanation import ExplanationDoc
from interpedia.store.documents.feature import ActivationDoc
from interpedia.store.formats import iso

__all__ = [
    "ListDetailsDoc",
    "ListDoc",
    "ListNeuronDoc",
    "MemberDoc",
    "MemberWithNeuronDoc",
    "list_json",
    "list_url",
    "member_json",
]


class ListOwnerDoc(TypedDict):
    """The list's owner."""

    name: str


class ListDoc(TypedDict):
    """A list (plus ``user`` when the owner is known and ``url`` when the site's address is)."""

    id: str
    name: str
    description: str
    defaultTestText: str | None
    userId: str
    createdAt: str | None
    updatedAt: str | None
    user: NotRequired[ListOwnerDoc]
    url: NotRequired[str]


class MemberDoc(TypedDict):
    """A feature's membership of a list, with the owner's note."""

    modelId: str
    layer: str
    index: str
    listId: str
    description: str | None
    addedAt: str | None
    userId: str | None


class ListNeuronDoc(TypedDict):
    """What a list's details say of each feature."""

    modelId: str
    layer: str
    index: str
    maxActApprox: float | None
    frac_nonzero: float | None
    inferenceEnabled: bool
    explanations: list[ExplanationDoc]
    activations: list[ActivationDoc]


class MemberWithNeuronDoc(MemberDoc):
    """A membership with its feature (``/api/list/get``'s ``neurons``)."""

    neuron: ListNeuronDoc


class ListDetailsDoc(ListDoc):
    """``/api/list/get``: the list, its features and (always empty, as neuronpedia.org) ``activations``."""

    neurons: list[MemberWithNeuronDoc]
    activations: list[ActivationDoc]


def list_url(base_url: str, list_id: str) -> str:
    """The list's page."""
    return f"{base_url.rstrip('/')}/list/{list_id}"


def list_json(lst: FeatureList, owner_name: str | None = None, base_url: str | None = None) -> ListDoc:
    """A list row as neuronpedia.org returns it (plus ``url`` when ``base_url`` is given)."""
    doc: ListDoc = {
        "id": lst.id,
        "name": lst.name,
        "description": lst.description,
        "defaultTestText": lst.default_test_text,
        "userId": lst.user_id,
        "createdAt": iso(lst.created_at),
        "updatedAt": iso(lst.updated_at),
    }
    if owner_name is not None:
        doc["user"] = {"name": owner_name}
    if base_url is not None:
        doc["url"] = list_url(base_url, lst.id)
    return doc


def member_json(row: ListFeature, model_id: str, layer: str, index: int) -> MemberDoc:
    """A list membership (neuronpedia.org's ``ListsOnNeurons`` row)."""
    return {
        "modelId": model_id,
        "layer": layer,
        "index": str(index),
        "listId": row.list_id,
        "description": row.description,
        "addedAt": iso(row.added_at),
        "userId": row.user_id,
    }
