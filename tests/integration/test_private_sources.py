"""A PRIVATE source (or source set) of one user shows in no picker, listing, explanation search or search via
inference of another user or of an anonymous visitor, and does show for its creator (issue 14: the pickers of
``/search``, ``/search-topk-by-token`` and ``/{model}/steer`` listed every source, and UNLISTED sets, to everyone;
a search cached for the creator was served to anyone who asked the same)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from factories import import_embed, write_saedashboard_dir
from inference_helpers import MODEL_ID, TinyInference, register
from inference_helpers import tiny_inf as tiny_inf  # noqa: F401  (session fixture)
from sqlalchemy import select, update

from interpedia.db import transaction
from interpedia.db.tables import Source, SourceSet
from interpedia.ingest import import_path
from interpedia.store.records import ExplanationRecord, FeatureRecord
from interpedia.store.users import create_api_key, ensure_user
from interpedia.store.writer import write_features

HTML = {"accept": "text/html"}
PUBLIC = "0-res-test"
PRIVATE = "1-res-test"  # ann's PRIVATE source in a PUBLIC set
UNLISTED_SET, UNLISTED_SOURCE = "res-hidden", "0-res-hidden"  # ann's UNLISTED set
PRIVATE_SET, PRIVATE_SET_SOURCE = "res-secret", "0-res-secret"  # ann's PRIVATE set (its source PUBLIC)
ONLY_PRIVATE_MODEL = "tiny-own"  # a PUBLIC model whose only source is ann's PRIVATE one
SOURCE = "1-res-standard"  # the tiny inference model's PUBLIC source beside its private 0-res-standard
HIDDEN = (PRIVATE, UNLISTED_SET, UNLISTED_SOURCE, PRIVATE_SET, PRIVATE_SET_SOURCE)
SCRIPTURE = "the LORD God of Israel and his prophets"


def _explain(session: Any, source_name: str, model_id: str = "tiny-test") -> None:
    source = session.scalar(select(Source).where(Source.model_id == model_id, Source.name == source_name))
    record = FeatureRecord(index=0, explanations=[ExplanationRecord(description=SCRIPTURE)])
    write_features(session, source, [record], creator_id=None, token_ids={}, embed=import_embed())


@pytest.fixture
def viewers(settings: Any, factory: Any, tmp_path: Path) -> dict[str, dict[str, str]]:
    """The catalogue above, explained alike everywhere; request headers of ann (the creator), bob and anonymous."""
    import_path(write_saedashboard_dir(tmp_path / "a", n_features=3), factory)
    import_path(write_saedashboard_dir(tmp_path / "b", n_features=3, layer=1), factory)
    import_path(write_saedashboard_dir(tmp_path / "c", n_features=3, sae_set=UNLISTED_SET), factory)
    import_path(write_saedashboard_dir(tmp_path / "d", n_features=3, sae_set=PRIVATE_SET), factory)
    import_path(write_saedashboard_dir(tmp_path / "e", n_features=3, model_id=ONLY_PRIVATE_MODEL), factory)
    with transaction(factory) as session:
        ann, bob = ensure_user(session, "ann"), ensure_user(session, "bob")
        keys = {"ann": create_api_key(session, ann), "bob": create_api_key(session, bob)}
        session.execute(
            update(Source)
            .where(Source.name == PRIVATE, Source.model_id == "tiny-test")
            .values(visibility="PRIVATE", creator_id=ann.id)
        )
        session.execute(
            update(Source).where(Source.model_id == ONLY_PRIVATE_MODEL).values(visibility="PRIVATE", creator_id=ann.id)
        )
        for name, visibility in ((UNLISTED_SET, "UNLISTED"), (PRIVATE_SET, "PRIVATE")):
            session.execute(
                update(SourceSet).where(SourceSet.name == name).values(visibility=visibility, creator_id=ann.id)
            )
        for name in (PUBLIC, PRIVATE, UNLISTED_SOURCE, PRIVATE_SET_SOURCE):
            _explain(session, name)
    return {"ann": {"x-api-key": keys["ann"]}, "bob": {"x-api-key": keys["bob"]}, "anonymous": {}}


def _sets(doc: dict[str, Any], model_id: str = "tiny-test") -> dict[str, list[str]]:
    model = next(m for m in doc["models"] if m["id"] == model_id)
    return {s["name"]: s["sources"] for s in model["sourceSets"]}


@pytest.mark.parametrize(
    ("path", "named"),
    [
        ("/search", (UNLISTED_SET, PRIVATE_SET)),  # the form picks a source set
        ("/search-topk-by-token", (PRIVATE, UNLISTED_SOURCE, PRIVATE_SET_SOURCE)),  # ... a source
    ],
)
def test_search_pickers(client: Any, viewers: dict[str, dict[str, str]], path: str, named: tuple[str, ...]) -> None:
    for name in ("bob", "anonymous"):
        twin = client.get(path + ".json", headers=viewers[name])
        assert twin.status_code == 200
        assert _sets(twin.json()) == {"res-test": [PUBLIC]}, name
        assert _sets(twin.json(), ONLY_PRIVATE_MODEL) == {"res-test": []}, name
        page = client.get(path, headers={**HTML, **viewers[name]})
        assert page.status_code == 200 and "res-test" in page.text
        assert not [h for h in HIDDEN if h in page.text], name
    own = client.get(path + ".json", headers=viewers["ann"]).json()
    assert _sets(own) == {
        "res-test": [PUBLIC, PRIVATE],
        UNLISTED_SET: [UNLISTED_SOURCE],
        PRIVATE_SET: [PRIVATE_SET_SOURCE],
    }
    assert _sets(own, ONLY_PRIVATE_MODEL) == {"res-test": [PUBLIC]}
    page = client.get(path, headers={**HTML, **viewers["ann"]}).text
    assert all(h in page for h in named)


def test_steer_picker(client: Any, viewers: dict[str, dict[str, str]]) -> None:
    for name in ("bob", "anonymous"):
        assert client.get("/tiny-test/steer.json", headers=viewers[name]).json()["model"]["sources"] == [PUBLIC]
        page = client.get("/tiny-test/steer", headers={**HTML, **viewers[name]})
        assert page.status_code == 200 and not [h for h in HIDDEN if h in page.text], name
        # /steer goes to the first model with an SAE to steer: not one whose only SAE is someone else's.
        assert client.get("/steer", headers=viewers[name], follow_redirects=False).headers["location"] == (
            "/tiny-test/steer"
        )
    own = client.get("/tiny-test/steer.json", headers=viewers["ann"]).json()["model"]["sources"]
    assert sorted(own) == sorted([PUBLIC, PRIVATE, UNLISTED_SOURCE, PRIVATE_SET_SOURCE])
    assert client.get("/steer", headers=viewers["ann"], follow_redirects=False).headers["location"] == (
        f"/{ONLY_PRIVATE_MODEL}/steer"
    )


def test_search_needs_a_source_set_the_viewer_may_see(client: Any, viewers: dict[str, dict[str, str]]) -> None:
    params = {"modelId": "tiny-test", "sourceSet": PRIVATE_SET, "q": "hello"}
    for name in ("bob", "anonymous"):
        twin = client.get("/search.json", params=params, headers=viewers[name])
        assert twin.status_code == 404 and "is not a source set of model" in twin.json()["message"], name


def test_listings(client: Any, viewers: dict[str, dict[str, str]]) -> None:
    listings = [
        ("get", "/index.json", None),
        ("get", "/tiny-test.json", None),
        ("get", "/tiny-test/res-test.json", None),
        ("post", "/api/model/get", {"id": "tiny-test"}),
        ("get", "/api/source-set/tiny-test/res-test", None),
    ]
    for method, path, body in listings:
        for name in ("bob", "anonymous"):
            resp = client.request(method, path, json=body, headers=viewers[name])
            assert resp.status_code == 200, (path, name, resp.text)
            assert PUBLIC in resp.text or path == "/index.json"
            assert not [h for h in (PRIVATE, PRIVATE_SET, PRIVATE_SET_SOURCE) if h in resp.text], (path, name)
    own = client.post("/api/model/get", json={"id": "tiny-test"}, headers=viewers["ann"])
    assert PRIVATE in own.text and PRIVATE_SET in own.text


def _layers(resp: Any) -> set[str]:
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    return {r["layer"] for r in (doc.get("search") or doc)["results"]}


def test_explanation_search(client: Any, viewers: dict[str, dict[str, str]]) -> None:
    searches = [
        ("/api/explanation/search-all", {"query": "scripture"}),
        ("/api/explanation/search-model", {"modelId": "tiny-test", "query": "scripture"}),
        ("/api/explanation/search", {"modelId": "tiny-test", "layers": [], "query": "scripture"}),
    ]
    for name in ("bob", "anonymous"):
        for path, body in searches:
            found = _layers(client.post(path, json=body, headers=viewers[name]))
            assert PUBLIC in found and not found & {PRIVATE, PRIVATE_SET_SOURCE}, (path, name)
        page = client.get("/search-explanations.json", params={"q": "scripture"}, headers=viewers[name])
        assert _layers(page) == {PUBLIC}, name
        asked = client.post(
            "/api/explanation/search",
            json={"modelId": "tiny-test", "layers": [PRIVATE], "query": "scripture"},
            headers=viewers[name],
        )
        assert asked.status_code == 404
    for path, body in searches:
        found = _layers(client.post(path, json=body, headers=viewers["ann"]))
        assert {PUBLIC, PRIVATE, PRIVATE_SET_SOURCE} <= found, path
    mine = client.get("/search-explanations.json", params={"q": "scripture"}, headers=viewers["ann"])
    assert _layers(mine) == {PUBLIC, PRIVATE, UNLISTED_SOURCE, PRIVATE_SET_SOURCE}


def test_search_via_inference_and_steering(client: Any, factory: Any, tiny_inf: TinyInference) -> None:  # noqa: F811
    register(factory, tiny_inf)
    with transaction(factory) as session:
        ann, bob = ensure_user(session, "ann"), ensure_user(session, "bob")
        viewers = {
            "ann": {"x-api-key": create_api_key(session, ann)},
            "bob": {"x-api-key": create_api_key(session, bob)},
        }
        session.execute(
            update(Source).where(Source.name == "0-res-standard").values(visibility="PRIVATE", creator_id=ann.id)
        )
    viewers["anonymous"] = {}
    text = "the king spoke unto his people"
    body = {"modelId": MODEL_ID, "sourceSet": "res-standard", "text": text, "numResults": 100}
    mine = client.post("/api/search-all", json=body, headers=viewers["ann"])
    assert mine.status_code == 200 and {r["layer"] for r in mine.json()["result"]} == {"0-res-standard", SOURCE}
    topk = {"modelId": MODEL_ID, "source": "0-res-standard", "text": text}
    assert client.post("/api/search-topk-by-token", json=topk, headers=viewers["ann"]).status_code == 200
    feature = {"modelId": MODEL_ID, "layer": "0-res-standard", "index": 1, "strength": 10}
    steer = {"modelId": MODEL_ID, "prompt": "the cat", "features": [feature], "temperature": 0, "n_tokens": 2}
    assert client.post("/api/steer", json=steer, headers=viewers["ann"]).status_code == 200
    for name in ("bob", "anonymous"):
        # ann's search is cached: another viewer's identical search neither runs nor reads her private source.
        theirs = client.post("/api/search-all", json=body, headers=viewers[name])
        assert theirs.status_code == 200 and {r["layer"] for r in theirs.json()["result"]} == {SOURCE}, name
        page = client.get(
            "/search.json",
            params={"modelId": MODEL_ID, "sourceSet": "res-standard", "q": text, "numResults": "100"},
            headers=viewers[name],
        )
        assert {r["layer"] for r in page.json()["result"]["result"]} == {SOURCE}, name
        chosen = {**body, "selectedLayers": ["0-res-standard"]}
        for path, asked in (("search-all", chosen), ("search-topk-by-token", topk), ("steer", steer)):
            refused = client.post(f"/api/{path}", json=asked, headers=viewers[name])
            assert refused.status_code == 404 and "0-res-standard" in refused.json()["message"], (path, name)


def test_live_activations_of_a_private_source(
    settings: Any,
    factory: Any,
    tiny_inf: TinyInference,  # noqa: F811
) -> None:
    """``/api/activation/new``, ``/api/activation/source`` and the ``/v1`` routes that name a source answer 404 for
    someone else's PRIVATE source, also right after its creator ran them (the service caches its catalogue
    lookups); a caller holding ``INTERPEDIA_SECRET`` is the operator and is served."""
    from fastapi.testclient import TestClient

    from interpedia.web.app import create_app

    register(factory, tiny_inf)
    with transaction(factory) as session:
        ann, bob = ensure_user(session, "ann"), ensure_user(session, "bob")
        viewers = {
            "ann": {"x-api-key": create_api_key(session, ann)},
            "bob": {"x-api-key": create_api_key(session, bob)},
        }
        session.execute(
            update(Source).where(Source.name == "0-res-standard").values(visibility="PRIVATE", creator_id=ann.id)
        )
    viewers["anonymous"] = {}
    text, private = "the king spoke", "0-res-standard"
    asks = [
        ("/api/activation/new", {"feature": {"modelId": MODEL_ID, "layer": private, "index": 1}, "customText": text}),
        ("/api/activation/source", {"modelId": MODEL_ID, "source": private, "customText": text}),
        ("/v1/activation/single", {"model": MODEL_ID, "source": private, "index": 1, "prompt": text}),
        ("/v1/activation/single-batch", {"model": MODEL_ID, "source": private, "index": 1, "prompts": [text]}),
        ("/v1/activation/topk-by-token", {"model": MODEL_ID, "source": private, "prompt": text}),
        ("/v1/activation/source", {"model": MODEL_ID, "source": private, "prompts": [text]}),
        ("/v1/util/sae-vector", {"model": MODEL_ID, "source": private, "index": 1}),
        (
            "/v1/util/sae-topk-by-decoder-cossim",
            {
                "model": MODEL_ID,
                "source": private,
                "feature": {"model": MODEL_ID, "source": private, "index": 1},
                "num_results": 3,
            },
        ),
        (
            "/v1/activation/all",
            {"model": MODEL_ID, "source_set": "res-standard", "selected_sources": [private], "prompt": text},
        ),
    ]
    everything = {"model": MODEL_ID, "source_set": "res-standard", "prompt": text, "num_results": 1000}
    with TestClient(create_app(settings)) as client:
        for path, body in asks:
            assert client.post(path, json=body, headers=viewers["ann"]).status_code == 200, path
        whole = client.post("/v1/activation/all", json=everything, headers=viewers["ann"]).json()
        assert {a["source"] for a in whole["activations"]} == {private, SOURCE}
        for name in ("bob", "anonymous"):
            for path, body in asks:
                refused = client.post(path, json=body, headers=viewers[name])
                assert refused.status_code == 404 and private in refused.json()["message"], (path, name, refused.text)
            theirs = client.post("/v1/activation/all", json=everything, headers=viewers[name]).json()
            assert {a["source"] for a in theirs["activations"]} == {SOURCE}, name
    with TestClient(create_app(settings.model_copy(update={"secret": "s3cret"}))) as client:
        for path, body in asks:
            if path.startswith("/v1/"):
                assert client.post(path, json=body, headers={"x-secret-key": "s3cret"}).status_code == 200, path
                assert client.post(path, json=body, headers={"x-secret-key": "wrong"}).status_code == 401, path
