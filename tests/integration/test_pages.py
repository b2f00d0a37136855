"""The web pages and their JSON twins, against real SQLite and Postgres databases filled by the importers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from factories import make_feature
from ingest_helpers import no_embedding_on_import, write_np_export  # noqa: F401  (autouse fixture)

from interpedia.db import transaction
from interpedia.db.tables import Eval, EvalType, Explanation, ExplanationScore, Feature, Source
from interpedia.ingest import import_path

HTML = {"accept": "text/html,application/xhtml+xml"}
JSON = {"accept": "application/json"}
XSS_TOKENS = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>']


def _write_dashboard(path: Path) -> Path:
    """tiny-test/0-res-test: 6 live features (one with hostile tokens) and a dead one (index 6)."""
    path.mkdir(parents=True)
    feats = [make_feature(i) for i in range(6)] + [make_feature(6, activations=[], frac_nonzero=0.0)]
    acts = feats[2]["activations"]
    acts[0]["tokens"][0], acts[0]["tokens"][1] = XSS_TOKENS
    doc = {"model_id": "tiny-test", "layer": 0, "sae_set": "res-test", "sae_id_suffix": None, "features": feats}
    (path / "batch-0.json").write_text(json.dumps(doc))
    return path


@pytest.fixture
def site(factory: Any, tmp_path: Path) -> dict[str, Any]:
    """Both import formats: a SAEDashboard output and a Neuronpedia export (explanations, cosine neighbours)."""
    import_path(_write_dashboard(tmp_path / "dash"), factory)
    import_path(write_np_export(tmp_path / "np"), factory)
    with transaction(factory) as session:
        exp = session.query(Explanation).join(Feature).filter(Feature.index == 0).first()
        assert exp is not None
        session.add(
            ExplanationScore(
                explanation_id=exp.id,
                value=0.8125,
                explanation_score_type_name="recall_alt",
                explanation_score_model_name="gpt-4o-mini",
            )
        )
        exp.description = "cats <script>alert('x')</script> sitting"
        src = session.query(Source).filter(Source.name == "3-res-np").one()
        src.saelens_config = {"d_in": 64, "d_sae": 256, "architecture": "topk", "hook_name": "blocks.3.hook_resid_pre"}
        session.add(EvalType(name="core", display_name="Core metrics"))
        session.flush()
        session.add(Eval(type_name="core", source_id=src.id, output={"l0": 31.5, "explained_variance": 0.87}))
    return {"explanation_id": exp.id}


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "form has no CSRF token"
    return match.group(1)


def test_home_lists_models_source_sets_and_counts(client: Any, site: dict[str, Any]) -> None:
    resp = client.get("/", headers=HTML)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    assert "+ Add New Model" in resp.text and "+ Add New SAEs" in resp.text
    assert 'href="/tiny-test/res-test"' in resp.text and 'href="/np-model/res-np"' in resp.text
    for twin in (client.get("/index.json"), client.get("/", headers=JSON)):
        assert twin.status_code == 200 and twin.headers["content-type"] == "application/json"
        models = {m["id"]: m for m in twin.json()["models"]}
        assert models["tiny-test"]["featureCount"] == 7
        assert models["np-model"]["sourceSets"][0]["sources"][0]["featureCount"] == 4


def test_model_page_and_twin(client: Any, site: dict[str, Any]) -> None:
    resp = client.get("/tiny-test", headers=HTML)
    assert resp.status_code == 200
    assert 'action="/jump"' in resp.text and '<option value="0-res-test">' in resp.text
    doc = client.get("/tiny-test.json").json()
    assert doc["page"] == "model" and doc["model"]["sourceSets"][0]["name"] == "res-test"
    jump = client.get("/jump?model=tiny-test&source=0-res-test&index=3", follow_redirects=False)
    assert jump.status_code == 302 and jump.headers["location"] == "/tiny-test/0-res-test/3"


def test_source_set_and_source_pages_browse_features(client: Any, site: dict[str, Any]) -> None:
    resp = client.get("/np-model/res-np", headers=HTML)
    assert resp.status_code == 200 and "cats, sitting (1)" in resp.text
    doc = client.get("/np-model/res-np.json").json()
    assert doc["page"] == "sourceSet" and doc["browser"]["source"] == "3-res-np"
    assert [f["index"] for f in doc["browser"]["features"]] == ["0", "1", "2", "3"]

    src = client.get("/np-model/3-res-np", headers=HTML)
    assert src.status_code == 200
    assert "SAELens config" in src.text and "topk" in src.text
    assert "Core metrics" in src.text and "explained_variance" in src.text
    page = client.get("/np-model/3-res-np", params={"offset": 1, "limit": 2}, headers=JSON).json()
    assert page["page"] == "source" and page["source"]["featureCount"] == 4
    assert page["browser"]["total"] == 4 and [f["index"] for f in page["browser"]["features"]] == ["1", "2"]
    assert page["browser"]["features"][0]["explanation"] == "cats, sitting (1)"
    assert page["evals"][0]["output"]["l0"] == 31.5
    assert 'rel="next"' in client.get("/np-model/3-res-np?limit=2", headers=HTML).text


def test_feature_dashboard_shows_everything_the_data_holds(client: Any, site: dict[str, Any]) -> None:
    resp = client.get("/np-model/3-res-np/0", headers=HTML)
    assert resp.status_code == 200
    html = resp.text
    assert "cats &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; sitting" in html  # explanation, escaped
    assert "recall_alt" in html and "0.812" in html  # its score
    assert "Top Activations" in html and "Interval 0.25–1.5 (Contains 0.042%)" in html
    assert 'data-v="2.5"' in html and 'data-v="-0.12345"' in html  # values on hover
    assert "Negative logits" in html and "Positive logits" in html and "0.91" in html
    assert "Activation density <strong>0.123%</strong>" in html
    assert html.count('<svg class="hist"') == 2
    assert 'href="/np-model/3-res-np/1"' in html  # cosine neighbour and next
    assert 'id="next-feature"' in html and 'id="prev-feature"' not in html
    assert 'id="test-text"' in html and 'data-available="false"' in html  # no weights here: box disabled
    assert 'id="dead-notice"' not in html


def test_feature_json_twin_is_the_api_document_plus_navigation(client: Any, site: dict[str, Any]) -> None:
    api = client.get("/api/feature/tiny-test/0-res-test/3").json()
    for twin in (client.get("/tiny-test/0-res-test/3.json"), client.get("/tiny-test/0-res-test/3", headers=JSON)):
        assert twin.status_code == 200
        doc = twin.json()
        assert doc["page"] == "feature" and doc["feature"] == api
        assert doc["navigation"]["prev"] == "/tiny-test/0-res-test/2"
        assert doc["navigation"]["next"] == "/tiny-test/0-res-test/4"


def test_dead_feature_says_so(client: Any, site: dict[str, Any]) -> None:
    html = client.get("/tiny-test/0-res-test/6", headers=HTML).text
    assert "This feature has no known activations" in html and 'id="dashboard" hidden' in html
    assert client.get("/tiny-test/0-res-test/6.json").json()["feature"]["maxActApprox"] == 0


def test_untrusted_tokens_are_escaped(client: Any, site: dict[str, Any]) -> None:
    resp = client.get("/tiny-test/0-res-test/2", headers=HTML)
    html = resp.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "script-src 'self'" in resp.headers["content-security-policy"]
    # No inline script: only external files and the JSON data block.
    for tag in re.findall(r"<script[^>]*>", html):
        assert 'src="/static/' in tag or tag == '<script type="application/json" id="page-data">', tag


def test_random_feature(client: Any, site: dict[str, Any]) -> None:
    resp = client.get("/random/tiny-test", follow_redirects=False)
    assert resp.status_code == 302 and resp.headers["location"].startswith("/tiny-test/0-res-test/")
    doc = client.get("/random/np-model.json?source=3-res-np").json()
    assert doc["page"] == "random" and doc["url"] == f"/np-model/3-res-np/{doc['index']}"


def test_errors_are_pages_for_browsers_and_json_for_twins(client: Any, site: dict[str, Any]) -> None:
    page = client.get("/tiny-test/0-res-test/99", headers=HTML)
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "feature tiny-test/0-res-test/99 not found" in page.text
    assert client.get("/nope", headers=HTML).status_code == 404
    for resp in (
        client.get("/tiny-test/0-res-test/99.json"),
        client.get("/nope/x", headers=JSON),
        client.get("/api/nope", headers=HTML),
    ):
        assert resp.status_code == 404
        assert set(resp.json()) == {"error", "message", "status", "field"}


def test_page_routes_do_not_shadow_the_rest_of_the_app(client: Any, site: dict[str, Any]) -> None:
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/openapi.json").json()["info"]["title"] == "interpedia"
    assert client.get("/docs").status_code == 200
    assert "javascript" in client.get("/static/app.js").headers["content-type"]
    assert client.get("/api/feature/tiny-test/0-res-test/3").json()["index"] == "3"
    assert client.get("/v1/anything", headers=HTML).headers["content-type"] == "application/json"
    assert not any(p.startswith("/{") for p in client.get("/openapi.json").json()["paths"])


def test_forms_need_sign_in_then_create_model_and_sae_set(client: Any, site: dict[str, Any], api_key: str) -> None:
    resp = client.get("/model/new", headers=HTML, follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == "/signin?next=%2Fmodel%2Fnew"

    form = client.get("/signin?next=/model/new", headers=HTML)
    bad = client.post("/signin", data={"api_key": "sk-np-nope", "csrf_token": _csrf(form.text)}, headers=HTML)
    assert bad.status_code == 401 and 'id="err-api_key"' in bad.text
    resp = client.post(
        "/signin",
        data={"api_key": api_key, "csrf_token": _csrf(form.text), "next": "/model/new"},
        headers=HTML,
        follow_redirects=False,
    )
    assert resp.status_code == 303 and resp.headers["location"] == "/model/new"

    form = client.get("/model/new", headers=HTML)
    assert form.status_code == 200 and 'id="signed-in-as">tester<' in form.text
    token = _csrf(form.text)
    assert client.post("/model/new", data={"id": "my-model", "layers": "2"}, headers=HTML).status_code == 403
    errors = client.post("/model/new", data={"id": "tiny-test", "layers": "x", "csrf_token": token}, headers=HTML)
    assert errors.status_code == 422
    assert re.search(r'id="f-layers"[^>]*aria-describedby="err-layers"', errors.text)
    assert 'id="err-layers"' in errors.text and 'value="tiny-test"' in errors.text
    taken = client.post("/model/new", data={"id": "tiny-test", "layers": "2", "csrf_token": token}, headers=HTML)
    assert taken.status_code == 409 and 'id="err-id"' in taken.text and "already exists" in taken.text
    made = client.post(
        "/model/new",
        data={"id": "my-model", "displayName": "My <b>Model</b>", "owner": "Me", "layers": "2", "csrf_token": token},
        headers=HTML,
        follow_redirects=False,
    )
    assert made.status_code == 303 and made.headers["location"] == "/my-model"
    assert "My &lt;b&gt;Model&lt;/b&gt;" in client.get("/my-model", headers=HTML).text

    form = client.get("/sae/new?model=my-model", headers=HTML)
    assert '<option value="my-model" selected>' in form.text
    missing = client.post("/sae/new", data={"modelId": "my-model", "csrf_token": _csrf(form.text)}, headers=HTML)
    assert missing.status_code == 422 and 'id="err-name"' in missing.text
    made = client.post(
        "/sae/new",
        data={
            "modelId": "my-model",
            "name": "res-me",
            "description": "Mine",
            "type": "Residual Stream",
            "creatorName": "Me",
            "csrf_token": _csrf(form.text),
        },
        headers=HTML,
        follow_redirects=False,
    )
    assert made.status_code == 303 and made.headers["location"] == "/my-model/res-me"
    doc = client.get("/my-model/res-me.json").json()
    assert [s["id"] for s in doc["sourceSet"]["sources"]] == ["0-res-me", "1-res-me"]
    assert doc["sourceSet"]["type"] == "Residual Stream" and doc["sourceSet"]["creatorName"] == "Me"

    out = client.post(
        "/signout", data={"csrf_token": _csrf(client.get("/", headers=HTML).text)}, headers=HTML, follow_redirects=False
    )
    assert out.status_code == 303
    assert client.get("/model/new", headers=HTML, follow_redirects=False).status_code == 303


def test_forms_take_an_api_key_header_and_answer_json(client: Any, site: dict[str, Any], api_key: str) -> None:
    headers = {"x-api-key": api_key, **JSON}
    resp = client.post("/model/new", data={"id": "keyed", "layers": "1"}, headers=headers)
    assert resp.status_code == 201 and resp.json()["url"] == "/keyed"
    bad = client.post("/sae/new", data={"modelId": "keyed", "name": "bad__name"}, headers=headers)
    assert bad.status_code == 422 and bad.json()["field"] == "name"
    assert client.post("/model/new", data={"id": "x2", "layers": "1"}, headers=JSON).status_code == 401
    assert client.get("/sae/new.json", headers={"x-api-key": api_key}).json()["models"]
    assert client.get("/signin.json", headers={"x-api-key": api_key}).json()["user"] == {"name": "tester"}
    # Sign-in only ever redirects within the site.
    for target in ("//evil.example", "/\t/evil.example", "https://evil.example", "/\\evil.example"):
        signed = client.post("/signin", data={"api_key": api_key, "next": target}, headers=headers)
        assert signed.status_code == 200 and signed.json()["next"] == "/"
