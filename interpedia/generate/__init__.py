"""Dashboard generation in one streaming pass: ``interpedia generate``.

Stages, one class each: ``HookedModel`` (model loading, forward to the hook), ``LoadedSae`` (SAELens
loading, sparse encoders), ``TokenSource`` (datasets to prompt rows), ``FeaturePass`` (the streaming pass;
``FeatureState`` is its mergeable per-feature state), ``DashboardBuilder`` (statistics from the stored
sparse activations), ``SaeDashboardWriter`` / ``DatabaseWriter`` (outputs), ``RayRunner`` (scale-out) and
``GenerateRun`` (the whole run). torch is imported only inside this package.
"""

from typing import Any

from interpedia.generate.config import GenerateConfig

__all__ = ["GenerateConfig", "GenerateRun", "RunResult"]


def __getattr__(name: str) -> Any:
    # The runner pulls in torch; importing the package for its config must not.
    if name in ("GenerateRun", "RunResult"):
        from interpedia.generate import runner

        return getattr(runner, name)
    raise AttributeError(name)
