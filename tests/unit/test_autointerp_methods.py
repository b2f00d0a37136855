"""Explainers and scorers on hand-made examples, the LLM being the local test server."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))

from fakellm import FakeLLM  # noqa: E402

from interpedia.autointerp.evidence import Evidence, Example, readable_token, split_examples  # noqa: E402
from interpedia.autointerp.explainers import EXPLAINERS, explain, get_explainer, highlight  # noqa: E402
from interpedia.autointerp.llm import ChatClient, LLMBadReply, LLMConfig  # noqa: E402
from interpedia.autointerp.scorers import (  # noqa: E402
    NotScorable,
    balanced_accuracy,
    get_scorer,
    parse_binary_list,
    roc_auc,
    run_scorer,
)


def ex(text: str, hot: str, peak: float = 5.0) -> Example:
    """An example whose tokens are the words of ``text``; the word ``hot`` carries the activation."""
    tokens = tuple(("Ġ" if i else "") + w for i, w in enumerate(text.split()))
    values = tuple(peak if w == hot else 0.0 for w in text.split())
    return Example(tokens, values)


LORD = [
    ex("And the LORD said unto Moses", "LORD", 9.0),
    ex("for the LORD is good", "LORD", 7.5),
    ex("praise the LORD all nations", "LORD", 6.0),
    ex("the LORD spake unto Aaron", "LORD", 4.0),
]
OTHER = [ex("import numpy as np", "", 0), ex("the cat sat on the mat", "", 0), ex("def main ( ) :", "", 0)]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLM]:
    server = FakeLLM().start()
    yield server
    server.stop()


def llm(fake: FakeLLM, model: str = "fake-good") -> ChatClient:
    return ChatClient(LLMConfig(base_url=fake.url, model=model, max_retries=0))


def test_tokens_are_made_readable() -> None:
    assert readable_token("ĠLORD") == " LORD" and readable_token("Ċ") == "\n" and readable_token("▁the") == " the"
    assert highlight(LORD[0], 0.3) == "And the <<LORD>> said unto Moses"


@pytest.mark.parametrize("name", ["oai_token-act-pair", "np_max-act", "np_max-act-logits", "eleuther_acts_top20"])
def test_every_llm_explainer_names_the_strongest_token(fake: FakeLLM, name: str) -> None:
    ev = Evidence(examples=tuple(LORD), top_logits=(("Ġunto", 1.5), ("Ġthee", 1.1)))
    explainer = get_explainer(name)
    assert explainer.needs_llm
    assert explain(explainer, ev, llm(fake)) == "the word LORD"
    prompt = fake.chat_requests("fake-good")[-1]["body"]["messages"]
    text = json.dumps(prompt)
    assert "LORD" in text
    if name == "np_max-act-logits":
        assert "more likely next" in prompt[-1]["content"] and '"unto"' in prompt[-1]["content"]
    if name == "np_max-act":
        assert "more likely next" not in prompt[-1]["content"]


def test_the_offline_explainer_needs_no_llm_and_reads_well() -> None:
    ev = Evidence(examples=tuple(LORD), top_logits=(("Ġunto", 1.5), ("Ġthee", 1.1), ("Ċ", 0.9)))
    explainer = EXPLAINERS["interpedia_top-tokens"]
    assert not explainer.needs_llm
    assert explain(explainer, ev, None) == '"LORD"; predicts "unto", "thee", "\\n"'
    assert explain(explainer, Evidence(examples=()), None) == ""


def test_unparseable_explainer_replies_raise(fake: FakeLLM) -> None:
    with pytest.raises(LLMBadReply, match=r"\[EXPLANATION\]"):
        explain(get_explainer("eleuther_acts_top20"), Evidence(examples=tuple(LORD)), llm(fake, "nonsense"))
    with pytest.raises(LLMBadReply, match="empty"):
        explain(get_explainer("np_max-act"), Evidence(examples=tuple(LORD)), llm(fake, "empty"))


def test_metrics() -> None:
    stats = balanced_accuracy([True, True, False, False], [True, False, False, False])
    assert stats["balanced_accuracy"] == 0.75 and stats["tp"] == 1 and stats["tn"] == 2
    assert roc_auc([0.9, 0.8], [0.1, 0.8]) == 0.875
    with pytest.raises(NotScorable):
        roc_auc([0.5], [])
    assert parse_binary_list("Sure: [1, 0, true]", 3) == [True, False, True]
    with pytest.raises(LLMBadReply, match="expected 2"):
        parse_binary_list("[1, 0, 1]", 2)
    with pytest.raises(LLMBadReply):
        parse_binary_list("maybe", 1)


def test_split_examples_dedupes_and_finds_non_activating_ones() -> None:
    split = split_examples([LORD[1], LORD[0], LORD[0], *OTHER])
    assert [e.max_value for e in split.examples] == [9.0, 7.5] and len(split.negatives) == 3
    assert all(e.distance == -1 for e in split.negatives) and split.examples[0].distance == 0


@pytest.mark.parametrize("name", ["eleuther_recall", "eleuther_fuzz", "recall_alt"])
def test_a_good_explanation_outscores_a_bad_one(fake: FakeLLM, name: str) -> None:
    scorer = get_scorer(name)
    good = run_scorer(scorer, "the word LORD", LORD, OTHER, llm=llm(fake), embedder=None, seed=1)
    bad = run_scorer(scorer, "the word banana", LORD, OTHER, llm=llm(fake), embedder=None, seed=1)
    assert good.value == 1.0 and bad.value <= 0.5
    assert 0.0 <= bad.value <= 1.0
    details = json.loads(good.details_json())
    assert details["method"] and details["breakdown"] and "tp" in details
    if name != "recall_alt":
        row = good.breakdown[0]
        assert set(row) == {
            "str_tokens",
            "activations",
            "distance",
            "ground_truth",
            "prediction",
            "highlighted",
            "probability",
            "correct",
        }
        assert isinstance(row["distance"], int)


def test_llm_scorers_refuse_without_both_kinds_and_on_bad_replies(fake: FakeLLM) -> None:
    with pytest.raises(NotScorable, match="non-activating"):
        run_scorer(get_scorer("eleuther_fuzz"), "x", LORD, [], llm=llm(fake), embedder=None)
    with pytest.raises(LLMBadReply):
        run_scorer(
            get_scorer("eleuther_recall"), "the word LORD", LORD, OTHER, llm=llm(fake, "nonsense"), embedder=None
        )
    with pytest.raises(LLMBadReply):
        run_scorer(get_scorer("recall_alt"), "the word LORD", LORD, OTHER, llm=llm(fake, "nonsense"), embedder=None)


def test_the_embedding_scorer_is_a_roc_auc_with_the_local_model() -> None:
    from interpedia.search.embeddings import LocalEmbedder

    embedder = LocalEmbedder()
    biblical = run_scorer(
        get_scorer("eleuther_embedding"), "the LORD in Biblical verses", LORD, OTHER, llm=None, embedder=embedder
    )
    assert biblical.value == 1.0
    assert {"text", "distance", "similarity"} == set(biblical.breakdown[0])
    code = run_scorer(get_scorer("eleuther_embedding"), "Python source code", LORD, OTHER, llm=None, embedder=embedder)
    assert code.value < biblical.value
