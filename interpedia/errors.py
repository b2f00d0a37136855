"""The one base class of errors a user can act on, and its kinds.

Every layer raises these (the store for a missing feature, the importers for a bad file, the inference
service for weights it cannot load, a route for a bad form field); the web layer maps any of them, in one
place (``interpedia.web.errors``), to the one JSON error shape ``{"error", "message", "status", "field"}``
or an HTML error page, and the CLI prints the message. ``status`` is the HTTP status that fits; ``field``
names the input at fault (a JSON path such as ``features[2].index``) when there is one.
"""

from __future__ import annotations

__all__ = [
    "Conflict",
    "Forbidden",
    "Invalid",
    "NotFound",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "Unsupported",
    "UserError",
]


class UserError(Exception):
    """An error the user can act on: a message naming what is wrong, the field at fault, an HTTP status."""

    status = 400

    def __init__(self, message: str, field: str | None = None, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if status is not None:
            self.status = status


class Invalid(UserError):
    """The input breaks a rule; ``field`` names the offending field."""

    status = 422


class Unauthorized(UserError):
    """No credentials, or wrong ones (a missing or revoked API key, no signed-in user)."""

    status = 401


class Forbidden(UserError):
    """The user may not do this."""

    status = 403


class NotFound(UserError):
    """The model, source, feature or object does not exist (or is hidden from this user)."""

    status = 404


class Conflict(UserError):
    """The object already exists, or changed under the request."""

    status = 409


class TooLarge(UserError):
    """The request or file is over a size limit."""

    status = 413


class Unsupported(UserError):
    """A well-formed request this server cannot honour for this model (e.g. chat without a template)."""

    status = 422


class Unavailable(UserError):
    """Something the request needs cannot be reached or loaded here right now (weights, an LLM, the embedder)."""

    status = 503
