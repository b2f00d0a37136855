"""Cached feature documents, ETags and 304s, on real SQLite and Postgres (issue 19).

Each serving process keeps the feature documents it built, keyed by versions that every write changing a
dashboard replaces. A reader must never see a stale dashboard: after each kind of write the API's answer (and its
ETag) changes, in the same process that cached it and in a second app on the same database. A client that sends
the ETag back gets 304 without a body while nothing changed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from factories import VOCAB, import_embed, make_feature
from fastapi.testclient import TestClient
from ingest_helpers import no_embedding_on_import  # noqa: F401  (autouse fixture)
from sqlalchemy import select, update

from interpedia.db import transaction
from interpedia.db.tables import Comment, Explanation, Feature, Source, User
from interpedia.ingest import import_path
from interpedia.store.activations import append_activations
from interpedia.store.comments import add_feature_comment, delete_comment
from interpedia.store.explanations import add_explanation, add_score, delete_explanation
from interpedia.store.records import ActivationRecord, ExplanationRecord, FeatureRecord
from interpedia.store.users import ensure_user
from interpedia.store.vocab import ensure_tokens
from interpedia.store.votes import unvote, vote
from interpedia.store.writer import write_features
from interpedia.web.app import create_app

API = "/api/feature/tiny-test/0-res-test/1"
PAGE = "/tiny-test/0-res-test/1"
HTML = {"accept": "text/html"}


@pytest.fixture
def site(factory: Any, tmp_path: Path) -> dict[str, Any]:
    """tiny-test/0-res-test with 3 features and one explanation on feature 1; a user."""
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
        user = ensure_user(session, "writer")
        feature = session.scalars(select(Feature).where(Feature.index == 1)).one()
        exp = add_explanation(
            session,
            feature,
            "cats on mats",
            type_name=None,
            model_name=None,
            author_id=user.id,
            triggered_by=None,
            embedding=None,
        )
        return {"user": user.id, "feature": feature.id, "exp": exp.id}


def _get(client: Any, path: str = API, **headers: str) -> Any:
    resp = client.get(path, headers=headers)
    assert resp.status_code in (200, 304), resp.text[:300]
    return resp


def _write(factory: Any, site: dict[str, Any], change: Any) -> None:
    with transaction(factory) as session:
        user = session.get(User, site["user"])
        feature = session.get(Feature, site["feature"])
        change(session, user, feature)


def _vote(session: Any, user: Any, feature: Any) -> None:
    exp = session.scalars(select(Explanation).where(Explanation.feature_id == feature.id)).first()
    assert vote(session, user, exp)


def _unvote(session: Any, user: Any, feature: Any) -> None:
    exp = session.scalars(select(Explanation).where(Explanation.feature_id == feature.id)).first()
    assert unvote(session, user, exp)


def _explain(session: Any, user: Any, feature: Any) -> None:
    add_explanation(
        session,
        feature,
        "dogs on logs",
        type_name=None,
        model_name=None,
        author_id=None,
        triggered_by=None,
        embedding=None,
    )


def _score(session: Any, user: Any, feature: Any) -> None:
    exp = session.scalars(select(Explanation).where(Explanation.feature_id == feature.id)).first()
    add_score(session, exp.id, 0.75, type_name="recall_alt", model_name=None, user_id=None, details_json="{}")


def _unexplain(session: Any, user: Any, feature: Any) -> None:
    for exp in session.scalars(select(Explanation).where(Explanation.feature_id == feature.id)).all():
        delete_explanation(session, exp.id, user)


def _comment(session: Any, user: Any, feature: Any) -> None:
    add_feature_comment(session, user, feature, "nice feature")


def _uncomment(session: Any, user: Any, feature: Any) -> None:
    comment = session.scalars(select(Comment).where(Comment.feature_id == feature.id)).first()
    delete_comment(session, user, comment.id)


def _examples(session: Any, user: Any, feature: Any) -> None:
    tokens = [VOCAB[n] for n in range(6)]
    token_ids = ensure_tokens(session, "tiny-test", tokens)
    append_activations(session, feature.id, user.id, [ActivationRecord(tokens, [0, 0, 9.5, 0, 0, 1])], token_ids)


def _reimport(session: Any, user: Any, feature: Any) -> None:
    source = session.get(Source, feature.source_id)
    record = FeatureRecord(index=1, explanations=[ExplanationRecord(description="imported again")])
    write_features(session, source, [record], creator_id=None, token_ids={}, embed=import_embed())


WRITES = [
    ("explanation added", _explain, lambda d: "dogs on logs" in json.dumps(d)),
    ("score added", _score, lambda d: 0.75 in [s["value"] for e in d["explanations"] for s in e["scores"]]),
    ("comment added", _comment, lambda d: [c["text"] for c in d["comments"]] == ["nice feature"]),
    ("examples added", _examples, lambda d: max(a["maxValue"] for a in d["activations"]) == 9.5),
    ("re-imported", _reimport, lambda d: "imported again" in json.dumps(d)),
]


@pytest.mark.parametrize(("what", "change", "shows"), WRITES, ids=[w[0] for w in WRITES])
def test_a_write_changes_the_cached_document_and_its_etag(
    app: Any, client: Any, factory: Any, site: dict[str, Any], what: str, change: Any, shows: Any
) -> None:
    other = TestClient(create_app(app.state.settings))  # a second serving process on the same database
    with other:
        first, first_other = _get(client), _get(other)
        assert first.headers["etag"] == first_other.headers["etag"]
        assert _get(client).json() == first.json() and app.state.feature_cache.stats()["hits"] >= 1
        assert not shows(first.json())
        _write(factory, site, change)
        for c in (client, other):
            after = _get(c, **{"if-none-match": first.headers["etag"]})
            assert after.status_code == 200 and after.headers["etag"] != first.headers["etag"], what
            assert shows(after.json()), what


@pytest.mark.parametrize(
    "changes",
    [(_vote, _unvote), (_comment, _uncomment), (_unexplain,)],
    ids=["vote, unvote", "comment, delete it", "explanation deleted"],
)
def test_votes_and_deletions_change_the_etag(
    client: Any, factory: Any, site: dict[str, Any], changes: tuple[Any, ...]
) -> None:
    seen = {_get(client).headers["etag"]}
    for change in changes:
        _write(factory, site, change)
        seen.add(_get(client).headers["etag"])
    assert len(seen) == len(changes) + 1  # never an old tag again, even when the content comes back
    if _unexplain in changes:
        assert _get(client).json()["explanations"] == []


def test_if_none_match_answers_304_without_a_body(client: Any, factory: Any, site: dict[str, Any]) -> None:
    first = _get(client)
    etag = first.headers["etag"]
    assert first.headers["cache-control"] == "public, no-cache" and first.content
    for sent in (etag, f'"other", {etag}', f"W/{etag}", "*"):
        again = _get(client, **{"if-none-match": sent})
        assert again.status_code == 304 and again.content == b"", sent
        assert again.headers["etag"] == etag
    assert _get(client, **{"if-none-match": '"other"'}).status_code == 200
    _write(factory, site, _comment)
    assert _get(client, **{"if-none-match": etag}).status_code == 200


def test_the_html_page_and_its_twin_answer_304(client: Any, factory: Any, site: dict[str, Any]) -> None:
    for path, headers in ((PAGE, HTML), (PAGE + ".json", {})):
        first = _get(client, path, **headers)
        etag = first.headers["etag"]
        assert first.content and first.headers["cache-control"] == "public, no-cache"
        again = _get(client, path, **headers, **{"if-none-match": etag})
        assert again.status_code == 304 and again.content == b""
    html = _get(client, PAGE, **HTML)
    _write(factory, site, _comment)
    changed = _get(client, PAGE, **HTML, **{"if-none-match": html.headers["etag"]})
    assert changed.status_code == 200 and "nice feature" in changed.text


def test_private_sources_are_cached_privately(client: Any, factory: Any, site: dict[str, Any], api_key: str) -> None:
    with transaction(factory) as session:
        owner = session.scalars(select(User).where(User.name == "tester")).one()  # api_key's user
        session.execute(update(Source).values(visibility="PRIVATE", creator_id=owner.id))
    assert client.get(API).status_code == 404  # anonymous: not there
    key = {"x-api-key": api_key}
    resp = client.get(API, headers=key)
    assert resp.status_code == 200 and resp.headers["cache-control"] == "private, no-cache"
    page = client.get(PAGE, headers={**HTML, **key})
    assert page.status_code == 200 and page.headers["cache-control"] == "private, no-cache"
    # The tag proves nothing to someone who may not see the feature.
    assert client.get(API, headers={"if-none-match": resp.headers["etag"]}).status_code == 404


def test_the_versions_migration_goes_down_and_up_keeping_everything(
    database_url: str, factory: Any, site: dict[str, Any]
) -> None:
    from alembic import command
    from sqlalchemy import func

    from interpedia.db import migrate
    from interpedia.db.engine import alembic_config

    def counts() -> tuple[int, ...]:
        with factory() as session:
            return tuple(session.scalar(select(func.count()).select_from(t)) or 0 for t in (Feature, Explanation))

    before = counts()
    assert before == (3, 1)
    factory.kw["bind"].dispose()  # SQLite: no connection holds the file while the schema changes
    command.downgrade(alembic_config(database_url), "-1")
    migrate(database_url)
    assert counts() == before


def test_cached_pages_are_the_pages_built_without_the_cache(settings: Any, site: dict[str, Any]) -> None:
    """The feature page drawn from a cached document and its kept panes (logits, histograms, neighbours,
    examples) is, byte for byte, the page a server without the cache draws; so is its JSON twin."""
    uncached_app = create_app(settings.model_copy(update={"feature_cache_mb": 0}))
    with TestClient(create_app(settings)) as cached, TestClient(uncached_app) as uncached:
        for path, headers in ((PAGE, HTML), (PAGE + ".json", {})):
            first, again = _get(cached, path, **headers), _get(cached, path, **headers)
            plain = _get(uncached, path, **headers)
            assert first.text == again.text == plain.text, path
            assert first.headers["etag"] == again.headers["etag"] == plain.headers["etag"]
        page = _get(cached, PAGE, **HTML).text
        assert all(f'id="{pane}"' in page for pane in ("feature-stats", "similar", "activations", "pos-logits"))
