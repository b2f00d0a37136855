"""Accounts and lists in chromium: sign up, make a list from the feature page, see it on /list/{id}, and the
list's test text run through the live (tiny) model by the page's script."""

from __future__ import annotations

import re
from typing import Any

import pytest
from e2e_helpers import artifact
from inference_helpers import MODEL_ID, TinyInference, register
from inference_helpers import tiny_inf as tiny_inf  # noqa: F401  (session fixture)

from interpedia.db import transaction
from interpedia.db.tables import Feature
from interpedia.store.catalogue import get_source
from interpedia.store.explanations import add_explanation

SOURCE = "1-res-standard"


@pytest.fixture
def live_site(factory: Any, tiny_inf: TinyInference) -> None:  # noqa: F811
    """The tiny model and SAEs registered for inference, with feature rows 0-5 of 1-res-standard."""
    register(factory, tiny_inf)
    with transaction(factory) as session:
        src = get_source(session, MODEL_ID, SOURCE)
        for index in range(6):
            feature = Feature(source_id=src.id, index=index, max_act_approx=2.0, frac_nonzero=0.01)
            session.add(feature)
            session.flush()
            add_explanation(
                session,
                feature,
                f"tiny feature number {index}",
                type_name=None,
                model_name=None,
                author_id=None,
                triggered_by=None,
                embedding=None,
            )


def test_sign_up_make_a_list_from_the_feature_page_and_test_it_live(
    page: Any, live_server: str, live_site: None
) -> None:
    page.goto(f"{live_server}/{MODEL_ID}/{SOURCE}/3")
    assert "to add this feature to a list" in page.locator("#add-to-list").inner_text()
    page.click("#signup-top-link")
    page.wait_for_url(re.compile(r"/signup\?next="))
    page.fill("#f-name", "ada")
    page.fill("#f-password", "short")
    page.click("#signup-form button[type=submit]")
    assert "at least 8" in page.locator("#err-password").inner_text()
    page.fill("#f-password", "a long enough password")
    page.click("#signup-form button[type=submit]")
    page.wait_for_url(re.compile(rf"/{MODEL_ID}/{SOURCE}/3$"))  # back where the reader was
    assert page.locator("#signed-in-as").inner_text() == "ada"

    page.fill("#new-list-with-feature input[name=name]", "Tiny features")
    page.click("#new-list-with-feature button[type=submit]")
    page.wait_for_url(re.compile(rf"/{MODEL_ID}/{SOURCE}/3$"))
    page.click("#add-to-list .in-list a")
    page.wait_for_url(re.compile(r"/list/[A-Za-z0-9_-]+$"))
    list_url = page.url
    assert page.locator("#list-name").inner_text() == "Tiny features"
    assert page.locator(".list-item .explanation-text").all_inner_texts() == ["tiny feature number 3"]
    assert "no test text yet" in page.locator("#live-note").inner_text()

    page.goto(f"{live_server}/{MODEL_ID}/{SOURCE}/5")  # a second feature through the "add to list" menu
    page.select_option("#add-to-list-select", label="Tiny features")
    page.click("#add-to-list-form button[type=submit]")
    page.wait_for_url(re.compile(rf"/{MODEL_ID}/{SOURCE}/5$"))
    assert page.locator("#add-to-list .in-list").inner_text() == "In Tiny features"

    page.goto(list_url)
    assert page.locator(".list-item .feature-link").all_inner_texts() == [
        f"{MODEL_ID} · {SOURCE} · 3",
        f"{MODEL_ID} · {SOURCE} · 5",
    ]
    page.fill("#list-update-form #f-defaultTestText", "the cat sat on the mat")
    page.click("#list-update-form button[type=submit]")
    page.wait_for_url(list_url)
    # The page's script sends the text to /api/activation/new for each feature and colours the tokens.
    # (Selectors, not wait_for_function: the page's CSP forbids the eval that would need.)
    page.wait_for_selector(
        "#live-status:has-text('Ran the test text'), #live-status:has-text('from the live')", timeout=120_000
    )
    assert "from the live model" in page.locator("#live-status").inner_text()
    page.screenshot(path=str(artifact("list-page.png")), full_page=True)
    for item in page.locator(".list-item").all():
        tokens = item.locator(".live-result .t")
        assert tokens.count() >= 6
        assert "cat" in "".join(tokens.all_text_contents())

    page.click("#list-delete-form button[type=submit]")
    page.wait_for_url(re.compile(r"/account$"))
    assert "No lists yet." in page.locator("#my-lists").inner_text()
