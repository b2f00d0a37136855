"""A site with graphs for the graph page tests: tiny-test's 0-res-test features (two explained), a featured
graph whose feature nodes are those features, and a signed-up user's key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from factories import make_graph, write_saedashboard_dir
from sqlalchemy import select

from interpedia.db import transaction
from interpedia.db.tables import Feature, Source
from interpedia.ingest import import_path
from interpedia.store.explanations import add_explanation
from interpedia.store.graphs import GraphSave, save_graph
from interpedia.store.users import create_api_key, ensure_user

MODEL, SET, SOURCE = "tiny-test", "res-test", "0-res-test"
EXPLAINED = {3: "cat and dog words", 7: "the word after 'The'"}


def site_graph(slug: str = "cat-dog", **meta: Any) -> dict[str, Any]:
    """make_graph's graph, its features named as features of 0-res-test."""
    return make_graph(MODEL, slug, feature_details={"neuronpedia_source_set": SET}, **meta)


def build_site(factory: Any, tmp_path: Path, *, featured: bool = True) -> dict[str, Any]:
    """Import the features, explain two, store one graph (featured) by user ``owner``; returns keys and ids."""
    import_path(write_saedashboard_dir(tmp_path / "dash", n_features=8), factory)
    with transaction(factory) as session:
        owner = ensure_user(session, "owner")
        key = create_api_key(session, owner)
        source = session.scalar(select(Source).where(Source.model_id == MODEL, Source.name == SOURCE))
        assert source is not None
        for index, text in EXPLAINED.items():
            feature = session.scalar(select(Feature).where(Feature.source_id == source.id, Feature.index == index))
            assert feature is not None
            add_explanation(
                session, feature, text, type_name="manual", model_name=None, author_id=owner.id,
                triggered_by=None, embedding=None,
            )  # fmt: skip
        graph = save_graph(session, site_graph(), GraphSave(creator=owner, featured=featured))
        return {"key": key, "graph_id": graph.id, "owner_id": owner.id}
