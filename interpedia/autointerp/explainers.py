"""Explainers: from a feature's evidence to a one-line explanation, keyed by explanation type name.

The LLM prompts are our own wording of the published methods (reference/neuronpedia.md §6,
reference/generation.md §5): token/activation pairs (OpenAI's automated interpretability),
Neuronpedia's max-activating tokens and texts (with or without top logits), and Delphi's default
explainer (highlighted top-20 examples, answer after ``[EXPLANATION]:``). ``interpedia_top-tokens``
needs no LLM: it names the tokens a feature fires on and the tokens it promotes.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from interpedia.autointerp.evidence import Evidence, Example, dedupe, readable_token, shown_token
from interpedia.autointerp.llm import ChatClient, LLMBadReply, Message

__all__ = ["EXPLAINERS", "OFFLINE_TYPE", "Explainer", "explain", "explain_default", "get_explainer"]

OFFLINE_TYPE = "interpedia_top-tokens"
OFFLINE_MODEL = "interpedia-offline"
_MAX_LEN = 300


@dataclass(frozen=True)
class Explainer:
    """One explanation method: how to build the prompt and read the answer (or, offline, the label)."""

    name: str
    display_name: str
    description: str
    prompt: Callable[[Evidence], list[Message]] | None = None
    parse: Callable[[str], str] | None = None
    offline: Callable[[Evidence], str] | None = None

    @property
    def needs_llm(self) -> bool:
        """False for the offline explainer."""
        return self.offline is None


def _window(ex: Example, width: int = 48) -> Example:
    """At most ``width`` tokens around the strongest one (a few after it, the rest before)."""
    if len(ex.tokens) <= width:
        return ex
    end = min(len(ex.tokens), ex.max_index + 8)
    start = max(0, end - width)
    return Example(ex.tokens[start:end], ex.values[start:end], ex.distance)


def _scaled(ex: Example, top: float) -> list[int]:
    return [max(0, min(10, math.ceil(v * 10 / top))) if top > 0 and v > 0 else 0 for v in ex.values]


def _clean_answer(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        raise LLMBadReply("the LLM gave no explanation")
    answer = lines[0]
    answer = re.sub(r"^(explanation|label|answer|feature)\s*[:\-]\s*", "", answer, flags=re.I).strip()
    answer = answer.strip("\"'`*").strip().rstrip(".").strip()
    if not answer:
        raise LLMBadReply(f"the LLM reply has no explanation: {text[:120]!r}")
    return answer[:_MAX_LEN]


def _parse_tagged(text: str) -> str:
    matches = re.findall(r"\[EXPLANATION\]\s*:\s*(.+)", text)
    if not matches:
        raise LLMBadReply(f"the LLM reply has no '[EXPLANATION]:' line: {text[:160]!r}")
    return _clean_answer(matches[-1])


# --- oai_token-act-pair ---------------------------------------------------------------------------

_TOKEN_PAIR_SYSTEM = (
    "You study the internal features of a language model. A feature is active on some tokens and "
    "silent on others. You will see excerpts of text where one feature is active, written one token "
    "per line as: token<TAB>activation, with activations scaled from 0 (silent) to 10 (the strongest "
    "activation seen). Work out what the feature responds to. Reply with one short phrase of at most "
    "twelve words and nothing else."
)


def _token_pair_prompt(ev: Evidence) -> list[Message]:
    examples = [_window(e, 40) for e in ev.examples[:8]]
    top = max((e.max_value for e in examples), default=0.0)
    blocks = []
    for n, ex in enumerate(examples, 1):
        lines = [f"{readable_token(t)!r}\t{a}" for t, a in zip(ex.tokens, _scaled(ex, top), strict=True)]
        blocks.append(f"Excerpt {n}:\n" + "\n".join(lines))
    user = "\n\n".join(blocks) + "\n\nWhat does this feature respond to?"
    return [{"role": "system", "content": _TOKEN_PAIR_SYSTEM}, {"role": "user", "content": user}]


# --- np_max-act / np_max-act-logits ---------------------------------------------------------------

_MAX_ACT_SYSTEM = (
    "You label features of a language model. You get the tokens where a feature fires most strongly "
    "and the texts it fires on most, with the strongest token of each text wrapped in [[ ]]{logits}. "
    "Name the concept, word or pattern the feature detects as concisely as possible: a few words, no "
    "full sentence, no mention of 'the feature'. Reply with the label only."
)


def _max_act_prompt(ev: Evidence, *, logits: bool) -> list[Message]:
    examples = [_window(e, 32) for e in ev.examples[:10]]
    tokens = Counter(shown_token(e.tokens[e.max_index]) for e in examples if e.tokens)
    parts = ["Tokens where it fires most: " + ", ".join(f'"{t}"' for t, _ in tokens.most_common(10))]
    texts = []
    for n, ex in enumerate(examples, 1):
        pieces = [
            f"[[{readable_token(t)}]]" if i == ex.max_index else readable_token(t) for i, t in enumerate(ex.tokens)
        ]
        texts.append(f"{n}. " + "".join(pieces).replace("\n", "\\n"))
    parts.append("Texts it fires on most:\n" + "\n".join(texts))
    if logits and ev.top_logits:
        parts.append(
            "Tokens it makes more likely next: " + ", ".join(f'"{shown_token(t)}"' for t, _ in ev.top_logits[:10])
        )
    note = ", and the tokens it makes more likely to come next" if logits else ""
    return [
        {"role": "system", "content": _MAX_ACT_SYSTEM.format(logits=note)},
        {"role": "user", "content": "\n\n".join(parts)},
    ]


# --- eleuther_acts_top20 (Delphi's default explainer) ---------------------------------------------

_ELEUTHER_SYSTEM = (
    "You are a careful researcher looking for the pattern behind a language-model feature. You get "
    "text examples in which the tokens where the feature is strongly active are marked <<like this>>. "
    "A marked span can be one token or several. Look for what the marked tokens have in common, and "
    "also at what comes just before them. Think briefly if you like, then end your reply with one "
    "final line of the form:\n[EXPLANATION]: <a short explanation>"
)


def highlight(ex: Example, threshold: float) -> str:
    """The example's text with tokens at or above ``threshold * max`` wrapped in ``<< >>``."""
    cut = ex.max_value * threshold
    out: list[str] = []
    inside = False
    for tok, val in zip(ex.tokens, ex.values, strict=True):
        hot = ex.max_value > 0 and val >= cut and val > 0
        piece = readable_token(tok)
        if hot and not inside:
            body = piece.lstrip()
            out.append(piece[: len(piece) - len(body)] + "<<")  # a leading space stays outside the marks
            piece = body
        elif not hot and inside:
            out.append(">>")
        inside = hot
        out.append(piece)
    if inside:
        out.append(">>")
    return "".join(out).replace("\n", "\\n")


def eleuther_prompt(examples: Sequence[Example], threshold: float = 0.6) -> list[Message]:
    """Delphi-style prompt over the top 20 distinct examples."""
    top = sorted(dedupe(examples), key=lambda e: -e.max_value)[:20]
    lines = [f"Example {n}: {highlight(_window(e, 64), threshold)}" for n, e in enumerate(top, 1)]
    return [{"role": "system", "content": _ELEUTHER_SYSTEM}, {"role": "user", "content": "\n".join(lines)}]


# --- interpedia_top-tokens (offline) --------------------------------------------------------------


def top_tokens_label(ev: Evidence) -> str:
    """A readable label from the tokens a feature fires on and (when known) the tokens it promotes."""
    weights: dict[str, float] = {}
    for ex in ev.examples:
        if ex.tokens:
            token = shown_token(ex.tokens[ex.max_index])
            weights[token] = weights.get(token, 0.0) + ex.max_value
    if not weights:
        return ""
    total = sum(weights.values())
    ranked = sorted(weights.items(), key=lambda kv: -kv[1])
    fired = [t for t, w in ranked[:3] if w >= 0.1 * total] or [ranked[0][0]]
    label = ", ".join(f'"{t}"' for t in fired)
    promoted = [shown_token(t) for t, v in ev.top_logits[:3] if v > 0]
    if promoted:
        label += "; predicts " + ", ".join(f'"{t}"' for t in promoted)
    return label[:_MAX_LEN]


EXPLAINERS: dict[str, Explainer] = {
    e.name: e
    for e in (
        Explainer(
            "oai_token-act-pair",
            "OpenAI token/activation pairs",
            "An LLM reads top examples as token/activation pairs (automated interpretability).",
            prompt=_token_pair_prompt,
            parse=_clean_answer,
        ),
        Explainer(
            "np_max-act",
            "Neuronpedia max activations",
            "An LLM reads the max-activating tokens and texts.",
            prompt=lambda ev: _max_act_prompt(ev, logits=False),
            parse=_clean_answer,
        ),
        Explainer(
            "np_max-act-logits",
            "Neuronpedia max activations + logits",
            "An LLM reads the max-activating tokens, texts and top promoted logits.",
            prompt=lambda ev: _max_act_prompt(ev, logits=True),
            parse=_clean_answer,
        ),
        Explainer(
            "eleuther_acts_top20",
            "EleutherAI default explainer, top 20",
            "Delphi's default explainer over the top 20 distinct examples, tokens highlighted.",
            prompt=lambda ev: eleuther_prompt(ev.examples),
            parse=_parse_tagged,
        ),
        Explainer(
            OFFLINE_TYPE,
            "Top tokens and logits (offline)",
            "No LLM: the tokens the feature fires on most and the tokens it promotes.",
            offline=top_tokens_label,
        ),
    )
}


def get_explainer(name: str) -> Explainer:
    """The explainer for a type name; KeyError lists the known ones."""
    try:
        return EXPLAINERS[name]
    except KeyError:
        raise KeyError(f"unknown explanation type {name!r}; known: {', '.join(sorted(EXPLAINERS))}") from None


def explain(explainer: Explainer, ev: Evidence, llm: ChatClient | None) -> str:
    """The explanation text; an LLMError (never a made-up text) when the LLM fails."""
    if explainer.offline is not None:
        return explainer.offline(ev)
    assert explainer.prompt is not None and explainer.parse is not None
    if llm is None:
        raise ValueError(f"explanation type {explainer.name} needs an LLM")
    return explainer.parse(llm.chat(explainer.prompt(ev)))


def explain_default(examples: Sequence[Example], llm: ChatClient, threshold: float = 0.6) -> str:
    """Delphi's default explainer over raw examples (what ``/v1/explain/default`` runs)."""
    return _parse_tagged(llm.chat(eleuther_prompt(examples, threshold)))
