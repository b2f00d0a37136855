"""Comments, bookmarks and votes: the API, the page forms and the feature page, on real SQLite and Postgres."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from factories import make_feature
from ingest_helpers import no_embedding_on_import  # noqa: F401  (autouse fixture)

from interpedia.db import transaction
from interpedia.db.tables import Bookmark, Comment, Explanation, Feature, FeatureList, Vote
from interpedia.ingest import import_path
from interpedia.store.comments import MAX_COMMENT_CHARS
from interpedia.store.users import create_api_key, ensure_user

HTML = {"accept": "text/html,application/xhtml+xml"}
JSON = {"accept": "application/json"}
FEATURE = {"modelId": "tiny-test", "layer": "0-res-test", "index": 1}
PAGE = "/tiny-test/0-res-test/1"
HOSTILE = "<script>alert('c')</script> & <img src=x onerror=alert(1)>"


@pytest.fixture
def site(factory: Any, tmp_path: Path, api_key: str) -> dict[str, Any]:
    """tiny-test/0-res-test with 3 features, two explanations on feature 1, a list, and users other + admin."""
    path = tmp_path / "dash"
    path.mkdir()
    doc = {
        "model_id": "tiny-test",
        "layer": 0,
        "sae_set": "res-test",
        "sae_id_suffix": None,
        "features": [make_feature(i) for i in range(3)],
    }
    (path / "batch-0.json").write_text(json.dumps(doc))
    import_path(path, factory)
    with transaction(factory) as session:
        feature = session.query(Feature).filter(Feature.index == 1).one()
        first = Explanation(feature_id=feature.id, description="cats on mats", score_v1=0.5)
        second = Explanation(feature_id=feature.id, description="the word 'sat'", score_v1=0.1)
        other = ensure_user(session, "other")
        admin = ensure_user(session, "boss", admin=True)
        session.add_all([first, second])
        the_list = FeatureList(name="my list", user_id=other.id)
        session.add(the_list)
        session.flush()
        return {
            "key": api_key,
            "other": create_api_key(session, other),
            "admin": create_api_key(session, admin),
            "exp": first.id,
            "exp2": second.id,
            "list": the_list.id,
        }


def _k(key: str) -> dict[str, str]:
    return {"x-api-key": key}


def _count(factory: Any, table: Any) -> int:
    with factory() as session:
        return int(session.query(table).count())


def _error(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error", "message", "status", "field"} and body["status"] == status
    return body  # type: ignore[no-any-return]


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "page has no CSRF token"
    return match.group(1)


def _sign_in(client: Any, key: str) -> str:
    form = client.get("/signin", headers=HTML)
    resp = client.post(
        "/signin",
        data={"api_key": key, "csrf_token": _csrf(form.text), "next": PAGE},
        headers=HTML,
        follow_redirects=False,
    )
    assert resp.status_code == 303
    return _csrf(client.get(PAGE, headers=HTML).text)


# --- API ------------------------------------------------------------------------------------------


def test_every_write_needs_a_user(client: Any, site: dict[str, Any], factory: Any) -> None:
    calls = [
        ("/api/comment/new", {**FEATURE, "text": "hi"}),
        ("/api/comment/delete", {"commentId": "x"}),
        ("/api/list/comment/new", {"listId": site["list"], "text": "hi"}),
        ("/api/bookmark/add", FEATURE),
        ("/api/bookmark/delete", FEATURE),
        ("/api/user/bookmarks", {}),
        (f"/api/explanation/{site['exp']}/vote", {}),
        (f"/api/explanation/{site['exp']}/unvote", {}),
    ]
    for path, body in calls:
        assert "x-api-key" in _error(client.post(path, json=body), 401)["message"]
        _error(client.post(path, json=body, headers=_k("sk-np-wrong")), 401)
    # A signed-in browser without the CSRF header is refused too: a cookie alone proves nothing.
    _sign_in(client, site["key"])
    _error(client.post("/api/comment/new", json={**FEATURE, "text": "hi"}), 403)
    assert (_count(factory, Comment), _count(factory, Bookmark), _count(factory, Vote)) == (0, 0, 0)


def test_comment_on_a_feature_shows_in_the_api_and_the_page(client: Any, site: dict[str, Any]) -> None:
    resp = client.post(
        "/api/comment/new", json={**FEATURE, "index": "1", "text": f"  {HOSTILE}\nline 2 "}, headers=_k(site["key"])
    )
    assert resp.status_code == 200, resp.text
    comment = resp.json()
    assert comment["text"] == f"{HOSTILE}\nline 2" and comment["user"]["name"] == "tester"
    assert (comment["modelId"], comment["layer"], comment["index"]) == ("tiny-test", "0-res-test", "1")
    feature = client.get("/api/feature/tiny-test/0-res-test/1").json()
    assert [c["id"] for c in feature["comments"]] == [comment["id"]]
    assert client.get("/api/feature/tiny-test/0-res-test/2").json()["comments"] == []
    html = client.get(PAGE, headers=HTML).text
    assert "&lt;script&gt;alert(&#39;c&#39;)&lt;/script&gt; &amp; &lt;img src=x" in html
    assert "<script>alert('c')" not in html and "<img src=x" not in html
    twin = client.get(PAGE + ".json").json()
    assert twin["community"]["comments"][0]["text"] == comment["text"]


def test_only_the_author_or_an_admin_deletes_a_comment(client: Any, site: dict[str, Any], factory: Any) -> None:
    ids = [
        client.post("/api/comment/new", json={**FEATURE, "text": f"c{i}"}, headers=_k(site["key"])).json()["id"]
        for i in range(2)
    ]
    _error(client.post("/api/comment/delete", json={"commentId": ids[0]}, headers=_k(site["other"])), 403)
    assert _count(factory, Comment) == 2
    assert client.post("/api/comment/delete", json={"commentId": ids[0]}, headers=_k(site["key"])).status_code == 200
    assert client.post("/api/comment/delete", json={"id": ids[1]}, headers=_k(site["admin"])).status_code == 200
    assert _count(factory, Comment) == 0
    _error(client.post("/api/comment/delete", json={"commentId": ids[0]}, headers=_k(site["key"])), 404)
    _error(client.post("/api/comment/delete", json={}, headers=_k(site["key"])), 422)


def test_bad_comments_are_refused_and_nothing_is_written(client: Any, site: dict[str, Any], factory: Any) -> None:
    key = _k(site["key"])
    megabyte = "x" * (1024 * 1024)
    for text, field in (
        ("", "text"),
        ("   \n\t ", "text"),
        (megabyte, "text"),
        (None, "text"),
        (42, "text"),
        ("x" * (MAX_COMMENT_CHARS + 1), "text"),
    ):
        body = _error(client.post("/api/comment/new", json={**FEATURE, "text": text}, headers=key), 422)
        assert body["field"] == field
    assert (
        "at most"
        in _error(client.post("/api/comment/new", json={**FEATURE, "text": megabyte}, headers=key), 422)["message"]
    )
    _error(client.post("/api/comment/new", json={**FEATURE, "index": 99, "text": "hi"}, headers=key), 404)
    _error(client.post("/api/comment/new", json={**FEATURE, "index": -1, "text": "hi"}, headers=key), 422)
    _error(client.post("/api/comment/new", json={**FEATURE, "index": 2**70, "text": "hi"}, headers=key), 422)
    _error(client.post("/api/comment/new", json={**FEATURE, "modelId": "tiny\x00", "text": "hi"}, headers=key), 404)
    _error(client.post("/api/comment/delete", json={"commentId": "x\x00" * 40}, headers=key), 404)
    _error(client.post("/api/explanation/x%00/vote", headers=key), 404)
    _error(client.post("/api/comment/new", json={"modelId": "tiny-test", "text": "hi"}, headers=key), 422)
    _error(
        client.post("/api/comment/new", content=b"{not json", headers={**key, "content-type": "application/json"}), 422
    )
    _error(client.post("/api/list/comment/new", json={"listId": "nope", "text": "hi"}, headers=key), 404)
    _error(client.post("/api/list/comment/new", json={"listId": site["list"], "text": megabyte}, headers=key), 422)
    assert _count(factory, Comment) == 0
    assert (
        client.post("/api/comment/new", json={**FEATURE, "text": "x" * MAX_COMMENT_CHARS}, headers=key).status_code
        == 200
    )
    # NUL cannot be stored in Postgres text; it becomes a space, as the importers do.
    assert client.post("/api/comment/new", json={**FEATURE, "text": "a\x00b"}, headers=key).json()["text"] == "a b"


def test_list_comments(client: Any, site: dict[str, Any], factory: Any) -> None:
    made = client.post(
        "/api/list/comment/new", json={"listId": site["list"], "text": "nice list"}, headers=_k(site["key"])
    )
    assert made.status_code == 200 and made.json()["listId"] == site["list"]
    feature_comment = client.post("/api/comment/new", json={**FEATURE, "text": "f"}, headers=_k(site["key"])).json()
    # The list route deletes list comments only.
    _error(
        client.post("/api/list/comment/delete", json={"commentId": feature_comment["id"]}, headers=_k(site["key"])), 404
    )
    _error(
        client.post("/api/list/comment/delete", json={"commentId": made.json()["id"]}, headers=_k(site["other"])), 403
    )
    assert (
        client.post(
            "/api/list/comment/delete", json={"commentId": made.json()["id"]}, headers=_k(site["key"])
        ).status_code
        == 200
    )
    assert _count(factory, Comment) == 1


def test_bookmarks_add_list_delete(client: Any, site: dict[str, Any], factory: Any) -> None:
    key = _k(site["key"])
    first = client.post("/api/bookmark/add", json=FEATURE, headers=key)
    assert first.status_code == 200 and first.json()["created"] is True
    again = client.post("/api/bookmark/add", json={**FEATURE, "index": "1"}, headers=key)
    assert again.status_code == 200 and again.json()["created"] is False
    client.post("/api/bookmark/add", json={**FEATURE, "index": 2}, headers=key)
    assert _count(factory, Bookmark) == 2
    mine = client.post("/api/user/bookmarks", headers=key).json()["bookmarks"]
    assert sorted(b["index"] for b in mine) == ["1", "2"]
    assert next(b for b in mine if b["index"] == "1")["description"] == "cats on mats"
    # Bookmarks are private: another user sees none of them.
    assert client.get("/api/user/bookmarks", headers=_k(site["other"])).json() == {"bookmarks": []}
    assert client.post("/api/bookmark/delete", json=FEATURE, headers=key).json()["bookmarked"] is False
    _error(client.post("/api/bookmark/delete", json=FEATURE, headers=key), 404)
    _error(client.post("/api/bookmark/add", json={**FEATURE, "index": 99}, headers=key), 404)
    _error(client.post("/api/bookmark/add", json={**FEATURE, "modelId": 5}, headers=key), 422)
    assert _count(factory, Bookmark) == 1


def test_votes_count_once_per_user(client: Any, site: dict[str, Any], factory: Any) -> None:
    url = f"/api/explanation/{site['exp']}"
    assert client.post(url + "/vote", headers=_k(site["key"])).json() == {
        "explanationId": site["exp"],
        "votes": 1,
        "voted": True,
    }
    assert client.post(url + "/vote", headers=_k(site["key"])).json()["votes"] == 1
    assert client.post(url + "/vote", headers=_k(site["other"])).json()["votes"] == 2
    assert _count(factory, Vote) == 2
    assert client.post(url + "/unvote", headers=_k(site["key"])).json() == {
        "explanationId": site["exp"],
        "votes": 1,
        "voted": False,
    }
    assert client.post(url + "/unvote", headers=_k(site["key"])).json()["votes"] == 1
    _error(client.post("/api/explanation/nope/vote", headers=_k(site["key"])), 404)
    votes = client.get(PAGE + ".json", headers=_k(site["other"])).json()["community"]["votes"]
    assert votes == {site["exp"]: {"votes": 1, "voted": True}, site["exp2"]: {"votes": 0, "voted": False}}


def test_browser_session_may_use_the_api_with_its_csrf_token(client: Any, site: dict[str, Any]) -> None:
    token = _sign_in(client, site["key"])
    resp = client.post("/api/bookmark/add", json=FEATURE, headers={"x-csrf-token": token})
    assert resp.status_code == 200
    _error(client.post("/api/bookmark/add", json=FEATURE, headers={"x-csrf-token": "wrong" * 8}), 403)


# --- pages ----------------------------------------------------------------------------------------


def test_feature_page_forms_comment_bookmark_and_vote(client: Any, site: dict[str, Any], factory: Any) -> None:
    anonymous = client.get(PAGE, headers=HTML).text
    assert 'id="comment-form"' not in anonymous and "to comment" in anonymous and "0 votes" in anonymous
    token = _sign_in(client, site["key"])

    resp = client.post(
        "/comment/new", data={**FEATURE, "text": HOSTILE, "csrf_token": token}, headers=HTML, follow_redirects=False
    )
    assert resp.status_code == 303 and resp.headers["location"] == PAGE + "#comments"
    resp = client.post("/bookmark/add", data={**FEATURE, "csrf_token": token}, headers=HTML, follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == PAGE
    resp = client.post(
        f"/explanation/{site['exp']}/vote", data={"csrf_token": token}, headers=HTML, follow_redirects=False
    )
    assert resp.status_code == 303 and resp.headers["location"] == f"{PAGE}#explanation-{site['exp']}"

    html = client.get(PAGE, headers=HTML).text
    assert "&lt;script&gt;alert(&#39;c&#39;)" in html and 'action="/comment/delete"' in html
    assert 'id="bookmark-button" aria-pressed="true"' in html and "★ Bookmarked" in html
    assert f'action="/explanation/{site["exp"]}/unvote"' in html and "1 vote<" in html
    page = client.get("/account/bookmarks", headers=HTML).text
    assert 'href="/tiny-test/0-res-test/1"' in page and "cats on mats" in page
    assert client.get("/account/bookmarks.json").json()["bookmarks"][0]["index"] == "1"

    # Without the form's token nothing happens.
    assert client.post("/comment/new", data={**FEATURE, "text": "csrf?"}, headers=HTML).status_code == 403
    # An empty comment from the form: a 4xx page, nothing written.
    assert (
        client.post("/comment/new", data={**FEATURE, "text": " ", "csrf_token": token}, headers=HTML).status_code == 422
    )
    assert _count(factory, Comment) == 1

    comment_id = client.get(PAGE + ".json").json()["community"]["comments"][0]["id"]
    resp = client.post(
        "/comment/delete", data={"commentId": comment_id, "csrf_token": token}, headers=HTML, follow_redirects=False
    )
    assert resp.status_code == 303 and resp.headers["location"] == PAGE + "#comments"
    resp = client.post(
        "/bookmark/delete",
        data={**FEATURE, "back": "bookmarks", "csrf_token": token},
        headers=HTML,
        follow_redirects=False,
    )
    assert resp.headers["location"] == "/account/bookmarks"
    client.post(f"/explanation/{site['exp']}/unvote", data={"csrf_token": token}, headers=HTML)
    html = client.get(PAGE, headers=HTML).text
    assert "No comments yet." in html and "☆ Bookmark" in html and "1 vote<" not in html
    assert (_count(factory, Comment), _count(factory, Bookmark), _count(factory, Vote)) == (0, 0, 0)


def test_others_cannot_delete_from_the_page_and_bookmarks_need_sign_in(
    client: Any, site: dict[str, Any], factory: Any
) -> None:
    made = client.post("/api/comment/new", json={**FEATURE, "text": "mine"}, headers=_k(site["key"])).json()
    resp = client.get("/account/bookmarks", headers=HTML, follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"].startswith("/signin")
    _error(client.get("/account/bookmarks.json"), 401)
    token = _sign_in(client, site["other"])
    assert 'action="/comment/delete"' not in client.get(PAGE, headers=HTML).text
    resp = client.post("/comment/delete", data={"commentId": made["id"], "csrf_token": token}, headers=JSON)
    _error(resp, 403)
    assert _count(factory, Comment) == 1
    # An admin sees the delete button on anyone's comment and may use it.
    token = _sign_in(client, site["admin"])
    assert 'action="/comment/delete"' in client.get(PAGE, headers=HTML).text
    resp = client.post("/comment/delete", data={"commentId": made["id"], "csrf_token": token}, headers=JSON)
    assert resp.status_code == 200 and resp.json()["deleted"] == made["id"]
    assert _count(factory, Comment) == 0


def test_list_page_shows_comments_and_posts_them(client: Any, site: dict[str, Any], factory: Any) -> None:
    list_url = f"/list/{site['list']}"
    assert "to comment" in client.get(list_url, headers=HTML).text
    client.post("/api/list/comment/new", json={"listId": site["list"], "text": HOSTILE}, headers=_k(site["other"]))
    token = _sign_in(client, site["key"])
    resp = client.post(
        "/comment/new",
        data={"listId": site["list"], "text": "second", "csrf_token": token},
        headers=HTML,
        follow_redirects=False,
    )
    assert resp.status_code == 303 and resp.headers["location"] == list_url + "#comments"
    html = client.get(list_url, headers=HTML).text
    assert "&lt;script&gt;alert(&#39;c&#39;)" in html and "second" in html and "(2)" in html
    assert f'name="listId" value="{site["list"]}"' in html
    assert html.count('action="/comment/delete"') == 1  # only tester's own comment
    twin = client.get(list_url + ".json").json()["community"]["comments"]
    assert [c["user"]["name"] for c in twin] == ["other", "tester"]
    mine = twin[1]["id"]
    resp = client.post(
        "/comment/delete", data={"commentId": mine, "csrf_token": token}, headers=HTML, follow_redirects=False
    )
    assert resp.headers["location"] == list_url + "#comments"
    assert _count(factory, Comment) == 1
