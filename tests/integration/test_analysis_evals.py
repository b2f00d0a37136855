"""``interpedia import-eval`` (SAEBench output JSON), the source page's eval pane and ``/sae-bench``, both backends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from analysis_helpers import MODEL, build_site, core_eval, run_cli
from ingest_helpers import no_embedding_on_import  # noqa: F401  (autouse fixture)
from sqlalchemy import func, select

from interpedia.config import Settings
from interpedia.db import transaction
from interpedia.db.community import Eval, EvalType
from interpedia.db.tables import Source

JSON = {"Accept": "application/json"}


@pytest.fixture
def site(settings: Settings, factory: Any, tmp_path: Path) -> Any:
    build_site(factory, tmp_path)
    with transaction(factory) as session:  # source 0 is the SAELens release/id the fixture names
        src = session.scalar(select(Source).where(Source.name == "0-res-test"))
        src.saelens_release, src.saelens_sae_id = "gpt2-small-res-jb", "blocks.0.hook_resid_pre"
    return tmp_path


def _write(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return path


def _n_evals(factory: Any) -> int:
    with factory() as session:
        return int(session.scalar(select(func.count()).select_from(Eval)) or 0)


def test_import_core_eval_by_saelens_ids_and_show_it(site: Path, factory: Any, client: Any) -> None:
    path = _write(site / "core.json", core_eval())
    result = run_cli("import-eval", str(path))
    assert result.exit_code == 0, result.output
    assert f"core eval -> {MODEL}/0-res-test" in result.stdout
    with factory() as session:
        row = session.scalar(select(Eval))
        assert row.type_name == "core" and "eval_result_details" not in row.output
        assert row.output["eval_result_metrics"]["sparsity"]["l0"] == pytest.approx(13.1953125)
        assert len(row.detailed_metrics) == 4 and row.detailed_metrics[3]["index"] == 3
        etype = session.get(EvalType, "core")
        assert etype.display_name == "Core" and etype.output_schema["title"] == "Core"

    page = client.get(f"/{MODEL}/0-res-test", headers=JSON).json()
    cats = {c["key"]: c for c in page["evals"][0]["categories"]}
    l0 = next(m for m in cats["sparsity"]["metrics"] if m["key"] == "l0")
    assert l0["title"] == "L0 Sparsity" and l0["default"] and l0["value"] == pytest.approx(13.1953125)
    html = client.get(f"/{MODEL}/0-res-test").text
    assert 'data-metric="sparsity.l0"' in html and "L0 Sparsity" in html and "13.1953" in html

    again = run_cli("import-eval", str(path), "--model", MODEL, "--source", "0-res-test")
    assert again.exit_code == 0 and "replaced the previous one" in again.stdout
    assert _n_evals(factory) == 1


def test_sae_bench_table_and_plot_compare_sources(site: Path, factory: Any, client: Any) -> None:
    better = core_eval(sae_lens_id="blocks.1.hook_resid_pre")
    better["eval_result_metrics"]["sparsity"]["l0"] = 41.5
    better["eval_result_metrics"]["model_performance_preservation"]["ce_loss_score"] = 0.9991
    files = [_write(site / "a.json", core_eval()), _write(site / "b.json", better)]
    assert run_cli("import-eval", str(files[0])).exit_code == 0
    result = run_cli("import-eval", str(files[1]), "--model", MODEL, "--source", "1-res-test")
    assert result.exit_code == 0, result.output

    doc = client.get("/sae-bench.json").json()
    assert doc["type"] == "core" and [r["source"] for r in doc["rows"]] == ["0-res-test", "1-res-test"]
    assert doc["rows"][1]["metrics"]["sparsity.l0"] == 41.5
    keys = [c["key"] for c in doc["columns"]]
    assert "sparsity.l0" in keys and "token_stats.total_tokens_eval_reconstruction" in keys
    assert doc["x"] and doc["y"] and doc["x"] != doc["y"]
    assert client.get("/sae-bench", headers=JSON).json() == doc

    html = client.get("/sae-bench?x=sparsity.l0&y=model_performance_preservation.ce_loss_score").text
    assert 'id="bench-table"' in html and html.count('class="bench-point"') == 2
    assert f'href="/{MODEL}/1-res-test"' in html and "L0 Sparsity" in html

    bad = client.get("/sae-bench.json?x=sparsity.nope")
    assert bad.status_code == 422 and bad.json()["field"] == "x"
    unknown = client.get("/sae-bench.json?type=ravel")
    assert unknown.status_code == 404 and unknown.json()["field"] == "type"


def test_sae_bench_without_evals(settings: Settings, client: Any) -> None:
    assert client.get("/sae-bench.json").json()["rows"] == []
    assert 'id="no-evals"' in client.get("/sae-bench").text


def _missing_l0() -> dict[str, Any]:
    doc = core_eval()
    del doc["eval_result_metrics"]["sparsity"]["l0"]
    return doc


def _bad_detail() -> dict[str, Any]:
    doc = core_eval()
    doc["eval_result_details"][2]["feature_density"] = "high"
    return doc


def _nested() -> dict[str, Any]:
    doc = core_eval()
    doc["eval_result_metrics"]["sparsity"]["extra"] = {"nested": 1}
    return doc


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        (_missing_l0(), "eval_result_metrics.sparsity.l0 is required"),
        (_bad_detail(), "eval_result_details[2].feature_density: 'high' is not of type 'number'"),
        (core_eval(eval_config="fast"), "eval_config: 'fast' is not of type 'object'"),
        (core_eval(eval_type_id="nonsense"), "unknown eval_type_id 'nonsense'"),
        ({k: v for k, v in core_eval().items() if k != "eval_type_id"}, "eval_type_id is missing"),
        (_nested(), "eval_result_metrics.sparsity.extra must be a single value"),
        ('{"eval_type_id": "core", "eval_result_metrics": NaN}', "NaN is not JSON"),
        ("{not json", "not valid JSON"),
        ([1, 2], "a JSON object, not list"),
    ],
)
def test_invalid_eval_names_the_field_and_writes_nothing(site: Path, factory: Any, doc: Any, needle: str) -> None:
    good = _write(site / "good.json", core_eval())
    bad = _write(site / "bad.json", doc)
    result = run_cli("import-eval", str(good), str(bad))
    assert result.exit_code == 1
    assert needle in result.stderr and "bad.json" in result.stderr and "nothing imported" in result.stderr
    assert _n_evals(factory) == 0
    with factory() as session:
        assert session.get(EvalType, "core") is None


def test_eval_source_must_be_known(site: Path, factory: Any) -> None:
    orphan = _write(site / "orphan.json", core_eval(sae_lens_release_id="other", sae_lens_id="x"))
    result = run_cli("import-eval", str(orphan))
    assert result.exit_code == 1 and "no source has SAELens release 'other'" in result.stderr
    wrong = run_cli("import-eval", str(orphan), "--model", MODEL, "--source", "7-nope")
    assert wrong.exit_code == 1 and "7-nope not found" in wrong.stderr
    half = run_cli("import-eval", str(orphan), "--model", MODEL)
    assert half.exit_code == 1 and "both --model and --source" in half.stderr
    missing = run_cli("import-eval", str(site / "absent.json"))
    assert missing.exit_code == 1 and "cannot read" in missing.stderr
    assert _n_evals(factory) == 0


def test_sae_bench_leaves_out_private_sources_for_others(site: Path, factory: Any, client: Any) -> None:
    from interpedia.store.users import create_api_key, ensure_user

    assert run_cli("import-eval", str(_write(site / "a.json", core_eval()))).exit_code == 0
    with transaction(factory) as session:
        owner = ensure_user(session, "owner")
        key = create_api_key(session, owner)
        src = session.scalar(select(Source).where(Source.name == "0-res-test"))
        src.visibility, src.creator_id = "PRIVATE", owner.id
    assert client.get("/sae-bench.json").json()["rows"] == []
    mine = client.get("/sae-bench.json", headers={"x-api-key": key}).json()["rows"]
    assert [r["source"] for r in mine] == ["0-res-test"]
