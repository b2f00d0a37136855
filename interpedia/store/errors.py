"""Errors the store raises; the web layer maps them to HTTP statuses with one JSON shape."""

from __future__ import annotations


class StoreError(Exception):
    """Base of errors a user can act on."""

    status = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(StoreError):
    """The model, source, feature or object does not exist (or is hidden from this user)."""

    status = 404


class Conflict(StoreError):
    """The object already exists."""

    status = 409


class Invalid(StoreError):
    """The input breaks a rule; ``field`` names the offending field."""

    status = 422


class Forbidden(StoreError):
    """The user may not do this."""

    status = 403
