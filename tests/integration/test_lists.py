"""Feature lists through /api/list/* (neuronpedia.org's bodies), the official client, and the pages (both backends)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from factories import write_saedashboard_dir
from sqlalchemy import func, select

from interpedia.db import transaction
from interpedia.db.community import FeatureList, ListFeature
from interpedia.ingest import import_path
from interpedia.store.explanations import add_explanation
from interpedia.store.features import get_feature_row
from interpedia.store.users import create_api_key, ensure_user

HTML = {"accept": "text/html,application/xhtml+xml"}
ERROR_KEYS = {"error", "message", "status", "field"}
M, S = "tiny-test", "0-res-test"


@pytest.fixture
def site(factory: Any, tmp_path: Path) -> None:
    """Ten features of tiny-test/0-res-test with explanations and examples."""
    import_path(write_saedashboard_dir(tmp_path / "dash", n_features=10), factory)
    with transaction(factory) as session:
        for index in range(10):
            feature = get_feature_row(session, M, S, index)[2]
            add_explanation(
                session,
                feature,
                f"explains feature {index}",
                type_name=None,
                model_name=None,
                author_id=None,
                triggered_by=None,
                embedding=None,
            )


def _key(factory: Any, name: str, *, admin: bool = False) -> dict[str, str]:
    with transaction(factory) as session:
        user = ensure_user(session, name)
        user.admin = admin
        return {"x-api-key": create_api_key(session, user)}


def _counts(factory: Any) -> tuple[int, int]:
    with factory() as session:
        return (
            session.scalar(select(func.count()).select_from(FeatureList)) or 0,
            session.scalar(select(func.count()).select_from(ListFeature)) or 0,
        )


def _feat(i: int, note: str = "") -> dict[str, Any]:
    return {"modelId": M, "layer": S, "index": str(i), "description": note}


def test_every_list_route_round_trip(client: Any, site: None, api_key: str) -> None:
    key = {"x-api-key": api_key}
    made = client.post(
        "/api/list/new", json={"name": "Bible words", "description": "d", "testText": "In the"}, headers=key
    )
    assert made.status_code == 200, made.text
    lst = made.json()
    assert lst["name"] == "Bible words" and lst["description"] == "d" and lst["defaultTestText"] == "In the"
    assert lst["url"].endswith(f"/list/{lst['id']}") and lst["user"] == {"name": "tester"}

    added = client.post(
        "/api/list/add-features",
        json={
            "listId": lst["id"],
            "featuresToAdd": [_feat(2, "lord"), _feat(5), {"modelId": M, "layer": S, "index": 7}],
        },
        headers=key,
    )
    assert added.status_code == 200, added.text
    assert [(a["modelId"], a["layer"], a["index"], a["description"]) for a in added.json()] == [
        (M, S, "2", "lord"),
        (M, S, "5", ""),
        (M, S, "7", ""),
    ]
    again = client.post("/api/list/add-features", json={"listId": lst["id"], "featuresToAdd": [_feat(2)]}, headers=key)
    assert again.json() == []  # already there: nothing twice

    got = client.post("/api/list/get", json={"listId": lst["id"]})  # no key needed
    assert got.status_code == 200
    doc = got.json()
    assert [n["index"] for n in doc["neurons"]] == ["2", "5", "7"]
    first = doc["neurons"][0]
    assert first["description"] == "lord" and first["neuron"]["explanations"][0]["description"] == "explains feature 2"
    assert 1 <= len(first["neuron"]["activations"]) <= 3

    edited = client.post(
        "/api/list/edit-feature",
        json={"listId": lst["id"], "modelId": M, "layer": S, "index": "5", "description": "five"},
        headers=key,
    )
    assert edited.status_code == 200 and edited.json()["description"] == "five"
    removed = client.post(
        "/api/list/remove", json={"listId": lst["id"], "modelId": M, "layer": S, "index": "7"}, headers=key
    )
    assert removed.status_code == 200 and removed.json()["index"] == "7"
    updated = client.post(
        "/api/list/update",
        json={"listId": lst["id"], "name": "Renamed", "description": "e", "defaultTestText": ""},
        headers=key,
    )
    assert updated.status_code == 200
    assert (updated.json()["name"], updated.json()["defaultTestText"]) == ("Renamed", None)
    owned = client.post("/api/list/list", headers=key)
    assert [(x["id"], x["name"]) for x in owned.json()] == [(lst["id"], "Renamed")]
    doc = client.post("/api/list/get", json={"listId": lst["id"]}).json()
    assert [(n["index"], n["description"]) for n in doc["neurons"]] == [("2", "lord"), ("5", "five")]

    assert client.post("/api/list/delete", json={"listId": lst["id"]}, headers=key).json() is True
    gone = client.post("/api/list/get", json={"listId": lst["id"]})
    assert gone.status_code == 404 and set(gone.json()) == ERROR_KEYS


def test_new_with_features_and_its_bad_input(client: Any, site: None, api_key: str, factory: Any, app: Any) -> None:
    key = {"x-api-key": api_key}
    ok = client.post(
        "/api/list/new-with-features",
        json={"name": "Three", "features": [{"modelId": M, "layer": S, "index": i} for i in (1, 3, 4)]},
        headers=key,
    )
    assert ok.status_code == 200, ok.text
    assert len(client.post("/api/list/get", json={"listId": ok.json()["id"]}).json()["neurons"]) == 3
    before = _counts(factory)

    unknown = client.post(
        "/api/list/new-with-features",
        json={
            "name": "x",
            "features": [{"modelId": M, "layer": S, "index": 1}, {"modelId": M, "layer": S, "index": 999}],
        },
        headers=key,
    )
    assert unknown.status_code == 404 and unknown.json()["field"] == "features[1]"
    assert "tiny-test/0-res-test/999" in unknown.json()["message"]
    no_source = client.post(
        "/api/list/new-with-features",
        json={"name": "x", "features": [{"modelId": M, "layer": "9-nope", "index": 1}]},
        headers=key,
    )
    assert no_source.status_code == 404 and no_source.json()["field"] == "features[0]"

    huge = client.post(
        "/api/list/new-with-features",
        json={"name": "huge", "features": [{"modelId": M, "layer": S, "index": i} for i in range(10_000)]},
        headers=key,
    )
    assert huge.status_code == 400 and huge.json()["field"] == "features"
    assert "at most 1,000 features" in huge.json()["message"] and "10,000" in huge.json()["message"]

    app.state.settings.list_max_features = 4  # the limit is a setting (INTERPEDIA_LIST_MAX_FEATURES)
    lid = ok.json()["id"]
    over = client.post(
        "/api/list/add-features", json={"listId": lid, "featuresToAdd": [_feat(6), _feat(8)]}, headers=key
    )
    assert over.status_code == 400 and "at most 4 features" in over.json()["message"]
    too_many = client.post(
        "/api/list/add-features", json={"listId": lid, "featuresToAdd": [_feat(1)] * 101}, headers=key
    )
    assert too_many.status_code == 400 and "Max is 100" in too_many.json()["message"]
    bad = [
        ({"name": "   "}, 422, "name"),
        ({"name": "x" * 201}, 422, "name"),
        ({"description": "d"}, 422, "name"),
        ({"name": "x", "testText": ""}, 422, "testText"),
        ({"name": "x", "testText": "t" * 2001}, 422, "testText"),
    ]
    for body, status, field in bad:
        resp = client.post("/api/list/new", json=body, headers=key)
        assert resp.status_code == status and resp.json()["field"] == field, (body, resp.text)
    neg = client.post(
        "/api/list/add-features",
        json={"listId": lid, "featuresToAdd": [{"modelId": M, "layer": S, "index": "-1"}]},
        headers=key,
    )
    assert neg.status_code == 422 and neg.json()["field"] == "featuresToAdd[0].index"
    assert client.post("/api/list/new", json={"name": "x"}).status_code == 401
    assert client.post("/api/list/list").status_code == 401
    assert (
        client.post("/api/list/new", content=b"{", headers={**key, "content-type": "application/json"}).status_code
        == 422
    )
    assert _counts(factory) == before  # nothing written by any bad request


def test_only_owners_edit_and_admins_only_remove(client: Any, site: None, api_key: str, factory: Any) -> None:
    owner = {"x-api-key": api_key}
    lid = client.post(
        "/api/list/new-with-features",
        json={"name": "mine", "features": [{"modelId": M, "layer": S, "index": i} for i in (1, 2, 3)]},
        headers=owner,
    ).json()["id"]
    other, admin = _key(factory, "mallory"), _key(factory, "root", admin=True)
    before = _counts(factory)
    for who in (other, admin):
        for path, body in (
            ("add-features", {"listId": lid, "featuresToAdd": [_feat(4)]}),
            ("edit-feature", {"listId": lid, "modelId": M, "layer": S, "index": "1", "description": "pwned"}),
            ("update", {"listId": lid, "name": "pwned"}),
        ):
            resp = client.post(f"/api/list/{path}", json=body, headers=who)
            assert resp.status_code == 403 and set(resp.json()) == ERROR_KEYS, (path, resp.text)
    for path, body in (
        ("remove", {"listId": lid, "modelId": M, "layer": S, "index": "1"}),
        ("delete", {"listId": lid}),
    ):
        assert client.post(f"/api/list/{path}", json=body, headers=other).status_code == 403
    assert _counts(factory) == before
    doc = client.post("/api/list/get", json={"listId": lid}).json()
    assert doc["name"] == "mine" and all(n["description"] != "pwned" for n in doc["neurons"])

    assert (
        client.post(
            "/api/list/remove", json={"listId": lid, "modelId": M, "layer": S, "index": "1"}, headers=admin
        ).status_code
        == 200
    )
    assert client.post("/api/list/delete", json={"listId": lid}, headers=admin).json() is True
    assert _counts(factory) == (before[0] - 1, before[1] - 3)
    missing = client.post("/api/list/delete", json={"listId": "nope"}, headers=owner)
    assert missing.status_code == 404 and missing.json()["field"] == "listId"


def test_official_client_list_calls(
    live_server: str, api_key: str, site: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEURONPEDIA_API_KEY", api_key)
    from neuronpedia.requests.base_request import NPRequest

    monkeypatch.setattr(NPRequest, "BASE_URL", f"{live_server}/api")
    from neuronpedia.np_list import NPList, NPListItem

    made = NPList.new("client list", "made by the official client")
    assert (made.name, made.description) == ("client list", "made by the official client")
    made.add_items([NPListItem(M, S, "3", "three"), NPListItem(M, S, "8")])
    assert [(i.model_id, i.source, i.index) for i in made.items] == [(M, S, "3"), (M, S, "8")]
    got = NPList.get(made.id)
    assert got.name == "client list" and [(i.source, i.index) for i in got.items] == [(S, "3"), (S, "8")]
    assert [lst.id for lst in NPList.get_owned()] == [made.id]
    import requests

    with pytest.raises(requests.exceptions.HTTPError, match="Resource not found"):
        made.add_items([NPListItem(M, S, "12345")])


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "form has no CSRF token"
    return match.group(1)


def test_pages_add_from_feature_page_and_show_the_list(client: Any, site: None, api_key: str, factory: Any) -> None:
    feature_page = client.get(f"/{M}/{S}/4", headers=HTML)
    assert "to add this feature to a list" in feature_page.text  # signed out: a sign-in link
    form = client.get("/signin", headers=HTML)
    client.post("/signin", data={"api_key": api_key, "csrf_token": _csrf(form.text)}, headers=HTML)
    feature_page = client.get(f"/{M}/{S}/4", headers=HTML)
    made = client.post(
        "/list/new",
        data={
            "name": "From the page",
            "modelId": M,
            "layer": S,
            "index": "4",
            "next": f"/{M}/{S}/4",
            "csrf_token": _csrf(feature_page.text),
        },
        headers=HTML,
        follow_redirects=False,
    )
    assert made.status_code == 303 and made.headers["location"] == f"/{M}/{S}/4"
    feature_page = client.get(f"/{M}/{S}/4", headers=HTML)
    lid = re.search(r'In <a href="/list/([^"]+)">From the page</a>', feature_page.text)
    assert lid
    other_feature = client.get(f"/{M}/{S}/6", headers=HTML)
    assert 'id="add-to-list-form"' in other_feature.text
    added = client.post(
        "/list/add",
        data={"listId": lid.group(1), "modelId": M, "layer": S, "index": "6", "csrf_token": _csrf(other_feature.text)},
        headers=HTML,
        follow_redirects=False,
    )
    assert added.status_code == 303

    page = client.get(f"/list/{lid.group(1)}", headers=HTML)
    assert page.status_code == 200 and "From the page" in page.text
    assert f'href="/{M}/{S}/4"' in page.text and f'href="/{M}/{S}/6"' in page.text
    assert 'class="desc explanation-text"' in page.text
    assert 'id="live-note"' in page.text and "Live activations are off" in page.text  # no inference here
    twin = client.get(f"/list/{lid.group(1)}.json").json()
    assert twin["canEdit"] and [n["index"] for n in twin["list"]["neurons"]] == ["4", "6"]
    assert twin["liveNote"].startswith("Live activations are off") and "inference_enabled" in twin["liveNote"]

    no_token = client.post(
        "/list/add", data={"listId": lid.group(1), "modelId": M, "layer": S, "index": "7"}, headers=HTML
    )
    assert no_token.status_code == 403
    unknown = client.post(
        "/list/add",
        data={"listId": lid.group(1), "modelId": M, "layer": S, "index": "77", "csrf_token": _csrf(page.text)},
        headers={"accept": "application/json"},
    )
    assert unknown.status_code == 404 and set(unknown.json()) == ERROR_KEYS
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(ListFeature)) == 2


def test_page_forms_refuse_other_users_and_let_admins_remove(
    client: Any, site: None, api_key: str, factory: Any
) -> None:
    lid = client.post(
        "/api/list/new-with-features",
        json={"name": "owned", "features": [{"modelId": M, "layer": S, "index": i} for i in (1, 2)]},
        headers={"x-api-key": api_key},
    ).json()["id"]
    mallory = _key(factory, "mallory")["x-api-key"]
    form = client.get("/signin", headers=HTML)
    client.post("/signin", data={"api_key": mallory, "csrf_token": _csrf(form.text)}, headers=HTML)
    page = client.get(f"/list/{lid}", headers=HTML)
    assert 'id="list-update-form"' not in page.text and 'class="inline remove-feature"' not in page.text
    token = _csrf(page.text)
    json_accept = {"accept": "application/json"}
    for path, data in (
        ("update", {"name": "pwned"}),
        ("edit-feature", {"modelId": M, "layer": S, "index": "1", "description": "pwned"}),
        ("remove", {"modelId": M, "layer": S, "index": "1"}),
        ("delete", {}),
    ):
        resp = client.post(f"/list/{lid}/{path}", data={**data, "csrf_token": token}, headers=json_accept)
        assert resp.status_code == 403 and set(resp.json()) == ERROR_KEYS, path
    resp = client.post(
        "/list/add",
        data={"listId": lid, "modelId": M, "layer": S, "index": "3", "csrf_token": token},
        headers=json_accept,
    )
    assert resp.status_code == 403
    assert _counts(factory) == (1, 2)

    root = _key(factory, "root", admin=True)["x-api-key"]
    form = client.get("/signin", headers=HTML)
    client.post("/signin", data={"api_key": root, "csrf_token": _csrf(form.text)}, headers=HTML)
    page = client.get(f"/list/{lid}", headers=HTML)
    assert 'class="inline remove-feature"' in page.text and 'id="list-update-form"' not in page.text
    gone = client.post(
        f"/list/{lid}/delete", data={"csrf_token": _csrf(page.text)}, headers=HTML, follow_redirects=False
    )
    assert gone.status_code == 303 and _counts(factory) == (0, 0)
