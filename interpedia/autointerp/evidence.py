"""What explainers and scorers look at: a feature's examples and logits, read from the store."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from interpedia.db.tables import Activation, Feature, Source
from interpedia.store.activations import list_activations

_MARKERS = {"Ġ": " ", "Ċ": "\n", "ĉ": "\t", "▁": " "}


def readable_token(token: str) -> str:
    """A stored token as text: GPT-2's byte-level markers (``Ġ``, ``Ċ``) and SentencePiece's ``▁`` undone."""
    for marker, plain in _MARKERS.items():
        if marker in token:
            token = token.replace(marker, plain)
    return token


def shown_token(token: str) -> str:
    """A token for a one-line list: readable, trimmed, with whitespace-only tokens made visible."""
    text = readable_token(token)
    if text.strip():
        return text.strip()
    return {"\n": "\\n", "\t": "\\t"}.get(text, repr(text))


@dataclass(frozen=True)
class Example:
    """One context: tokens with one activation each; ``distance`` is its quantile (-1: non-activating)."""

    tokens: tuple[str, ...]
    values: tuple[float, ...]
    distance: int = 0

    @property
    def max_value(self) -> float:
        """The largest activation (0 for an empty example)."""
        return max(self.values, default=0.0)

    @property
    def max_index(self) -> int:
        """Where the largest activation is."""
        return self.values.index(self.max_value) if self.values else 0

    @property
    def activating(self) -> bool:
        """True when any token is active."""
        return self.max_value > 0

    @property
    def text(self) -> str:
        """The context as plain text."""
        return "".join(readable_token(t) for t in self.tokens)


@dataclass(frozen=True)
class Evidence:
    """A feature's activating examples (strongest first), non-activating ones, and its logit lens."""

    examples: tuple[Example, ...]
    negatives: tuple[Example, ...] = ()
    top_logits: tuple[tuple[str, float], ...] = ()
    bottom_logits: tuple[tuple[str, float], ...] = ()
    label: str = field(default="", compare=False)


def dedupe(examples: Sequence[Example]) -> list[Example]:
    """Drop examples whose text repeats an earlier one (Neuronpedia dedupes by joined tokens)."""
    seen: set[str] = set()
    out = []
    for ex in examples:
        key = "".join(ex.tokens)
        if key not in seen:
            seen.add(key)
            out.append(ex)
    return out


def split_examples(examples: Sequence[Example], n_top: int = 20, n_negatives: int = 20) -> Evidence:
    """Activating examples (deduped, strongest first, rank quantiles as distance) and all-zero ones."""
    uniq = dedupe(examples)
    pos = sorted((e for e in uniq if e.activating), key=lambda e: -e.max_value)[:n_top]
    n_q = min(10, len(pos)) or 1
    pos = [Example(e.tokens, e.values, distance=i * n_q // max(1, len(pos))) for i, e in enumerate(pos)]
    neg = [Example(e.tokens, e.values, distance=-1) for e in uniq if not e.activating][:n_negatives]
    return Evidence(examples=tuple(pos), negatives=tuple(neg))


def _examples(docs: Sequence[Mapping[str, Any]]) -> list[Example]:
    return [Example(tuple(d["tokens"]), tuple(float(v) for v in d["values"])) for d in docs]


def load_evidence(session: Session, feature: Feature, *, n_top: int = 20, n_negatives: int = 0) -> Evidence:
    """A stored feature's evidence: its examples, logits, and (for scorers) up to ``n_negatives``
    non-activating examples: its stored all-zero ones, then the strongest example of other features of
    the same source, which are presumed silent for this one (dashboards rarely store zero examples)."""
    source = session.get(Source, feature.source_id)
    assert source is not None
    split = split_examples(
        _examples(list_activations(session, source.model_id, source.name, feature)), n_top, n_negatives
    )
    negatives = list(split.negatives)
    if len(negatives) < n_negatives:
        negatives += borrowed_negatives(
            session, source, feature, n_negatives - len(negatives), exclude={"".join(e.tokens) for e in split.examples}
        )
    pos = tuple(zip(feature.pos_str or [], feature.pos_values or [], strict=False))
    neg = tuple(zip(feature.neg_str or [], feature.neg_values or [], strict=False))
    return Evidence(
        examples=split.examples,
        negatives=tuple(negatives),
        top_logits=pos,
        bottom_logits=neg,
        label=f"{source.model_id}/{source.name}/{feature.index}",
    )


def borrowed_negatives(session: Session, source: Source, feature: Feature, n: int, exclude: set[str]) -> list[Example]:
    """The strongest example of up to ``n`` other features of the source, chosen by a seeded draw."""
    count = int(session.scalar(select(func.count()).select_from(Feature).where(Feature.source_id == source.id)) or 0)
    if count < 2 or n <= 0:
        return []
    rng = random.Random(feature.id)
    offsets = rng.sample(range(count), min(count, n * 3))
    out: list[Example] = []
    for off in offsets:
        other = session.scalar(
            select(Feature).where(Feature.source_id == source.id).order_by(Feature.index).offset(off).limit(1)
        )
        if other is None or other.id == feature.id:
            continue
        has_acts = session.scalar(select(Activation.id).where(Activation.feature_id == other.id).limit(1))
        if has_acts is None:
            continue
        docs = list_activations(session, source.model_id, source.name, other, limit=1)
        for ex in _examples(docs):
            key = "".join(ex.tokens)
            if key in exclude:
                continue
            exclude.add(key)
            out.append(Example(ex.tokens, tuple(0.0 for _ in ex.values), distance=-1))
        if len(out) >= n:
            break
    return out[:n]
