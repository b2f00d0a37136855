"""Explanation search by meaning (/api/explanation/search*), embeddings on write, ``interpedia embed``,
and the vector index on both backends (pgvector HNSW; SQLite's in-process index)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from factories import import_embed, write_saedashboard_dir
from fakellm import FakeLLM
from sqlalchemy import select, text, update

from interpedia.cli import main
from interpedia.db import make_engine, make_sessionmaker, transaction
from interpedia.db.tables import Explanation, Feature, Source, SourceRelease, SourceSet
from interpedia.ingest import import_path
from interpedia.search.embeddings import LocalEmbedder
from interpedia.store.records import ExplanationRecord, FeatureRecord
from interpedia.store.writer import write_features

TOPICS = {
    0: "Biblical language such as the LORD and thee",
    1: "Python import statements",
    2: "French cooking recipes",
    3: "dates and calendar months",
    4: "HTML script tags in web pages",
    5: "football scores and teams",
}


def add(factory: Any, source_name: str, texts: dict[int, str], embed: bool = True) -> None:
    """Explanations written the way an importer writes them (embedded on write unless told not to)."""
    with transaction(factory) as session:
        source = session.scalar(select(Source).where(Source.name == source_name))
        records = [FeatureRecord(index=i, explanations=[ExplanationRecord(description=t)]) for i, t in texts.items()]
        write_features(session, source, records, creator_id=None, token_ids={}, embed=import_embed())
        if not embed:
            session.execute(update(Explanation).values(embedding=None))


@pytest.fixture
def corpus(settings: Any, factory: Any, tmp_path: Path) -> None:
    import_path(write_saedashboard_dir(tmp_path / "a", n_features=60), factory)
    import_path(write_saedashboard_dir(tmp_path / "b", n_features=6, layer=1), factory)
    add(factory, "0-res-test", TOPICS)
    add(factory, "1-res-test", {0: "the LORD God of Israel", 1: "pasta and Italian food"})


def search(client: Any, path: str, **body: Any) -> dict[str, Any]:
    resp = client.post(f"/api/explanation/{path}", json=body)
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def test_search_all_finds_features_by_meaning(client: Any, corpus: None) -> None:
    doc = search(client, "search-all", query="religious scripture")
    top = doc["results"][0]
    assert top["description"] in (TOPICS[0], "the LORD God of Israel")
    assert {r["description"] for r in doc["results"][:2]} == {TOPICS[0], "the LORD God of Israel"}
    assert 0 < top["cosine_similarity"] <= 1
    sims = [r["cosine_similarity"] for r in doc["results"]]
    assert sims == sorted(sims, reverse=True)
    assert set(top) >= {
        "id",
        "modelId",
        "layer",
        "index",
        "description",
        "typeName",
        "explanationModelName",
        "cosine_similarity",
        "neuron",
    }
    assert top["neuron"]["modelId"] == "tiny-test" and 0 < len(top["neuron"]["activations"]) <= 3
    assert doc["request"] == {"query": "religious scripture", "offset": 0}
    assert search(client, "search-all", query="a good dinner to cook")["results"][0]["description"] in (
        TOPICS[2],
        "pasta and Italian food",
    )


def test_each_result_carries_its_own_top_examples(client: Any, corpus: None) -> None:
    # The examples of a page of results are read together: each result must still get its own feature's three
    # largest, in the order the feature's dashboard shows them (two sources: features of equal index differ).
    results = search(client, "search-all", query="food and cooking")["results"]
    assert {r["layer"] for r in results} == {"0-res-test", "1-res-test"}
    for result in results:
        feature = client.get(f"/api/feature/{result['modelId']}/{result['layer']}/{result['index']}").json()
        assert result["neuron"]["activations"] == feature["activations"][:3]


def test_scopes(client: Any, corpus: None, factory: Any) -> None:
    only_1 = search(client, "search", modelId="tiny-test", layers=["1-res-test"], query="religious scripture")
    assert {r["layer"] for r in only_1["results"]} == {"1-res-test"} and only_1["resultsCount"] == 2
    both = search(client, "search", modelId="tiny-test", layers=[], query="religious scripture")
    assert both["resultsCount"] == 8
    assert search(client, "search-model", modelId="tiny-test", query="web pages")["results"][0]["index"] == "4"
    with transaction(factory) as session:
        session.add(SourceRelease(name="test-release", description="r"))
        session.flush()
        session.execute(update(SourceSet).values(release_name="test-release"))
        session.execute(update(Source).where(Source.name == "1-res-test").values(visibility="PRIVATE"))
    release = search(client, "search-release", releaseName="test-release", query="religious scripture")
    assert {r["layer"] for r in release["results"]} == {"0-res-test"}  # the private source is left out
    assert {r["layer"] for r in search(client, "search-all", query="food")["results"]} == {"0-res-test"}
    assert (
        client.post(
            "/api/explanation/search", json={"modelId": "tiny-test", "layers": ["7-nope"], "query": "food"}
        ).status_code
        == 404
    )
    assert (
        client.post("/api/explanation/search-release", json={"releaseName": "nope", "query": "food"}).status_code == 404
    )
    assert client.post("/api/explanation/search-model", json={"modelId": "nope", "query": "food"}).status_code == 404


def test_paging(client: Any, settings: Any, factory: Any, tmp_path: Path) -> None:
    import_path(write_saedashboard_dir(tmp_path / "a", n_features=45), factory)
    add(factory, "0-res-test", {i: f"explanation number {i} about cats" for i in range(45)})
    pages = [search(client, "search-all", query="cats", offset=off) for off in (0, 20, 40)]
    assert [p["resultsCount"] for p in pages] == [20, 20, 5]
    assert [p["hasMore"] for p in pages] == [True, True, False]
    assert [p["nextOffset"] for p in pages] == [20, 40, None]
    ids = [r["id"] for p in pages for r in p["results"]]
    assert len(ids) == len(set(ids)) == 45
    resp = client.post("/api/explanation/search-all", json={"query": "ca"})
    assert resp.status_code == 422 and "at least 3 characters" in resp.json()["message"]
    assert client.post("/api/explanation/search-all", json={"query": "cats", "offset": 5000}).status_code == 422


def test_other_widths_are_dropped_and_recomputed_on_import(settings: Any, factory: Any, tmp_path: Path) -> None:
    import_path(write_saedashboard_dir(tmp_path / "a", n_features=3), factory)
    with transaction(factory) as session:
        source = session.scalar(select(Source))
        record = FeatureRecord(
            index=1, explanations=[ExplanationRecord(description="the word cat", embedding=[0.5] * 256)]
        )
        write_features(session, source, [record], creator_id=None, token_ids={}, embed=import_embed())
    with factory() as session:
        blob = session.scalar(select(Explanation.embedding))
    expected = LocalEmbedder().embed(["the word cat"])[0]
    assert np.allclose(np.frombuffer(blob, dtype="<f4"), expected, atol=1e-5)


def test_batched_embeddings_come_back_in_the_order_asked() -> None:
    # The embedder batches texts of similar length together: each vector must still land on its own text.
    texts = ["a very long description of the way the LORD spake unto Moses in the wilderness", "cat", "", "dog"]
    embedder = LocalEmbedder(batch_size=2)
    together = embedder.embed(texts)
    alone = np.stack([embedder.embed([t])[0] for t in texts])
    assert together.shape == (4, 384) and np.allclose(together, alone, atol=1e-5)


def test_embed_missing_fills_what_the_partial_index_finds(
    client: Any, corpus: None, factory: Any, backend: str
) -> None:
    assert search(client, "search-all", query="football")["resultsCount"] == 8  # index loaded / warm
    with transaction(factory) as session:
        session.execute(update(Explanation).values(embedding=None))
    assert search(client, "search-all", query="football")["resultsCount"] == 0
    status = CliRunner().invoke(main, ["embed"], catch_exceptions=False)
    assert "8 explanations, 0 embedded, 8 missing" in status.output
    result = CliRunner().invoke(main, ["embed", "--missing", "--batch-size", "3"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "embedded 8 explanations" in result.output and "8 embedded, 0 missing" in result.output
    assert search(client, "search-all", query="football")["results"][0]["description"] == TOPICS[5]
    with factory() as session:
        plan = _plan(session, backend, "SELECT id FROM explanations WHERE embedding IS NULL")
    assert "ix_explanations_embedding_missing" in plan


def _plan(session: Any, backend: str, sql: str) -> str:
    if backend == "postgresql":
        session.execute(text("SET enable_seqscan = off"))
        return "\n".join(session.scalars(text("EXPLAIN " + sql)))
    return "\n".join(str(r[-1]) for r in session.execute(text("EXPLAIN QUERY PLAN " + sql)))


def test_writes_by_another_process_show_up_at_once(client: Any, corpus: None, settings: Any) -> None:
    assert search(client, "search-all", query="astronomy and planets")["results"][0]["index"] != "40"
    other = make_sessionmaker(make_engine(settings.database_url))  # a second process's connection pool
    add(other, "0-res-test", {40: "astronomy: planets and stars"})
    doc = search(client, "search-all", query="astronomy and planets")
    assert doc["results"][0]["description"] == "astronomy: planets and stars"
    with transaction(other) as session:
        session.execute(Explanation.__table__.delete().where(Explanation.description.like("astronomy%")))
    assert all(
        "astronomy" not in r["description"]
        for r in search(client, "search-all", query="astronomy and planets")["results"]
    )


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)  # HNSW is the Postgres index
def test_postgres_uses_the_hnsw_index_and_reindex_rebuilds_it(
    client: Any, corpus: None, factory: Any, backend: str
) -> None:
    with factory() as session:
        q = "[" + ",".join(["0.05"] * 384) + "]"
        plan = _plan(session, backend, f"SELECT id FROM explanations ORDER BY embedding <=> '{q}' LIMIT 5")
        assert "ix_explanations_embedding_hnsw" in plan
    result = CliRunner().invoke(
        main, ["embed", "--reindex", "--m", "8", "--ef-construction", "32"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "rebuilt the HNSW index" in result.output and "m=8" in result.output
    assert search(client, "search-all", query="religious scripture")["resultsCount"] == 8


def test_an_openai_compatible_embeddings_endpoint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from interpedia.config import Settings
    from interpedia.search.embeddings import EmbeddingError, get_embedder

    fake = FakeLLM().start()
    try:
        embedder = get_embedder(Settings(embedding_base_url=fake.url, embedding_model="text-embedding-3-small"))
        vecs = embedder.embed(["cats and dogs", "cats and dogs", "stock markets"])
        assert vecs.shape == (3, 384) and np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
        assert vecs[0] @ vecs[1] > 0.99 > vecs[0] @ vecs[2]
        assert fake.requests[-1]["body"]["dimensions"] == 384
        with pytest.raises(EmbeddingError, match="dimensions"):
            get_embedder(Settings(embedding_base_url=fake.url, embedding_model="embed-256")).embed(["x"])
    finally:
        fake.stop()


def test_feature_ids_in_scope_are_respected_after_feature_deletion(client: Any, corpus: None, factory: Any) -> None:
    with transaction(factory) as session:
        session.execute(Feature.__table__.delete().where(Feature.index == 0))
    descriptions = [r["description"] for r in search(client, "search-all", query="religious scripture")["results"]]
    assert TOPICS[0] not in descriptions and "the LORD God of Israel" not in descriptions


def test_migration_keeps_384_dim_embeddings_and_drops_others(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from alembic import command

    from interpedia.db import migrate
    from interpedia.db.engine import alembic_config

    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        url = request.getfixturevalue("pg_cluster").create_database(f"mig{abs(hash(str(tmp_path))) % 10**8}")
    migrate(url, "0002")
    keep = np.arange(384, dtype="<f4") / 384
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO models (id, display_name, layers, visibility, inference_enabled, instruct, "
                "thinking, updated_at) VALUES ('m', 'm', 1, 'PUBLIC', false, false, false, "
                "CURRENT_TIMESTAMP)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO source_sets (model_id, name, description, visibility, has_dashboards, "
                "allow_inference_search, default_range, default_show_breaks, show_dfa, show_correlated, "
                "show_head_attribution, show_umap, urls) VALUES ('m', 's', '', 'PUBLIC', true, false, 1, "
                "true, false, false, false, false, '[]')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO sources (model_id, name, set_id, set_name, visibility, has_dashboards, "
                "inference_enabled, has_umap, has_umap_log_sparsity, has_umap_clusters) VALUES "
                "('m', '0-s', 1, 's', 'PUBLIC', true, false, false, false, false)"
            )
        )
        conn.execute(text('INSERT INTO features (id, source_id, "index", has_vector) VALUES (1, 1, 0, false)'))
        for eid, blob in (("keep", keep.tobytes()), ("drop", np.ones(256, dtype="<f4").tobytes())):
            conn.execute(
                text(
                    "INSERT INTO explanations (id, feature_id, description, score_v1, embedding, "
                    "updated_at) VALUES (:id, 1, 'x', 0, :e, CURRENT_TIMESTAMP)"
                ),
                {"id": eid, "e": blob},
            )
    engine.dispose()
    migrate(url)
    factory = make_sessionmaker(make_engine(url))
    with factory() as session:
        got = dict(session.execute(select(Explanation.id, Explanation.embedding)).all())
    diff = np.frombuffer(got["keep"], dtype="<f4") - keep
    assert got["drop"] is None and not diff.any(), (np.flatnonzero(diff), diff[diff != 0])
    command.downgrade(alembic_config(url), "0002")
    with make_engine(url).connect() as conn:
        blob = conn.execute(text("SELECT embedding FROM explanations WHERE id = 'keep'")).scalar()
    assert np.array_equal(np.frombuffer(bytes(blob), dtype="<f4"), keep)
