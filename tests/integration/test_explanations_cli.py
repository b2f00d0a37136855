"""``interpedia explain`` and ``interpedia score``: batch runs over a source, resume, and LLM failures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from factories import write_saedashboard_dir
from fakellm import FakeLLM, fake_llm  # noqa: F401  (fixture)
from sqlalchemy import func, select

from interpedia.cli import main
from interpedia.db.tables import Explanation, ExplanationScore
from interpedia.ingest import import_path


@pytest.fixture(autouse=True)
def _llm_first(fake_llm: FakeLLM) -> FakeLLM:  # noqa: F811
    return fake_llm


@pytest.fixture
def imported(settings: Any, factory: Any, tmp_path: Path) -> None:
    import_path(write_saedashboard_dir(tmp_path / "dash", n_features=12, per_batch=5), factory)


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def explanations(factory: Any, **where: Any) -> list[Explanation]:
    with factory() as session:
        stmt = select(Explanation)
        for col, value in where.items():
            stmt = stmt.where(getattr(Explanation, col) == value)
        return list(session.scalars(stmt))


def test_offline_explain_covers_the_source_and_resumes(imported: None, factory: Any) -> None:
    first = run("explain", "--source", "tiny-test/0-res-test", "--features", "0-4,7")
    assert first.exit_code == 0, first.output
    assert "6 written, 0 already there" in first.output
    second = run("explain", "--source", "tiny-test/0-res-test")
    assert second.exit_code == 0, second.output
    assert "6 written, 6 already there" in second.output
    rows = explanations(factory, type_name="interpedia_top-tokens")
    assert len(rows) == 12 and all(r.embedding is not None and r.description for r in rows)
    assert "0 written, 12 already there" in run("explain", "--source", "tiny-test/0-res-test").output


def test_llm_explain_and_score_in_batch(imported: None, factory: Any, fake_llm: FakeLLM) -> None:  # noqa: F811
    result = run("explain", "--source", "tiny-test/0-res-test", "--type", "np_max-act", "--features", "0-2")
    assert result.exit_code == 0, result.output
    rows = explanations(factory, type_name="np_max-act")
    assert len(rows) == 3 and all(r.description.startswith("the word ") for r in rows)
    assert all(r.explanation_model_name == "fake-good" for r in rows)
    scored = run("score", "--source", "tiny-test/0-res-test", "--scorer", "eleuther_recall")
    assert scored.exit_code == 0, scored.output
    assert "3 written" in scored.output
    emb = run("score", "--source", "tiny-test/0-res-test", "--scorer", "eleuther_embedding", "--type", "np_max-act")
    assert "3 written" in emb.output
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(ExplanationScore)) == 6


@pytest.mark.parametrize(("model", "words"), [("fail-401", "refused the API key"), ("fail-402", "no credits")])
def test_a_refused_key_stops_the_run_after_one_request(
    imported: None,
    factory: Any,
    fake_llm: FakeLLM,  # noqa: F811
    model: str,
    words: str,
) -> None:
    result = run("explain", "--source", "tiny-test/0-res-test", "--type", "oai_token-act-pair", "--model", model)
    assert result.exit_code == 1
    assert words in result.output and "stopped" in result.output
    assert len(fake_llm.chat_requests(model)) == 1
    assert explanations(factory) == []


def test_unparseable_replies_fail_per_feature_and_store_nothing(imported: None, factory: Any) -> None:
    result = run(
        "explain",
        "--source",
        "tiny-test/0-res-test",
        "--type",
        "eleuther_acts_top20",
        "--model",
        "nonsense",
        "--features",
        "0-3",
    )
    assert result.exit_code == 1
    assert "0 written" in result.output and "4 failed" in result.output
    assert explanations(factory) == []


def test_bad_arguments(imported: None) -> None:
    assert "MODEL/SOURCE" in run("explain", "--source", "tiny-test").output
    assert "bad feature range" in run("explain", "--source", "tiny-test/0-res-test", "--features", "5-2").output
    assert "unknown explanation type" in run("explain", "--source", "tiny-test/0-res-test", "--type", "x").output
    assert "not found" in run("explain", "--source", "tiny-test/9-nope").output
