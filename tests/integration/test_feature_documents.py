"""Feature documents stored in the database (issue 19), on real SQLite and Postgres.

``GET /api/feature`` answers from a feature's stored document when one built from the feature's current versions
is there. What a bulk build stores must be byte for byte what a single read builds; a stored document must never
be served once a write has changed the feature, nor one written by another interpedia (``format``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from factories import VOCAB, make_feature
from fastapi.testclient import TestClient
from ingest_helpers import no_embedding_on_import  # noqa: F401  (autouse fixture)
from sqlalchemy import delete, select, update

from interpedia.cli import main
from interpedia.db import transaction
from interpedia.db.documents import FeatureDocument
from interpedia.db.tables import Explanation, Feature
from interpedia.ingest import import_path
from interpedia.store.activations import append_activations
from interpedia.store.catalogue import get_model, get_source
from interpedia.store.comments import add_feature_comment
from interpedia.store.explanations import add_explanation, add_score
from interpedia.store.feature_cache import FeatureCache
from interpedia.store.feature_documents import DOCUMENT_FORMAT, build_documents, next_features
from interpedia.store.features import read_feature
from interpedia.store.records import ActivationRecord
from interpedia.store.users import ensure_user
from interpedia.store.vocab import ensure_tokens
from interpedia.store.votes import vote
from interpedia.web.app import create_app

MODEL, SOURCE = "tiny-test", "0-res-test"
API = f"/api/feature/{MODEL}/{SOURCE}/"


@pytest.fixture
def site(factory: Any, tmp_path: Path) -> dict[str, Any]:
    """tiny-test/0-res-test with 5 features: explanations, a score, a vote, a comment and examples added by a user
    on some of them, one feature dead (no examples)."""
    path = tmp_path / "dash"
    path.mkdir()
    features = [make_feature(i) for i in range(4)] + [make_feature(4, n_top=0, dead=True)]
    doc = {"model_id": MODEL, "layer": 0, "sae_set": "res-test", "sae_id_suffix": None, "features": features}
    (path / "batch-0.json").write_text(json.dumps(doc))
    import_path(path, factory)
    with transaction(factory) as session:
        user = ensure_user(session, "writer")
        by_index = {f.index: f for f in session.scalars(select(Feature))}
        for index, text in ((1, "cats on mats"), (1, "mats under cats"), (2, "dogs on logs")):
            add_explanation(
                session,
                by_index[index],
                text,
                type_name="oai_token-act-pair",
                model_name="gpt-4o-mini",
                author_id=user.id if text == "mats under cats" else None,
                triggered_by=None,
                embedding=None,
            )
        session.flush()
        first = session.scalars(select(Explanation).where(Explanation.description == "cats on mats")).first()
        assert first is not None
        add_score(session, first.id, 0.75, type_name="recall_alt", model_name=None, user_id=None, details_json="{}")
        assert vote(session, user, first)
        add_feature_comment(session, user, by_index[2], "nice feature")
        tokens = [VOCAB[n] for n in range(6)]
        append_activations(
            session,
            by_index[3].id,
            user.id,
            [ActivationRecord(tokens, [0, 0, 9.5, 0, 0, 1])],
            ensure_tokens(session, MODEL, tokens),
        )
        return {"user": user.id, "ids": {i: f.id for i, f in by_index.items()}}


def _build(args: tuple[str, ...] = ()) -> str:
    result = CliRunner().invoke(main, ["documents", "build", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _stored(factory: Any) -> dict[int, FeatureDocument]:
    with factory() as session:
        return {d.feature_id: d for d in session.scalars(select(FeatureDocument))}


def test_bulk_built_documents_are_what_a_single_read_builds(factory: Any, site: dict[str, Any]) -> None:
    with factory() as session:
        model, source = get_model(session, MODEL), get_source(session, MODEL, SOURCE)
        rows = next_features(session, source, -1, 100)
        assert [f.index for f, _ in rows] == [0, 1, 2, 3, 4]
        built = {d.feature_id: d.body for d in build_documents(session, model, source, rows)}
        for feature, _ in rows:
            single = read_feature(session, MODEL, SOURCE, feature.index, cache=FeatureCache(0)).cached.body
            assert built[feature.id] == single, feature.index
    doc = json.loads(built[site["ids"][1]])
    assert [e["description"] for e in doc["explanations"]][0] == "cats on mats"  # scored first
    assert (
        doc["creator"]["name"] == "bot" and json.loads(built[site["ids"][2]])["comments"][0]["text"] == "nice feature"
    )
    assert json.loads(built[site["ids"][4]])["activations"] == []


def test_the_api_answers_from_the_stored_document_until_a_write(
    settings: Any, factory: Any, site: dict[str, Any]
) -> None:
    settings = settings.model_copy(update={"feature_cache_mb": 0})  # no per-process cache in front of it
    with TestClient(create_app(settings)) as client:
        expected = {i: client.get(API + str(i)).json() for i in range(5)}
    _build()  # on Postgres the reads above stored some already
    stored = _stored(factory)
    assert set(stored) == set(site["ids"].values())
    assert all(d.format == DOCUMENT_FORMAT for d in stored.values())
    with TestClient(create_app(settings)) as client:
        assert {i: client.get(API + str(i)).json() for i in range(5)} == expected
        # Served from the stored row, not built: a marker written into it shows (with the catalogue parts added).
        with transaction(factory) as session:
            session.execute(
                update(FeatureDocument).where(FeatureDocument.feature_id == site["ids"][2]).values(body=b'{"marker":1}')
            )
        marked = client.get(API + "2").json()
        assert marked["marker"] == 1 and marked["model"]["id"] == MODEL and "explanations" not in marked
        # A write gives the feature a new version: the stored row is stale and never served again.
        with transaction(factory) as session:
            user = ensure_user(session, "writer")
            add_feature_comment(session, user, session.get(Feature, site["ids"][2]), "second thoughts")
        after = client.get(API + "2").json()
        assert "marker" not in after and [c["text"] for c in after["comments"]] == ["nice feature", "second thoughts"]


def test_a_document_of_another_format_is_not_served(
    settings: Any, factory: Any, site: dict[str, Any], backend: str
) -> None:
    _build()
    with transaction(factory) as session:
        session.execute(update(FeatureDocument).values(body=b'{"marker":1}', format="0.0.1/0"))
    assert "0 of          5 current" in CliRunner().invoke(main, ["documents", "status"]).output
    settings = settings.model_copy(update={"feature_cache_mb": 0})
    with TestClient(create_app(settings)) as client:
        assert "marker" not in client.get(API + "1").json()
    # `build` stores only what is missing or stale (on Postgres the read above stored one); --rebuild everything.
    assert f"stored {4 if backend == 'postgresql' else 5} feature documents" in _build()
    assert "stored 0 feature documents" in _build()
    assert "stored 5 feature documents" in _build(("--rebuild", "--source", f"{MODEL}/{SOURCE}"))
    assert "5 of          5 current" in CliRunner().invoke(main, ["documents", "status"]).output


def test_servers_on_postgres_store_what_they_build(
    settings: Any, factory: Any, site: dict[str, Any], backend: str
) -> None:
    settings = settings.model_copy(update={"feature_cache_mb": 0})
    with TestClient(create_app(settings)) as client:
        first = client.get(API + "1")
        assert first.status_code == 200
        stored = _stored(factory)
        if backend == "sqlite":  # one writer at a time: reads never write there
            assert stored == {}
            return
        row = stored[site["ids"][1]]
        with factory() as session:
            feature = session.get(Feature, site["ids"][1])
            assert feature is not None and row.feature_version == feature.doc_version
        again = client.get(API + "1")
        assert again.content == first.content and again.headers["etag"] == first.headers["etag"]


def test_build_names_a_source_that_is_not_there(settings: Any, site: dict[str, Any]) -> None:
    result = CliRunner().invoke(main, ["documents", "build", "--source", f"{MODEL}/9-res-nope"])
    assert result.exit_code == 1 and "9-res-nope" in result.output


def test_build_on_two_processes_stores_every_document(settings: Any, factory: Any, site: dict[str, Any]) -> None:
    assert "stored 5 feature documents" in _build(("--workers", "2", "--batch", "2"))
    assert set(_stored(factory)) == set(site["ids"].values())


def test_catalogue_edits_show_at_once_on_the_narrow_path(settings: Any, factory: Any, site: dict[str, Any]) -> None:
    """On Postgres, a process answers from its cached catalogue parts while the rows' versions are unchanged."""
    from interpedia.db.tables import Model, Source

    _build()
    settings = settings.model_copy(update={"feature_cache_mb": 0})
    app = create_app(settings)
    with TestClient(app) as client:
        first = client.get(API + "1")
        again = client.get(API + "1")  # the narrow path, where the database has xmin
        assert again.content == first.content and again.headers["etag"] == first.headers["etag"]
        with transaction(factory) as session:
            session.execute(update(Source).where(Source.name == SOURCE).values(notes="edited by hand"))
        edited = client.get(API + "1")
        assert edited.json()["source"]["notes"] == "edited by hand"
        assert edited.headers["etag"] != first.headers["etag"]
        with transaction(factory) as session:
            session.execute(update(Model).where(Model.id == MODEL).values(display_name="Tiny, renamed"))
        assert client.get(API + "1").json()["model"]["displayName"] == "Tiny, renamed"
        # A private source answers 404 to anyone but its creator on every path.
        with transaction(factory) as session:
            session.execute(update(Source).where(Source.name == SOURCE).values(visibility="PRIVATE"))
        for _ in range(2):
            assert client.get(API + "1").status_code == 404
    # The general path (a fresh process, nothing cached) gives the same bytes and tag as the narrow one.
    with transaction(factory) as session:
        session.execute(update(Source).where(Source.name == SOURCE).values(visibility="PUBLIC"))
    with TestClient(app) as client:
        narrow = client.get(API + "2")
    with TestClient(create_app(settings)) as client:
        general = client.get(API + "2")
    assert narrow.content == general.content and narrow.headers["etag"] == general.headers["etag"]


def test_a_page_drawn_from_a_stored_document_is_the_page_built(
    settings: Any, factory: Any, site: dict[str, Any]
) -> None:
    pages = {}
    for stored in (False, True):
        if stored:
            _build()
        else:
            with transaction(factory) as session:
                session.execute(delete(FeatureDocument))
        with TestClient(create_app(settings)) as client:  # a fresh process: nothing cached
            pages[stored] = [
                (
                    client.get(f"/{MODEL}/{SOURCE}/{i}", headers={"accept": "text/html"}).text,
                    client.get(API + str(i)).content,
                )
                for i in range(5)
            ]
        with transaction(factory) as session:
            session.execute(delete(FeatureDocument))
    assert pages[True] == pages[False]
    assert "cats on mats" in pages[True][1][0]
