"""Batch autointerp over a whole source: ``interpedia explain`` and ``interpedia score``.

Features are taken in chunks: the chunk's evidence is read, the LLM is asked in parallel (up to
INTERPEDIA_LLM_CONCURRENCY requests in flight), the answers are embedded together, and the chunk's
successes are written in one short transaction. A rerun skips features that already have an
explanation of the type and model (scores: explanations that already have the score), so a killed
run resumes where it stopped. A failed LLM call stores nothing for that feature; a key that is
refused, an account without credits or a missing configuration stops the run at once.
"""

from __future__ import annotations

import logging
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session, sessionmaker

from interpedia.autointerp.evidence import Evidence, load_evidence
from interpedia.autointerp.explainers import Explainer, explain, get_explainer
from interpedia.autointerp.llm import ChatClient, LLMAuthError, LLMError, LLMNoCredits, LLMNotConfigured
from interpedia.autointerp.scorers import NotScorable, Scorer, get_scorer, run_scorer
from interpedia.autointerp.service import N_NEGATIVES, N_TOP, explainer_model_name, make_llm, scorer_model_name
from interpedia.config import Settings
from interpedia.db import transaction
from interpedia.db.tables import Activation, Explanation, ExplanationScore, Feature
from interpedia.search.embeddings import get_embedder, try_embed
from interpedia.store.catalogue import get_model, get_source
from interpedia.store.explanations import (
    add_explanation,
    add_score,
    ensure_explanation_catalogue,
    ensure_score_catalogue,
)

log = logging.getLogger(__name__)

FATAL = (LLMAuthError, LLMNoCredits, LLMNotConfigured)
Progress = Callable[[int], None]


class RunAborted(Exception):
    """The run stopped on an error no other feature would get past (bad key, no credits, no LLM)."""

    def __init__(self, error: LLMError, summary: RunSummary) -> None:
        super().__init__(error.message)
        self.error = error
        self.summary = summary


@dataclass
class RunSummary:
    """What a batch run did."""

    done: int = 0
    skipped_existing: int = 0
    skipped_empty: int = 0
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    def describe(self) -> str:
        """One line for the terminal."""
        text = (
            f"{self.done} written, {self.skipped_existing} already there, {self.skipped_empty} without "
            f"examples, {self.failed} failed"
        )
        if self.errors:
            text += " (" + "; ".join(f"{n}x {msg}" for msg, n in self.errors.most_common(3)) + ")"
        return text


def parse_ranges(spec: str | None) -> list[int] | None:
    """``"0-99,120"`` -> [0..99, 120]; None or empty -> None (all features)."""
    if not spec:
        return None
    out: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            start, end = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise ValueError(f"bad feature range {part!r}: use e.g. 0-99,120") from None
        if start < 0 or end < start:
            raise ValueError(f"bad feature range {part!r}")
        out.update(range(start, end + 1))
    return sorted(out)


def _chunks(items: Sequence[Any], size: int, probe: bool = False) -> Iterator[Sequence[Any]]:
    """Slices of ``size``; with ``probe`` the first slice has one item, so a refused key stops the run
    after one request instead of a chunk's worth."""
    start = 0
    if probe and items:
        yield items[:1]
        start = 1
    for begin in range(start, len(items), size):
        yield items[begin : begin + size]


def _source_features(session: Session, model_id: str, source_name: str, indexes: list[int] | None) -> list[int]:
    get_model(session, model_id)
    source = get_source(session, model_id, source_name)
    rows = session.execute(
        select(Feature.id, Feature.index).where(Feature.source_id == source.id).order_by(Feature.index)
    ).all()
    if indexes is None:
        return [fid for fid, _ in rows]
    wanted = set(indexes)
    return [fid for fid, idx in rows if idx in wanted]


class _Pool:
    """Runs LLM work in parallel threads; the runner's only concurrency."""

    def __init__(self, workers: int) -> None:
        self.executor = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="autointerp")

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        def safe(item: Any) -> Any:
            try:
                return fn(item)
            except (LLMError, NotScorable) as exc:
                return exc

        return list(self.executor.map(safe, items))

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


def _record_failure(summary: RunSummary, exc: Exception) -> None:
    summary.failed += 1
    summary.errors[str(exc)[:160]] += 1


def explain_source(
    factory: sessionmaker[Session],
    settings: Settings,
    model_id: str,
    source_name: str,
    *,
    type_name: str,
    model_name: str | None = None,
    indexes: list[int] | None = None,
    llm: ChatClient | None = None,
    chunk: int = 64,
    progress: Progress | None = None,
    total: Callable[[int], None] | None = None,
) -> RunSummary:
    """Explain every live feature of a source that lacks an explanation of this type and model."""
    explainer = get_explainer(type_name)
    model = explainer_model_name(explainer, settings, model_name)
    if explainer.needs_llm and llm is None:
        llm = make_llm(settings, model=model)
    with factory() as session:
        ids = _source_features(session, model_id, source_name, indexes)
    if total:
        total(len(ids))
    summary = RunSummary()
    pool = _Pool(settings.llm_concurrency if explainer.needs_llm else 1)
    try:
        for part in _chunks(ids, chunk, probe=explainer.needs_llm):
            _explain_chunk(factory, settings, explainer, model, llm, part, summary, pool)
            if progress:
                progress(len(part))
    finally:
        pool.close()
    return summary


def _explain_chunk(
    factory: sessionmaker[Session],
    settings: Settings,
    explainer: Explainer,
    model: str,
    llm: ChatClient | None,
    ids: Sequence[int],
    summary: RunSummary,
    pool: _Pool,
) -> None:
    todo: list[tuple[int, Evidence]] = []
    with factory() as session:
        done = set(
            session.scalars(
                select(Explanation.feature_id).where(
                    Explanation.feature_id.in_(list(ids)),
                    Explanation.type_name == explainer.name,
                    Explanation.explanation_model_name == model,
                )
            )
        )
        for fid in ids:
            if fid in done:
                summary.skipped_existing += 1
                continue
            has_acts = session.scalar(select(exists().where(Activation.feature_id == fid)))
            feature = session.get(Feature, fid)
            evidence = load_evidence(session, feature, n_top=N_TOP) if has_acts and feature else None
            if evidence is None or not evidence.examples:
                summary.skipped_empty += 1
                continue
            todo.append((fid, evidence))
    answers = pool.map(lambda item: explain(explainer, item[1], llm), todo) if todo else []
    good: list[tuple[int, str]] = []
    fatal: LLMError | None = None
    for (fid, _), answer in zip(todo, answers, strict=True):
        if isinstance(answer, FATAL):
            fatal = fatal or answer
            _record_failure(summary, answer)
        elif isinstance(answer, Exception):
            _record_failure(summary, answer)
        elif not answer:
            summary.skipped_empty += 1
        else:
            good.append((fid, answer))
    if good:
        embeddings = try_embed(get_embedder(settings), [text for _, text in good])
        with transaction(factory) as session:
            ensure_explanation_catalogue(
                session,
                explainer.name,
                explainer.display_name,
                explainer.description,
                model if explainer.needs_llm else None,
            )
            for (fid, text), emb in zip(good, embeddings, strict=True):
                feature = session.get(Feature, fid)
                assert feature is not None
                add_explanation(
                    session,
                    feature,
                    text,
                    type_name=explainer.name,
                    model_name=model,
                    author_id=None,
                    triggered_by=None,
                    embedding=emb,
                )
        summary.done += len(good)
    if fatal is not None:
        raise RunAborted(fatal, summary)


def score_source(
    factory: sessionmaker[Session],
    settings: Settings,
    model_id: str,
    source_name: str,
    *,
    scorer_type: str,
    scorer_model: str | None = None,
    explanation_type: str | None = None,
    indexes: list[int] | None = None,
    llm: ChatClient | None = None,
    chunk: int = 32,
    progress: Progress | None = None,
    total: Callable[[int], None] | None = None,
) -> RunSummary:
    """Score every explanation of a source (optionally of one type) that lacks this score."""
    scorer = get_scorer(scorer_type)
    model = scorer_model_name(scorer, settings, scorer_model)
    if scorer.needs_llm and llm is None:
        llm = make_llm(settings, model=model)
    with factory() as session:
        fids = _source_features(session, model_id, source_name, indexes)
        exps: list[str] = []
        for part in _chunks(fids, 500):
            stmt = select(Explanation.id).where(Explanation.feature_id.in_(list(part))).order_by(Explanation.id)
            if explanation_type:
                stmt = stmt.where(Explanation.type_name == explanation_type)
            exps.extend(session.scalars(stmt))
    if total:
        total(len(exps))
    summary = RunSummary()
    pool = _Pool(settings.llm_concurrency if scorer.needs_llm else 1)
    try:
        for part in _chunks(exps, chunk, probe=scorer.needs_llm):
            _score_chunk(factory, settings, scorer, model, llm, part, summary, pool)
            if progress:
                progress(len(part))
    finally:
        pool.close()
    return summary


def _score_chunk(
    factory: sessionmaker[Session],
    settings: Settings,
    scorer: Scorer,
    model: str,
    llm: ChatClient | None,
    ids: Sequence[str],
    summary: RunSummary,
    pool: _Pool,
) -> None:
    todo: list[tuple[str, str, Evidence]] = []
    with factory() as session:
        done = set(
            session.scalars(
                select(ExplanationScore.explanation_id).where(
                    ExplanationScore.explanation_id.in_(list(ids)),
                    ExplanationScore.explanation_score_type_name == scorer.name,
                    ExplanationScore.explanation_score_model_name == model,
                )
            )
        )
        for eid in ids:
            if eid in done:
                summary.skipped_existing += 1
                continue
            exp = session.get(Explanation, eid)
            feature = session.get(Feature, exp.feature_id) if exp else None
            if exp is None or feature is None:
                continue
            todo.append((eid, exp.description, load_evidence(session, feature, n_top=N_TOP, n_negatives=N_NEGATIVES)))
    embedder = get_embedder(settings)

    def run(item: tuple[str, str, Evidence]) -> Any:
        eid, text, ev = item
        return run_scorer(
            scorer, text, ev.examples, ev.negatives, llm=llm, embedder=embedder, seed=zlib.crc32(eid.encode())
        )

    results = pool.map(run, todo) if todo else []
    fatal: LLMError | None = None
    good = []
    for (eid, _, _), res in zip(todo, results, strict=True):
        if isinstance(res, FATAL):
            fatal = fatal or res
            _record_failure(summary, res)
        elif isinstance(res, NotScorable):
            summary.skipped_empty += 1
        elif isinstance(res, Exception):
            _record_failure(summary, res)
        else:
            good.append((eid, res))
    if good:
        with transaction(factory) as session:
            ensure_score_catalogue(session, scorer.name, scorer.display_name, scorer.description, model)
            for eid, res in good:
                add_score(
                    session,
                    eid,
                    res.value,
                    type_name=scorer.name,
                    model_name=model,
                    user_id=None,
                    details_json=res.details_json(),
                )
        summary.done += len(good)
    if fatal is not None:
        raise RunAborted(fatal, summary)
