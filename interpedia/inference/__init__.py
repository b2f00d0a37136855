"""Live inference: a model and its SAEs loaded from the catalogue on first use and kept warm.

``InferenceService`` (``service``) answers activations of text (one feature, one vector, top-k per token, a whole
source, a source set), steering (completion and chat), tokenize and decoder vectors; ``plans`` says where the
weights are and how the dashboards were made (importing it needs no torch); ``registry`` keeps models and SAEs
warm and serializes each model's calls; ``activations`` and ``steering`` are the computations.
"""

from typing import Any

__all__ = ["InferenceService", "for_app"]


def __getattr__(name: str) -> Any:
    # The service pulls in torch; importing the package for its plans must not.
    if name in __all__:
        from interpedia.inference import service

        return getattr(service, name)
    raise AttributeError(name)
