"""``/openapi.json`` as the API answers: every operation may also answer the one error shape
(``{"error", "message", "status", "field"}``) with a 4xx, or a 503 when the database or a model is unavailable."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from interpedia.config import Settings

__all__ = ["install_openapi"]

ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "required": ["error", "message", "status"],
    "properties": {
        "error": {"type": "string"},
        "message": {"type": "string"},
        "status": {"type": "integer"},
        "field": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    },
}
_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
ERROR_RESPONSES = {
    "4XX": {"description": "The request was refused; `message` says why and `field` names the field.", **_ERROR},
    "503": {"description": "The database or the model is unavailable right now; try again.", **_ERROR},
}


def _fill_setting_limits(node: Any, settings: Settings) -> None:
    """Write each ``x-setting-limit`` (``wire.setting_limit``) as the bound this server enforces."""
    if isinstance(node, dict):
        limit = node.pop("x-setting-limit", None)
        if isinstance(limit, dict):
            node[limit["keyword"]] = getattr(settings, limit["setting"])
        for value in node.values():
            _fill_setting_limits(value, settings)
    elif isinstance(node, list):
        for value in node:
            _fill_setting_limits(value, settings)


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """Serve an OpenAPI document whose operations declare their error answers and the limits the settings set
    (built once, on first request)."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        _fill_setting_limits(doc, settings)
        doc.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
        for operations in doc.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                for code, response in ERROR_RESPONSES.items():
                    responses.setdefault(code, response)
                # FastAPI's own 422 document describes its validation errors; ours answer the one error shape.
                if "422" in responses:
                    responses["422"] = {"description": "A field is invalid (`field` names it).", **_ERROR}
        app.openapi_schema = doc
        return doc

    app.openapi = build  # type: ignore[method-assign]
