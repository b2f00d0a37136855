"""SQL statements per request, counted with SQLAlchemy events on real SQLite and Postgres.

The feature read is what every visitor and API client asks for most: a full dashboard (45 examples), its
explanations with their scores, its comments, asked by a caller signed in with an API key. The API document
must take at most 4 statements, the HTML page at most 4 (the key's owner, the catalogue row, the viewer's votes
and lists; the graphs list only when the catalogue row says a graph holds the feature) and its JSON twin at most
3, and none may commit (a read never writes). Those are reads of a cached document; building it takes at most 5.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from factories import VOCAB, make_activation, make_feature
from ingest_helpers import no_embedding_on_import  # noqa: F401  (autouse fixture)
from sqlalchemy import delete, event

from interpedia.db import transaction
from interpedia.db.documents import FeatureDocument
from interpedia.db.tables import Comment, Explanation, ExplanationScore, Feature, Model, Source
from interpedia.ingest import import_path
from interpedia.store.feature_answers import CatalogueCache
from interpedia.store.feature_documents import fill_source_documents
from interpedia.store.runs import RunRecord, record_run
from interpedia.store.users import create_api_key, ensure_user

HTML = {"accept": "text/html,application/xhtml+xml"}
API_PATH = "/api/feature/tiny-test/0-res-test/1"
PAGE_PATH = "/tiny-test/0-res-test/1"
N_TOP, N_INTERVALS, PER_INTERVAL, N_TOKENS = 20, 5, 5, 128


def _full_feature(index: int) -> dict[str, Any]:
    """A feature with a full dashboard: 20 top examples and 5 quantile intervals of 5, 128 tokens each."""
    rng = random.Random(index)
    peak = 8.0
    acts = [
        make_activation(rng, n_tokens=N_TOKENS, peak=round(peak * (1 - i / 40), 4), bin_max=peak) for i in range(N_TOP)
    ]
    for q in range(N_INTERVALS):
        lo, hi = peak * q / N_INTERVALS, peak * (q + 1) / N_INTERVALS
        acts += [
            make_activation(
                rng,
                n_tokens=N_TOKENS,
                peak=round(hi * 0.9, 4),
                bin_min=round(lo, 3),
                bin_max=round(hi, 3),
                bin_contains=0.01,
            )
            for _ in range(PER_INTERVAL)
        ]
    return make_feature(index, activations=acts)


@pytest.fixture
def site(factory: Any, tmp_path: Path) -> dict[str, Any]:
    """tiny-test/0-res-test with a full feature 1 (45 examples, 3 scored explanations, 4 comments) and live
    inference on (a generate run recorded); an API key."""
    path = tmp_path / "dash"
    path.mkdir()
    feats = [make_feature(0), _full_feature(1), make_feature(2)]
    doc = {"model_id": "tiny-test", "layer": 0, "sae_set": "res-test", "sae_id_suffix": None, "features": feats}
    (path / "batch-0.json").write_text(json.dumps(doc))
    import_path(path, factory)
    with transaction(factory) as session:
        feature = session.query(Feature).filter(Feature.index == 1).one()
        reader, other = ensure_user(session, "reader"), ensure_user(session, "other")
        exps = [
            Explanation(feature_id=feature.id, description=f"{VOCAB[n]} things", score_v1=n / 10, author_id=other.id)
            for n in range(3)
        ]
        session.add_all(exps)
        session.flush()
        for exp in exps:
            session.add_all(
                ExplanationScore(explanation_id=exp.id, value=v, explanation_score_type_name=t)
                for v, t in ((0.5, "recall_alt"), (0.25, "detection"))
            )
        session.add_all(
            Comment(user_id=(reader if n % 2 else other).id, feature_id=feature.id, text=f"comment {n}")
            for n in range(4)
        )
        key = create_api_key(session, reader)
        # Live inference switched on, with a generate run recorded: the page checks it can run the model and SAE.
        model, source = session.get(Model, "tiny-test"), session.get(Source, feature.source_id)
        assert model is not None and source is not None
        model.inference_enabled = source.inference_enabled = True
        record_run(session, source, RunRecord(output_key="run-1", config={"model": "gpt2-small", "sae": "rel/sae"}))
    return {"key": key}


@contextmanager
def counting(app: Any) -> Iterator[dict[str, list[str]]]:
    """The statements and commits the app's engine runs inside the block."""
    seen: dict[str, list[str]] = {"statements": [], "commits": []}
    engine = app.state.engine

    def on_statement(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen["statements"].append(" ".join(statement.split())[:160])

    def on_commit(conn: Any) -> None:
        seen["commits"].append("COMMIT")

    event.listen(engine, "before_cursor_execute", on_statement)
    event.listen(engine, "commit", on_commit)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", on_statement)
        event.remove(engine, "commit", on_commit)


def _count(app: Any, client: Any, path: str, headers: dict[str, str]) -> dict[str, list[str]]:
    first = client.get(path, headers=headers)  # warm: the vocabulary cache, the key's last-use stamp
    assert first.status_code == 200, first.text[:300]
    with counting(app) as seen:
        resp = client.get(path, headers=headers)
    assert resp.status_code == 200
    return seen


def test_api_feature_read_takes_at_most_4_statements(app: Any, client: Any, site: dict[str, Any]) -> None:
    seen = _count(app, client, API_PATH, {"x-api-key": site["key"]})
    doc = client.get(API_PATH, headers={"x-api-key": site["key"]}).json()
    assert len(doc["activations"]) == 45 and len(doc["explanations"]) == 3 and len(doc["comments"]) == 4
    assert all(len(e["scores"]) == 2 for e in doc["explanations"])
    assert len(seen["statements"]) <= 4, "\n".join(seen["statements"])
    assert seen["commits"] == [], "a read committed"


def test_building_the_api_document_takes_at_most_5_statements(
    app: Any, client: Any, site: dict[str, Any], factory: Any, backend: str
) -> None:
    """Neither cached nor stored: the catalogue row, then the feature's JSON lists (left out of that row, which most
    reads find cached), the examples, and explanations with scores and comments; on Postgres the document built is
    then stored, in a transaction of its own."""
    headers = {"x-api-key": site["key"]}
    assert client.get(API_PATH, headers=headers).status_code == 200  # warm: the vocabulary, the key's stamp
    app.state.feature_cache.clear()
    app.state.feature_catalogue = CatalogueCache()
    with transaction(factory) as session:
        session.execute(delete(FeatureDocument))
    with counting(app) as seen:
        doc = client.get(API_PATH, headers=headers).json()
    assert len(doc["activations"]) == 45 and len(doc["explanations"]) == 3 and len(doc["comments"]) == 4
    reads = [s for s in seen["statements"] if not s.startswith("INSERT INTO feature_documents")]
    assert len(reads) <= 5, "\n".join(seen["statements"])
    stored = len(seen["statements"]) - len(reads)
    assert (stored, seen["commits"]) == ((1, ["COMMIT"]) if backend == "postgresql" else (0, []))


def test_an_api_read_of_a_stored_document_takes_1_statement(
    app: Any, client: Any, site: dict[str, Any], factory: Any
) -> None:
    """A stored document: one statement (on Postgres, once the process knows the source's catalogue parts, a
    narrow one; elsewhere the catalogue row, which carries the document)."""
    assert fill_source_documents(factory, "tiny-test", "0-res-test") == 3
    assert client.get(API_PATH).status_code == 200  # the catalogue parts (Postgres)
    app.state.feature_cache.clear()
    with counting(app) as seen:
        resp = client.get(API_PATH)
    assert resp.status_code == 200 and len(resp.json()["activations"]) == 45
    assert len(seen["statements"]) == 1, "\n".join(seen["statements"])
    assert seen["commits"] == [], "a read committed"


def test_html_feature_page_takes_at_most_4_statements(app: Any, client: Any, site: dict[str, Any]) -> None:
    headers = {**HTML, "x-api-key": site["key"]}
    seen = _count(app, client, PAGE_PATH, headers)
    html = client.get(PAGE_PATH, headers=headers).text
    assert html.count('<li class="ex"><span class="mv">') == 45 and "comment 3" in html and "recall_alt" in html
    assert 'data-available="true"' in html  # the live box checked the model's and the SAE's weights
    assert len(seen["statements"]) <= 4, "\n".join(seen["statements"])
    assert seen["commits"] == [], "a read committed"


def test_json_twin_takes_no_more_than_the_page(app: Any, client: Any, site: dict[str, Any]) -> None:
    seen = _count(app, client, PAGE_PATH + ".json", {"x-api-key": site["key"]})
    assert len(seen["statements"]) <= 3, "\n".join(seen["statements"])
    assert seen["commits"] == [], "a read committed"


def test_key_use_is_stamped_at_most_every_few_minutes(
    app: Any, client: Any, factory: Any, site: dict[str, Any]
) -> None:
    from interpedia.db.tables import ApiKey
    from interpedia.store.users import hash_key
    from interpedia.web.deps import KEY_USE_EVERY

    def stamp() -> Any:
        with factory() as session:
            return session.query(ApiKey.last_used_at).filter(ApiKey.key_hash == hash_key(site["key"])).scalar()

    assert stamp() is None
    headers = {"x-api-key": site["key"]}
    assert client.get(API_PATH, headers=headers).status_code == 200
    first = stamp()
    assert first is not None  # the account page shows when a key was last used
    with counting(app) as seen:
        assert client.get(API_PATH, headers=headers).status_code == 200
    assert stamp() == first and seen["commits"] == []  # a read moments later writes nothing
    with transaction(factory) as session:  # as if the last use were long ago
        session.query(ApiKey).filter(ApiKey.key_hash == hash_key(site["key"])).update(
            {ApiKey.last_used_at: first - KEY_USE_EVERY - KEY_USE_EVERY}
        )
    with counting(app) as seen:
        assert client.get(API_PATH, headers=headers).status_code == 200
    assert stamp() > first - KEY_USE_EVERY and len(seen["commits"]) == 1  # stamped, in its own transaction
