"""Private and unlisted sources and source sets in every listing and read the store serves, on both backends.

alice owns a PRIVATE source (``1-res-a``) in the public set ``res-a`` of a public model, an UNLISTED set
(``res-b``) and a PRIVATE set (``res-c``). bob and anonymous visitors must find none of them in a listing
(home, model page, set page, ``/api/model/get``, random picks, lists, explanation reads) and must get 404 for
the private ones; alice sees all of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from factories import write_saedashboard_dir
from ingest_helpers import no_embedding_on_import  # noqa: F401  (autouse fixture)
from sqlalchemy import select

from interpedia.db import transaction
from interpedia.db.tables import Explanation, Feature, Source, SourceSet
from interpedia.ingest import import_path
from interpedia.store.users import create_api_key, ensure_user

MODEL = "vis-m"
HIDDEN_SOURCES = {"1-res-a", "0-res-b", "0-res-c"}


@pytest.fixture
def site(factory: Any, tmp_path: Path) -> dict[str, Any]:
    """vis-m: res-a (0-res-a public, every feature dead; 1-res-a PRIVATE), res-b UNLISTED, res-c PRIVATE."""
    for layer, sae_set, dead in ((0, "res-a", (0, 1, 2)), (1, "res-a", ()), (0, "res-b", ()), (0, "res-c", ())):
        path = write_saedashboard_dir(
            tmp_path / f"{sae_set}-{layer}", n_features=3, model_id=MODEL, layer=layer, sae_set=sae_set, dead=dead
        )
        import_path(path, factory)
    with transaction(factory) as session:
        alice, bob = ensure_user(session, "alice"), ensure_user(session, "bob")
        private = session.scalar(select(Source).where(Source.name == "1-res-a"))
        assert private is not None
        private.visibility, private.creator_id = "PRIVATE", alice.id
        for name, visibility in (("res-b", "UNLISTED"), ("res-c", "PRIVATE")):
            row = session.scalar(select(SourceSet).where(SourceSet.name == name))
            assert row is not None
            row.visibility, row.creator_id = visibility, alice.id
        feature = session.scalar(select(Feature).where(Feature.source_id == private.id, Feature.index == 1))
        assert feature is not None
        secret = Explanation(feature_id=feature.id, description="alice's secret feature", author_id=alice.id)
        session.add(secret)
        session.flush()
        return {"alice": create_api_key(session, alice), "bob": create_api_key(session, bob), "secret": secret.id}


def _as(key: str | None) -> dict[str, str]:
    return {"accept": "application/json", **({"x-api-key": key} if key else {})}


def _listed_sources(client: Any, key: str | None) -> dict[str, set[str]]:
    """The sources each listing names."""
    h = _as(key)
    home = client.get("/index.json", headers=h).json()["models"]
    model_page = client.get(f"/{MODEL}.json", headers=h).json()["model"]
    api_model = client.post("/api/model/get", json={"id": MODEL}, headers=h).json()
    set_page = client.get(f"/{MODEL}/res-a.json", headers=h).json()["sourceSet"]
    return {
        "home": {s["id"] for m in home for st in m["sourceSets"] for s in st["sources"]},
        "model page": {s["id"] for st in model_page["sourceSets"] for s in st["sources"]},
        "api model": {s["id"] for st in api_model["sourceSets"] for s in st["sources"]},
        "set page": {s["id"] for s in set_page["sources"]},
        "api set": {s["id"] for s in client.get(f"/api/source-set/{MODEL}/res-a", headers=h).json()["sources"]},
    }


@pytest.mark.parametrize("who", [None, "bob"])
def test_others_find_no_private_or_unlisted_source_in_any_listing(
    client: Any, site: dict[str, Any], who: str | None
) -> None:
    key = site[who] if who else None
    for listing, names in _listed_sources(client, key).items():
        assert names == {"0-res-a"}, f"{listing} as {who or 'anonymous'}: {names}"
    # A private set is not found by its URL; an unlisted one is (it is only left out of listings).
    assert client.get(f"/{MODEL}/res-c.json", headers=_as(key)).status_code == 404
    assert client.get(f"/api/source-set/{MODEL}/res-c", headers=_as(key)).status_code == 404
    assert client.get(f"/api/source-set/{MODEL}/res-b", headers=_as(key)).status_code == 200
    # Random picks come from listed sources only: the public source's features are all dead, alice's are live.
    picks = {client.get(f"/random/{MODEL}.json", headers=_as(key)).json()["layer"] for _ in range(12)}
    assert picks == {"0-res-a"}
    # The explanation of alice's private feature, read or voted on.
    assert client.get(f"/api/explanation/{site['secret']}", headers=_as(key)).status_code == 404


def test_the_creator_sees_her_private_and_unlisted_sources(client: Any, site: dict[str, Any]) -> None:
    listed = _listed_sources(client, site["alice"])
    assert listed["home"] == listed["model page"] == listed["api model"] == {"0-res-a", *HIDDEN_SOURCES}
    assert listed["set page"] == listed["api set"] == {"0-res-a", "1-res-a"}
    assert client.get(f"/{MODEL}/res-c.json", headers=_as(site["alice"])).status_code == 200
    exp = client.get(f"/api/explanation/{site['secret']}", headers=_as(site["alice"]))
    assert exp.status_code == 200 and exp.json()["description"] == "alice's secret feature"
    picks = {client.get(f"/random/{MODEL}.json", headers=_as(site["alice"])).json()["layer"] for _ in range(12)}
    assert picks <= {"0-res-a", *HIDDEN_SOURCES} and picks & HIDDEN_SOURCES


def test_a_list_shows_others_none_of_its_private_features(client: Any, site: dict[str, Any]) -> None:
    made = client.post(
        "/api/list/new-with-features",
        json={
            "name": "alice's mix",
            "features": [
                {"modelId": MODEL, "layer": "0-res-a", "index": 0},
                {"modelId": MODEL, "layer": "1-res-a", "index": 1},
            ],
        },
        headers=_as(site["alice"]),
    )
    assert made.status_code == 200, made.text
    list_id = made.json()["id"]
    for key, shown in ((site["alice"], {"0-res-a", "1-res-a"}), (site["bob"], {"0-res-a"}), (None, {"0-res-a"})):
        got = client.post("/api/list/get", json={"listId": list_id}, headers=_as(key)).json()
        assert {n["layer"] for n in got["neurons"]} == shown
        page = client.get(f"/list/{list_id}.json", headers=_as(key)).json()
        assert {n["layer"] for n in page["list"]["neurons"]} == shown
        assert "secret" not in str(got) or key == site["alice"]
    # bob cannot put alice's private feature in a list of his: to him it does not exist.
    refused = client.post(
        "/api/list/new-with-features",
        json={"name": "bob's", "features": [{"modelId": MODEL, "layer": "1-res-a", "index": 1}]},
        headers=_as(site["bob"]),
    )
    assert refused.status_code == 404 and refused.json()["field"] == "features[0]"
