"""Request dependencies: a database session per request and the calling user (from ``x-api-key``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from interpedia.config import Settings
from interpedia.db.tables import User
from interpedia.errors import Unauthorized
from interpedia.store.users import user_for_api_key

AUTH_REQUIRED = (
    "This endpoint requires authorization. Specify your API key in the header x-api-key. "
    "Create one with: interpedia apikey create --user NAME"
)


def get_settings_dep(request: Request) -> Settings:
    """The app's settings."""
    return request.app.state.settings  # type: ignore[no-any-return]


def get_session(request: Request) -> Iterator[Session]:
    """One session per request; handlers that write open their own ``session.begin()``."""
    with request.app.state.sessionmaker() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def optional_user(session: SessionDep, x_api_key: Annotated[str | None, Header()] = None) -> User | None:
    """The key's owner, None when no key is sent; a wrong key is a 401, not anonymity."""
    if not x_api_key:
        return None
    user = user_for_api_key(session, x_api_key)
    if user is None:
        raise Unauthorized("invalid or revoked API key (header x-api-key)")
    session.commit()
    return user


def required_user(user: Annotated[User | None, Depends(optional_user)]) -> User:
    """The key's owner; 401 without a key."""
    if user is None:
        raise Unauthorized(AUTH_REQUIRED)
    return user


OptionalUser = Annotated[User | None, Depends(optional_user)]
RequiredUser = Annotated[User, Depends(required_user)]


def inference_service(request: Request) -> Any:
    """The app's inference service (``interpedia.inference``), made on first use: torch is imported then."""
    from interpedia.inference import for_app

    return for_app(request.app.state)


InferenceDep = Annotated[Any, Depends(inference_service)]  # an InferenceService; Any keeps torch out of signatures
