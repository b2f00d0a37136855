"""What crosses the wire: the base of every request body, the shared field types, and the JSON response.

The webapp API (``/api``) takes camelCase fields as neuronpedia.org does; the inference and autointerp
server API (``/v1``) takes snake_case and, as Neuronpedia's generated clients sometimes send, camelCase too
(``CamelBody``). Unknown fields are ignored, as upstream does.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi.responses import Response
from pydantic import AllowInfNan, BaseModel, ConfigDict, Field, Strict, StrictInt, StrictStr
from pydantic.alias_generators import to_camel

from interpedia.store.formats import dumps

__all__ = ["Body", "CamelBody", "Finite", "Index", "Texts", "json_response"]

# A JSON number that is not NaN or +-Infinity (the store refuses those; orjson cannot write them).
Finite = Annotated[float, Strict(), AllowInfNan(False)]
Index = Annotated[StrictInt | StrictStr, Field(description="Feature index (integer or numeric string).")]
# One text, or a batch of them.
Texts = StrictStr | Annotated[list[StrictStr], Field(min_length=1)]


class Body(BaseModel):
    """Base of the request bodies: unknown fields ignored, fields settable by name or alias."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class CamelBody(Body):
    """A ``/v1`` body: snake_case fields that also accept their camelCase spelling."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


def json_response(doc: Any, status: int = 200) -> Response:
    """A JSON document as the response (serialised once, by orjson)."""
    return Response(dumps(doc), status_code=status, media_type="application/json")
