"""Who may see private and unlisted models, source sets and sources.

Neuronpedia's rules: a PRIVATE row exists only for its creator and admins (to anyone else it is "not
found", so its existence does not leak); an UNLISTED row is served to anyone who has its URL but is
left out of lists and global search; PUBLIC is everything else.

The web layer says who is looking once per request (``viewing``); the store's lookups consult
``may_see`` and ``may_list``. The viewer is resolved lazily, so a request that touches only public
rows never looks up its API key or session for this. Outside a request (CLI, importers,
generators) there is no viewer and nothing is hidden.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import ColumnElement, and_, false, or_, true

__all__ = ["Viewer", "listed_condition", "may_list", "may_see", "viewing"]

PUBLIC = "PUBLIC"
UNLISTED = "UNLISTED"
PRIVATE = "PRIVATE"


class Viewer:
    """The user behind a request, looked up on first need: (user id or None, is admin)."""

    def __init__(self, resolve: Callable[[], tuple[str | None, bool]]) -> None:
        self._resolve = resolve
        self._identity: tuple[str | None, bool] | None = None

    def identity(self) -> tuple[str | None, bool]:
        """(user id, admin); anonymous is (None, False)."""
        if self._identity is None:
            self._identity = self._resolve()
        return self._identity

    def owns(self, creator_ids: tuple[str | None, ...]) -> bool:
        """True for an admin, or for the creator of one of the rows."""
        user_id, admin = self.identity()
        return admin or (user_id is not None and user_id in creator_ids)


_viewer: ContextVar[Viewer | None] = ContextVar("interpedia_viewer", default=None)


@contextmanager
def viewing(viewer: Viewer | None) -> Iterator[None]:
    """Run the enclosed code (one web request) on behalf of ``viewer``."""
    token = _viewer.set(viewer)
    try:
        yield
    finally:
        _viewer.reset(token)


def current_viewer() -> Viewer | None:
    """The request's viewer, None outside web requests."""
    return _viewer.get()


def may_see(visibilities: tuple[str | None, ...], creator_ids: tuple[str | None, ...]) -> bool:
    """Whether the current viewer may open a row whose chain (model, set, source) has these visibilities."""
    viewer = _viewer.get()
    if viewer is None or PRIVATE not in visibilities:
        return True
    return viewer.owns(creator_ids)


def may_list(visibilities: tuple[str | None, ...], creator_ids: tuple[str | None, ...]) -> bool:
    """Whether the row belongs in lists and global search for the current viewer."""
    viewer = _viewer.get()
    if viewer is None or all(v in (None, PUBLIC) for v in visibilities):
        return True
    return viewer.owns(creator_ids)


def listed_condition(visibility: Any, creator_id: Any) -> ColumnElement[bool]:
    """SQL for ``may_list`` on one table's columns (PUBLIC, or the viewer's own, or everything for admins)."""
    viewer = _viewer.get()
    if viewer is None:
        return visibility != PRIVATE  # outside requests lists keep leaving private rows out
    user_id, admin = viewer.identity()
    if admin:
        return true()
    own = creator_id == user_id if user_id is not None else false()
    return or_(visibility == PUBLIC, and_(own, visibility.in_([UNLISTED, PRIVATE])))
