"""Plain records the store writes: what every importer (files, API uploads, the generator) produces."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

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
class ActivationColumns:
    """Many examples as columns: one row per example, the tokens of all of them back to back.

    What the fast readers produce and the writer encodes: a batch costs a few arrays instead of a
    string and a float object per token. Example ``i`` belongs to feature ``feature_index[i]`` and is
    ``token_codes[offsets[i]:offsets[i + 1]]`` (positions in ``token_strings``, the distinct tokens)
    with ``values`` at the same positions. The per-example lists hold what ``ActivationRecord`` holds.
    """

    feature_index: npt.NDArray[np.int64]  # (rows,)
    offsets: npt.NDArray[np.int64]  # (rows + 1,), offsets[0] == 0, offsets[-1] == tokens
    token_codes: npt.NDArray[np.int64]  # (tokens,), each < len(token_strings)
    token_strings: list[str]  # (distinct tokens,)
    values: npt.NDArray[np.float64]  # (tokens,)
    bin_min: list[float | None]  # (rows,)
    bin_max: list[float | None]  # (rows,)
    bin_contains: list[float | None]  # (rows,)
    qualifying_token_index: list[int | None]  # (rows,)
    extras: list[dict[str, Any] | None]  # (rows,) the rare fields, as ``activation_extras`` makes them
    # Vocabulary id of each of ``token_strings``, once handed out (``vocab.ensure_token_ids``).
    token_ids: npt.NDArray[np.int64] | None = None
    # The encoded blobs' sections (``codec.activation_parts``), once the batch's vocabulary ids are known:
    # the writer frames them without encoding again (see ``writer.encode_columns``).
    blob_parts: list[tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]] | None = None

    def __len__(self) -> int:
        return len(self.feature_index)

    def token_counts(self) -> Counter[str]:
        """How often each distinct token occurs (new tokens get ids most frequent first)."""
        counts = np.bincount(self.token_codes, minlength=len(self.token_strings)).tolist()
        out: Counter[str] = Counter()
        if len(set(self.token_strings)) == len(self.token_strings):
            out.update(dict(zip(self.token_strings, counts, strict=True)))
        else:
            for token, n in zip(self.token_strings, counts, strict=True):
                out[token] += n
        return out

    def max_values(self) -> npt.NDArray[np.float64]:
        """The largest value of each example (0 for an empty one)."""
        lens = np.diff(self.offsets)
        out = np.zeros(len(lens), dtype=np.float64)
        filled = lens > 0
        if filled.any():
            out[filled] = np.maximum.reduceat(self.values, self.offsets[:-1][filled])
        return out


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
    **{
        c: c
        for c in FEATURE_STAT_COLUMNS
        if c.startswith(("neuron_", "correlated_", "pos_", "neg_", "freq_", "logits_", "decoder_", "umap_", "frac_"))
    },
}
assert set(NP_FEATURE_NAMES) == set(FEATURE_STAT_COLUMNS)
