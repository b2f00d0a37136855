"""What a live-inference request asks for, without torch: the features to steer with and the settings of a
generation. The web's workflows build these, and either the in-process service or an inference host runs them."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FeatureRef", "SteerSettings"]


@dataclass(frozen=True)
class FeatureRef:
    """A feature to steer with: an SAE latent (decoder row, or ``vector`` given) or a stored vector."""

    source: str
    index: int
    strength: float
    vector: list[float] | None = None


@dataclass(frozen=True)
class SteerSettings:
    """Everything but the prompt and the directions."""

    method: str = "SIMPLE_ADDITIVE"
    normalize: bool = False
    strength_multiplier: float = 1.0
    n_tokens: int = 32
    temperature: float = 0.5
    freq_penalty: float = 0.0
    seed: int = 0
    n_logprobs: int = 0
    steer_special_tokens: bool = True
