"""Explain or score one stored feature, the way the API, the feature page and the batch runner all do it.

The order matters for issue #77: the LLM is asked first, outside any write transaction, and only a
complete answer is written. Any LLMError propagates and nothing is stored. ``explain_feature``,
``write_explanation`` and ``score_stored_explanation`` are the on-request workflows (``/api/explanation/*`` and
the feature page's forms): they take a feature's address or an explanation id and return the stored document.
"""

from __future__ import annotations

import zlib

from sqlalchemy.orm import Session

from interpedia.autointerp.evidence import load_evidence
from interpedia.autointerp.explainers import OFFLINE_MODEL, Explainer, explain, get_explainer
from interpedia.autointerp.llm import ChatClient, LLMConfig
from interpedia.autointerp.scorers import NotScorable, Scorer, get_scorer, run_scorer
from interpedia.config import Settings
from interpedia.db.tables import Explanation, ExplanationScore, Feature, User
from interpedia.errors import Forbidden, Invalid, UserError
from interpedia.search.embeddings import Embedder, get_embedder, try_embed
from interpedia.store.documents import ExplanationDoc, ScoreDoc
from interpedia.store.explanations import (
    add_explanation,
    add_score,
    check_description,
    ensure_explanation_catalogue,
    ensure_score_catalogue,
    explanation_json,
    get_explanation,
    has_explanation,
    has_score,
    score_json,
)
from interpedia.store.features import get_feature_row

N_TOP = 20
N_NEGATIVES = 10


def make_llm(settings: Settings, model: str | None = None, api_key: str | None = None) -> ChatClient:
    """A chat client on the configured endpoint, optionally with another model or key."""
    return ChatClient(LLMConfig.from_settings(settings, model=model, api_key=api_key))


def check_may_use_llm(user: User | None) -> None:
    """LLM calls spend the operator's credits: admins and users allowed to trigger explanations only."""
    if user is not None and not (user.admin or user.can_trigger_explanations):
        raise Forbidden(
            "LLM explanations and scores use this server's LLM key: only admins and users allowed "
            "to trigger explanations may ask for them (the offline type interpedia_top-tokens is "
            "open to everyone)",
            field="explanationType",
        )


def explainer_model_name(explainer: Explainer, settings: Settings, requested: str | None) -> str:
    """The explainer model recorded with the explanation (and sent to the LLM)."""
    if not explainer.needs_llm:
        return OFFLINE_MODEL
    name = requested or settings.llm_model
    if not name:
        raise Invalid("no explanation model given and INTERPEDIA_LLM_MODEL is not set", field="explanationModelName")
    return name


def generate_explanation(
    session: Session,
    settings: Settings,
    feature: Feature,
    type_name: str,
    model_name: str | None,
    user: User | None,
    llm: ChatClient | None = None,
    embedder: Embedder | None = None,
) -> Explanation:
    """Explain one feature with one method and store it with its embedding; 400 when it already exists."""
    try:
        explainer = get_explainer(type_name)
    except KeyError as exc:
        raise UserError(str(exc.args[0]), field="explanationType") from None
    if explainer.needs_llm:
        check_may_use_llm(user)
    model = explainer_model_name(explainer, settings, model_name)
    if has_explanation(session, feature.id, explainer.name, model):
        raise UserError(
            f"this feature already has an explanation of type {explainer.name} by {model}", field="explanationType"
        )
    evidence = load_evidence(session, feature, n_top=N_TOP)
    if not evidence.examples:
        raise UserError("this feature has no activating examples to explain", field="index")
    session.rollback()  # no transaction stays open while the LLM thinks
    if explainer.needs_llm and llm is None:
        llm = make_llm(settings, model=model)
    text = explain(explainer, evidence, llm)
    if not text:
        raise UserError("the explainer produced no text for this feature", field="index")
    embedding = try_embed(embedder or get_embedder(settings), [text])[0]
    with session.begin():
        ensure_explanation_catalogue(
            session,
            explainer.name,
            explainer.display_name,
            explainer.description,
            model if explainer.needs_llm else None,
        )
        return add_explanation(
            session,
            feature,
            text,
            type_name=explainer.name,
            model_name=model,
            author_id=user.id if user else None,
            triggered_by=user.id if user else None,
            embedding=embedding,
        )


def scorer_model_name(
    scorer: Scorer, settings: Settings, requested: str | None, embedder: Embedder | None = None
) -> str:
    """The scorer model recorded with the score (the embedding model for eleuther_embedding)."""
    if not scorer.needs_llm:
        return (embedder or get_embedder(settings)).name
    name = requested or settings.llm_model
    if not name:
        raise Invalid("no scorer model given and INTERPEDIA_LLM_MODEL is not set", field="scorerModel")
    return name


def score_explanation(
    session: Session,
    settings: Settings,
    explanation: Explanation,
    type_name: str,
    model_name: str | None,
    user: User | None,
    llm: ChatClient | None = None,
    embedder: Embedder | None = None,
) -> ExplanationScore:
    """Score one explanation with one method and store value + details; 400 when it already exists."""
    try:
        scorer = get_scorer(type_name)
    except KeyError as exc:
        raise UserError(str(exc.args[0]), field="scorerType") from None
    if scorer.needs_llm:
        check_may_use_llm(user)
    embedder = embedder or get_embedder(settings)
    model = scorer_model_name(scorer, settings, model_name, embedder)
    if has_score(session, explanation.id, scorer.name, model):
        raise UserError("a score using this same method and model already exists", field="scorerType")
    feature = session.get(Feature, explanation.feature_id)
    assert feature is not None
    evidence = load_evidence(session, feature, n_top=N_TOP, n_negatives=N_NEGATIVES)
    explanation_id, text = explanation.id, explanation.description
    session.rollback()
    if scorer.needs_llm and llm is None:
        llm = make_llm(settings, model=model)
    try:
        result = run_scorer(
            scorer,
            text,
            evidence.examples,
            evidence.negatives,
            llm=llm,
            embedder=embedder,
            seed=zlib.crc32(explanation_id.encode()),
        )
    except NotScorable as exc:
        raise UserError(str(exc), field="explanationId") from None
    result.details["negatives"] = "stored zero examples, then top examples of other features of the source"
    with session.begin():
        ensure_score_catalogue(session, scorer.name, scorer.display_name, scorer.description, model)
        return add_score(
            session,
            explanation_id,
            result.value,
            type_name=scorer.name,
            model_name=model,
            user_id=user.id if user else None,
            details_json=result.details_json(),
        )


def explain_feature(
    session: Session,
    settings: Settings,
    embedder: Embedder,
    *,
    model_id: str,
    source: str,
    index: int | str,
    type_name: str,
    model_name: str | None,
    user: User | None,
) -> ExplanationDoc:
    """Explain the feature ``model_id/source/index`` with one method and return the stored explanation's document;
    an LLMError propagates with nothing stored."""
    _, _, feature = get_feature_row(session, model_id, source, index)
    exp = generate_explanation(session, settings, feature, type_name, model_name, user, embedder=embedder)
    return explanation_json(session, exp)


def write_explanation(
    session: Session,
    embedder: Embedder,
    *,
    model_id: str,
    source: str,
    index: int | str,
    text: str,
    model_name: str | None,
    user: User,
) -> ExplanationDoc:
    """Store an explanation written by hand (the user's) with its embedding; the stored explanation's document."""
    _, _, feature = get_feature_row(session, model_id, source, index)
    text = check_description(text)
    embedding = try_embed(embedder, [text])[0]
    session.rollback()  # the embedder may take a while: no transaction stays open meanwhile
    with session.begin():
        exp = add_explanation(
            session,
            feature,
            text,
            type_name=None,
            model_name=model_name,
            author_id=user.id,
            triggered_by=user.id,
            embedding=embedding,
        )
    return explanation_json(session, exp)


def score_stored_explanation(
    session: Session,
    settings: Settings,
    embedder: Embedder,
    *,
    explanation_id: str,
    type_name: str,
    model_name: str | None,
    user: User | None,
) -> ScoreDoc:
    """Score the explanation ``explanation_id`` with one method and return the stored score's document; an
    LLMError propagates with nothing stored."""
    exp = get_explanation(session, explanation_id, user)
    row = score_explanation(session, settings, exp, type_name, model_name, user, embedder=embedder)
    return score_json(row)
