"""The live-inference pages (feature-page test box, /search, /search-topk-by-token, /{model}/steer, /steer/{id})
on SQLite and Postgres, with the tiny model and SAEs the inference tests build: status, content, JSON twins, and a
clear message for bad input or a model whose weights are missing."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from factories import make_feature
from inference_helpers import MODEL_ID, PLAIN_MODEL_ID, TinyInference, register
from inference_helpers import tiny_inf as tiny_inf  # noqa: F401  (session fixture)
from ingest_helpers import no_embedding_on_import  # noqa: F401  (autouse fixture)

from interpedia.db import transaction
from interpedia.db.tables import Explanation, Feature, Model, Source, SteerOutput
from interpedia.ingest import import_path

HTML = {"accept": "text/html,application/xhtml+xml"}
JSON = {"accept": "application/json"}
SOURCE = "1-res-standard"
TEXT = "the king spoke unto his people"


def write_features(path: Path, model_id: str, n: int = 96) -> Path:
    """Dashboards for features 0..n-1 of ``model_id``/1-res-standard, so results link to real features."""
    path.mkdir(parents=True)
    doc = {
        "model_id": model_id,
        "layer": 1,
        "sae_set": "res-standard",
        "sae_id_suffix": None,
        "features": [make_feature(i) for i in range(n)],
    }
    (path / "batch-0.json").write_text(json.dumps(doc))
    return path


def add_explanations(factory: Any, model_id: str, prefix: str = "explained") -> None:
    """One explanation per imported feature of the source: ``"<prefix> <index>"``."""
    with transaction(factory) as session:
        rows = session.query(Feature).join(Source).filter(Source.model_id == model_id, Source.name == SOURCE).all()
        for f in rows:
            session.add(Explanation(feature_id=f.id, description=f"{prefix} {f.index}", type_name="manual"))


@pytest.fixture
def live(factory: Any, tiny_inf: TinyInference, tmp_path: Path) -> TinyInference:  # noqa: F811
    """The tiny models registered for inference, with dashboards and explanations for 1-res-standard."""
    register(factory, tiny_inf)
    import_path(write_features(tmp_path / "dash", MODEL_ID), factory)
    add_explanations(factory, MODEL_ID)
    return tiny_inf


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "form has no CSRF token"
    return match.group(1)


# --- the feature page's test box --------------------------------------------------------------------


def test_feature_page_has_a_live_test_box(client: Any, live: TinyInference) -> None:
    page = client.get(f"/{MODEL_ID}/{SOURCE}/12", headers=HTML)
    assert page.status_code == 200
    html = page.text
    assert 'id="test-text"' in html and 'data-available="true"' in html and "/static/inference.js" in html
    assert 'id="test-unavailable"' not in html
    assert '"inferenceEnabled": true' in html  # page data for the scripts
    assert f'href="/{MODEL_ID}/steer?source={SOURCE}&amp;index=12&amp;strength=10"' in html  # steer with it
    assert f'href="/search?modelId={MODEL_ID}&amp;sourceSet=res-standard"' in html
    # What the box's script posts, and what it shows.
    r = client.post(
        "/api/activation/new",
        json={"feature": {"modelId": MODEL_ID, "source": SOURCE, "index": "12"}, "customText": "the dog ran"},
    )
    assert r.status_code == 200 and len(r.json()["tokens"]) == len(r.json()["values"])


def test_feature_page_box_is_disabled_with_a_reason(client: Any, live: TinyInference, factory: Any) -> None:
    with transaction(factory) as session:
        session.get(Model, MODEL_ID).tlens_id = "/nowhere/tiny-model"
    page = client.get(f"/{MODEL_ID}/{SOURCE}/12", headers=HTML)
    assert page.status_code == 200
    assert 'data-available="false"' in page.text and 'id="test-unavailable"' in page.text
    assert "were not found on this server" in page.text and "/nowhere" not in page.text  # no server paths
    assert re.search(r'<button type="submit" id="test-submit"\s+disabled>', page.text)
    with transaction(factory) as session:
        model = session.get(Model, MODEL_ID)
        model.tlens_id = str(live.model)
        model.inference_enabled = False
    page = client.get(f"/{MODEL_ID}/{SOURCE}/12", headers=HTML)
    assert page.status_code == 200 and "switched off for model tiny-inf" in page.text


def test_feature_page_of_an_imported_model_without_weights(client: Any, factory: Any, tmp_path: Path) -> None:
    import_path(write_features(tmp_path / "dash", "tiny-noweights", n=3), factory)
    page = client.get(f"/tiny-noweights/{SOURCE}/1", headers=HTML)
    assert page.status_code == 200 and 'data-available="false"' in page.text
    assert "Live inference is switched off" in page.text


# --- /search --------------------------------------------------------------------------------------------


def test_search_form_without_a_query(client: Any, live: TinyInference) -> None:
    page = client.get("/search", headers=HTML)
    assert page.status_code == 200
    assert 'id="search-form"' in page.text and f'value="{MODEL_ID}"' in page.text and "res-standard" in page.text
    twin = client.get("/search.json").json()
    assert twin["page"] == "search" and twin["result"] is None
    assert {m["id"] for m in twin["models"]} >= {MODEL_ID, PLAIN_MODEL_ID}


def test_search_shows_features_with_explanations_and_sorts(client: Any, live: TinyInference) -> None:
    params = {"modelId": MODEL_ID, "sourceSet": "res-standard", "q": TEXT, "numResults": "10"}
    page = client.get("/search", params=params, headers=HTML)
    assert page.status_code == 200, page.text
    rows = re.findall(r'<td class="feat"><a href="/tiny-inf/([^/]+)/(\d+)">', page.text)
    assert 0 < len(rows) <= 10 and {layer for layer, _ in rows} <= {"0-res-standard", SOURCE}
    assert re.search(r"explained \d+", page.text)  # explanations of the features that exist here
    assert 'class="t p' in page.text and "data-v=" in page.text  # coloured token strips with hover values
    twin = client.get("/search.json", params=params).json()
    api = client.post(
        "/api/search-all",
        json={"modelId": MODEL_ID, "sourceSet": "res-standard", "text": TEXT, "numResults": 10, "densityThreshold": -1},
    ).json()
    assert [(r["layer"], r["index"]) for r in twin["result"]["result"]] == [
        (r["layer"], r["index"]) for r in api["result"]
    ]
    # Sorting by chosen token positions: the token links toggle sortIndexes, results follow the sum there.
    assert 'href="/search?' in page.text and "sortIndexes=3" in page.text
    sorted_twin = client.get("/search.json", params={**params, "sortIndexes": "3,4"}).json()
    sums = [r["values"][3] + r["values"][4] for r in sorted_twin["result"]["result"]]
    assert sums == sorted(sums, reverse=True) and sorted_twin["form"]["sortIndexes"] == [3, 4]
    sorted_page = client.get("/search", params={**params, "sortIndexes": "3,4"}, headers=HTML)
    assert "Sorted by the sum of activations at positions 3, 4" in sorted_page.text
    assert 'class="sort-tok chosen"' in sorted_page.text


def test_search_ignore_bos_switch(client: Any, live: TinyInference) -> None:
    params = {"modelId": MODEL_ID, "sourceSet": "res-standard", "q": TEXT, "numResults": "20"}
    on = client.get("/search.json", params=params).json()
    off = client.get("/search.json", params={**params, "ignoreBos": "false"}).json()
    assert on["form"]["ignoreBos"] is True and off["form"]["ignoreBos"] is False
    assert all(r["values"][0] == 0 for r in on["result"]["result"])  # BOS ignored: nothing fires there
    assert any(r["maxValueIndex"] == 0 for r in off["result"]["result"])  # without the switch BOS dominates
    checked = client.get("/search.json", params={**params, "ignoreBos": ["false", "true"]}).json()
    assert checked["form"]["ignoreBos"] is True  # the checkbox after its hidden "false"


@pytest.mark.parametrize(
    ("params", "status", "words"),
    [
        ({"sourceSet": "res-standard", "modelId": MODEL_ID, "sortIndexes": "1,x"}, 422, "sortIndexes must be token"),
        ({"sourceSet": "res-standard", "modelId": MODEL_ID, "sortIndexes": "99"}, 422, "out of range for a prompt"),
        ({"sourceSet": "res-nothing", "modelId": MODEL_ID}, 404, "is not a source set of model"),
        ({"sourceSet": "res-standard", "modelId": "no-such-model"}, 404, "no-such-model&#39; not found"),
        ({"sourceSet": "res-standard", "modelId": MODEL_ID, "numResults": "500"}, 422, "numResults must be between"),
        ({"sourceSet": "res-standard", "modelId": MODEL_ID, "ignoreBos": "maybe"}, 422, "ignoreBos must be true"),
        ({"sourceSet": "res-standard", "modelId": MODEL_ID, "densityThreshold": "7"}, 422, "densityThreshold"),
        ({"sourceSet": "res-standard", "modelId": MODEL_ID, "q": "word " * 900}, 422, "longer than"),
    ],
)
def test_search_bad_input_is_a_clear_message(
    client: Any, live: TinyInference, params: dict[str, str], status: int, words: str
) -> None:
    params = {"q": TEXT, **params}
    page = client.get("/search", params=params, headers=HTML)
    assert page.status_code == status and 'id="form-error"' in page.text and words in page.text
    assert 'id="search-form"' in page.text  # the form is still there to fix the input
    twin = client.get("/search.json", params=params)
    assert twin.status_code == status and words.replace("&#39;", "'") in twin.json()["message"]
    assert set(twin.json()) == {"error", "message", "status", "field"}


def test_search_model_without_weights_says_why(client: Any, live: TinyInference, factory: Any) -> None:
    with transaction(factory) as session:
        session.get(Model, MODEL_ID).tlens_id = "/nowhere/tiny-model"
    params = {"modelId": MODEL_ID, "sourceSet": "res-standard", "q": TEXT}
    page = client.get("/search", params=params, headers=HTML)
    assert page.status_code == 503 and "were not found on this server" in page.text and "/nowhere" not in page.text


# --- /search-topk-by-token -------------------------------------------------------------------------------


def test_topk_by_token_page(client: Any, live: TinyInference) -> None:
    params = {"modelId": MODEL_ID, "source": SOURCE, "q": "the cat sat on a mat", "numResults": "3"}
    page = client.get("/search-topk-by-token", params=params, headers=HTML)
    assert page.status_code == 200, page.text
    columns = re.findall(r'<div class="topk-col[^"]*" data-position="(\d+)">', page.text)
    assert columns and columns[0] == "1"  # BOS ignored by default
    assert re.search(r'href="/tiny-inf/1-res-standard/\d+"', page.text) and re.search(r"explained \d+", page.text)
    twin = client.get("/search-topk-by-token.json", params=params).json()
    assert len(twin["result"]["results"]) == len(columns)
    assert all(len(c["topFeatures"]) <= 3 for c in twin["result"]["results"])
    with_bos = client.get("/search-topk-by-token.json", params={**params, "ignoreBos": "false"}).json()
    assert with_bos["result"]["results"][0]["position"] == 0


@pytest.mark.parametrize(
    ("params", "status", "words"),
    [
        ({"source": "9-res-none"}, 404, "9-res-none"),
        ({"source": SOURCE, "numResults": "50"}, 422, "numResults must be between 1 and 20"),
        ({"source": ""}, 422, "choose a source"),
    ],
)
def test_topk_bad_input(client: Any, live: TinyInference, params: dict[str, str], status: int, words: str) -> None:
    params = {"modelId": MODEL_ID, "q": "a cat", **params}
    page = client.get("/search-topk-by-token", params=params, headers=HTML)
    assert page.status_code == status and words in page.text and 'id="topk-form"' in page.text
    assert client.get("/search-topk-by-token.json", params=params).json()["status"] == status


# --- steering -------------------------------------------------------------------------------------------------


def _steer_form(csrf: str, **overrides: Any) -> dict[str, Any]:
    form = {
        "csrf_token": csrf,
        "mode": "completion",
        "prompt": "the cat sat",
        "source": [SOURCE, SOURCE],
        "index": ["5", ""],
        "strength": ["40", ""],
        "temperature": "0.5",
        "n_tokens": "8",
        "seed": "16",
        "strength_multiplier": "1",
        "freq_penalty": "0",
        "steer_method": "SIMPLE_ADDITIVE",
    }
    form.update(overrides)
    return form


def test_steer_page_runs_and_share_link_reloads(client: Any, live: TinyInference, factory: Any) -> None:
    assert client.get("/steer", follow_redirects=False).headers["location"] in (
        f"/{MODEL_ID}/steer",
        f"/{PLAIN_MODEL_ID}/steer",
    )
    page = client.get(f"/{MODEL_ID}/steer", params={"source": SOURCE, "index": "5", "strength": "40"}, headers=HTML)
    assert page.status_code == 200
    for method in ("SIMPLE_ADDITIVE", "ORTHOGONAL_DECOMP", "PROJECTION_CAP"):
        assert f'<option value="{method}"' in page.text
    assert 'value="chat"' in page.text and 'id="chat-note"' not in page.text  # tiny-inf has a chat template
    assert 'name="index" type="number" min="0" step="1" value="5"' in page.text  # prefilled from the query
    done = client.post(f"/{MODEL_ID}/steer", data=_steer_form(_csrf(page.text)), follow_redirects=False)
    assert done.status_code == 303, done.text
    share = done.headers["location"]
    assert share.startswith("/steer/")
    shown = client.get(share, headers=HTML)
    assert shown.status_code == 200
    assert 'id="out-default"' in shown.text and 'id="out-steered"' in shown.text and f'href="{share}"' in shown.text
    twin = client.get(share + ".json").json()
    assert twin["result"]["DEFAULT"] != twin["result"]["STEERED"]
    assert twin["features"][0]["strength"] == 40 and twin["form"]["n_tokens"] == 8
    with factory() as session:
        saved = session.get(SteerOutput, share.rsplit("/", 1)[1])
        assert saved is not None and saved.type == "STEERED" and saved.steer_method == "SIMPLE_ADDITIVE"
    # The same settings answer from the cache: the same share id.
    again = client.post(f"/{MODEL_ID}/steer", data=_steer_form(_csrf(page.text)), follow_redirects=False)
    assert again.headers["location"] == share
    other = client.post(
        f"/{MODEL_ID}/steer",
        follow_redirects=False,
        data=_steer_form(_csrf(page.text), steer_method="ORTHOGONAL_DECOMP", strength_multiplier="2"),
    )
    assert other.status_code == 303 and other.headers["location"] != share


def test_steer_chat_mode_and_models_without_a_template(client: Any, live: TinyInference) -> None:
    page = client.get(f"/{MODEL_ID}/steer", headers=HTML)
    done = client.post(
        f"/{MODEL_ID}/steer",
        follow_redirects=False,
        data=_steer_form(_csrf(page.text), mode="chat", prompt="hello there", n_tokens="5"),
    )
    assert done.status_code == 303, done.text
    shown = client.get(done.headers["location"], headers=HTML)
    assert 'class="chat-msg assistant"' in shown.text and "hello there" in shown.text
    plain = client.get(f"/{PLAIN_MODEL_ID}/steer", headers=HTML)
    assert plain.status_code == 200 and 'id="chat-note"' in plain.text and 'value="chat"' not in plain.text
    refused = client.post(f"/{PLAIN_MODEL_ID}/steer", data=_steer_form(_csrf(plain.text), mode="chat"))
    assert refused.status_code == 422 and "has no chat template" in refused.text


@pytest.mark.parametrize(
    ("overrides", "status", "words"),
    [
        ({"prompt": "  "}, 422, "type a prompt"),
        ({"index": ["", ""]}, 422, "pick at least one feature"),
        ({"index": ["x5", ""]}, 422, "the index must be a whole number"),
        ({"strength": ["", ""]}, 422, "give a strength"),
        ({"strength": ["nan", ""]}, 422, "strength"),
        ({"index": ["100000", ""]}, 422, "out of range"),
        ({"n_tokens": "100000"}, 422, "n_tokens must be at most"),
        ({"temperature": "hot"}, 422, "temperature must be a number"),
        ({"steer_method": "MAGIC"}, 422, "steer_method"),
        ({"source": ["9-res-none", ""]}, 404, "9-res-none"),
    ],
)
def test_steer_bad_input_is_a_clear_message(
    client: Any, live: TinyInference, overrides: dict[str, Any], status: int, words: str
) -> None:
    page = client.get(f"/{MODEL_ID}/steer", headers=HTML)
    r = client.post(f"/{MODEL_ID}/steer", data=_steer_form(_csrf(page.text), **overrides), headers=HTML)
    assert r.status_code == status and words in r.text and 'id="form-error"' in r.text
    assert 'id="steer-form"' in r.text
    as_json = client.post(f"/{MODEL_ID}/steer", data=_steer_form(_csrf(page.text), **overrides), headers=JSON)
    assert as_json.status_code == status and words in as_json.json()["message"]


def test_steer_needs_the_csrf_token_and_known_ids(client: Any, live: TinyInference) -> None:
    client.get(f"/{MODEL_ID}/steer", headers=HTML)
    assert client.post(f"/{MODEL_ID}/steer", data=_steer_form("forged")).status_code == 403
    assert client.get("/steer/no-such-id", headers=HTML).status_code == 404
    assert client.get("/steer/no-such-id.json").json()["status"] == 404
    assert client.get("/no-such-model/steer", headers=HTML).status_code == 404


def test_steer_page_of_a_model_without_weights(client: Any, live: TinyInference, factory: Any) -> None:
    with transaction(factory) as session:
        session.get(Model, MODEL_ID).inference_enabled = False
    page = client.get(f"/{MODEL_ID}/steer", headers=HTML)
    assert page.status_code == 200 and 'id="steer-unavailable"' in page.text and "switched off" in page.text
    assert re.search(r'<fieldset class="plain"\s+disabled>', page.text)
    r = client.post(f"/{MODEL_ID}/steer", data=_steer_form(_csrf(page.text)))
    assert r.status_code == 503 and "switched off" in r.text


# --- the demo serves with inference on --------------------------------------------------------------------------


def test_demo_switches_inference_on_for_generated_sources(
    client: Any, live: TinyInference, factory: Any, settings: Any
) -> None:
    from interpedia.db.tables import GenerateRunRow
    from interpedia.demo.serving import enable_inference, serving_settings

    with transaction(factory) as session:
        session.get(Model, MODEL_ID).inference_enabled = False
        src = session.query(Source).filter(Source.model_id == MODEL_ID, Source.name == SOURCE).one()
        src.inference_enabled = False
        other = session.query(Source).filter(Source.model_id == MODEL_ID, Source.name == "1-res-topk").one()
        other.inference_enabled = False
        session.add(
            GenerateRunRow(
                id="run-1",
                source_id=src.id,
                model_id=MODEL_ID,
                source_name=SOURCE,
                run={"config": {"model": str(live.model), "sae": str(live.saes["standard"])}},
            )
        )
    assert 'data-available="false"' in client.get(f"/{MODEL_ID}/{SOURCE}/12", headers=HTML).text
    assert enable_inference(factory) == [f"{MODEL_ID}/{SOURCE}"]
    assert 'data-available="true"' in client.get(f"/{MODEL_ID}/{SOURCE}/12", headers=HTML).text
    with factory() as session:  # a source without a generate run here stays as it was
        assert not session.query(Source).filter(Source.name == "1-res-topk").one().inference_enabled
    threads = serving_settings(settings).inference_torch_threads
    assert 1 <= threads <= 4 and settings.inference_torch_threads == 0
    assert serving_settings(settings.model_copy(update={"inference_torch_threads": 7})).inference_torch_threads == 7


def test_demo_warms_inference_in_the_background(
    app: Any, live: TinyInference, caplog: pytest.LogCaptureFixture
) -> None:
    from interpedia.demo.serving import warm_inference

    with caplog.at_level("INFO", logger="interpedia.demo.serving"):
        warm_inference(app, [f"{MODEL_ID}/{SOURCE}"]).join(timeout=120)
    assert "live inference warm in" in caplog.text
    assert app.state.inference.registry.warm()["sources"] == [f"{MODEL_ID}/{SOURCE}"]  # before any request
    with caplog.at_level("INFO", logger="interpedia.demo.serving"):
        warm_inference(app, [f"{MODEL_ID}/9-res-none"]).join(timeout=120)
    assert "live inference could not warm up" in caplog.text  # logged, never raised into the server
