"""Plain records the store writes: what every importer (files, API uploads, the generator) produces."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Feature columns an importer may set; anything else in a record is ignored by the writer.
FEATURE_STAT_COLUMNS: tuple[str, ...] = (
    "max_act_approx",
    "frac_nonzero",
    "has_vector",
    "vector",
    "vector_label",
    "vector_default_steer_strength",
    "hook_name",
    "topk_cos_sim_indices",
    "topk_cos_sim_values",
    "neuron_alignment_indices",
    "neuron_alignment_values",
    "neuron_alignment_l1",
    "correlated_neurons_indices",
    "correlated_neurons_pearson",
    "correlated_neurons_l1",
    "correlated_features_indices",
    "correlated_features_pearson",
    "correlated_features_l1",
    "pos_str",
    "pos_values",
    "neg_str",
    "neg_values",
    "freq_hist_data_bar_heights",
    "freq_hist_data_bar_values",
    "logits_hist_data_bar_heights",
    "logits_hist_data_bar_values",
    "decoder_weights_dist",
    "umap_cluster",
    "umap_log_feature_sparsity",
    "umap_x",
    "umap_y",
)


@dataclass
class ActivationRecord:
    """One example context of a feature: token strings and one value per token."""

    tokens: list[str]
    values: list[float]
    bin_min: float | None = None
    bin_max: float | None = None
    bin_contains: float | None = None
    qualifying_token_index: int | None = None
    dfa_target_index: int | None = None
    dfa_max_value: float | None = None
    extras: dict[str, Any] | None = None
    data_source: str | None = None
    data_index: str | None = None

    @property
    def max_value(self) -> float:
        """The largest value (0 for an empty example)."""
        return max(self.values) if self.values else 0.0

    @property
    def max_value_token_index(self) -> int:
        """Position of the first largest value."""
        return self.values.index(self.max_value) if self.values else 0

    @property
    def min_value(self) -> float:
        """The smallest value (0 for an empty example)."""
        return min(self.values) if self.values else 0.0


@dataclass
class ExplanationRecord:
    """An explanation to attach to a feature; ``id`` makes re-imports idempotent when given."""

    description: str
    id: str | None = None
    type_name: str | None = None
    explanation_model_name: str | None = None
    author_id: str | None = None
    notes: str | None = None
    score_v1: float = 0.0
    score_v2: float | None = None
    embedding: list[float] | None = None
    created_at: str | None = None


@dataclass
class FeatureRecord:
    """A feature's dashboard: statistics, examples and explanations.

    ``activations is None`` leaves the stored examples alone; a list replaces them.
    """

    index: int
    stats: dict[str, Any] = field(default_factory=dict)
    activations: list[ActivationRecord] | None = None
    explanations: list[ExplanationRecord] = field(default_factory=list)

# Neuronpedia's column names for the feature statistics (its Prisma schema mixes camelCase columns
# with the snake_case stat columns that came from SAEDashboard).
NP_FEATURE_NAMES: dict[str, str] = {
    "max_act_approx": "maxActApprox",
    "has_vector": "hasVector",
    "vector": "vector",
    "vector_label": "vectorLabel",
    "vector_default_steer_strength": "vectorDefaultSteerStrength",
    "hook_name": "hookName",
    "topk_cos_sim_indices": "topkCosSimIndices",
    "topk_cos_sim_values": "topkCosSimValues",
    **{c: c for c in FEATURE_STAT_COLUMNS if c.startswith(("neuron_", "correlated_", "pos_", "neg_", "freq_",
                                                          "logits_", "decoder_", "umap_", "frac_"))},
}
assert set(NP_FEATURE_NAMES) == set(FEATURE_STAT_COLUMNS)
