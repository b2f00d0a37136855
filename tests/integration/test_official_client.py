"""The official ``neuronpedia`` PyPI client, unmodified, against a live interpedia server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from factories import write_saedashboard_dir

from interpedia.ingest import import_path


@pytest.fixture
def np_client(live_server: str, api_key: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The client pointed at the test server, the only way it allows (its class attribute)."""
    monkeypatch.setenv("NEURONPEDIA_API_KEY", api_key)
    from neuronpedia.requests.base_request import NPRequest

    monkeypatch.setattr(NPRequest, "BASE_URL", f"{live_server}/api")
    import neuronpedia

    yield neuronpedia


def test_feature_get_and_sae_feature_get(np_client: Any, factory: Any, tmp_path: Path) -> None:
    import_path(write_saedashboard_dir(tmp_path / "dash", n_features=6), factory)
    from neuronpedia.np_sae_feature import SAEFeature
    from neuronpedia.requests.feature_request import FeatureRequest

    feature = FeatureRequest().get("tiny-test", "0-res-test", 2)
    assert (feature.modelId, feature.source, feature.index) == ("tiny-test", "0-res-test", "2")
    assert feature.density and len(feature.activations) == 5
    assert all(len(a.tokens) == len(a.values) for a in feature.activations)
    sae = SAEFeature.get("tiny-test", "0-res-test", "2")
    assert json.loads(sae.jsonData)["pos_str"] == ["ĠLORD", "Ġsaid"]


def test_model_source_set_and_upload_batch(np_client: Any) -> None:
    from neuronpedia.np_activation import Activation
    from neuronpedia.np_explanation import Explanation
    from neuronpedia.np_feature import Feature, Logit
    from neuronpedia.requests.feature_request import FeatureRequest
    from neuronpedia.requests.model_request import ModelRequest
    from neuronpedia.requests.source_set_request import SourceSetRequest

    model = ModelRequest().new("pup-model-3", 3, display_name="Pup Model", url="https://example.org")
    assert (model.id, model.layers, model.display_name) == ("pup-model-3", 3, "Pup Model")
    created = SourceSetRequest().new("puppyscope-res-16k", "pup-model-3", description="Residual")
    got = SourceSetRequest().get("pup-model-3", "puppyscope-res-16k")
    assert created.name == got.name == "puppyscope-res-16k"
    source = "1-puppyscope-res-16k"
    features = [
        Feature(
            modelId="pup-model-3",
            source=source,
            index=i,
            density=0.02,
            top_logits=[Logit("Ġdog", 1.25)],
            bottom_logits=[Logit("Ġcat", -0.5)],
            explanations=[Explanation("pup-model-3", source, i, f"dogs {i}", "manual", None)],
            activations=[
                Activation(
                    "pup-model-3",
                    source,
                    i,
                    ["a", "Ġdog", "."],
                    [0.0, 2.5, 0.125],
                    quantileMax=2.5,
                    quantileMin=0.0,
                    quantileFraction=0.5,
                )
            ],
        )
        for i in range(3)
    ]
    FeatureRequest().upload_batch("pup-model-3", source, features)
    back = FeatureRequest().get("pup-model-3", source, 1)
    assert [e.text for e in back.explanations] == ["dogs 1"]
    assert back.activations[0].tokens == ["a", "Ġdog", "."] and back.activations[0].values == [0.0, 2.5, 0.125]
    assert back.density == 0.02
