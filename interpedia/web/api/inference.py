"""Live activations in the webapp API: ``/api/activation/new``, ``/api/activation/source``, ``/api/search-all``,
``/api/search-topk-by-token`` and ``/api/tokenize``, with neuronpedia.org's bodies.

They call the in-process inference service (``interpedia.inference``, loaded on first use). Searches are
cached in ``saved_searches`` under a hash of every setting and of the weights that answered.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from pydantic import Field, StrictBool, StrictInt, StrictStr

from interpedia.errors import Invalid
from interpedia.store.catalogue import source_set_name_of
from interpedia.store.formats import parse_index
from interpedia.store.searches import cache_key, feature_facts, save_result, saved_result
from interpedia.web.deps import OptionalUser, SessionDep, SettingsDep
from interpedia.web.v1.inference import service
from interpedia.web.wire import Body, Finite, Index, Texts, json_response

router = APIRouter(tags=["inference"])

Service = Annotated[Any, Depends(service)]


class FeatureAddress(Body):
    """A feature: ``layer`` (or ``source``) is the source id."""

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
    customText: Texts


class SearchAllBody(Body):
    """``/api/search-all``."""

    modelId: StrictStr
    sourceSet: StrictStr
    text: Texts
    selectedLayers: list[StrictStr] = []
    sortIndexes: list[StrictInt] = []
    ignoreBos: StrictBool = True
    densityThreshold: Finite = -1
    numResults: Annotated[StrictInt, Field(ge=1, le=100)] = 50


class SearchTopkBody(Body):
    """``/api/search-topk-by-token``."""

    modelId: Annotated[StrictStr, Field(max_length=100)]
    source: Annotated[StrictStr, Field(max_length=200)]
    text: Texts
    numResults: Annotated[StrictInt, Field(ge=1, le=20)] = 10
    ignoreBos: StrictBool = True
    densityThreshold: Finite = 0.01


class TokenizeBody(Body):
    """``/api/tokenize``."""

    prompt: Annotated[StrictStr, Field(max_length=10000)]
    modelId: StrictStr
    prependBos: StrictBool = True


def _texts(value: str | list[str], settings: Any, field: str) -> list[str]:
    texts = [value] if isinstance(value, str) else value
    if len(texts) > settings.inference_max_batch_prompts:
        raise Invalid(f"at most {settings.inference_max_batch_prompts} texts per request", field)
    return texts


def _density(threshold: float) -> float | None:
    """The density cut-off, None for none (-1, or 0 as neuronpedia.org reads it)."""
    if threshold in (-1, 0):
        return None
    if not 0 < threshold < 1:
        raise Invalid("densityThreshold must be -1 (none) or between 0 and 1", "densityThreshold")
    return threshold


def _dense_enough(facts: dict[str, Any] | None, threshold: float | None) -> bool:
    if threshold is None:
        return True
    density = (facts or {}).get("frac_nonzero")
    return density is not None and 0 < density <= threshold


@router.post("/activation/new", summary="A feature's activations on your text")
def activation_new(body: ActivationNewBody, svc: Service, settings: SettingsDep, user: OptionalUser) -> Response:
    """``{tokens, values, maxValue, maxValueIndex, activations: {...}}``; a list of them for a list of texts."""
    source = body.feature.source or body.feature.layer
    if not source:
        raise Invalid("feature.layer (the source id) is required", "feature.layer")
    model_id, index = body.feature.modelId, parse_index(body.feature.index)
    out = []
    for text in _texts(body.customText, settings, "customText"):
        r = svc.activation_single(model_id, text, source, index)
        act = r["activation"]
        values, top, at = act["values"], act["max_value"], act["max_value_index"]
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
                },
            }
        )
    return json_response(out[0] if isinstance(body.customText, str) else out)


@router.post("/activation/source", summary="All of a source's feature activations on your text")
def activation_source(body: ActivationSourceBody, svc: Service) -> Response:
    """``{results: [{tokens, activeFeatures: {index: [[token, value], ...]}}]}`` (at most 4 texts)."""
    texts = [body.customText] if isinstance(body.customText, str) else body.customText
    return json_response(svc.activation_source(body.modelId, texts, body.source))


def _search_all_one(svc: Any, session: Any, body: SearchAllBody, text: str, weights: list[str]) -> dict[str, Any]:
    threshold = _density(body.densityThreshold)
    params = {
        "modelId": body.modelId,
        "sourceSet": body.sourceSet,
        "text": text,
        "selectedLayers": sorted(set(body.selectedLayers)),
        "sortIndexes": body.sortIndexes,
        "ignoreBos": body.ignoreBos,
        "densityThreshold": body.densityThreshold,
        "numResults": body.numResults,
        "weights": weights,
    }
    key = cache_key("search-all", params)
    cached = saved_result(session, key)
    if cached is not None:
        return dict(cached)
    ask = body.numResults if threshold is None else min(body.numResults * 10, 1000)
    r = svc.activation_all(
        body.modelId, text, body.sourceSet, body.selectedLayers, body.sortIndexes, body.ignoreBos, ask
    )
    facts = feature_facts(session, body.modelId, [(a["source"], a["index"]) for a in r["activations"]])
    result = []
    for a in r["activations"]:
        fact = facts.get((a["source"], a["index"]))
        if not _dense_enough(fact, threshold):
            continue
        result.append(
            {
                "modelId": body.modelId,
                "layer": a["source"],
                "index": str(a["index"]),
                "values": a["values"],
                "maxValue": a["max_value"],
                "maxValueIndex": a["max_value_index"],
                "sumValues": a["sum_values"],
                "neuron": fact,
            }
        )
        if len(result) >= body.numResults:
            break
    doc = {
        "tokens": r["tokens"],
        "result": result,
        "sortIndexes": body.sortIndexes,
        "ignoreBos": body.ignoreBos,
        "sourceSet": body.sourceSet,
        "selectedLayers": body.selectedLayers,
    }
    save_result(
        session,
        key,
        kind="search-all",
        query=text,
        model_id=body.modelId,
        source_set=body.sourceSet,
        params=params,
        result=doc,
    )
    session.commit()
    return doc


@router.post("/search-all", summary="Top features for a text across a source set (search via inference)")
def search_all(
    body: SearchAllBody, session: SessionDep, svc: Service, settings: SettingsDep, user: OptionalUser
) -> Response:
    """``{tokens, result: [{modelId, layer, index, values, maxValue, maxValueIndex, neuron}]}``; for a list of texts
    ``{results: [...]}``. Sorted by max activation, or by the sum at ``sortIndexes``; cached."""
    texts = _texts(body.text, settings, "text")
    _density(body.densityThreshold)
    weights = svc.weights_id(body.modelId, body.selectedLayers)
    docs = [_search_all_one(svc, session, body, t, weights) for t in texts]
    if isinstance(body.text, str):
        return json_response(docs[0])
    return json_response({"results": [{"tokens": d["tokens"], "result": d["result"]} for d in docs]})


def _topk_one(
    svc: Any, session: Any, body: SearchTopkBody, text: str, weights: list[str], single: bool
) -> dict[str, Any]:
    threshold = _density(body.densityThreshold)
    params = {
        "modelId": body.modelId,
        "source": body.source,
        "text": text,
        "numResults": body.numResults,
        "ignoreBos": body.ignoreBos,
        "densityThreshold": body.densityThreshold,
        "single": single,
        "weights": weights,
    }
    key = cache_key("topk-by-token", params)
    cached = saved_result(session, key)
    if cached is not None:
        return dict(cached)
    r = svc.topk_by_token(body.modelId, text, body.source, body.numResults, body.ignoreBos)
    wanted = [(body.source, f["feature_index"]) for item in r["results"] for f in item["top_features"]]
    facts = feature_facts(session, body.modelId, wanted, with_explanations=single)
    results = []
    for item in r["results"]:
        if single and body.ignoreBos and item["is_special"]:
            continue  # BOS is already gone; this drops EOS and other scaffolding too, as neuronpedia.org does
        feats = []
        for f in item["top_features"]:
            fact = facts.get((body.source, f["feature_index"]))
            if single and not _dense_enough(fact, threshold):
                continue
            feats.append(
                {
                    "activationValue": f["activation_value"],
                    "featureIndex": f["feature_index"],
                    "feature": fact if single else None,
                }
            )
        results.append(
            {
                "position": item["token_position"],
                "token": item["token"],
                "isSpecial": item["is_special"],
                "topFeatures": feats,
            }
        )
    doc = {"source": body.source, "results": results, "tokens": r["tokens"]}
    save_result(
        session,
        key,
        kind="topk-by-token",
        query=text,
        model_id=body.modelId,
        source_set=source_set_name_of(body.source) if "-" in body.source else None,
        params=params,
        result=doc,
    )
    session.commit()
    return doc


@router.post("/search-topk-by-token", summary="Top features at each token of a text")
def search_topk_by_token(
    body: SearchTopkBody, session: SessionDep, svc: Service, settings: SettingsDep, user: OptionalUser
) -> Response:
    """``{source, results: [{position, token, isSpecial, topFeatures: [{activationValue, featureIndex, feature}]}]}``;
    for a list of texts ``{results: [{source, results}]}``. Cached."""
    texts = _texts(body.text, settings, "text")
    _density(body.densityThreshold)
    weights = svc.weights_id(body.modelId, [body.source])
    single = isinstance(body.text, str)
    docs = [_topk_one(svc, session, body, t, weights, single) for t in texts]
    if single:
        return json_response(docs[0])
    return json_response({"results": [{"source": d["source"], "results": d["results"]} for d in docs]})


@router.post("/tokenize", summary="Tokenize text with a model's tokenizer")
def tokenize(body: TokenizeBody, svc: Service) -> Response:
    """``{tokens, tokenStrings, prependBos}``."""
    r = svc.tokenize(body.modelId, body.prompt, body.prependBos)
    return json_response({"tokens": r["tokens"], "tokenStrings": r["token_strings"], "prependBos": r["prepend_bos"]})
