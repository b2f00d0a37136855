"""``/api/test``: is this API key good? (SAELens's ``test_key`` asks it before it uploads a list.)"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import Field, StrictStr

from interpedia.errors import Unauthorized
from interpedia.store.users import key_owner
from interpedia.web.deps import SessionDep
from interpedia.web.wire import Body, json_response

router = APIRouter(tags=["account"])


class KeyTestBody(Body):
    """``/api/test``."""

    apiKey: Annotated[StrictStr, Field(min_length=1, max_length=200, description="The API key to check.")]


@router.post("/test", summary="Check an API key: 200 with its user's name, 401 when it is not a live key")
def key_test(body: KeyTestBody, session: SessionDep) -> Response:
    """``{message, user: {name}}`` for a live key; 401 in the one error shape for a wrong or revoked one."""
    owner = key_owner(session, body.apiKey)
    if owner is None:
        raise Unauthorized("invalid or revoked API key", field="apiKey")
    return json_response({"message": "valid API key", "user": {"name": owner.user.name}})
