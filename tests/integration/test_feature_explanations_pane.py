"""The feature page's explanations pane: scores with type, value, scorer model and details; explain / score
forms for signed-in users; disabled LLM choices with a sentence when no LLM is configured, the user may not
use it, or it failed (nothing stored, the page still renders)."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pytest
from factories import write_saedashboard_dir
from fakellm import FakeLLM, fake_llm  # noqa: F401  (fixture)
from sqlalchemy import func, select

from interpedia.db import transaction
from interpedia.db.tables import Explanation, ExplanationScore
from interpedia.ingest import import_path
from interpedia.store.users import create_api_key, ensure_user

HTML = {"accept": "text/html"}
PAGE = "/tiny-test/0-res-test/3"


@pytest.fixture
def imported(factory: Any, tmp_path: Path) -> None:
    import_path(write_saedashboard_dir(tmp_path / "dash", n_features=10), factory)


def _csrf(text: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', text)
    assert match, "page has no CSRF token"
    return match.group(1)


def sign_in(client: Any, factory: Any, name: str, *, admin: bool = False) -> str:
    """Sign the test client in as a new user; returns a CSRF token for its forms."""
    with transaction(factory) as session:
        user = ensure_user(session, name)
        user.admin = admin
        key = create_api_key(session, user)
    form = client.get("/signin", headers=HTML)
    resp = client.post(
        "/signin",
        data={"api_key": key, "csrf_token": _csrf(form.text), "next": PAGE},
        headers=HTML,
        follow_redirects=False,
    )
    assert resp.status_code == 303
    return _csrf(client.get(PAGE, headers=HTML).text)


def count(factory: Any, table: Any) -> int:
    with factory() as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


def _pane(page: str) -> str:
    match = re.search(r'<section class="pane" id="explanations">.*?</section>', page, flags=re.S)
    assert match
    return match.group(0)


def _button_disabled(page: str, button_id: str) -> bool:
    match = re.search(rf'<button[^>]*id="{button_id}"[^>]*>', page)
    assert match, button_id
    return " disabled" in match.group(0)


def test_anonymous_sees_explanations_and_a_sign_in_sentence(client: Any, imported: None) -> None:
    pane = _pane(client.get(PAGE, headers=HTML).text)
    assert "No explanations yet." in pane and "Sign in to explain features" in pane
    assert "<form" not in pane


def test_without_llm_buttons_say_why_and_offline_work_goes_through(client: Any, factory: Any, imported: None) -> None:
    csrf = sign_in(client, factory, "alice")
    page = client.get(PAGE, headers=HTML).text
    assert _button_disabled(page, "explain-llm") and not _button_disabled(page, "explain-offline")
    assert "No LLM is configured on this server" in _pane(page)
    resp = client.post(
        "/explanation/explain",
        data={
            "modelId": "tiny-test",
            "layer": "0-res-test",
            "index": "3",
            "explanationType": "interpedia_top-tokens",
            "csrf_token": csrf,
        },
        headers=HTML,
        follow_redirects=False,
    )
    assert resp.status_code == 303 and resp.headers["location"].startswith(PAGE + "#explanation-")
    page = client.get(PAGE, headers=HTML).text
    exp_id = resp.headers["location"].split("#explanation-")[1]
    assert f'id="explanation-{exp_id}"' in page and "interpedia_top-tokens" in _pane(page)
    # An LLM explanation is refused with a clear reason and nothing stored.
    resp = client.post(
        "/explanation/explain",
        data={
            "modelId": "tiny-test",
            "layer": "0-res-test",
            "index": "3",
            "explanationType": "np_max-act",
            "csrf_token": csrf,
        },
        headers={"accept": "application/json"},
    )
    assert resp.status_code == 403 and resp.json()["field"] == "explanationType"
    assert count(factory, Explanation) == 1
    # The embedding score needs no LLM: LLM scorers are disabled options, the embedding one is not.
    assert re.search(r'<option value="eleuther_fuzz" disabled>[^<]*needs an LLM', page)
    assert re.search(r'<option value="eleuther_embedding">', page)
    resp = client.post(
        f"/explanation/{exp_id}/score",
        data={"scorerType": "eleuther_embedding", "csrf_token": csrf},
        headers=HTML,
        follow_redirects=False,
    )
    assert resp.status_code == 303, resp.text
    pane = _pane(client.get(PAGE, headers=HTML).text)
    row = re.search(r'<tr class="score" id="score-[^"]+">(.*?)</tr>', pane, flags=re.S)
    assert row and "eleuther_embedding" in row.group(1) and "all-MiniLM-L6-v2" in row.group(1)
    value = float(re.search(r"<strong>([^<]+)</strong>", row.group(1)).group(1))
    with factory() as session:
        stored = session.scalar(select(ExplanationScore))
    assert stored is not None and abs(value - stored.value) < 1e-3
    details = html.unescape(
        re.search(r"<details><summary>Details</summary><pre>(.*?)</pre>", pane, flags=re.S).group(1)
    )
    assert '"negatives"' in details and "\n  " in details  # indented JSON


def test_forms_need_csrf_and_sign_in(client: Any, factory: Any, imported: None) -> None:
    data = {"modelId": "tiny-test", "layer": "0-res-test", "index": "3", "explanationType": "interpedia_top-tokens"}
    anon_csrf = _csrf(client.get("/signin", headers=HTML).text)
    assert client.post("/explanation/explain", data=data).status_code == 403  # no token
    assert client.post("/explanation/explain", data={**data, "csrf_token": anon_csrf}).status_code == 401
    sign_in(client, factory, "bob")
    assert client.post("/explanation/explain", data={**data, "csrf_token": "wrong"}).status_code == 403
    assert count(factory, Explanation) == 0


def test_llm_explain_and_score_for_allowed_user(
    fake_llm: FakeLLM,  # noqa: F811
    client: Any,  # noqa: F811
    factory: Any,
    imported: None,
) -> None:
    csrf = sign_in(client, factory, "root", admin=True)
    page = client.get(PAGE, headers=HTML).text
    assert not _button_disabled(page, "explain-llm") and "fake-good" in page
    assert 'id="autointerp-reason"' not in page
    resp = client.post(
        "/explanation/explain",
        data={
            "modelId": "tiny-test",
            "layer": "0-res-test",
            "index": "3",
            "explanationType": "np_max-act",
            "csrf_token": csrf,
        },
        headers={"accept": "application/json"},
    )
    assert resp.status_code == 200, resp.text
    exp = resp.json()["explanation"]
    assert exp["typeName"] == "np_max-act" and exp["explanationModelName"] == "fake-good"
    resp = client.post(
        f"/explanation/{exp['id']}/score",
        data={"scorerType": "eleuther_fuzz", "csrf_token": csrf},
        headers=HTML,
        follow_redirects=False,
    )
    assert resp.status_code == 303, resp.text
    pane = _pane(client.get(PAGE, headers=HTML).text)
    assert "eleuther_fuzz" in pane and exp["description"] in html.unescape(pane)


def test_llm_not_allowed_for_plain_users(
    fake_llm: FakeLLM,  # noqa: F811
    client: Any,
    factory: Any,  # noqa: F811
    imported: None,
) -> None:
    sign_in(client, factory, "carol")
    page = client.get(PAGE, headers=HTML).text
    assert _button_disabled(page, "explain-llm") and "only admins and users allowed" in _pane(page)


@pytest.fixture
def failing_llm(fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> FakeLLM:  # noqa: F811
    """The LLM answers 500 every time (request before ``client``)."""
    from interpedia.config import get_settings

    monkeypatch.setenv("INTERPEDIA_LLM_MODEL", "fail-500")
    get_settings.cache_clear()
    return fake_llm


def test_failing_llm_stores_nothing_and_the_page_says_why(
    failing_llm: FakeLLM, client: Any, factory: Any, imported: None
) -> None:
    csrf = sign_in(client, factory, "root", admin=True)
    data = {
        "modelId": "tiny-test",
        "layer": "0-res-test",
        "index": "3",
        "explanationType": "np_max-act",
        "csrf_token": csrf,
    }
    resp = client.post("/explanation/explain", data=data, headers=HTML, follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == PAGE + "#explanations"
    page = client.get(PAGE, headers=HTML)
    assert page.status_code == 200
    failure = re.search(r'<p class="error" id="llm-failure"[^>]*>(.*?)</p>', page.text, flags=re.S)
    assert failure and "failed" in failure.group(1) and "Nothing was stored" in failure.group(1)
    assert count(factory, Explanation) == 0
    twin = client.post("/explanation/explain", data=data, headers={"accept": "application/json"})
    assert twin.status_code == 502 and "nothing was stored" in twin.json()["message"]
    assert client.get(PAGE + ".json").status_code == 200


def test_add_an_explanation_by_hand(client: Any, factory: Any, imported: None) -> None:
    csrf = sign_in(client, factory, "dora")
    data = {"modelId": "tiny-test", "layer": "0-res-test", "index": "3", "csrf_token": csrf}
    resp = client.post(
        "/explanation/add", data={**data, "explanation": "  words about cats  "}, headers=HTML, follow_redirects=False
    )
    assert resp.status_code == 303 and "#explanation-" in resp.headers["location"]
    assert "words about cats" in _pane(client.get(PAGE, headers=HTML).text)
    with factory() as session:
        exp = session.scalar(select(Explanation))
        assert exp is not None and exp.description == "words about cats" and exp.author_id is not None
        assert exp.embedding is not None  # searchable at once
    empty = client.post("/explanation/add", data={**data, "explanation": "   "}, headers={"accept": "application/json"})
    assert empty.status_code == 422 and empty.json()["field"] == "explanation"
    assert count(factory, Explanation) == 1
