"""Documents name datasets and models, never paths of the server (rows written before the rule included)."""

from __future__ import annotations

import pytest

from interpedia.db.tables import Model, Source
from interpedia.store.documents import model_json, source_json
from interpedia.store.formats import public_name


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("/home/me/demo/dashboards/dataset.jsonl", "dataset.jsonl"),
        ("~/corpora/pile/", "pile"),
        ("./data/train.txt", "train.txt"),
        ("data/train.jsonl", "train.jsonl"),
        ("C:\\Users\\me\\corpus.jsonl", "corpus.jsonl"),
        ("NeelNanda/pile-10k", "NeelNanda/pile-10k"),  # a hub id stays whole
        ("monology/pile-uncopyrighted", "monology/pile-uncopyrighted"),
        ("gpt2-small", "gpt2-small"),
        (None, None),
    ],
)
def test_public_name(given: str | None, shown: str | None) -> None:
    assert public_name(given) == shown


def test_stored_paths_are_not_in_documents() -> None:
    source = Source(
        name="0-res-x",
        model_id="m",
        set_name="res-x",
        dataset="/srv/secret/corpus.jsonl",
        saelens_config={"dataset_path": "/srv/secret/corpus.jsonl", "metadata": {"dataset_path": "/srv/secret/c"}},
    )
    doc = source_json(source)
    assert doc["dataset"] == "corpus.jsonl" and "/srv" not in str(doc)
    assert "/srv" not in str(model_json(Model(id="m", tlens_id="/srv/models/tiny-lm")))
