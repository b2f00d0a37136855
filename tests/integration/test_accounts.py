"""Local accounts: sign-up, password sign-in, the account page's API keys, admin role (both backends)."""

from __future__ import annotations

import re
from typing import Any

from click.testing import CliRunner

from interpedia.cli import main
from interpedia.db import transaction
from interpedia.db.tables import User
from interpedia.store.users import get_user_by_name

HTML = {"accept": "text/html,application/xhtml+xml"}
JSON = {"accept": "application/json"}


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "form has no CSRF token"
    return match.group(1)


def sign_up(client: Any, name: str, password: str = "correct horse battery") -> Any:
    """Sign up through the form (the client keeps the session cookie)."""
    token = _csrf(client.get("/signup", headers=HTML).text)
    return client.post(
        "/signup", data={"name": name, "password": password, "csrf_token": token}, headers=HTML, follow_redirects=False
    )


def test_sign_up_stores_an_argon2_hash_and_signs_in(client: Any, factory: Any) -> None:
    resp = sign_up(client, "alice")
    assert resp.status_code == 303 and resp.headers["location"] == "/account"
    page = client.get("/account", headers=HTML)
    assert page.status_code == 200 and 'id="signed-in-as">alice<' in page.text
    with factory() as session:
        user = get_user_by_name(session, "alice")
        assert user is not None and user.password_hash and user.password_hash.startswith("$argon2id$")
        assert "correct horse" not in user.password_hash


def test_sign_up_bad_input_is_a_clear_4xx_and_writes_nothing(client: Any, factory: Any) -> None:
    assert sign_up(client, "bob").status_code == 303
    client.cookies.clear()
    for name, password, status, field in (
        ("Bob", "long enough pw", 409, "name"),
        ("b o b", "long enough pw", 422, "name"),
        ("carol", "short", 422, "password"),
        ("dave", "x" * 5000, 422, "password"),
        ("account", "long enough", 422, "name"),
    ):
        token = _csrf(client.get("/signup", headers=HTML).text)
        resp = client.post("/signup", data={"name": name, "password": password, "csrf_token": token}, headers=JSON)
        assert resp.status_code == status, (name, resp.text)
        assert set(resp.json()) == {"error", "message", "status", "field"} and resp.json()["field"] == field
    no_token = client.post("/signup", data={"name": "erin", "password": "long enough pw"}, headers=JSON)
    assert no_token.status_code == 403
    with factory() as session:
        assert [u.name for u in session.query(User).order_by(User.name)] == ["bob"]


def test_password_sign_in_sign_out_and_password_change(client: Any) -> None:
    sign_up(client, "alice")
    page = client.get("/account", headers=HTML)
    client.post("/signout", data={"csrf_token": _csrf(page.text)}, headers=HTML)
    assert client.get("/account", headers=HTML, follow_redirects=False).status_code == 303
    token = _csrf(client.get("/signin", headers=HTML).text)
    wrong = client.post(
        "/signin/password", data={"name": "alice", "password": "nope nope nope", "csrf_token": token}, headers=HTML
    )
    assert wrong.status_code == 401 and "Wrong user name or password" in wrong.text
    unknown = client.post(
        "/signin/password", data={"name": "zed", "password": "whatever1", "csrf_token": token}, headers=JSON
    )
    assert unknown.status_code == 401 and unknown.json()["field"] == "password"
    ok = client.post(
        "/signin/password",
        data={"name": "alice", "password": "correct horse battery", "csrf_token": token, "next": "/account"},
        headers=HTML,
        follow_redirects=False,
    )
    assert ok.status_code == 303 and ok.headers["location"] == "/account"
    old_cookie = dict(client.cookies)

    page = client.get("/account", headers=HTML)
    bad = client.post(
        "/account/password",
        data={"password": "not it at all", "new_password": "another good one", "csrf_token": _csrf(page.text)},
        headers=JSON,
    )
    assert bad.status_code == 403
    changed = client.post(
        "/account/password",
        data={"password": "correct horse battery", "new_password": "another good one", "csrf_token": _csrf(page.text)},
        headers=JSON,
    )
    assert changed.status_code == 200
    assert client.get("/account.json").json()["user"]["name"] == "alice"  # this browser stays signed in
    client.cookies.clear()
    client.cookies.update(old_cookie)  # a cookie from before the change no longer signs in
    assert client.get("/account.json").status_code == 401


def test_account_page_creates_shows_once_and_revokes_keys(client: Any) -> None:
    sign_up(client, "alice")
    page = client.get("/account", headers=HTML)
    made = client.post("/account/keys", data={"label": "laptop", "csrf_token": _csrf(page.text)}, headers=HTML)
    assert made.status_code == 201 and made.headers["cache-control"] == "no-store"
    key = re.search(r'<code id="new-key">(sk-np-[^<]+)</code>', made.text)
    assert key
    key_text = key.group(1)
    again = client.get("/account", headers=HTML)
    assert key_text not in again.text and "laptop" in again.text  # shown only once
    me = client.post("/api/list/list", headers={"x-api-key": key_text})
    assert me.status_code == 200
    key_id = client.get("/account.json").json()["apiKeys"][0]["id"]
    gone = client.post(
        f"/account/keys/{key_id}/revoke", data={"csrf_token": _csrf(again.text)}, headers=HTML, follow_redirects=False
    )
    assert gone.status_code == 303
    assert client.post("/api/list/list", headers={"x-api-key": key_text}).status_code == 401
    other = client.post("/account/keys/nonexistent/revoke", data={"csrf_token": _csrf(again.text)}, headers=JSON)
    assert other.status_code == 404


def test_someone_elses_key_cannot_be_revoked(client: Any, api_key: str, factory: Any) -> None:
    with factory() as session:
        tester = get_user_by_name(session, "tester")
        assert tester is not None
        from interpedia.store.users import list_api_keys

        tester_key = list_api_keys(session, tester)[0].id
    sign_up(client, "mallory")
    page = client.get("/account", headers=HTML)
    resp = client.post(f"/account/keys/{tester_key}/revoke", data={"csrf_token": _csrf(page.text)}, headers=JSON)
    assert resp.status_code == 404
    assert client.post("/api/list/list", headers={"x-api-key": api_key}).status_code == 200


def test_cli_creates_users_and_grants_admin(settings: Any, factory: Any) -> None:
    runner = CliRunner()
    made = runner.invoke(main, ["user", "create", "root", "--password", "a fine password"])
    assert made.exit_code == 0, made.output
    assert runner.invoke(main, ["user", "admin", "root", "--remove"]).exit_code == 0
    with factory() as session:
        user = get_user_by_name(session, "root")
        assert user is not None and not user.admin
    assert runner.invoke(main, ["user", "admin", "root"]).exit_code == 0
    with factory() as session:
        user = get_user_by_name(session, "root")
        assert user is not None and user.admin
    missing = runner.invoke(main, ["user", "admin", "nobody"])
    assert missing.exit_code != 0 and "no user called 'nobody'" in missing.output
    weak = runner.invoke(main, ["user", "create", "x1", "--password", "short"])
    assert weak.exit_code != 0 and "at least 8" in weak.output
    with transaction(factory) as session:
        assert get_user_by_name(session, "x1") is None


def test_password_sign_in_is_rate_limited_per_ip(settings: Any) -> None:
    from fastapi.testclient import TestClient

    from interpedia.web.app import create_app

    limited = settings.model_copy(update={"rate_limits": {"/signin/password": 3}})
    with TestClient(create_app(limited)) as client:
        token = _csrf(client.get("/signin", headers=HTML).text)
        answers = [
            client.post(
                "/signin/password",
                data={"name": "x", "password": "guess number one", "csrf_token": token},
                headers=JSON,
            ).status_code
            for _ in range(4)
        ]
    assert answers == [401, 401, 401, 429]
