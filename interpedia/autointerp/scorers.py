"""Scorers: how well an explanation predicts where a feature fires. Each gives a value in 0..1 and details.

- ``eleuther_recall`` (Delphi's detection): the LLM sees plain examples, activating and not, and says
  for each whether the feature would fire; the value is balanced accuracy.
- ``eleuther_fuzz`` (Delphi's fuzzing): activating examples have their active tokens marked, the others
  have as many random tokens marked; the LLM says whether the marks fit the explanation; balanced accuracy.
- ``eleuther_embedding``: ROC-AUC of the cosine similarity between the explanation and each example
  (local sentence embeddings) at separating activating from non-activating examples.
- ``recall_alt``: the LLM picks, among the top examples mixed with fixed decoy sentences, the texts the
  explanation describes; balanced accuracy over examples vs decoys.

An LLM that fails (error, unparseable list, wrong length) raises; no partial score is made up.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from interpedia.autointerp.evidence import Example, readable_token
from interpedia.autointerp.llm import ChatClient, LLMBadReply, Message
from interpedia.errors import Invalid
from interpedia.search.embeddings import Embedder

__all__ = ["SCORERS", "ScoreResult", "Scorer", "balanced_accuracy", "get_scorer", "roc_auc"]

HIGHLIGHT = 0.3  # Delphi marks tokens at or above 0.3 * the example's max
_BATCH = 5  # examples per LLM prompt (Delphi's CLI default)


class NotScorable(Invalid):
    """The examples cannot support a score (no activating or no non-activating ones)."""


@dataclass
class ScoreResult:
    """A score in 0..1 with the per-example breakdown (``details`` is stored as JSON)."""

    value: float
    breakdown: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def details_json(self) -> str:
        """What ``explanation_scores.json_details`` stores."""
        return json.dumps({**self.details, "breakdown": self.breakdown}, separators=(",", ":"))


def balanced_accuracy(truth: Sequence[bool], pred: Sequence[bool]) -> dict[str, float]:
    """(TPR + TNR) / 2 with the confusion counts (Delphi's 'accuracy')."""
    tp = sum(1 for t, p in zip(truth, pred, strict=True) if t and p)
    fn = sum(1 for t, p in zip(truth, pred, strict=True) if t and not p)
    tn = sum(1 for t, p in zip(truth, pred, strict=True) if not t and not p)
    fp = sum(1 for t, p in zip(truth, pred, strict=True) if not t and p)
    tpr = tp / (tp + fn) if tp + fn else 0.0
    tnr = tn / (tn + fp) if tn + fp else 0.0
    precision = tp / (tp + fp) if tp + fp else 0.0
    f1 = 2 * precision * tpr / (precision + tpr) if precision + tpr else 0.0
    return {
        "balanced_accuracy": (tpr + tnr) / 2,
        "tp": tp,
        "fn": fn,
        "tn": tn,
        "fp": fp,
        "recall": tpr,
        "specificity": tnr,
        "precision": precision,
        "f1": f1,
    }


def roc_auc(pos: Sequence[float], neg: Sequence[float]) -> float:
    """Area under the ROC curve: the chance a random positive outscores a random negative (ties count half)."""
    if not pos or not neg:
        raise NotScorable("ROC-AUC needs both activating and non-activating examples")
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return float(wins / (len(pos) * len(neg)))


def _need_both(pos: Sequence[Example], neg: Sequence[Example]) -> None:
    if not pos:
        raise NotScorable("no activating examples to score against")
    if not neg:
        raise NotScorable("no non-activating examples to score against (give examples whose values are all 0)")


def parse_binary_list(text: str, n: int) -> list[bool]:
    """The last ``[..]`` list of 0/1 (or true/false) in a reply, which must have ``n`` items."""
    lists = re.findall(r"\[([^\[\]]*)\]", text)
    for body in reversed(lists):
        items = [x.strip().strip("\"'").lower() for x in body.split(",") if x.strip()]
        if items and all(x in ("0", "1", "true", "false") for x in items):
            if len(items) != n:
                raise LLMBadReply(f"the LLM judged {len(items)} examples, expected {n}: {text[:160]!r}")
            return [x in ("1", "true") for x in items]
    raise LLMBadReply(f"the LLM reply has no list of 0s and 1s: {text[:160]!r}")


def _plain(ex: Example) -> str:
    return ex.text.replace("\n", "\\n")


def _marked(ex: Example, marks: set[int]) -> str:
    out: list[str] = []
    for i, tok in enumerate(ex.tokens):
        piece = readable_token(tok)
        body = piece.lstrip()
        out.append(f"{piece[: len(piece) - len(body)]}<<{body}>>" if i in marks else piece)
    return "".join(out).replace("\n", "\\n")


def _window(ex: Example, width: int = 64) -> Example:
    if len(ex.tokens) <= width:
        return ex
    end = min(len(ex.tokens), ex.max_index + 16)
    start = max(0, end - width)
    return Example(ex.tokens[start:end], ex.values[start:end], ex.distance)


_DETECTION_SYSTEM = (
    "You check explanations of language-model features. You get an explanation of what one feature "
    "responds to, then numbered text examples. For each example decide, from the explanation alone, "
    "whether the feature would be active anywhere in it. Reply with one list of 0s and 1s, one per "
    "example in order, for example [1, 0, 0, 1, 1], and nothing else."
)
_FUZZ_SYSTEM = (
    "You check explanations of language-model features. You get an explanation of what one feature "
    "responds to, then numbered text examples in which some tokens are marked <<like this>>. For each "
    "example decide whether the marked tokens are the kind of thing the explanation describes (1) or "
    "not (0). Reply with one list of 0s and 1s, one per example in order, for example [0, 1, 1, 0, 1], "
    "and nothing else."
)


def _judge_batches(
    llm: ChatClient, system: str, explanation: str, texts: Sequence[str], rng: random.Random
) -> list[bool]:
    order = list(range(len(texts)))
    rng.shuffle(order)
    verdict: dict[int, bool] = {}
    for start in range(0, len(order), _BATCH):
        batch = order[start : start + _BATCH]
        lines = [f"Example {n}: {texts[i]}" for n, i in enumerate(batch, 1)]
        msgs: list[Message] = [
            {"role": "system", "content": system},
            {"role": "user", "content": f"Explanation: {explanation}\n\n" + "\n".join(lines)},
        ]
        for i, v in zip(batch, parse_binary_list(llm.chat(msgs, max_tokens=100), len(batch)), strict=True):
            verdict[i] = v
    return [verdict[i] for i in range(len(texts))]


def _classifier_result(
    examples: Sequence[Example], truth: Sequence[bool], preds: Sequence[bool], highlighted: Sequence[bool], method: str
) -> ScoreResult:
    stats = balanced_accuracy(truth, preds)
    breakdown = [
        {
            "str_tokens": [readable_token(t) for t in ex.tokens],
            "activations": list(ex.values),
            "distance": int(ex.distance),
            "ground_truth": bool(t),
            "prediction": bool(p),
            "highlighted": bool(h),
            "probability": 1.0 if p else 0.0,
            "correct": bool(t) == bool(p),
        }
        for ex, t, p, h in zip(examples, truth, preds, highlighted, strict=True)
    ]
    return ScoreResult(stats["balanced_accuracy"], breakdown, {"method": method, **stats})


def score_detection(
    explanation: str, pos: Sequence[Example], neg: Sequence[Example], llm: ChatClient, rng: random.Random
) -> ScoreResult:
    """Delphi's detection scorer: plain examples, a 0/1 verdict each; balanced accuracy."""
    _need_both(pos, neg)
    examples = [_window(e) for e in (*pos, *neg)]
    truth = [e.activating for e in pos] + [False] * len(neg)
    preds = _judge_batches(llm, _DETECTION_SYSTEM, explanation, [_plain(e) for e in examples], rng)
    return _classifier_result(examples, truth, preds, [False] * len(examples), "detection")


def score_fuzz(
    explanation: str, pos: Sequence[Example], neg: Sequence[Example], llm: ChatClient, rng: random.Random
) -> ScoreResult:
    """Delphi's fuzzing scorer: true marks on activating examples, random marks on the others."""
    _need_both(pos, neg)
    pos_w = [_window(e) for e in pos]
    neg_w = [_window(e) for e in neg]
    marks = [{i for i, v in enumerate(e.values) if v > 0 and v >= HIGHLIGHT * e.max_value} for e in pos_w]
    n_marks = max(1, math.ceil(sum(len(m) for m in marks) / max(1, len(marks))))
    for ex in neg_w:
        k = min(n_marks, len(ex.tokens))
        marks.append(set(rng.sample(range(len(ex.tokens)), k)) if k else set())
    examples = [*pos_w, *neg_w]
    texts = [_marked(e, m) for e, m in zip(examples, marks, strict=True)]
    truth = [True] * len(pos_w) + [False] * len(neg_w)
    preds = _judge_batches(llm, _FUZZ_SYSTEM, explanation, texts, rng)
    return _classifier_result(examples, truth, preds, [True] * len(examples), "fuzz")


def score_embedding(
    explanation: str, pos: Sequence[Example], neg: Sequence[Example], embedder: Embedder
) -> ScoreResult:
    """ROC-AUC of explanation-to-example cosine similarity (activating vs non-activating)."""
    _need_both(pos, neg)
    examples = [_window(e) for e in (*pos, *neg)]
    texts = [e.text for e in examples]
    vecs = embedder.embed([explanation, *texts])
    sims = (vecs[1:] @ vecs[0]).astype(float).tolist()
    auc = roc_auc(sims[: len(pos)], sims[len(pos) :])
    breakdown = [
        {"text": t, "distance": int(e.distance), "similarity": float(s)}
        for t, e, s in zip(texts, examples, sims, strict=True)
    ]
    details = {
        "method": "embedding",
        "roc_auc": auc,
        "embedding_model": getattr(embedder, "name", ""),
        "mean_similarity_activating": float(np.mean(sims[: len(pos)])),
        "mean_similarity_non_activating": float(np.mean(sims[len(pos) :])),
    }
    return ScoreResult(auc, breakdown, details)


# Fixed decoys for recall_alt: ordinary sentences about unrelated everyday topics.
DECOYS = (
    "The bus was ten minutes late, so we walked to the station instead.",
    "She watered the tomatoes before the afternoon got too hot.",
    "Our quarterly meeting has been moved to the second floor conference room.",
    "He folded the laundry while the radio played old jazz records.",
    "The recipe calls for two cups of flour and a pinch of salt.",
    "Rain is expected over the weekend, with clearer skies by Monday.",
    "The museum opens at nine and closes early on public holidays.",
    "They painted the fence a pale shade of green last summer.",
    "Please remember to return the library books by Friday.",
    "The cat slept on the windowsill for most of the afternoon.",
)
_RECALL_SYSTEM = (
    "You check explanations of language-model features. You get an explanation of what one feature "
    "responds to and numbered texts. Decide which texts contain something the explanation describes. "
    'Reply with JSON only, in the form {"matches": [numbers of the matching texts]}.'
)


def _parse_matches(text: str, n: int) -> set[int]:
    found = re.search(r"\{.*\}", text, flags=re.S)
    if not found:
        raise LLMBadReply(f"the LLM reply has no JSON object: {text[:160]!r}")
    try:
        matches = json.loads(found.group(0))["matches"]
        picked = {int(m) for m in matches}
    except (ValueError, KeyError, TypeError) as exc:
        raise LLMBadReply(f'the LLM reply is not {{"matches": [...]}}: {text[:160]!r}') from exc
    if any(m < 1 or m > n for m in picked):
        raise LLMBadReply(f"the LLM picked texts outside 1..{n}: {sorted(picked)}")
    return picked


def score_recall_alt(
    explanation: str, pos: Sequence[Example], neg: Sequence[Example], llm: ChatClient, rng: random.Random
) -> ScoreResult:
    """Top examples mixed with decoys (the fixed sentences and any non-activating examples); balanced accuracy."""
    if not pos:
        raise NotScorable("no activating examples to score against")
    items = [(_plain(_window(e)), True, e.distance) for e in pos]
    items += [(d, False, -1) for d in DECOYS] + [(_plain(_window(e)), False, -1) for e in neg]
    rng.shuffle(items)
    listing = "\n".join(f"{n}. {text}" for n, (text, _, _) in enumerate(items, 1))
    msgs: list[Message] = [
        {"role": "system", "content": _RECALL_SYSTEM},
        {"role": "user", "content": f"Explanation: {explanation}\n\nTexts:\n{listing}"},
    ]
    picked = _parse_matches(llm.chat(msgs, max_tokens=300), len(items))
    truth = [t for _, t, _ in items]
    preds = [n in picked for n in range(1, len(items) + 1)]
    stats = balanced_accuracy(truth, preds)
    breakdown = [
        {"text": text, "distance": int(d), "ground_truth": t, "prediction": p, "correct": t == p}
        for (text, t, d), p in zip(items, preds, strict=True)
    ]
    return ScoreResult(stats["balanced_accuracy"], breakdown, {"method": "recall_alt", **stats})


@dataclass(frozen=True)
class Scorer:
    """A scoring method by its Neuronpedia type name."""

    name: str
    display_name: str
    description: str
    needs_llm: bool
    run: Callable[..., ScoreResult]


SCORERS: dict[str, Scorer] = {
    s.name: s
    for s in (
        Scorer(
            "eleuther_recall",
            "EleutherAI detection",
            "LLM predicts which plain examples activate (balanced accuracy).",
            True,
            score_detection,
        ),
        Scorer(
            "eleuther_fuzz",
            "EleutherAI fuzzing",
            "LLM judges whether marked tokens fit the explanation (balanced accuracy).",
            True,
            score_fuzz,
        ),
        Scorer(
            "eleuther_embedding",
            "Embedding ROC-AUC",
            "ROC-AUC of explanation/example embedding similarity (all-MiniLM-L6-v2).",
            False,
            score_embedding,
        ),
        Scorer(
            "recall_alt",
            "Recall vs decoys",
            "LLM picks the texts the explanation describes among top examples and decoys (balanced accuracy).",
            True,
            score_recall_alt,
        ),
    )
}


def get_scorer(name: str) -> Scorer:
    """The scorer for a type name; KeyError lists the known ones."""
    try:
        return SCORERS[name]
    except KeyError:
        raise KeyError(f"unknown score type {name!r}; known: {', '.join(sorted(SCORERS))}") from None


def run_scorer(
    scorer: Scorer,
    explanation: str,
    pos: Sequence[Example],
    neg: Sequence[Example],
    *,
    llm: ChatClient | None,
    embedder: Embedder | None,
    seed: int = 0,
) -> ScoreResult:
    """Score with any scorer; LLM scorers need ``llm``, the embedding scorer ``embedder``."""
    if scorer.name == "eleuther_embedding":
        if embedder is None:
            raise ValueError("the embedding scorer needs an embedder")
        return scorer.run(explanation, pos, neg, embedder)
    if llm is None:
        raise ValueError(f"score type {scorer.name} needs an LLM")
    return scorer.run(explanation, pos, neg, llm, random.Random(seed))
