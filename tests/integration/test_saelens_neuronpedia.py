"""SAELens's own Neuronpedia integration (``sae_lens.analysis.neuronpedia_integration``), unmodified, against a
live interpedia server: only its ``NEURONPEDIA_DOMAIN`` constant is pointed here, and ``webbrowser.open``
records the URL it would open instead of opening a browser."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from factories import write_saedashboard_dir
from sqlalchemy import select

from interpedia.db import transaction
from interpedia.db.tables import Feature, Source
from interpedia.ingest import import_path
from interpedia.store.explanations import add_explanation

MODEL, SOURCE = "tiny-test", "0-res-test"
HTML = {"accept": "text/html"}


@pytest.fixture
def served(live_server: str, factory: Any, tmp_path: Path) -> str:
    """The live server with a source of 6 features; features 1 and 3 explained."""
    import_path(write_saedashboard_dir(tmp_path / "dash", n_features=6), factory)
    with transaction(factory) as session:
        for index, text in ((1, "the word LORD"), (3, "cats on mats")):
            feature = session.scalars(
                select(Feature).join(Source).where(Source.name == SOURCE, Feature.index == index)
            ).one()
            add_explanation(
                session,
                feature,
                text,
                type_name=None,
                model_name=None,
                author_id=None,
                triggered_by=None,
                embedding=None,
            )
    return live_server


@pytest.fixture
def npi(served: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, list[str]]]:
    """The integration module pointed at the server, and the URLs it asked a browser to open."""
    import webbrowser

    import sae_lens.analysis.neuronpedia_integration as module

    opened: list[str] = []
    monkeypatch.setattr(module, "NEURONPEDIA_DOMAIN", served)
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: opened.append(url) or True)
    yield module, opened


def _sae() -> Any:
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    meta = SAEMetadata(model_name=MODEL, neuronpedia_id=f"{MODEL}/{SOURCE}")
    return StandardSAE(StandardSAEConfig(d_in=4, d_sae=8, metadata=meta))


def test_get_neuronpedia_feature(npi: tuple[Any, list[str]]) -> None:
    module, _ = npi
    feature = module.get_neuronpedia_feature(3, 0, model=MODEL, dataset="res-test")
    assert feature["index"] == 3 and feature["modelId"] == MODEL and feature["layer"] == SOURCE
    assert [e["description"] for e in feature["explanations"]] == ["cats on mats"]
    assert len(feature["activations"]) == 5 and feature["pos_str"] == ["ĠLORD", "Ġsaid"]


def test_test_key(npi: tuple[Any, list[str]], api_key: str, served: str) -> None:
    module, _ = npi
    module.test_key(api_key)  # raises unless 200
    with pytest.raises(Exception, match="not valid"):
        module.test_key("sk-np-" + "x" * 40)
    answer = httpx.post(f"{served}/api/test", json={"apiKey": api_key})
    assert answer.status_code == 200 and answer.json()["user"] == {"name": "tester"}
    wrong = httpx.post(f"{served}/api/test", json={"apiKey": "nope"})
    assert wrong.status_code == 401 and wrong.json()["field"] == "apiKey"


def test_make_neuronpedia_list_with_features(npi: tuple[Any, list[str]], api_key: str, served: str) -> None:
    module, opened = npi
    features = [
        module.NeuronpediaFeature(modelId=MODEL, layer=0, dataset="res-test", feature=3, description="mats"),
        module.NeuronpediaFeature(modelId=MODEL, layer=0, dataset="res-test", feature=1),
    ]
    url = module.make_neuronpedia_list_with_features(api_key, "my features", features, list_description="two")
    assert opened == [url] and url.startswith(f"{served}/list/")
    page = httpx.get(url, headers=HTML)
    assert page.status_code == 200 and "my features" in page.text and "cats on mats" in page.text
    doc = httpx.get(url + ".json").json()["list"]
    assert [(n["index"], n["description"]) for n in doc["neurons"]] == [("3", "mats"), ("1", "")]
    with pytest.raises(Exception, match="Error in creating list"):
        module.make_neuronpedia_list_with_features("sk-np-wrong", "x", features)


def test_get_neuronpedia_quick_list(npi: tuple[Any, list[str]], api_key: str, served: str) -> None:
    module, opened = npi
    url = module.get_neuronpedia_quick_list(_sae(), [3, 1, 5], name="cats & lords")
    assert opened == [url] and url.startswith(f"{served}/quick-list/?name=cats%20%26%20lords&features=")
    page = httpx.get(url, headers=HTML)
    assert page.status_code == 200, page.text
    html = page.text
    assert "cats &amp; lords" in html
    items = re.findall(r'id="item-\d+" data-model="tiny-test" data-layer="0-res-test" data-index="(\d+)"', html)
    assert items == ["3", "1", "5"]
    assert html.index("cats on mats") < html.index("the word LORD") and "No explanation yet." in html
    assert html.count('class="strip top-example"') == 9  # a compact dashboard: three top examples each
    assert "Sign in</a> to save" in html
    # signed in (an API key works as for every form), the page offers to save; saving makes the list
    keyed = {"x-api-key": api_key}
    assert 'id="quick-list-save-form"' in httpx.get(url, headers={**HTML, **keyed}).text
    twin = httpx.get(url, headers={"accept": "application/json"}).json()
    features = json.dumps([{k: f[k] for k in ("modelId", "layer", "index")} for f in twin["features"]])
    saved = httpx.post(
        f"{served}/quick-list/save",
        data={"name": "cats & lords", "features": features},
        headers={**keyed, "accept": "application/json"},
    )
    assert saved.status_code == 201, saved.text
    got = httpx.post(f"{served}/api/list/get", json={"listId": saved.json()["id"]}).json()
    assert got["name"] == "cats & lords" and [n["index"] for n in got["neurons"]] == ["3", "1", "5"]


def test_open_neuronpedia_feature_dashboard(npi: tuple[Any, list[str]], served: str) -> None:
    module, opened = npi
    module.open_neuronpedia_feature_dashboard(_sae(), 3)
    assert opened == [f"{served}/{MODEL}/{SOURCE}/3"]
    page = httpx.get(opened[0], headers=HTML)
    assert page.status_code == 200 and "cats on mats" in page.text


def test_quick_list_names_bad_input_and_hides_private_features(
    served: str, factory: Any, api_key: str, tmp_path: Path
) -> None:
    import_path(write_saedashboard_dir(tmp_path / "secret", n_features=2, layer=1), factory)
    with transaction(factory) as session:
        owner = session.scalars(select(Source).where(Source.name == "1-res-test")).one()
        owner.visibility, owner.creator_id = "PRIVATE", None
    json_headers = {"accept": "application/json"}
    for query, field in (
        ("features=not-json", "features"),
        ("features=[]", "features"),
        ('features=[{"modelId":"tiny-test","layer":"0-res-test","index":"x"}]', "features[0].index"),
        ('features=[{"modelId":"tiny-test","index":1}]', "features[0].layer"),
        (f"features={json.dumps([{'modelId': MODEL, 'layer': SOURCE, 'index': i} for i in range(151)])}", "features"),
    ):
        resp = httpx.get(f"{served}/quick-list?{query}", headers=json_headers)
        assert resp.status_code == 422 and resp.json()["field"] == field, (query, resp.text)
    assert httpx.get(f"{served}/quick-list?features=[]", headers=HTML).status_code == 422  # an HTML error page
    named = [
        {"modelId": MODEL, "layer": SOURCE, "index": "[[2, 4], [0]]"},  # neuronpedia.org's nested form
        {"modelId": MODEL, "layer": "1-res-test", "index": 0},  # private: not found, as a missing one
        {"modelId": MODEL, "layer": SOURCE, "index": 99},
    ]
    doc = httpx.get(f"{served}/quick-list.json", params={"features": json.dumps(named)}).json()
    assert doc["name"] == "Quick list" and [f["index"] for f in doc["features"]] == ["2", "4", "0"]
    assert [(m["layer"], m["index"]) for m in doc["missing"]] == [("1-res-test", "0"), (SOURCE, "99")]
    assert doc["features"][0]["topLogits"] == [{"token": "ĠLORD", "value": 0.91}, {"token": "Ġsaid", "value": 0.72}]
