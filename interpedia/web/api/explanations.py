"""Explanations and scores: ``/api/explanation/generate``, ``/new``, ``/{id}``, ``/{id}/delete``,
``/score``, ``/score/{id}/delete`` (bodies as neuronpedia.org takes them)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import Field, StrictStr

from interpedia.autointerp.llm import LLMError
from interpedia.autointerp.service import explain_feature, score_stored_explanation, write_explanation
from interpedia.errors import UserError
from interpedia.search.embeddings import get_embedder
from interpedia.store.explanations import delete_explanation, delete_score, explanation_json, get_explanation
from interpedia.web.deps import OptionalUser, RequiredUser, SessionDep, SettingsDep
from interpedia.web.urls import absolute_url, page_path
from interpedia.web.wire import Body, Index, json_response

router = APIRouter(tags=["explanations"])


class GenerateBody(Body):
    """``POST /api/explanation/generate``."""

    modelId: StrictStr
    layer: StrictStr
    index: Index
    explanationType: StrictStr
    explanationModelName: StrictStr | None = None


class NewFeature(Body):
    """The ``feature`` object of ``POST /api/explanation/new``."""

    modelId: StrictStr
    layer: StrictStr
    index: Index
    explanation: Annotated[StrictStr, Field(min_length=1, max_length=1000)]
    explanationModel: StrictStr | None = None


class NewBody(Body):
    """``POST /api/explanation/new``."""

    feature: NewFeature


class ScoreBody(Body):
    """``POST /api/explanation/score``."""

    explanationId: StrictStr
    scorerType: StrictStr
    scorerModel: StrictStr | None = None


@contextmanager
def llm_errors() -> Iterator[None]:
    """An LLM failure as an API error with its own status (502, 402, 429, 503) and a clear message."""
    try:
        yield
    except LLMError as exc:
        raise UserError(f"{exc.message} (nothing was stored)", status=exc.status) from None


@router.post("/explanation/generate", summary="Explain a feature with an explainer method (autointerp)")
def generate(body: GenerateBody, session: SessionDep, settings: SettingsDep, user: RequiredUser) -> Response:
    """Explain the feature with ``explanationType`` (an LLM method, or ``interpedia_top-tokens`` offline);
    400 when an explanation of that type and model exists. A failing LLM stores nothing."""
    with llm_errors():
        doc = explain_feature(
            session,
            settings,
            get_embedder(settings),
            model_id=body.modelId,
            source=body.layer,
            index=body.index,
            type_name=body.explanationType,
            model_name=body.explanationModelName,
            user=user,
        )
    return json_response({"explanation": doc})


@router.post("/explanation/new", summary="Add an explanation written by hand")
def new(body: NewBody, request: Request, session: SessionDep, settings: SettingsDep, user: RequiredUser) -> Response:
    """Store the text as the user's explanation of the feature (with its embedding)."""
    f = body.feature
    doc = write_explanation(
        session,
        get_embedder(settings),
        model_id=f.modelId,
        source=f.layer,
        index=f.index,
        text=f.explanation,
        model_name=f.explanationModel,
        user=user,
    )
    return json_response(
        {
            "message": "Explanation created.",
            "explanation": doc,
            "url": absolute_url(request, page_path(f.modelId, f.layer, doc["index"])),
        }
    )


@router.get("/explanation/{explanationId}", summary="One explanation with its scores")
def get_one(explanationId: str, session: SessionDep, user: OptionalUser) -> Response:
    """The explanation, its feature address and its scores; 404 when unknown."""
    return json_response(explanation_json(session, get_explanation(session, explanationId, user)))


@router.post("/explanation/{explanationId}/delete", summary="Delete your explanation")
def delete_one(explanationId: str, session: SessionDep, user: RequiredUser) -> Response:
    """Delete an explanation you wrote or triggered (admins: any); its scores go with it."""
    session.rollback()
    with session.begin():
        delete_explanation(session, explanationId, user)
    return json_response({"message": "Explanation deleted.", "id": explanationId})


@router.post("/explanation/score", summary="Score an explanation (autointerp)")
def score(body: ScoreBody, session: SessionDep, settings: SettingsDep, user: RequiredUser) -> Response:
    """Score with ``scorerType`` (eleuther_fuzz, eleuther_recall, eleuther_embedding, recall_alt); 400 when
    this score exists or the examples cannot support it. A failing LLM stores nothing."""
    with llm_errors():
        doc = score_stored_explanation(
            session,
            settings,
            get_embedder(settings),
            explanation_id=body.explanationId,
            type_name=body.scorerType,
            model_name=body.scorerModel,
            user=user,
        )
    return json_response({"score": doc})


@router.post("/explanation/score/{explanationScoreId}/delete", summary="Delete your score")
def delete_one_score(explanationScoreId: str, session: SessionDep, user: RequiredUser) -> Response:
    """Delete a score you started (admins: any)."""
    session.rollback()
    with session.begin():
        delete_score(session, explanationScoreId, user)
    return json_response({"message": "Score deleted.", "id": explanationScoreId})
