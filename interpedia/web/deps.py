"""The web's wiring to the database: one session per request, the caller resolved once, and the dependencies
routes declare (``SessionDep``, ``OptionalUser``, ``RequiredUser``, ``SettingsDep``).

With :mod:`interpedia.web.app`, this is the only module of the web package that touches ``interpedia.db``
(the import-linter contract in ``pyproject.toml`` says so); routes and pages reach data through the store.

Per request (:class:`RequestScopeMiddleware`): the session is opened on first use and closed when the
response is sent; the caller (the owner of the ``x-api-key`` header, else the browser's signed-in user, else
nobody) is looked up on first need, once, in that session, and the same answer serves the store's visibility
rules (``store.access``), the route's user dependency and the pages. A read never commits: the only write a
read causes is the key's last-use stamp, made at most once per key every ``KEY_USE_EVERY`` in a short
transaction of its own (see :meth:`RequestScope.caller`).
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from fastapi import Depends, Request
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from interpedia.config import Settings
from interpedia.db import transaction
from interpedia.db.tables import User
from interpedia.errors import Unauthorized
from interpedia.store.access import Viewer, viewing
from interpedia.store.feature_answers import CatalogueCache
from interpedia.store.feature_cache import FeatureCache
from interpedia.store.users import key_owner, key_use_due, record_key_use, utc_now

log = logging.getLogger(__name__)

__all__ = [
    "AUTH_REQUIRED",
    "CatalogueCacheDep",
    "FeatureCacheDep",
    "KEY_USE_EVERY",
    "Caller",
    "OptionalUser",
    "RequestScope",
    "RequestScopeMiddleware",
    "RequiredUser",
    "SessionDep",
    "SettingsDep",
    "InferenceDep",
    "LocalInferenceDep",
    "caller",
    "graph_tracer",
    "inference_service",
    "local_inference",
    "request_scope",
    "request_state",
    "session_factory",
    "write_transaction",
]

AUTH_REQUIRED = (
    "This endpoint requires authorization. Specify your API key in the header x-api-key. "
    "Create one with: interpedia apikey create --user NAME"
)
# How stale a key's last-use stamp may get before a request refreshes it. The account page shows the day of
# last use; writing it on every request would turn each keyed read into a write transaction (on SQLite one
# writer at a time, on Postgres a WAL flush per request).
KEY_USE_EVERY = dt.timedelta(minutes=5)
_STATE_KEY = "interpedia_request"


@dataclass(frozen=True)
class Caller:
    """Who sent the request: a user or nobody. ``by_key``: named by the ``x-api-key`` header (else by the
    browser's session cookie); ``bad_key``: the header matched no live key."""

    user: User | None
    by_key: bool = False
    bad_key: bool = False


class RequestScope:
    """One request's database session (opened on first use) and its caller (looked up on first need)."""

    def __init__(self, app: Any, scope: Scope) -> None:
        self.app = app
        self.scope = scope
        self._session: Session | None = None
        self._caller: Caller | None = None

    def session(self) -> Session:
        """The request's session."""
        if self._session is None:
            self._session = self.app.state.sessionmaker()
        return self._session

    def caller(self) -> Caller:
        """The request's caller, looked up once; a header key's use is stamped when its stamp is stale."""
        if self._caller is None:
            self._caller = self._resolve()
        return self._caller

    def _resolve(self) -> Caller:
        request = Request(self.scope)
        key = request.headers.get("x-api-key")
        session = self.session()
        if key:
            owner = key_owner(session, key)
            if owner is None:
                return Caller(None, by_key=True, bad_key=True)
            now = utc_now()
            if key_use_due(owner, now, KEY_USE_EVERY):
                self._stamp(owner.key_id, now)
            return Caller(owner.user, by_key=True)
        web_sessions = getattr(self.app.state, "web_sessions", None)
        if web_sessions is None:
            return Caller(None)
        return Caller(web_sessions.signed_in_user(request, session))

    def _stamp(self, key_id: str, now: dt.datetime) -> None:
        # Its own short transaction: the request's session stays a read that never commits.
        try:
            with transaction(self.app.state.sessionmaker) as tx:
                record_key_use(tx, key_id, now, KEY_USE_EVERY)
        except SQLAlchemyError as exc:  # bookkeeping: a busy or read-only database must not fail the read
            log.warning("could not record the use of API key %s: %s", key_id, str(exc).splitlines()[0][:200])

    def identity(self) -> tuple[str | None, bool]:
        """(user id, admin) for the store's visibility rules; a bad key is nobody there (routes answer 401).

        A ``/v1`` request that carries the server's ``INTERPEDIA_SECRET`` comes from the operator's own software
        (as Neuronpedia's webapp calls its inference server) and sees what an admin sees; without a secret set,
        ``/v1`` is open to anyone and answers as the ``x-api-key`` header's owner, or nobody."""
        if self._holds_secret():
            return (None, True)
        user = self.caller().user
        return (user.id, bool(user.admin)) if user is not None else (None, False)

    def _holds_secret(self) -> bool:
        secret = self.app.state.settings.secret
        if not secret or not str(self.scope.get("path", "")).startswith("/v1/"):
            return False
        sent = Headers(scope=self.scope).get("x-secret-key")
        return sent is not None and hmac.compare_digest(sent.encode(), secret.encode())

    def close(self) -> None:
        """Close the session, if one was opened (its read transaction is rolled back, never committed)."""
        if self._session is not None:
            self._session.close()
            self._session = None


class RequestScopeMiddleware:
    """Gives each request its :class:`RequestScope` and tells the store who is looking (lazily)."""

    def __init__(self, app: ASGIApp, root: Any) -> None:
        self.app = app
        self.root = root

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # The state dict is shared by the scope copies inner layers make (HEAD as GET, trailing slash).
        scope.setdefault("state", {})
        request = RequestScope(self.root, scope)
        scope["state"][_STATE_KEY] = request
        try:
            with viewing(Viewer(request.identity)):
                await self.app(scope, receive, send)
        finally:
            if request._session is not None:
                await anyio.to_thread.run_sync(request.close)


def request_state(scope: Scope) -> RequestScope:
    """The request's scope from its ASGI scope (inside :class:`RequestScopeMiddleware`)."""
    return scope["state"][_STATE_KEY]  # type: ignore[no-any-return]


def request_scope(request: Request) -> RequestScope:
    """The request's scope (set by :class:`RequestScopeMiddleware`)."""
    return request.scope["state"][_STATE_KEY]  # type: ignore[no-any-return]


# The dependencies below that only hand out what the app or the request holds are ``async``: FastAPI runs a
# plain ``def`` dependency in its thread pool, and that hop cost more CPU than a cached feature page's whole
# read. Making a Session object does no I/O (it connects on its first statement, in the handler's thread).


async def get_settings_dep(request: Request) -> Settings:
    """The app's settings."""
    return request.app.state.settings  # type: ignore[no-any-return]


async def get_session(request: Request) -> Session:
    """The request's session; a handler that writes ends its read first (``session.commit()``) and opens
    ``session.begin()``, or writes in a :func:`write_transaction`."""
    return request_scope(request).session()


def session_factory(request: Request) -> sessionmaker[Session]:
    """The app's session factory, for a workflow that runs its own transactions (uploads, imports)."""
    return request.app.state.sessionmaker  # type: ignore[no-any-return]


def write_transaction(request: Request) -> AbstractContextManager[Session]:
    """A session of its own in one transaction, committed on success and rolled back on any error."""
    return transaction(request.app.state.sessionmaker)


async def feature_cache(request: Request) -> FeatureCache:
    """The app's cache of feature documents."""
    return request.app.state.feature_cache  # type: ignore[no-any-return]


async def feature_catalogue(request: Request) -> CatalogueCache:
    """The app's catalogue parts of feature answers (``store.feature_answers``)."""
    return request.app.state.feature_catalogue  # type: ignore[no-any-return]


SessionDep = Annotated[Session, Depends(get_session)]
FeatureCacheDep = Annotated[FeatureCache, Depends(feature_cache)]
CatalogueCacheDep = Annotated[CatalogueCache, Depends(feature_catalogue)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def caller(request: Request) -> Caller:
    """The request's caller; a wrong ``x-api-key`` is a 401, not anonymity."""
    found = request_scope(request).caller()
    if found.bad_key:
        raise Unauthorized("invalid or revoked API key (header x-api-key)")
    return found


async def optional_user(request: Request) -> User | None:
    """The ``x-api-key`` header's owner, None without one; 401 for a bad key. The API does not take the
    browser's cookie: a cross-site form could send that (the pages check a CSRF token instead)."""
    if not request.headers.get("x-api-key"):
        return None  # without a key the API asks nothing (the store may still look up a browser's cookie)
    found = await run_in_threadpool(caller, request)  # the key's lookup is a statement: off the event loop
    return found.user if found.by_key else None


async def required_user(user: Annotated[User | None, Depends(optional_user)]) -> User:
    """The caller; 401 for nobody."""
    if user is None:
        raise Unauthorized(AUTH_REQUIRED)
    return user


OptionalUser = Annotated[User | None, Depends(optional_user)]
RequiredUser = Annotated[User, Depends(required_user)]


def inference_service(request: Request) -> Any:
    """The app's live inference (``interpedia.inference.routing``): each request goes to the inference host the
    host map names for it, else to the in-process service (made on first use: torch is imported then)."""
    from interpedia.inference.routing import router_for_app

    return router_for_app(request.app.state)


def local_inference(request: Request) -> Any:
    """The in-process inference service, for the /v1 routes: an inference server never forwards a request (a host
    map that names the server itself must not make it call itself)."""
    from interpedia.inference import for_app

    return for_app(request.app.state)


def graph_tracer(request: Request) -> Any:
    """The app's graph tracer (``interpedia.graph.tracer``; torch is imported on first use, not with the routes).

    It routes graphs to the graph host mapped for the model and transcoder set; its ``trace`` is always local."""
    state = request.app.state
    tracer = getattr(state, "graph_tracer", None)
    if tracer is None:
        from interpedia.graph.tracer import GraphTracer

        tracer = state.graph_tracer = GraphTracer(state.settings, state.sessionmaker, router=inference_service(request))
    return tracer


# Any keeps torch out of signatures: an InferenceRouter (or, for /v1, an InferenceService)
InferenceDep = Annotated[Any, Depends(inference_service)]
LocalInferenceDep = Annotated[Any, Depends(local_inference)]
