"""Whether the pages may offer live inference for a model or source (the feature page's test box, search,
steering): :mod:`interpedia.inference.availability`, which answers from the catalogue without loading torch."""

from __future__ import annotations

from interpedia.inference.availability import (
    has_chat_template,
    inference_availability,
    model_availability,
    require_model,
)

__all__ = ["has_chat_template", "inference_availability", "model_availability", "require_model"]
