"""Users, passwords (argon2id) and API keys. Keys are shown once and stored only as SHA-256 hashes."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Select, bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from interpedia.db.tables import ApiKey, User
from interpedia.errors import Conflict, Invalid, NotFound

USER_NAME_RE = re.compile(r"^[a-zA-Z0-9-.]{1,39}$")
KEY_PREFIX = "sk-np-"


class InvalidUserName(Invalid):
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


@dataclass(frozen=True)
class KeyOwner:
    """A live API key's owner, with what the key-use stamp needs (the key's id and its last use)."""

    user: User
    key_id: str
    last_used_at: dt.datetime | None


@functools.cache
def _key_owner_statement() -> Select[User, str, str, dt.datetime | None]:
    # Built once: every keyed request runs it.
    return (
        select(User, ApiKey.id, ApiKey.key_hash, ApiKey.last_used_at)
        .join(ApiKey, ApiKey.user_id == User.id)
        .where(ApiKey.key_hash == bindparam("digest"), ApiKey.revoked_at.is_(None))
    )


def key_owner(session: Session, key: str) -> KeyOwner | None:
    """The owner of a live API key (one statement), or None; the hash comparison is constant-time."""
    digest = hash_key(key)
    found = session.execute(_key_owner_statement(), {"digest": digest}).first()
    if found is None or not hmac.compare_digest(found[2], digest):
        return None
    return KeyOwner(found[0], found[1], found[3])


def key_owner_by_id(session: Session, key_id: str) -> KeyOwner | None:
    """The owner of the live key with this row id (a browser signed in with it), or None once it is revoked."""
    found = session.execute(
        select(User, ApiKey.id, ApiKey.last_used_at)
        .join(ApiKey, ApiKey.user_id == User.id)
        .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
    ).first()
    return None if found is None else KeyOwner(found[0], found[1], found[2])


def get_user(session: Session, user_id: str) -> User | None:
    """The user with this id, if any."""
    return session.get(User, user_id)


def key_use_due(owner: KeyOwner, now: dt.datetime, every: dt.timedelta) -> bool:
    """Whether the key's last-use stamp is older than ``every`` (or missing), so this use should be recorded."""
    return owner.last_used_at is None or now - owner.last_used_at >= every


def record_key_use(session: Session, key_id: str, now: dt.datetime, every: dt.timedelta) -> bool:
    """Stamp the key's last use with ``now`` unless a use within ``every`` is already recorded (by this or
    another process); call in a transaction of its own. Returns whether the stamp was written."""
    result = session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id)
        .where(or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at <= now - every))
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


def utc_now() -> dt.datetime:
    """Now, as the database's naive UTC timestamps hold it."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def list_api_keys(session: Session, user: User) -> list[ApiKey]:
    """The user's keys, newest first (hashes only)."""
    return list(session.scalars(select(ApiKey).where(ApiKey.user_id == user.id).order_by(ApiKey.created_at.desc())))


def revoke_api_key(session: Session, user: User, key_id: str) -> bool:
    """Revoke one of the user's keys; False when it is not theirs."""
    row = session.get(ApiKey, key_id)
    if row is None or row.user_id != user.id:
        return False
    row.revoked_at = utc_now()
    return True


# --- passwords and roles --------------------------------------------------------------------------

MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # argon2 hashes any length; the bound only stops megabyte "passwords" costing CPU

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    # Verified against when the user is unknown, so a wrong name costs as long as a wrong password.
    # Made on first use, not at import: one argon2 hash costs tens of milliseconds of CPU.
    return _hasher.hash("interpedia-no-such-user")


def hash_password(password: str) -> str:
    """The argon2id hash of ``password``."""
    return _hasher.hash(password)


def check_password_rules(password: str) -> None:
    """Raise :class:`Invalid` for a password that is too short or too long."""
    if len(password) < MIN_PASSWORD:
        raise Invalid(f"the password must be at least {MIN_PASSWORD} characters", field="password")
    if len(password) > MAX_PASSWORD:
        raise Invalid(f"the password must be at most {MAX_PASSWORD} characters", field="password")


def create_account(session: Session, name: str, password: str, *, email: str | None = None) -> User:
    """A new local account; 422 for a bad name or password, 409 when the name is taken."""
    if not USER_NAME_RE.match(name):
        raise Invalid("the user name must be 1-39 letters, digits, '-' or '.'", field="name")
    check_password_rules(password)
    if email is not None and (len(email) > 320 or "@" not in email):
        raise Invalid("the email address is not valid", field="email")
    # Names are unique ignoring case, so 'Alice' cannot pose as 'alice'.
    if session.scalar(select(User.id).where(func.lower(User.name) == name.lower())) is not None:
        raise Conflict(f"the user name {name!r} is taken", field="name")
    user = User(name=name, email=email, password_hash=hash_password(password))
    session.add(user)
    session.flush()
    return user


def authenticate(session: Session, name: str, password: str) -> User | None:
    """The user when ``password`` is theirs, else None (taking as long whether or not the name exists)."""
    user = get_user_by_name(session, name) if USER_NAME_RE.match(name) else None
    stored = user.password_hash if user is not None and user.password_hash else None
    try:
        _hasher.verify(stored or _dummy_hash(), password[:MAX_PASSWORD])
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if user is None or stored is None:
        return None
    if _hasher.check_needs_rehash(stored):
        user.password_hash = hash_password(password)
    return user


def set_password(session: Session, user: User, password: str) -> None:
    """Give ``user`` a new password (rules checked)."""
    check_password_rules(password)
    user.password_hash = hash_password(password)
    session.flush()


def set_admin(session: Session, name: str, admin: bool = True) -> User:
    """Grant (or take away) the admin role; 404 for an unknown user."""
    user = get_user_by_name(session, name)
    if user is None:
        raise NotFound(f"no user called {name!r}", field="name")
    user.admin = admin
    session.flush()
    return user


def can_modify(user: User | None, owner_id: str | None) -> bool:
    """True when ``user`` owns the content or is an admin (admins can remove anything)."""
    return user is not None and (user.admin or (owner_id is not None and user.id == owner_id))
