"""What crosses the wire: the base of every request body, the shared field types, and the JSON response.

The webapp API (``/api``) takes camelCase fields as neuronpedia.org does; the inference and autointerp
server API (``/v1``) takes snake_case and, as Neuronpedia's generated clients sometimes send, camelCase too
(``CamelBody``). Unknown fields are ignored, as upstream does.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Iterator
from typing import Annotated, Any

from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from pydantic import (
    AfterValidator,
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StrictInt,
    StrictStr,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel

from interpedia.errors import Invalid, UserError
from interpedia.store.formats import MAX_INDEX, dumps, parse_index

__all__ = [
    "INDEX_PATTERN",
    "SSE_RESPONSES",
    "Body",
    "CamelBody",
    "Finite",
    "Index",
    "Int",
    "NonBlank",
    "SPACE_CHARS",
    "Texts",
    "cache_control",
    "conditional",
    "etag_matches",
    "integral",
    "json_response",
    "setting_limit",
    "sse_response",
]

log = logging.getLogger(__name__)

# What a route that streams with ``stream: true`` declares: one JSON answer, or server-sent events of it as it grows.
SSE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The answer (stream: false), or server-sent events 'data: <the answer so far>' (stream: true)",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "text/event-stream": {"schema": {"type": "string"}},
        },
    }
}

# A JSON number that is not NaN or +-Infinity (the store refuses those; orjson cannot write them).
Finite = Annotated[float, Strict(), AllowInfNan(False)]


def integral(value: Any) -> Any:
    """``3.0`` as ``3``: JSON Schema's ``integer`` includes numbers with a zero fraction. Put it after an integer
    field's ``Field`` constraints (``Annotated[StrictInt, Field(ge=0), BeforeValidator(integral)]``): before them,
    pydantic leaves the constraints out of the JSON schema."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# An unbounded integer field as JSON Schema means it (``3.0`` is 3; no strings, no booleans). A bounded one is
# ``Annotated[StrictInt, Field(...), BeforeValidator(integral)]``.
Int = Annotated[StrictInt, BeforeValidator(integral)]
INDEX_PATTERN = r"^[0-9]{1,9}$"


def _check_index(value: int | str) -> int | str:
    """``parse_index``'s rule and message; a string has at most 9 digits (under the column's MAX_INDEX)."""
    try:
        parse_index(value)
    except Invalid as exc:
        raise ValueError(exc.message) from None
    if isinstance(value, str) and not re.fullmatch(INDEX_PATTERN, value):
        raise ValueError(f"feature index {value!r} is not an integer of at most 9 digits")
    return value


# A feature index: a non-negative integer, or one written as a string (the schema says so; the messages are
# parse_index's).
Index = Annotated[
    StrictInt | StrictStr,
    BeforeValidator(integral),
    AfterValidator(_check_index),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": MAX_INDEX},
                {"type": "string", "pattern": INDEX_PATTERN},
            ],
            "description": "Feature index (a non-negative integer, or one written as a string).",
        }
    ),
]
# Python's white space (what ``str.strip()`` removes), spelled out: ``\s`` means something else in each regex
# dialect that reads the schema (Python, Rust's in pydantic, ECMAScript in clients).
SPACE_CHARS = r"\u0009-\u000d\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# A string with something besides white space in it (what ``.strip()`` checks leave).
NonBlank = Annotated[StrictStr, Field(pattern=f"[^{SPACE_CHARS}]")]


# A limit that a setting sets: ``openapi.py`` writes the setting's value into the schema as ``keyword``.
def setting_limit(keyword: str, setting: str) -> dict[str, Any]:
    """``json_schema_extra`` for a field whose bound is the setting ``setting`` (``maximum``, ``maxItems``)."""
    return {"x-setting-limit": {"keyword": keyword, "setting": setting}}


# One text, or a batch of them (at most INTERPEDIA_INFERENCE_MAX_BATCH_PROMPTS).
Texts = (
    StrictStr
    | Annotated[
        list[StrictStr],
        Field(min_length=1, json_schema_extra=setting_limit("maxItems", "inference_max_batch_prompts")),
    ]
)


class Body(BaseModel):
    """Base of the request bodies: unknown fields ignored, fields settable by name or alias."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class CamelBody(Body):
    """A ``/v1`` body: snake_case fields that also accept their camelCase spelling."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


def json_response(doc: Any, status: int = 200) -> Response:
    """A JSON document as the response (serialised once, by orjson)."""
    return Response(dumps(doc), status_code=status, media_type="application/json")


def sse_response(chunks: Iterable[Any]) -> StreamingResponse:
    """Server-sent events as Neuronpedia's steering streams them: one ``data: <JSON>`` event per chunk. An error after
    the stream started cannot change the status any more: it is sent as an ``event: error`` with the error shape."""

    def events() -> Iterator[bytes]:
        try:
            for chunk in chunks:
                yield b"data: " + dumps(chunk) + b"\n\n"
        except UserError as exc:
            doc = {"error": exc.message, "message": exc.message, "status": exc.status, "field": exc.field}
            yield b"event: error\ndata: " + dumps(doc) + b"\n\n"
        except Exception:  # the client gets an error event, the log the traceback
            log.exception("a streamed answer failed")
            doc = {"error": "internal error", "message": "internal error", "status": 500, "field": None}
            yield b"event: error\ndata: " + dumps(doc) + b"\n\n"

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (RFC 9110: a list, weak tags compare equal, ``*``)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in if_none_match.split(","))


def cache_control(private: bool) -> str:
    """``Cache-Control`` of a document that may change with any write: anyone (a shared cache, for a public
    document) or only the caller's own client (``private``) may keep it, but must ask again before using it."""
    return f"{'private' if private else 'public'}, no-cache"


def conditional(request: Request, response: Response, *, private: bool) -> Response:
    """``response`` with an ``ETag`` (a hash of its body) and :func:`cache_control`; 304 without a body when the
    request's ``If-None-Match`` names that tag. For pages whose body depends on more than one document (the
    viewer's menus, navigation): the tag is then exact, whatever went into the body."""
    # SHA-1 (not a security use: the tag only tells our own bodies apart) runs about three times faster than
    # BLAKE2b here, and a feature page's HTML is some 200 kB.
    etag = '"h' + hashlib.sha1(bytes(response.body), usedforsecurity=False).hexdigest()[:24] + '"'
    response.headers["ETag"] = etag
    response.headers["Cache-Control"] = cache_control(private or "set-cookie" in response.headers)
    if response.status_code == 200 and etag_matches(request.headers.get("if-none-match"), etag):
        headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")}
        return Response(status_code=304, headers=headers)
    return response
