"""The pages in a real browser: the feature dashboard's interactions, sign-in and the forms, untrusted text."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import artifact, write_batch
from factories import make_feature

from interpedia.db import transaction
from interpedia.db.tables import Explanation, Feature
from interpedia.ingest import import_path

pytestmark = pytest.mark.e2e

# Public-domain text (King James Bible) for a feature that reads like a real one in screenshots.
VERSES = [
    "And the LORD said unto Moses, Stretch out thine hand over the sea, that the waters may come again.",
    "The LORD is my shepherd; I shall not want. He maketh me to lie down in green pastures.",
    "Trust in the LORD with all thine heart; and lean not unto thine own understanding.",
    "And Moses said unto the people, Fear ye not, stand still, and see the salvation of the LORD.",
    "O give thanks unto the LORD; for he is good: for his mercy endureth for ever.",
    "The earth is the LORD's, and the fulness thereof; the world, and they that dwell therein.",
    "And God said, Let there be light: and there was light.\nAnd God saw the light, that it was good.",
    "In the beginning God created the heaven and the earth.\nAnd the earth was without form, and void.",
]
XSS_TOKENS = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>']
XSS_EXPLANATION = "<script>alert('explanation')</script> words <img src=x onerror=alert(2)>"


def _tokens(text: str) -> list[str]:
    """A GPT-2-looking tokenisation: words and punctuation, 'Ġ' for a leading space, 'Ċ' for newlines."""
    out = []
    for m in re.finditer(r"\n| ?[A-Za-z']+| ?[^\sA-Za-z']", text):
        out.append(m.group().replace(" ", "Ġ").replace("\n", "Ċ"))
    return out


def _example(
    text: str, scale: float, bin_min: float = -1, bin_max: float = 9.0, contains: float = -1
) -> dict[str, Any]:
    tokens = _tokens(text)
    values = []
    for tok in tokens:
        word = tok.lstrip("Ġ")
        values.append(
            round(
                scale
                * (
                    1.0
                    if word.startswith("LORD")
                    else 0.45
                    if word == "God"
                    else 0.08
                    if word in ("Moses", "the")
                    else 0.0
                ),
                3,
            )
        )
    return {
        "tokens": tokens,
        "values": values,
        "bin_min": bin_min,
        "bin_max": bin_max,
        "bin_contains": contains,
        "qualifying_token_index": values.index(max(values)),
    }


def _lord_feature(index: int) -> dict[str, Any]:
    top = [_example(v, 9.0 - 0.4 * n) for n, v in enumerate(VERSES)]
    quantile = [_example(v, 3.2 - 0.3 * n, 2.0, 4.0, 0.0031) for n, v in enumerate(VERSES[5:])]
    bins = [0.3 * i + 0.15 for i in range(30)]
    return make_feature(
        index,
        activations=top + quantile,
        frac_nonzero=0.00412,
        pos_str=["ĠLORD", "ĠLord", "ĠGod", "ĠAlmighty", "Ġhosts", "ĠJehovah"],
        pos_values=[1.12, 0.93, 0.71, 0.55, 0.41, 0.38],
        neg_str=["Ġsoftware", "Ġpixels", "Ġcompiler", "Ġemail", "Ġdatabase"],
        neg_values=[-0.61, -0.55, -0.49, -0.42, -0.37],
        freq_hist_data_bar_values=bins,
        freq_hist_data_bar_heights=[round(900 * math.exp(-b / 1.6)) + (40 if 7 < b < 8 else 0) for b in bins],
        logits_hist_data_bar_values=[-0.6 + 0.06 * i for i in range(30)],
        logits_hist_data_bar_heights=[round(500 * math.exp(-((-0.6 + 0.06 * i) ** 2) / 0.05)) for i in range(30)],
    )


@pytest.fixture
def site(factory: Any, tmp_path: Path) -> None:
    """tiny-test/0-res-test: feature 0 reads like a real one; feature 2 carries hostile tokens; 5 is dead."""
    feats = [_lord_feature(0)] + [make_feature(i) for i in range(1, 5)] + [make_feature(5, activations=[])]
    feats[2]["activations"][0]["tokens"][:2] = XSS_TOKENS
    import_path(write_batch(tmp_path / "dash", feats), factory)
    with transaction(factory) as session:
        fid = {f.index: f.id for f in session.query(Feature)}
        session.add(
            Explanation(
                feature_id=fid[0],
                description="the LORD (divine name in the King James Bible)",
                type_name="np_max-act",
                explanation_model_name="gpt-4o-mini",
                score_v1=0.9,
            )
        )
        session.add(Explanation(feature_id=fid[2], description=XSS_EXPLANATION))


def test_feature_page_hover_context_and_navigation(page: Any, live_server: str, site: None) -> None:
    page.goto(f"{live_server}/tiny-test/0-res-test/0")
    assert page.locator("#feature-index").inner_text() == "0"
    assert page.locator("#top-explanation").inner_text().startswith("the LORD")
    page.screenshot(path=str(artifact("feature-page.png")), full_page=True)

    # Hover a token: the tooltip shows the value the server stored for it.
    token = page.locator("#acts .strip .t[data-v]").first
    token.hover()
    tip = page.locator("#tip")
    tip.wait_for(state="visible")
    assert tip.locator(".tip-val").inner_text() == token.get_attribute("data-v")
    assert tip.locator(".tip-tok").text_content() == token.text_content()

    # Context size: 5 and 16 tokens around the max token, or the whole example.
    first = page.locator("#acts .ex").first
    total = first.locator(".t").count()
    assert total > 16

    def visible() -> int:
        return int(first.evaluate("e => [...e.querySelectorAll('.t')].filter(t => t.offsetParent !== null).length"))

    page.click("[data-ctx='5']")
    assert visible() == 5 and first.locator(".t.m").is_visible()
    assert page.locator("[data-ctx='5']").get_attribute("aria-pressed") == "true"
    page.click("[data-ctx='16']")
    assert visible() == 16
    page.click("[data-ctx='full']")
    assert visible() == total

    # Line breaks: the newline tokens' <br>s come and go with the toggle.
    breaks = page.locator("#acts .br")
    assert breaks.count() > 0 and breaks.first.evaluate("b => getComputedStyle(b).display") != "none"
    page.uncheck("#toggle-breaks")
    assert breaks.first.evaluate("b => getComputedStyle(b).display") == "none"

    # The plots and the logit lists render.
    assert page.locator("#act-hist svg rect").count() == 30
    assert page.locator("#pos-logits .tok").first.text_content() == " LORD"

    page.click("#next-feature")
    page.wait_for_url(re.compile(r"/tiny-test/0-res-test/1$"))
    page.click("#prev-feature")
    page.wait_for_url(re.compile(r"/tiny-test/0-res-test/0$"))
    page.click("#random-feature")
    page.wait_for_url(re.compile(r"/tiny-test/0-res-test/[0-4]$"))  # a live feature, never the dead 5


def test_dead_feature_notice_and_show_anyway(page: Any, live_server: str, site: None) -> None:
    page.goto(f"{live_server}/tiny-test/0-res-test/5")
    assert page.locator("#dead-notice").is_visible()
    assert not page.locator("#dashboard").is_visible()
    page.click("#show-anyway")
    assert page.locator("#dashboard").is_visible()


def test_untrusted_text_shows_as_text_and_never_runs(page: Any, live_server: str, site: None) -> None:
    page.goto(f"{live_server}/tiny-test/0-res-test/2")
    page.click("[data-ctx='full']")
    for text in XSS_TOKENS:
        assert page.get_by_text(text, exact=True).first.is_visible()
    assert page.locator("#top-explanation").inner_text() == XSS_EXPLANATION
    assert page.locator("img[src=x]").count() == 0
    assert page.evaluate("document.querySelectorAll('script:not([src]):not([type=\"application/json\"])').length") == 0
    page.get_by_text(XSS_TOKENS[0], exact=True).first.hover()
    assert page.locator("#tip .tip-tok").text_content() == XSS_TOKENS[0]
    # The page fixture fails the test if any dialog (alert) opened or any script error happened.


def test_sign_in_then_create_a_model_and_its_saes(page: Any, live_server: str, site: None, api_key: str) -> None:
    page.goto(f"{live_server}/")
    page.click("#add-model")
    page.wait_for_url(re.compile(r"/signin\?next=%2Fmodel%2Fnew$"))
    page.fill("#f-api_key", "sk-np-not-a-key")
    page.click("#signin-form button[type=submit]")
    assert "not valid" in page.locator("#err-api_key").inner_text()
    page.fill("#f-api_key", api_key)
    page.click("#signin-form button[type=submit]")
    page.wait_for_url(re.compile(r"/model/new$"))
    assert page.locator("#signed-in-as").inner_text() == "tester"

    page.fill("#f-id", "my-model")
    page.fill("#f-layers", "0")
    page.click("#model-form button[type=submit]")
    assert "from 1 to" in page.locator("#err-layers").inner_text()  # the error sits next to its field
    assert page.locator("#f-id").input_value() == "my-model"
    page.fill("#f-displayName", '<img src=x onerror=alert("name")> My Model')
    page.fill("#f-owner", "Tester")
    page.fill("#f-layers", "3")
    page.click("#model-form button[type=submit]")
    page.wait_for_url(re.compile(r"/my-model$"))
    assert page.locator("h1").inner_text().startswith('<img src=x onerror=alert("name")> My Model')

    page.click("text=+ Add New SAEs")
    page.wait_for_url(re.compile(r"/sae/new\?model=my-model$"))
    assert page.locator("#f-modelId").input_value() == "my-model"
    page.fill("#f-name", "res-mine")
    page.fill("#f-description", "My residual SAEs")
    page.fill("#f-type", "Residual Stream")
    page.click("#sae-form button[type=submit]")
    page.wait_for_url(re.compile(r"/my-model/res-mine$"))
    assert page.locator("h1").inner_text().startswith("res-mine")
    assert page.locator("text=2-res-mine").count() >= 1

    page.click("text=Sign out")
    page.wait_for_url(re.compile(r"/$"))
    assert page.locator("#signin-link").is_visible()
