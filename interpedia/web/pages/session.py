"""Web sign-in: a signed cookie that remembers which API key a browser signed in with, and CSRF tokens.

The cookie holds ``{"k": api key row id or null, "u": user id or null, "p": password fingerprint,
"c": csrf token}``, signed with the session secret (itsdangerous), so it cannot be forged. A browser
signs in either with an API key (the key itself never leaves the database, only its hash is stored
there; revoking the key signs every browser that used it out at once) or with a name and password
(``u``; the fingerprint of the password hash is kept so that changing the password signs every
browser out). Each form carries the
cookie's CSRF token in a hidden field and a POST must send it back; a request that authenticates with
the ``x-api-key`` header instead needs no token, since a browser cannot add that header cross-site.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.orm import Session

from interpedia.config import Settings
from interpedia.errors import Forbidden
from interpedia.store.rows import User
from interpedia.store.users import get_user, key_owner_by_id
from interpedia.web.deps import caller
from interpedia.web.urls import served_over_https

log = logging.getLogger(__name__)

COOKIE = "interpedia_session"
CSRF_FIELD = "csrf_token"
_SALT = "interpedia.web.session"


def session_secret(settings: Settings) -> str:
    """The configured secret; in development an empty one is generated once and kept under INTERPEDIA_HOME."""
    if settings.session_secret:
        return settings.session_secret
    if settings.env == "production":  # Settings refuses this already; keep the rule next to its use too.
        raise RuntimeError("INTERPEDIA_SESSION_SECRET must be set in production")
    path = Path(settings.home) / "session_secret"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    # O_EXCL: two servers starting at once must agree on one secret.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(secret + "\n")
    log.info("generated a development session secret in %s", path)
    return secret


@dataclass
class WebSession:
    """The browser's session: which key it signed in with and its CSRF token."""

    key_id: str | None = None
    user_id: str | None = None
    pw_print: str | None = None
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    dirty: bool = False
    fresh: bool = False
    user: User | None = None
    user_loaded: bool = False

    def token(self) -> str:
        """The CSRF token for a form; a new session is saved (cookie set) only once a form needs it."""
        if self.fresh:
            self.dirty = True
        return self.csrf

    def sign_in(self, key_id: str, user: User) -> None:
        """Remember the key; a fresh CSRF token stops a token planted before sign-in from being reused."""
        self.key_id, self.user_id, self.pw_print = key_id, None, None
        self.csrf, self.user, self.user_loaded, self.dirty = secrets.token_urlsafe(32), user, True, True

    def sign_in_password(self, user: User) -> None:
        """Remember a user who signed in with their password (and rotate the CSRF token)."""
        self.key_id, self.user_id, self.pw_print = None, user.id, password_print(user)
        self.csrf, self.user, self.user_loaded, self.dirty = secrets.token_urlsafe(32), user, True, True

    def sign_out(self) -> None:
        """Forget the key or user (and rotate the CSRF token)."""
        self.key_id, self.user_id, self.pw_print = None, None, None
        self.csrf, self.user, self.user_loaded, self.dirty = secrets.token_urlsafe(32), None, True, True


def password_print(user: User) -> str:
    """A short fingerprint of the user's password hash: a new password makes old cookies stale."""
    return hashlib.sha256((user.password_hash or "").encode()).hexdigest()[:16]


class SessionManager:
    """Reads and writes the session cookie for one app."""

    def __init__(self, settings: Settings) -> None:
        self.serializer = URLSafeTimedSerializer(session_secret(settings), salt=_SALT)
        self.max_age = settings.session_max_age_days * 86400
        self.settings = settings

    def load(self, request: Request) -> WebSession:
        """The request's session (parsed once per request); a missing or bad cookie gives a new one."""
        cached = getattr(request.state, "web_session", None)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        raw = request.cookies.get(COOKIE)
        sess: WebSession | None = None
        if raw:
            try:
                data: Any = self.serializer.loads(raw, max_age=self.max_age)
                if isinstance(data, dict) and isinstance(data.get("c"), str) and len(data["c"]) >= 20:
                    key_id, user_id, pw_print = data.get("k"), data.get("u"), data.get("p")
                    sess = WebSession(
                        key_id=key_id if isinstance(key_id, str) else None,
                        user_id=user_id if isinstance(user_id, str) else None,
                        pw_print=pw_print if isinstance(pw_print, str) else None,
                        csrf=data["c"],
                    )
            except BadSignature:
                sess = None
        if sess is None:
            sess = WebSession(fresh=True)
        request.state.web_session = sess
        return sess

    def signed_in_user(self, request: Request, session: Session) -> User | None:
        """The user this browser signed in as (with a key that is still live, or a password not changed since),
        else None; a stale sign-in is forgotten (the cookie is cleared with the response)."""
        sess = self.load(request)
        if sess.user_loaded:
            return sess.user
        sess.user_loaded = True
        if sess.key_id:
            owner = key_owner_by_id(session, sess.key_id)
            if owner is None:
                sess.sign_out()  # the key was revoked: sign the browser out
            else:
                sess.user = owner.user
        elif sess.user_id:
            user = get_user(session, sess.user_id)
            if (
                user is None
                or not user.password_hash
                or not hmac.compare_digest(password_print(user), sess.pw_print or "")
            ):
                sess.sign_out()  # the user is gone or changed their password
            else:
                sess.user = user
        return sess.user

    def save(self, request: Request, response: Response) -> None:
        """Write the cookie when the session changed during the request."""
        sess = getattr(request.state, "web_session", None)
        if sess is None or not sess.dirty:
            return
        response.set_cookie(
            COOKIE,
            self.serializer.dumps({"k": sess.key_id, "u": sess.user_id, "p": sess.pw_print, "c": sess.csrf}),
            max_age=self.max_age,
            httponly=True,
            samesite="lax",
            secure=served_over_https(request.scope, self.settings),  # the request's scheme when no base URL is set
            path="/",
        )


def manager(request: Request) -> SessionManager:
    """The app's session manager."""
    return request.app.state.web_sessions  # type: ignore[no-any-return]


def current_user(request: Request, session: Session | None = None) -> User | None:
    """Who is asking: the ``x-api-key`` header's owner, else the signed-in browser's user, else None; 401 for a
    wrong key. Looked up once per request (``web.deps``); ``session`` is not needed (kept for old callers)."""
    return caller(request).user


def check_csrf(request: Request, session: Session | None, token: Any) -> None:
    """403 unless the form's token matches the cookie's (requests signed by ``x-api-key`` need none)."""
    found = caller(request)
    if found.by_key and found.user is not None:
        return
    sess = manager(request).load(request)
    if sess.fresh:
        raise Forbidden("no session cookie: load the form again (cookies must be enabled)")
    if not isinstance(token, str) or not hmac.compare_digest(token.encode(), sess.csrf.encode()):
        raise Forbidden("the form's security token is missing or stale: load the form again", field=CSRF_FIELD)
