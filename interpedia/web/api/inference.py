"""Live activations in the webapp API: ``/api/activation/new``, ``/api/activation/source``, ``/api/search-all``,
``/api/search-topk-by-token`` and ``/api/tokenize``, with neuronpedia.org's bodies.

They call the in-process inference service (``interpedia.inference``, loaded on first use); the two searches run
the cached workflow of :mod:`interpedia.inference.searches`, which the ``/search`` pages run too.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BeforeValidator, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from interpedia.errors import Invalid
from interpedia.inference import searches
from interpedia.inference.searches import MAX_SOURCE_PROMPTS, check_texts
from interpedia.store.formats import parse_index
from interpedia.web.deps import InferenceDep, OptionalUser, SessionDep, SettingsDep
from interpedia.web.wire import Body, Finite, Index, Int, Texts, integral, json_response

router = APIRouter(tags=["inference"])

# -1 (or 0): no cut-off; else features denser than this are left out.
DensityThreshold = Annotated[Finite, Field(ge=-1, le=-1)] | Annotated[Finite, Field(ge=0, lt=1)]


class FeatureAddress(Body):
    """A feature: ``layer`` (or ``source``) is the source id."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": [name], "properties": {name: {"type": "string", "minLength": 1}}}
                for name in ("layer", "source")
            ]
        }
    )

    modelId: StrictStr
    layer: StrictStr | None = None
    source: StrictStr | None = None
    index: Index


class ActivationNewBody(Body):
    """``/api/activation/new``."""

    feature: FeatureAddress
    customText: Texts


class ActivationSourceBody(Body):
    """``/api/activation/source``."""

    modelId: StrictStr
    source: StrictStr
    customText: StrictStr | Annotated[list[StrictStr], Field(min_length=1, max_length=MAX_SOURCE_PROMPTS)]


class SearchAllBody(Body):
    """``/api/search-all``."""

    modelId: StrictStr
    sourceSet: StrictStr
    text: Texts
    selectedLayers: list[StrictStr] = []
    sortIndexes: list[Int] = []
    ignoreBos: StrictBool = True
    densityThreshold: DensityThreshold = -1
    numResults: Annotated[StrictInt, Field(ge=1, le=100), BeforeValidator(integral)] = 50

    def args(self) -> dict[str, Any]:
        """The body as :func:`interpedia.inference.searches.search_all`'s keyword arguments."""
        return {
            "model_id": self.modelId,
            "source_set": self.sourceSet,
            "text": self.text,
            "selected_layers": self.selectedLayers,
            "sort_indexes": self.sortIndexes,
            "ignore_bos": self.ignoreBos,
            "density_threshold": self.densityThreshold,
            "num_results": self.numResults,
        }


class SearchTopkBody(Body):
    """``/api/search-topk-by-token``."""

    modelId: Annotated[StrictStr, Field(max_length=100)]
    source: Annotated[StrictStr, Field(max_length=200)]
    text: Texts
    numResults: Annotated[StrictInt, Field(ge=1, le=20), BeforeValidator(integral)] = 10
    ignoreBos: StrictBool = True
    densityThreshold: DensityThreshold = 0.01

    def args(self) -> dict[str, Any]:
        """The body as :func:`interpedia.inference.searches.search_topk_by_token`'s keyword arguments."""
        return {
            "model_id": self.modelId,
            "source": self.source,
            "text": self.text,
            "num_results": self.numResults,
            "ignore_bos": self.ignoreBos,
            "density_threshold": self.densityThreshold,
        }


class TokenizeBody(Body):
    """``/api/tokenize``."""

    prompt: Annotated[StrictStr, Field(max_length=10000)]
    modelId: StrictStr
    prependBos: StrictBool = True


@router.post("/activation/new", summary="A feature's activations on your text")
def activation_new(body: ActivationNewBody, svc: InferenceDep, settings: SettingsDep, user: OptionalUser) -> Response:
    """``{tokens, values, maxValue, maxValueIndex, activations: {...}}``; a list of them for a list of texts."""
    source = body.feature.source or body.feature.layer
    if not source:
        raise Invalid("feature.layer (the source id) is required", "feature.layer")
    model_id, index = body.feature.modelId, parse_index(body.feature.index)
    out = []
    for text in check_texts(settings, body.customText, "customText"):
        r = svc.activation_single(model_id, text, source, index)
        act = r["activation"]
        values, top, at = act["values"], act["max_value"], act["max_value_index"]
        dfa = (
            {
                "dfaValues": act["dfa_values"],
                "dfaTargetIndex": act["dfa_target_index"],
                "dfaMaxValue": act["dfa_max_value"],
            }
            if "dfa_values" in act
            else {}
        )
        out.append(
            {
                "modelId": model_id,
                "layer": source,
                "index": str(index),
                "tokens": r["tokens"],
                "tokensIsSpecial": r["tokens_is_special"],
                "values": values,
                "maxValue": top,
                "maxValueIndex": at,
                "activations": {
                    "layer": source,
                    "index": str(index),
                    "values": values,
                    "maxValue": top,
                    "maxValueIndex": at,
                    **dfa,
                },
                **dfa,
            }
        )
    return json_response(out[0] if isinstance(body.customText, str) else out)


@router.post("/activation/source", summary="All of a source's feature activations on your text")
def activation_source(body: ActivationSourceBody, svc: InferenceDep) -> Response:
    """``{results: [{tokens, activeFeatures: {index: [[token, value], ...]}}]}`` (at most 4 texts)."""
    texts = [body.customText] if isinstance(body.customText, str) else body.customText
    return json_response(svc.activation_source(body.modelId, texts, body.source))


@router.post("/search-all", summary="Top features for a text across a source set (search via inference)")
def search_all(
    body: SearchAllBody, session: SessionDep, svc: InferenceDep, settings: SettingsDep, user: OptionalUser
) -> Response:
    """``{tokens, result: [{modelId, layer, index, values, maxValue, maxValueIndex, neuron}]}``; for a list of texts
    ``{results: [...]}``. Sorted by max activation, or by the sum at ``sortIndexes``; cached."""
    return json_response(searches.search_all(session, settings, svc, **body.args()))


@router.post("/search-topk-by-token", summary="Top features at each token of a text")
def search_topk_by_token(
    body: SearchTopkBody, session: SessionDep, svc: InferenceDep, settings: SettingsDep, user: OptionalUser
) -> Response:
    """``{source, results: [{position, token, isSpecial, topFeatures: [{activationValue, featureIndex, feature}]}]}``;
    for a list of texts ``{results: [{source, results}]}``. Cached."""
    return json_response(searches.search_topk_by_token(session, settings, svc, **body.args()))


@router.post("/tokenize", summary="Tokenize text with a model's tokenizer")
def tokenize(body: TokenizeBody, svc: InferenceDep) -> Response:
    """``{tokens, tokenStrings, prependBos}``."""
    r = svc.tokenize(body.modelId, body.prompt, body.prependBos)
    return json_response({"tokens": r["tokens"], "tokenStrings": r["token_strings"], "prependBos": r["prepend_bos"]})
