"""The typed documents name exactly the fields their builders write."""

from __future__ import annotations

from typing import get_type_hints

from interpedia.store.documents.feature import FeatureStatsDoc
from interpedia.store.records import NP_FEATURE_NAMES


def test_feature_stats_document_names_every_feature_column() -> None:
    # feature_stats_json builds its dict from NP_FEATURE_NAMES; the TypedDict must declare the same keys.
    assert set(get_type_hints(FeatureStatsDoc)) == set(NP_FEATURE_NAMES.values())
