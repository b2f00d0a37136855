"""The feature page's explanations pane: explanations with their scores (type, value, scorer model, details),
and for a signed-in user the forms that explain the feature or score an explanation.

The forms post to ``/explanation/explain``, ``/explanation/add`` and ``/explanation/{id}/score`` and run
the same workflows as ``/api/explanation/generate``, ``/new`` and ``/score`` (:mod:`interpedia.autointerp.service`).
When no LLM is configured, or the user may not spend the server's LLM credits, the LLM choices are disabled and
a sentence says why; the offline explainer and the embedding scorer need no LLM and stay available. When the LLM
fails, nothing is stored, the browser goes back to the feature page and the pane shows the failure until a later
call succeeds.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from jinja2 import Environment

from interpedia.autointerp.explainers import EXPLAINERS, OFFLINE_TYPE
from interpedia.autointerp.llm import LLMError
from interpedia.autointerp.scorers import SCORERS
from interpedia.autointerp.service import explain_feature, score_stored_explanation, write_explanation
from interpedia.config import Settings
from interpedia.errors import Unauthorized, UserError
from interpedia.search.embeddings import get_embedder
from interpedia.store.explanations import explanation_address
from interpedia.store.formats import parse_index
from interpedia.web.deps import SessionDep, SettingsDep
from interpedia.web.pages.render import done, page_url, redirect, wants_json
from interpedia.web.pages.routes import PageRoute
from interpedia.web.pages.session import check_csrf, current_user

if TYPE_CHECKING:
    from interpedia.store.users import User  # the row type only: the pane runs no query of its own

log = logging.getLogger(__name__)

router = APIRouter(route_class=PageRoute, include_in_schema=False)

Field = Annotated[str, Form()]
MAX_DETAILS_CHARS = 20_000  # a details view longer than this is cut (the JSON twin has it all)


@dataclass(frozen=True)
class LLMFailure:
    """The last LLM failure seen by this process (shown next to the buttons until a call succeeds)."""

    message: str
    at: float


_failures: dict[str, LLMFailure] = {}
_failures_lock = threading.Lock()


def _record_failure(settings: Settings, exc: LLMError) -> None:
    with _failures_lock:
        _failures[settings.llm_base_url] = LLMFailure(exc.message, time.time())


def _clear_failure(settings: Settings) -> None:
    with _failures_lock:
        _failures.pop(settings.llm_base_url, None)


def autointerp_options(settings: Settings, user: User | None) -> dict[str, Any]:
    """What the pane offers this user: explainers and scorers, which need an LLM, and why they are off."""
    configured = bool(settings.llm_base_url and settings.llm_model)
    allowed = user is not None and (user.admin or user.can_trigger_explanations)
    reason = None
    if user is None:
        reason = "Sign in to explain features or score explanations."
    elif not configured:
        reason = (
            "No LLM is configured on this server (INTERPEDIA_LLM_BASE_URL and INTERPEDIA_LLM_MODEL), "
            "so LLM explanations and LLM scores are off; the offline explainer and the embedding score "
            "still work."
        )
    elif not allowed:
        reason = (
            "LLM explanations and scores spend this server's LLM credits: only admins and users allowed "
            "to trigger explanations may ask for them."
        )
    with _failures_lock:
        failure = _failures.get(settings.llm_base_url) if configured else None
    llm_ok = user is not None and configured and allowed
    return {
        "signedIn": user is not None,
        "llmConfigured": configured,
        "llmUsable": llm_ok,
        "llmModel": settings.llm_model or None,
        "reason": reason,
        "lastFailure": None
        if failure is None
        else {"message": failure.message, "at": time.strftime("%H:%M UTC", time.gmtime(failure.at))},
        "explainers": [
            {"name": e.name, "label": e.display_name, "llm": e.needs_llm, "enabled": (not e.needs_llm) or llm_ok}
            for e in EXPLAINERS.values()
        ],
        "scorers": [
            {"name": s.name, "label": s.display_name, "llm": s.needs_llm, "enabled": (not s.needs_llm) or llm_ok}
            for s in SCORERS.values()
        ],
        "offlineType": OFFLINE_TYPE,
    }


def pretty_details(value: Any) -> str:
    """A score's ``jsonDetails`` indented for reading (cut at MAX_DETAILS_CHARS); non-JSON text as is."""
    if value is None or value == "":
        return ""
    try:
        text = json.dumps(json.loads(value) if isinstance(value, str) else value, indent=2, ensure_ascii=False)
    except (TypeError, ValueError):
        text = str(value)
    if len(text) > MAX_DETAILS_CHARS:
        text = text[:MAX_DETAILS_CHARS] + "\n… (cut: the page's JSON has the whole details)"
    return text


def install(env: Environment, settings: Settings) -> None:
    """Give the templates ``autointerp(user)`` and the ``details`` filter."""
    env.globals["autointerp"] = lambda user: autointerp_options(settings, user)
    env.filters["details"] = pretty_details


def _signed_in(request: Request, session: Any, token: str) -> User:
    check_csrf(request, session, token)
    user = current_user(request, session)
    if user is None:
        raise Unauthorized("sign in first: paste an API key at /signin (interpedia apikey create --user NAME)")
    session.commit()  # end the lookup's read transaction: the service opens its own
    return user


def _llm_failed(request: Request, settings: Settings, exc: LLMError, url: str) -> Response:
    """The LLM failed (nothing was stored): JSON gets the API's error; a browser goes back to the page."""
    _record_failure(settings, exc)
    log.warning("LLM call from the feature page failed: %s", exc.message)
    if wants_json(request):
        raise UserError(f"{exc.message} (nothing was stored)", status=exc.status)
    return redirect(request, url + "#explanations")


@router.post("/explanation/explain")
def explain_form(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    modelId: Field = "",
    layer: Field = "",
    index: Field = "",
    explanationType: Field = "",
    csrf_token: Field = "",
) -> Response:
    """Explain the feature with the chosen method (an LLM one, or the offline one), then show it."""
    user = _signed_in(request, session, csrf_token)
    type_name = explanationType or OFFLINE_TYPE
    try:
        doc = explain_feature(
            session,
            settings,
            get_embedder(settings),
            model_id=modelId,
            source=layer,
            index=index,
            type_name=type_name,
            model_name=None,
            user=user,
        )
    except LLMError as exc:  # the feature was found: its address is the one asked for
        return _llm_failed(request, settings, exc, page_url(modelId, layer, parse_index(index)))
    if EXPLAINERS[doc["typeName"] or OFFLINE_TYPE].needs_llm:
        _clear_failure(settings)
    url = page_url(doc["modelId"], doc["layer"], doc["index"])
    return done(request, f"{url}#explanation-{doc['id']}", {"explanation": doc, "url": url})


@router.post("/explanation/add")
def add_form(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    modelId: Field = "",
    layer: Field = "",
    index: Field = "",
    explanation: Field = "",
    csrf_token: Field = "",
) -> Response:
    """Add an explanation written by hand (``/api/explanation/new``'s form twin), embedded for search."""
    user = _signed_in(request, session, csrf_token)
    doc = write_explanation(
        session,
        get_embedder(settings),
        model_id=modelId,
        source=layer,
        index=index,
        text=explanation,
        model_name=None,
        user=user,
    )
    url = page_url(doc["modelId"], doc["layer"], doc["index"])
    return done(request, f"{url}#explanation-{doc['id']}", {"explanation": doc, "url": url})


@router.post("/explanation/{explanation_id}/score")
def score_form(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    explanation_id: str,
    scorerType: Field = "",
    csrf_token: Field = "",
) -> Response:
    """Score the explanation with the chosen method, then show the score on its feature page."""
    user = _signed_in(request, session, csrf_token)
    url = page_url(*explanation_address(session, explanation_id, user))
    if not scorerType:
        raise UserError("choose a score type", field="scorerType", status=400)
    try:
        doc = score_stored_explanation(
            session,
            settings,
            get_embedder(settings),
            explanation_id=explanation_id,
            type_name=scorerType,
            model_name=None,
            user=user,
        )
    except LLMError as exc:
        return _llm_failed(request, settings, exc, url)
    if SCORERS[doc["explanationScoreTypeName"]].needs_llm:
        _clear_failure(settings)
    return done(request, f"{url}#explanation-{explanation_id}", {"score": doc, "url": url})
