"""Users and API keys. Keys are shown once and stored only as SHA-256 hashes."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from interpedia.db.tables import ApiKey, User

USER_NAME_RE = re.compile(r"^[a-zA-Z0-9-.]{1,39}$")
KEY_PREFIX = "sk-np-"


class InvalidUserName(ValueError):
    """A user name outside Neuronpedia's rules."""


def hash_key(key: str) -> str:
    """The stored form of an API key."""
    return hashlib.sha256(key.encode()).hexdigest()


def get_user_by_name(session: Session, name: str) -> User | None:
    """The user called ``name``, if any."""
    return session.scalar(select(User).where(User.name == name))


def ensure_user(session: Session, name: str, *, bot: bool = False, admin: bool = False) -> User:
    """The user called ``name``, created when missing."""
    if not USER_NAME_RE.match(name):
        raise InvalidUserName(f"user name {name!r} must be 1-39 letters, digits, '-' or '.'")
    user = get_user_by_name(session, name)
    if user is None:
        user = User(name=name, bot=bot, admin=admin)
        session.add(user)
        session.flush()
    return user


def create_api_key(session: Session, user: User, label: str | None = None) -> str:
    """Create a key for ``user`` and return it in clear text (the only time it exists in clear)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(user_id=user.id, key_hash=hash_key(key), prefix=key[:12], label=label))
    session.flush()
    return key


def user_for_api_key(session: Session, key: str) -> User | None:
    """The owner of a live API key, or None; the hash comparison is constant-time."""
    digest = hash_key(key)
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None)))
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        return None
    row.last_used_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    return session.get(User, row.user_id)


def list_api_keys(session: Session, user: User) -> list[ApiKey]:
    """The user's keys, newest first (hashes only)."""
    return list(session.scalars(select(ApiKey).where(ApiKey.user_id == user.id).order_by(ApiKey.created_at.desc())))


def revoke_api_key(session: Session, user: User, key_id: str) -> bool:
    """Revoke one of the user's keys; False when it is not theirs."""
    row = session.get(ApiKey, key_id)
    if row is None or row.user_id != user.id:
        return False
    row.revoked_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    return True
