"""Errors of live inference, mapped by the web layer to HTTP statuses with the one JSON error shape.

They extend the store's errors so the existing handlers answer them: ``Invalid`` (422) for bad input,
``NotFound`` (404) for an unknown model, source or feature, and two of our own below.
"""

from __future__ import annotations

from interpedia.store.errors import Invalid, NotFound, StoreError

__all__ = ["Invalid", "NotFound", "Unavailable", "Unsupported"]


class Unavailable(StoreError):
    """The model or SAE exists in the catalogue but its weights cannot be loaded here (503)."""

    status = 503


class Unsupported(StoreError):
    """A well-formed request this server cannot honour for this model (422), e.g. chat without a template."""

    status = 422
