"""import(export(x)) equals x: export a database, import the export into a fresh one, export that again."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from factories import make_feature, write_saedashboard_dir
from ingest_helpers import (
    EMBEDDING,
    counts,
    no_embedding_on_import,  # noqa: F401  (autouse fixture)
    read_jsonl,
    write_np_export,
)
from sqlalchemy import select

from interpedia.db import make_engine, make_sessionmaker, migrate, transaction
from interpedia.db.tables import Feature, Model, Source
from interpedia.ingest import export_np, import_path
from interpedia.ingest.pipeline import BatchImporter
from interpedia.store.features import feature_json
from interpedia.store.records import ExplanationRecord, FeatureRecord
from interpedia.store.writer import write_features

_second = itertools.count()
# Differ between two databases by construction (new users, new rows, clock); everything else must match.
VOLATILE = {"createdAt", "updatedAt", "creatorId", "authorId", "triggeredById", "triggeredByUserId"}


@pytest.fixture
def second_factory(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """Another fresh, migrated database on the same backend as ``factory``."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'second.db'}"
        migrate(url)
        engine = make_engine(url)
        yield make_sessionmaker(engine)
        engine.dispose()
        return
    cluster = request.getfixturevalue("pg_cluster")
    name = f"t{os.getpid()}_second_{next(_second)}"
    cluster.psql(f'CREATE DATABASE "{name}" TEMPLATE interpedia_template')
    engine = make_engine(cluster.url(name))
    yield make_sessionmaker(engine)
    engine.dispose()
    cluster.psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
    cluster.psql(f'DROP DATABASE IF EXISTS "{name}"')


def _strip(value: Any, *, drop_id: bool = False) -> Any:
    if isinstance(value, dict):
        return {
            k: _strip(v, drop_id=k in ("activations", "creator", "sourceSet"))
            for k, v in value.items()
            if k not in VOLATILE and not (drop_id and k == "id")
        }
    if isinstance(value, list):
        return [_strip(v, drop_id=drop_id) for v in value]
    return value


def _export_contents(root: Path) -> dict[str, list[Any]]:
    """Every file of an export, rows normalised (activation ids and volatile fields dropped), in a stable order."""
    out: dict[str, list[Any]] = {}
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = str(file.relative_to(root))
        rows = [_strip(r, drop_id="activations/" in rel or rel.endswith("sourceset.jsonl")) for r in read_jsonl(file)]
        if "activations/" in rel:
            rows.sort(key=lambda r: (int(r["index"]), -r["maxValue"], r["values"], r["tokens"]))
        elif "explanations/" in rel:
            rows.sort(key=lambda r: (int(r["index"]), r["id"]))
        out[rel] = rows
    return out


def _feature_docs(factory: Any) -> dict[tuple[str, str, int], Any]:
    with factory() as session:
        docs = {}
        for source in session.scalars(select(Source)):
            for feature in session.scalars(select(Feature).where(Feature.source_id == source.id)):
                doc = feature_json(session, session.get(Model, source.model_id), source, feature)
                doc["explanations"].sort(key=lambda e: e["id"])
                docs[(source.model_id, source.name, feature.index)] = _strip(doc)
        return docs


def _add_explanations(factory: Any) -> None:
    """Explanations as an explainer would add them: ids or none, types, scores, notes, embeddings."""
    importer = BatchImporter(factory)
    with transaction(factory) as session:
        source = session.scalar(select(Source).where(Source.name == "0-res-test__16k"))
        records = [
            FeatureRecord(
                index=1,
                explanations=[
                    ExplanationRecord(
                        description="the word 'the'",
                        type_name="oai_token-act-pair",
                        explanation_model_name="gpt-4o-mini",
                        author_id=importer.creator_id,
                        score_v1=0.25,
                        score_v2=0.8125,
                        notes="checked by hand",
                        embedding=EMBEDDING[::-1],
                    ),
                    ExplanationRecord(
                        description="cats and mats",
                        id="cexplanationwithanid00001",
                        author_id=importer.creator_id,
                        score_v1=1.5,
                    ),
                ],
            ),
            FeatureRecord(
                index=4, explanations=[ExplanationRecord(description="Biblical speech", author_id=importer.creator_id)]
            ),
        ]
        write_features(session, source, records, creator_id=importer.creator_id, token_ids={})


def test_import_of_export_equals_original(factory: Any, second_factory: Any, tmp_path: Path) -> None:
    sd = write_saedashboard_dir(tmp_path / "sd", n_features=7, per_batch=3)
    batch = json.loads((sd / "batch-1.json").read_text())
    batch["sae_id_suffix"] = "16k"
    # One feature with DFA fields, loss values and logit contributions, and a steering vector.
    special = make_feature(4, vector=[0.5, -0.25, 0.125], n_tokens=5)
    special["activations"][0].update(
        dfa_values=[0.0, 0.5, 1.25, 0.0, 0.0],
        dfa_maxValue=1.25,
        dfa_targetIndex=2,
        loss_values=[0.0, 0.01, -0.02, 0.0, 0.0],
        logit_contributions='{"pos": [["Ġcat", 0.5]]}',
    )
    batch["features"][1] = special
    for n in range(3):
        file = sd / f"batch-{n}.json"
        d = json.loads(file.read_text()) if n != 1 else batch
        d["sae_id_suffix"] = "16k"
        file.write_text(json.dumps(d))
    import_path(sd, factory)
    import_path(write_np_export(tmp_path / "np", n_features=3), factory)
    _add_explanations(factory)
    original = counts(factory)

    first = tmp_path / "export-1"
    summary = export_np(factory, first, batch_size=4)
    assert (summary.sources, summary.features, summary.activations, summary.explanations) == (
        2,
        10,
        original["activations"],
        original["explanations"],
    )
    assert (first / "config" / "explanation_type.jsonl").exists()
    assert (first / "np-model" / "3-res-np" / "release.jsonl").exists()
    assert len(list((first / "tiny-test" / "0-res-test__16k" / "features").glob("batch-*.jsonl.gz"))) == 2

    import_path(first, second_factory)
    copied = counts(second_factory)
    assert {k: copied[k] for k in ("features", "activations", "explanations", "models", "sources")} == {
        k: original[k] for k in ("features", "activations", "explanations", "models", "sources")
    }

    second = tmp_path / "export-2"
    export_np(second_factory, second, batch_size=4)
    one, two = _export_contents(first), _export_contents(second)
    assert one.keys() == two.keys()
    for name in one:
        assert one[name] == two[name], name

    docs_a, docs_b = _feature_docs(factory), _feature_docs(second_factory)
    assert docs_a.keys() == docs_b.keys() and len(docs_a) == 10
    for key in docs_a:
        assert docs_a[key] == docs_b[key], key
    special_doc = docs_b[("tiny-test", "0-res-test__16k", 4)]
    assert special_doc["vector"] == [0.5, -0.25, 0.125]
    top = special_doc["activations"][0]
    assert top["dfaValues"] == [0.0, 0.5, 1.25, 0.0, 0.0] and top["dfaMaxValue"] == 1.25
    assert top["dfaTargetIndex"] == 2 and top["lossValues"] == [0.0, 0.01, -0.02, 0.0, 0.0]
    exps = {e["description"]: e for e in docs_b[("tiny-test", "0-res-test__16k", 1)]["explanations"]}
    assert exps["the word 'the'"]["scoreV2"] == 0.8125 and exps["the word 'the'"]["notes"] == "checked by hand"
    assert exps["cats and mats"]["id"] == "cexplanationwithanid00001" and exps["cats and mats"]["scoreV1"] == 1.5

    # And importing the export back into the database it came from changes nothing.
    before = _export_contents(first)
    import_path(first, factory)
    assert counts(factory) | {"imported_batches": 0} == original | {"imported_batches": 0}
    again = tmp_path / "export-3"
    export_np(factory, again, batch_size=4)
    assert _export_contents(again) == before


def test_two_databases_in_one_process_keep_their_own_tokens(factory: Any, second_factory: Any, tmp_path: Path) -> None:
    """Token ids are per database: reading one database must not decode with another's vocabulary."""
    from ingest_helpers import np_activation, np_feature, write_jsonl

    import_path(write_saedashboard_dir(tmp_path / "sd", n_features=2), factory)
    base = tmp_path / "np" / "tiny-test" / "0-res-test"
    write_jsonl(base / "features" / "batch-0.jsonl.gz", [np_feature("tiny-test", "0-res-test", 0)])
    write_jsonl(
        base / "activations" / "batch-0.jsonl.gz",
        [np_activation("tiny-test", "0-res-test", 0, ["zebra", "Ġquagga", "!"], [0.0, 1.0, 0.5])],
    )
    import_path(tmp_path / "np", second_factory)

    docs_a = _feature_docs(factory)
    docs_b = _feature_docs(second_factory)
    assert docs_b[("tiny-test", "0-res-test", 0)]["activations"][0]["tokens"] == ["zebra", "Ġquagga", "!"]
    assert "zebra" not in {t for a in docs_a[("tiny-test", "0-res-test", 0)]["activations"] for t in a["tokens"]}
