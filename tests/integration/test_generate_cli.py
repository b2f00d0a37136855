"""``interpedia generate`` end to end: the real CLI, a real database (SQLite and Postgres), the /api."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from parts import require_module

require_module("torch")

from click.testing import CliRunner  # noqa: E402
from generate_helpers import CTX, Tiny, tiny_inputs  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from interpedia.cli import main  # noqa: E402
from interpedia.db.tables import Activation, Feature, GenerateRunRow  # noqa: E402
from interpedia.ingest import import_path  # noqa: E402

N_PROMPTS = 24


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    return tiny_inputs(tmp_path_factory)


def _generate(tiny: Tiny, *extra: str) -> Any:
    args = [
        "generate",
        "--model",
        str(tiny.model),
        "--sae",
        str(tiny.sae("standard")),
        "--dataset",
        str(tiny.jsonl),
        "--context-size",
        str(CTX),
        "--n-prompts",
        str(N_PROMPTS),
        "--top-k",
        "5",
        "--shard-prompts",
        "8",
        "--no-progress",
        *extra,
    ]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_generate_into_db_then_the_api_serves_the_dashboard(
    tiny: Tiny, settings: Any, factory: Any, client: Any, tmp_path: Path
) -> None:
    result = _generate(
        tiny, "--into-db", "--out", str(tmp_path / "out"), "--model-id", "tiny-gen", "--source-set", "res-gen"
    )
    assert "tiny-gen/1-res-gen" in result.output
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    with factory() as session:
        n_features = session.scalar(select(func.count()).select_from(Feature))
        row = session.get(GenerateRunRow, run["output_key"])
        assert row is not None and row.run["features_written"] == run["features_written"]
        assert row.source_name == "1-res-gen" and row.run["dead_features"] == run["dead_features"]
        assert session.scalar(select(func.count()).select_from(Activation)) > 0
    # live features carry dashboards; dead ones are stubs (maxActApprox 0, no examples)
    assert n_features == run["features_written"] + len(run["dead_features"])
    live = next(i for i in range(10) if i not in run["dead_features"])
    doc = client.get(f"/api/feature/tiny-gen/1-res-gen/{live}").json()
    assert doc["maxActApprox"] > 0 and 0 < doc["frac_nonzero"] < 1
    assert len(doc["pos_str"]) == 10 and len(doc["topkCosSimIndices"]) == 10
    acts = doc["activations"]
    assert acts and all(len(a["tokens"]) == len(a["values"]) == CTX - 1 for a in acts)
    assert max(a["maxValue"] for a in acts) == pytest.approx(doc["maxActApprox"])
    # pages, their twins and the API name the dataset (and the model), never a path of this server
    urls = ["/", "/tiny-gen", "/tiny-gen/res-gen", "/tiny-gen/1-res-gen", f"/tiny-gen/1-res-gen/{live}"]
    for url in urls + [u + ".json" for u in urls[1:]] + ["/index.json", f"/api/feature/tiny-gen/1-res-gen/{live}"]:
        body = client.get(url, headers={"accept": "text/html"}).text
        assert str(tmp_path) not in body and str(tiny.jsonl.parent) not in body, url
    assert f"dataset {tiny.jsonl.name}" in client.get("/tiny-gen/1-res-gen", headers={"accept": "text/html"}).text
    batch = json.loads((tmp_path / "out" / "batch-0.json").read_text())
    assert batch["features"][0]["dataset"] == tiny.jsonl.name
    dead = client.get(f"/api/feature/tiny-gen/1-res-gen/{run['dead_features'][0]}").json()
    assert dead["maxActApprox"] == 0 and dead["activations"] == []
    # a rerun (e.g. after a kill during the import) writes nothing twice
    _generate(tiny, "--into-db", "--model-id", "tiny-gen", "--source-set", "res-gen")
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Feature)) == n_features
        assert session.scalar(select(func.count()).select_from(GenerateRunRow)) == 1


def test_out_dir_is_what_interpedia_import_reads(tiny: Tiny, factory: Any, tmp_path: Path) -> None:
    _generate(tiny, "--out", str(tmp_path / "out"))
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    summary = import_path(tmp_path / "out", factory)
    assert summary.sources == ["1-res-standard"]
    assert summary.counts.features == run["features_written"] + len(run["dead_features"])
    with factory() as session:
        stats = session.execute(select(Feature.index, Feature.max_act_approx, Feature.frac_nonzero)).all()
    by_index = {i: (m, f) for i, m, f in stats}
    batch = json.loads((tmp_path / "out" / "batch-0.json").read_text())["features"][0]
    assert by_index[batch["feature_index"]][1] == pytest.approx(batch["frac_nonzero"])
    assert all(by_index[i][0] == 0 for i in run["dead_features"])


def test_generate_needs_somewhere_to_write(tiny: Tiny) -> None:
    result = CliRunner().invoke(
        main, ["generate", "--model", str(tiny.model), "--sae", str(tiny.sae()), "--dataset", str(tiny.jsonl)]
    )
    assert result.exit_code != 0 and "--out" in result.output
