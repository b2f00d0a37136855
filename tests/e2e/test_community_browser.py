"""Comments, bookmarks and votes in a real browser: sign in, act on a feature page, reload, see the result."""

from __future__ import annotations

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

HOSTILE = "<img src=x onerror=alert('comment')> looks like <b>the LORD</b>\nsecond line"


@pytest.fixture
def site(factory: Any, tmp_path: Path) -> dict[str, str]:
    """tiny-test/0-res-test with features 0-2; feature 1 has two explanations."""
    import_path(write_batch(tmp_path / "dash", [make_feature(i) for i in range(3)]), factory)
    with transaction(factory) as session:
        fid = session.query(Feature).filter(Feature.index == 1).one().id
        first = Explanation(feature_id=fid, description="cats on mats", score_v1=0.9)
        second = Explanation(feature_id=fid, description="sitting", score_v1=0.1)
        session.add_all([first, second])
        session.flush()
        return {"exp": first.id, "exp2": second.id}


def test_sign_in_comment_bookmark_vote_and_see_them_after_reload(
    page: Any, live_server: str, site: dict[str, str], api_key: str
) -> None:
    feature_url = f"{live_server}/tiny-test/0-res-test/1"
    page.goto(feature_url)
    assert page.locator("#comments").get_by_text("No comments yet.").is_visible()
    page.locator("#comments").get_by_role("link", name="Sign in").click()
    page.fill("#f-api_key", api_key)
    page.click("#signin-form button[type=submit]")
    page.wait_for_url(re.compile(r"/tiny-test/0-res-test/1(#comments)?$"))
    assert page.locator("#signed-in-as").inner_text() == "tester"

    # Comment: the hostile text is shown as text, line break kept, nothing runs.
    page.fill("#comment-text", HOSTILE)
    page.click("#comment-form button[type=submit]")
    page.wait_for_url(re.compile(r"#comments$"))
    comment = page.locator(".comment-text").first
    assert comment.inner_text() == HOSTILE
    assert page.locator("#comments img, #comments b").count() == 0

    # Bookmark and vote.
    page.click("#bookmark-button")
    page.wait_for_load_state()
    assert page.locator("#bookmark-button").get_attribute("aria-pressed") == "true"
    vote = page.locator(f"#vote-{site['exp']}")
    vote.get_by_role("button").click()
    page.wait_for_url(re.compile(rf"#explanation-{site['exp']}$"))

    page.reload()
    assert page.locator(".comment-text").first.inner_text() == HOSTILE
    assert page.locator(".comment-author").first.inner_text() == "tester"
    assert page.locator("#comment-count").inner_text() == "(1)"
    assert page.locator("#bookmark-button").inner_text() == "★ Bookmarked"
    assert page.locator(f"#vote-{site['exp']} .vote-count").inner_text() == "1 vote"
    assert page.locator(f"#vote-{site['exp']} button").inner_text() == "▲ Voted"
    assert page.locator(f"#vote-{site['exp2']} .vote-count").inner_text() == "0 votes"
    page.screenshot(path=str(artifact("feature-community.png")), full_page=True)

    # My bookmarks lists the feature with its top explanation; removing it there empties the page.
    page.click("#nav-bookmarks")
    page.wait_for_url(re.compile(r"/account/bookmarks$"))
    row = page.locator("#bookmarks tr.bookmark")
    assert row.count() == 1 and "cats on mats" in row.inner_text()
    row.get_by_role("button", name="Remove").click()
    page.wait_for_url(re.compile(r"/account/bookmarks$"))
    assert page.locator("#no-bookmarks").is_visible()

    # Take the vote back and delete the comment; a reload shows both gone.
    page.goto(feature_url)
    page.locator(f"#vote-{site['exp']} button").click()
    page.wait_for_load_state()
    page.locator(".comment-delete button").click()
    page.wait_for_url(re.compile(r"#comments$"))
    page.reload()
    assert page.locator("#no-comments").is_visible()
    assert page.locator(f"#vote-{site['exp']} .vote-count").inner_text() == "0 votes"
    assert page.locator("#bookmark-button").inner_text() == "☆ Bookmark"


def test_an_empty_comment_is_not_sent_and_signed_out_users_see_no_forms(
    page: Any, live_server: str, site: dict[str, str], api_key: str
) -> None:
    feature_url = f"{live_server}/tiny-test/0-res-test/1"
    page.goto(feature_url)
    assert page.locator("#comment-form").count() == 0
    assert page.locator(f"#vote-{site['exp']} button").count() == 0
    assert page.locator(f"#vote-{site['exp']} .vote-count").inner_text() == "0 votes"
    page.goto(f"{live_server}/signin?next=/tiny-test/0-res-test/1")
    page.fill("#f-api_key", api_key)
    page.click("#signin-form button[type=submit]")
    page.wait_for_url(re.compile(r"/tiny-test/0-res-test/1$"))
    # The browser itself refuses an empty required field: no request, still no comments.
    page.click("#comment-form button[type=submit]")
    assert page.locator("#comment-text").evaluate("t => t.validity.valueMissing") is True
    page.reload()
    assert page.locator("#no-comments").is_visible()
