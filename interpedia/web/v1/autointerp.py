"""The autointerp server API (Neuronpedia's ``apps/autointerp``): ``/v1/explain/default``,
``/v1/score/fuzz-detection``, ``/v1/score/embedding``. Wire fields are snake_case and typed as the
official ``neuronpedia-autointerp-client`` expects (``distance`` is an integer)."""

from __future__ import annotations

import random
import zlib
from dataclasses import replace
from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictStr, model_validator

from interpedia.autointerp.evidence import Example, split_examples
from interpedia.autointerp.explainers import explain_default as run_default_explainer
from interpedia.autointerp.llm import ChatClient, LLMConfig, LLMError
from interpedia.autointerp.scorers import NotScorable, score_detection, score_embedding, score_fuzz
from interpedia.config import Settings
from interpedia.errors import Unavailable, UserError
from interpedia.search.embeddings import EmbeddingError, get_embedder
from interpedia.web.deps import SettingsDep
from interpedia.web.v1.deps import require_secret
from interpedia.web.wire import Finite, json_response

router = APIRouter(prefix="/v1", tags=["autointerp"], dependencies=[Depends(require_secret)])

# Neuronpedia's autointerp server calls OpenRouter with the key it is given.
OPENROUTER = "https://openrouter.ai/api/v1"
DEFAULT_THRESHOLD = 0.6  # DefaultExplainer(client, threshold=0.6) on Neuronpedia's server


class NPActivation(BaseModel):
    """One example: tokens and one activation per token (all zeros: a non-activating example)."""

    model_config = ConfigDict(extra="ignore")
    tokens: Annotated[list[StrictStr], Field(max_length=4096)]
    values: Annotated[list[Finite], Field(max_length=4096)]

    @model_validator(mode="after")
    def _same_length(self) -> NPActivation:
        if len(self.tokens) != len(self.values):
            raise ValueError(f"tokens ({len(self.tokens)}) and values ({len(self.values)}) differ in length")
        return self


Activations = Annotated[list[NPActivation], Field(min_length=1, max_length=500)]
# The LLM to ask (an OpenRouter model id): Neuronpedia's server needs it named on every request.
LLMModel = Annotated[StrictStr, Field(min_length=1, max_length=200)]


class ExplainDefaultBody(BaseModel):
    """``POST /v1/explain/default``."""

    activations: Activations
    openrouter_key: StrictStr
    model: LLMModel


class ScoreFuzzDetectionBody(BaseModel):
    """``POST /v1/score/fuzz-detection``."""

    activations: Activations
    explanation: Annotated[StrictStr, Field(min_length=1, max_length=1000)]
    openrouter_key: StrictStr
    model: LLMModel
    type: Literal["FUZZ", "DETECTION"]


class ScoreEmbeddingBody(BaseModel):
    """``POST /v1/score/embedding``."""

    activations: Activations
    explanation: Annotated[StrictStr, Field(min_length=1, max_length=1000)]


def _examples(acts: list[NPActivation]) -> list[Example]:
    return [Example(tuple(a.tokens), tuple(a.values)) for a in acts]


def _llm(settings: Settings, model: str, key: str) -> ChatClient:
    cfg = LLMConfig.from_settings(settings, model=model, api_key=key)
    if not cfg.base_url:
        cfg = replace(cfg, base_url=OPENROUTER)
    return ChatClient(cfg)


def _seed(body: BaseModel) -> int:
    return zlib.crc32(body.model_dump_json(exclude={"openrouter_key"}).encode())


@router.post("/explain/default", summary="Explain a feature with the default (Delphi) explainer")
def explain_default(body: ExplainDefaultBody, settings: SettingsDep) -> Response:
    """``{explanation}`` from the activating examples, tokens at or above 0.6 x max highlighted."""
    examples = [e for e in _examples(body.activations) if e.activating]
    if not examples:
        raise UserError("no activating examples (every value is 0)", "activations", status=400)
    try:
        text = run_default_explainer(examples, _llm(settings, body.model, body.openrouter_key), DEFAULT_THRESHOLD)
    except LLMError as exc:
        raise UserError(exc.message, status=exc.status) from None
    return json_response({"explanation": text})


@router.post("/score/fuzz-detection", summary="Score an explanation by fuzzing or detection")
def score_fuzz_detection(body: ScoreFuzzDetectionBody, settings: SettingsDep) -> Response:
    """``{score, breakdown}``: balanced accuracy of the LLM's verdicts on activating examples and on
    examples whose values are all 0; 400 without both kinds."""
    split = split_examples(_examples(body.activations), n_top=len(body.activations), n_negatives=len(body.activations))
    run = score_fuzz if body.type == "FUZZ" else score_detection
    try:
        result = run(
            body.explanation,
            split.examples,
            split.negatives,
            _llm(settings, body.model, body.openrouter_key),
            random.Random(_seed(body)),
        )
    except NotScorable as exc:
        raise UserError(str(exc), "activations", status=400) from None
    except LLMError as exc:
        raise UserError(exc.message, status=exc.status) from None
    return json_response({"score": result.value, "breakdown": result.breakdown})


@router.post("/score/embedding", summary="Score an explanation by embedding similarity")
def score_by_embedding(body: ScoreEmbeddingBody, settings: SettingsDep) -> Response:
    """``{score, breakdown}``: ROC-AUC of explanation/example similarity (all-MiniLM-L6-v2 here, where
    Neuronpedia uses stella_en_400M_v5 on CUDA); 400 without both activating and all-zero examples."""
    split = split_examples(_examples(body.activations), n_top=len(body.activations), n_negatives=len(body.activations))
    try:
        result = score_embedding(body.explanation, split.examples, split.negatives, get_embedder(settings))
    except NotScorable as exc:
        raise UserError(str(exc), "activations", status=400) from None
    except EmbeddingError as exc:
        raise Unavailable(f"the embedding model is unavailable: {exc}") from None
    return json_response({"score": result.value, "breakdown": result.breakdown})
