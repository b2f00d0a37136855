"""The comment document: a remark on a feature or a list, with whether the viewer may delete it."""

from __future__ import annotations

import datetime as dt
from typing import NotRequired, TypedDict

from interpedia.store.formats import iso

__all__ = ["CommentDoc", "CommentUserDoc", "comment_doc"]


class CommentUserDoc(TypedDict):
    """Who wrote a comment."""

    id: str
    name: str | None


class CommentDoc(TypedDict):
    """A comment (Neuronpedia's field names); ``modelId``/``layer``/``index`` on a feature's, ``listId`` on a list's."""

    id: str
    text: str
    userId: str
    user: CommentUserDoc
    createdAt: str | None
    canDelete: bool
    modelId: NotRequired[str]
    layer: NotRequired[str]
    index: NotRequired[str]
    listId: NotRequired[str]


def comment_doc(
    *,
    comment_id: str,
    text: str,
    user_id: str,
    user_name: str | None,
    created_at: dt.datetime | None,
    can_delete: bool,
    address: tuple[str, str, int] | None = None,
    list_id: str | None = None,
) -> CommentDoc:
    """A comment from its fields, its author's name, its feature's address or its list."""
    doc: CommentDoc = {
        "id": comment_id,
        "text": text,
        "userId": user_id,
        "user": {"id": user_id, "name": user_name},
        "createdAt": iso(created_at),
        "canDelete": can_delete,
    }
    if address is not None:
        doc["modelId"], doc["layer"], doc["index"] = address[0], address[1], str(address[2])
    if list_id is not None:
        doc["listId"] = list_id
    return doc
