"""The live-inference pages in chromium, on the tiny model and SAEs the inference tests build: typing text in
the feature page's box colours its tokens, /search and /search-topk-by-token answer, a steer shows both columns
and its share link reloads them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_helpers import artifact, write_batch
from factories import make_feature
from inference_helpers import MODEL_ID, TinyInference, register
from inference_helpers import tiny_inf as tiny_inf  # noqa: F401  (session fixture)

from interpedia.db import transaction
from interpedia.db.tables import Explanation, Feature, Model, Source
from interpedia.ingest import import_path

pytestmark = pytest.mark.e2e

SOURCE = "1-res-standard"
TEXT = "the king spoke unto his people"
BINS = [0.25 * i + 0.125 for i in range(24)]


@pytest.fixture
def live(factory: Any, tiny_inf: TinyInference, tmp_path: Path) -> TinyInference:  # noqa: F811
    """tiny-inf registered for inference; dashboards (with histograms) and explanations for 1-res-standard."""
    register(factory, tiny_inf)
    feats = [
        make_feature(
            i,
            freq_hist_data_bar_values=BINS,
            freq_hist_data_bar_heights=[max(1, 400 - 16 * n) for n in range(len(BINS))],
        )
        for i in range(96)
    ]
    import_path(write_batch(tmp_path / "dash", feats, model_id=MODEL_ID, sae_set="res-standard", layer=1), factory)
    with transaction(factory) as session:
        for f in session.query(Feature).join(Source).filter(Source.name == SOURCE):
            session.add(Explanation(feature_id=f.id, description=f"explained {f.index}", type_name="manual"))
    return tiny_inf


def _firing_feature(base: str) -> tuple[str, int, float]:
    """A feature of 1-res-standard that fires on TEXT (asked through the API the page itself uses)."""
    r = httpx.post(
        f"{base}/api/search-all",
        json={
            "modelId": MODEL_ID,
            "sourceSet": "res-standard",
            "text": TEXT,
            "selectedLayers": [SOURCE],
            "numResults": 1,
        },
        timeout=60,
    )
    top = r.json()["result"][0]
    return top["layer"], int(top["index"]), float(top["maxValue"])


def test_feature_page_test_text_colours_tokens(page: Any, live_server: str, live: TinyInference) -> None:
    layer, index, expected = _firing_feature(live_server)
    page.goto(f"{live_server}/{MODEL_ID}/{layer}/{index}")
    assert page.locator("#test-unavailable").count() == 0
    page.fill("#test-input", TEXT)
    page.click("#test-submit")
    strip = page.locator("#test-strip")
    strip.locator(".t").first.wait_for()
    assert page.locator("#test-result").is_visible()
    assert strip.text_content() == TEXT  # the tokens read as the text typed (BOS is not shown for a latent)
    coloured = strip.locator(".t[data-v]")
    assert coloured.count() > 0
    assert re.fullmatch(r"t [pn]\d+( m)?", coloured.first.get_attribute("class") or "")
    assert float(page.locator("#test-max").inner_text()) == pytest.approx(expected, abs=1e-3)
    # Hover: the shared tooltip shows the live value.
    coloured.first.hover()
    tip = page.locator("#tip")
    tip.wait_for(state="visible")
    assert tip.locator(".tip-val").inner_text() == coloured.first.get_attribute("data-v")
    # The max value is marked on the activation histogram.
    marker = page.locator("#act-hist svg .test-marker line")
    assert marker.count() == 1
    assert marker.locator("title").text_content().startswith("test text max: ")
    x = float(marker.get_attribute("x1") or "nan")
    assert 40 <= x <= 392  # inside the plot area of the server-drawn SVG
    page.screenshot(path=str(artifact("feature-test-text.png")), full_page=True)
    # An empty text is refused in the page, without a request.
    page.fill("#test-input", "   ")
    page.click("#test-submit")
    assert page.locator("#test-error").inner_text() == "Type some text first."


def test_feature_page_box_disabled_when_weights_are_missing(
    page: Any, live_server: str, live: TinyInference, factory: Any
) -> None:
    with transaction(factory) as session:
        session.get(Model, MODEL_ID).tlens_id = "/nowhere/model"
    page.goto(f"{live_server}/{MODEL_ID}/{SOURCE}/3")
    assert page.locator("#test-input").is_disabled() and page.locator("#test-submit").is_disabled()
    assert "were not found on this server" in page.locator("#test-unavailable").inner_text()
    assert page.locator("#activations").is_visible()  # the rest of the page is there


def test_search_page_runs_and_sorts(page: Any, live_server: str, live: TinyInference) -> None:
    page.goto(f"{live_server}/search")
    page.select_option("#f-modelId", MODEL_ID)
    page.select_option("#f-sourceSet", "res-standard")
    page.fill("#f-q", TEXT)
    page.click("#search-submit")
    page.wait_for_url(re.compile(r"/search\?"))
    rows = page.locator("#search-results .result-row")
    assert rows.count() > 0
    explained = page.locator("#search-results .result-row", has_text=re.compile(r"explained \d+"))
    assert explained.count() > 0  # features with a dashboard here show their explanation (others a dash)
    assert rows.first.locator(".strip .t[data-v]").count() > 0
    page.screenshot(path=str(artifact("search.png")), full_page=True)
    # Click a token: results are sorted by the activations at that position.
    page.locator("#sort-tokens .sort-tok[data-position='3']").click()
    page.wait_for_url(re.compile(r"sortIndexes=3"))
    assert page.locator("#sort-tokens .sort-tok.chosen").get_attribute("data-position") == "3"
    values = [float(v) for v in page.locator("#search-results .result-row td.num").all_inner_texts()]
    assert values == sorted(values, reverse=True)
    # The ignore-BOS switch is part of the search.
    page.uncheck("#f-ignoreBos")
    page.click("#search-submit")
    page.wait_for_url(re.compile(r"ignoreBos=false"))
    assert "ignoreBos=true" not in page.url
    assert not page.locator("#f-ignoreBos").is_checked()
    # A link in the results opens the feature page.
    page.locator("#search-results td.feat a").first.click()
    page.wait_for_url(re.compile(rf"/{MODEL_ID}/\d-res-standard/\d+$"))


def test_topk_by_token_page(page: Any, live_server: str, live: TinyInference) -> None:
    page.goto(f"{live_server}/search-topk-by-token?modelId={MODEL_ID}")
    page.select_option("#f-source", SOURCE)
    page.fill("#f-q", "the cat sat on a mat")
    page.click("#topk-submit")
    page.wait_for_url(re.compile(r"/search-topk-by-token\?"))
    columns = page.locator("#topk-results .topk-col")
    assert columns.count() >= 5
    assert columns.first.locator(".topk-feats a").count() >= 1


def test_steer_shows_both_columns_and_share_link(page: Any, live_server: str, live: TinyInference) -> None:
    page.goto(f"{live_server}/{MODEL_ID}/steer?source={SOURCE}&index=5&strength=40")
    page.fill("#f-prompt", "the cat sat")
    page.click("#add-feature")
    assert page.locator("#steer-features tr.feature-row").count() == 4  # 1 prefilled + 2 blank + 1 added
    page.select_option("#f-steer_method", "ORTHOGONAL_DECOMP")
    page.fill("input[name=n_tokens]", "8")
    with page.expect_response(lambda r: r.url.endswith("/api/steer")) as streamed:
        page.click("#steer-submit")  # the script streams the completion (columns grow), then opens the result
    assert streamed.value.headers["content-type"].startswith("text/event-stream")
    page.wait_for_url(re.compile(r"/steer/[^/]+$"))
    default = page.locator("#out-default .completion .output").inner_text()
    steered = page.locator("#out-steered .completion .output").inner_text()
    assert default and steered and default != steered
    share = page.locator("#share-link").get_attribute("href")
    assert share and page.url.endswith(share)
    page.screenshot(path=str(artifact("steer.png")), full_page=True)
    # The share link reloads the saved result with its settings.
    page.goto(f"{live_server}{share}")
    assert page.locator("#out-default .completion .output").inner_text() == default
    assert page.locator("#out-steered .completion .output").inner_text() == steered
    assert page.locator("#f-steer_method").input_value() == "ORTHOGONAL_DECOMP"
    assert page.locator("input[name=n_tokens]").input_value() == "8"
    assert page.locator("#f-prompt").input_value() == "the cat sat"
    twin = json.loads(httpx.get(f"{live_server}{share}.json").text)
    assert twin["result"]["STEERED"] == steered


def test_steer_bad_input_shows_a_message(page: Any, live_server: str, live: TinyInference) -> None:
    page.goto(f"{live_server}/{MODEL_ID}/steer")
    page.fill("#f-prompt", "the cat sat")
    page.locator("input[name=index]").first.fill("3")
    page.locator("input[name=strength]").first.fill("10")
    page.locator("input[name=n_tokens]").fill("100000")
    page.click("#steer-submit")  # the API refuses it, so the script falls back to the form post, which says why
    page.locator("#form-error").wait_for()
    assert "n_tokens must be at most" in page.locator("#form-error").inner_text()
