"""Search via inference, cached: the top features of a source set for a text (``search-all``) and the top features
at each token (``topk-by-token``), as the webapp API answers them and the ``/search`` pages show them.

A search is looked up in ``saved_searches`` under a hash of every setting and of the weights that would answer it;
only a miss runs the model. The results carry the stored features' density, max activation and explanations, and
are filtered by density before they are cached. Importing this module loads no torch: the service is passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from interpedia.config import Settings
from interpedia.errors import Invalid, NotFound
from interpedia.inference.plans import inference_sources
from interpedia.store.catalogue import require_visible_sources, source_set_name_of, source_visible
from interpedia.store.searches import cache_key, feature_facts, save_result, saved_result

if TYPE_CHECKING:
    from interpedia.inference.routing import Inference

__all__ = ["MAX_SOURCE_PROMPTS", "check_texts", "search_all", "search_topk_by_token"]


MAX_SOURCE_PROMPTS = 4  # activation/source answers every positive activation: a few prompts at once


def check_texts(settings: Settings, value: str | list[str], field: str) -> list[str]:
    """One text or a batch of them as a list; Invalid over INTERPEDIA_INFERENCE_MAX_BATCH_PROMPTS."""
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


def _set_sources(session: Session, model_id: str, source_set: str, selected: list[str]) -> list[str]:
    """The sources a search of the set runs on: the selected ones, else the set's sources with SAE weights that the
    viewer may see (someone else's PRIVATE source is left out, so it is neither run nor found in the cache)."""
    if selected:
        require_visible_sources(session, model_id, selected)
        return selected
    rows = inference_sources(session, model_id, source_set)
    visible = [s.name for s in rows if source_visible(session, s)]
    if rows and not visible:
        raise NotFound(f"source set {model_id}/{source_set} not found", field="sourceSet")
    return visible


def search_all(
    session: Session,
    settings: Settings,
    svc: Inference,
    *,
    model_id: str,
    source_set: str,
    text: str | list[str],
    selected_layers: Sequence[str] = (),
    sort_indexes: Sequence[int] = (),
    ignore_bos: bool = True,
    density_threshold: float = -1,
    num_results: int = 50,
) -> dict[str, Any]:
    """``{tokens, result: [{modelId, layer, index, values, maxValue, maxValueIndex, neuron}], ...}`` for one text,
    ``{results: [{tokens, result}]}`` for a list; sorted by max activation, or by the sum at ``sort_indexes``."""
    texts = check_texts(settings, text, "text")
    threshold = _density(density_threshold)
    layers, sort = list(selected_layers), list(sort_indexes)
    weights = svc.weights_id(model_id, layers)
    sources = _set_sources(session, model_id, source_set, layers)
    base = {
        "modelId": model_id,
        "sourceSet": source_set,
        "selectedLayers": sorted(set(layers)),
        "sortIndexes": sort,
        "ignoreBos": ignore_bos,
        "densityThreshold": density_threshold,
        "numResults": num_results,
        "weights": weights,
        "sources": sorted(set(sources)),
    }
    docs = []
    for one in texts:
        params = {**base, "text": one}
        key = cache_key("search-all", params)
        cached = saved_result(session, key)
        if cached is not None:
            docs.append(dict(cached))
            continue
        ask = num_results if threshold is None else min(num_results * 10, 1000)
        r = svc.activation_all(model_id, one, source_set, sources, sort, ignore_bos, ask)
        facts = feature_facts(session, model_id, [(a["source"], a["index"]) for a in r["activations"]])
        result = []
        for a in r["activations"]:
            fact = facts.get((a["source"], a["index"]))
            if not _dense_enough(fact, threshold):
                continue
            result.append(
                {
                    "modelId": model_id,
                    "layer": a["source"],
                    "index": str(a["index"]),
                    "values": a["values"],
                    "maxValue": a["max_value"],
                    "maxValueIndex": a["max_value_index"],
                    "sumValues": a["sum_values"],
                    "neuron": fact,
                }
            )
            if len(result) >= num_results:
                break
        doc = {
            "tokens": r["tokens"],
            "result": result,
            "sortIndexes": sort,
            "ignoreBos": ignore_bos,
            "sourceSet": source_set,
            "selectedLayers": layers,
        }
        save_result(
            session,
            key,
            kind="search-all",
            query=one,
            model_id=model_id,
            source_set=source_set,
            params=params,
            result=doc,
        )
        session.commit()
        docs.append(doc)
    if isinstance(text, str):
        return docs[0]
    return {"results": [{"tokens": d["tokens"], "result": d["result"]} for d in docs]}


def search_topk_by_token(
    session: Session,
    settings: Settings,
    svc: Inference,
    *,
    model_id: str,
    source: str,
    text: str | list[str],
    num_results: int = 10,
    ignore_bos: bool = True,
    density_threshold: float = 0.01,
) -> dict[str, Any]:
    """``{source, results: [{position, token, isSpecial, topFeatures: [{activationValue, featureIndex, feature}]}]}``
    for one text; ``{results: [{source, results}]}`` for a list (without the features' facts or density filter)."""
    texts = check_texts(settings, text, "text")
    threshold = _density(density_threshold)
    weights = svc.weights_id(model_id, [source])
    require_visible_sources(session, model_id, [source])
    single = isinstance(text, str)
    docs = []
    for one in texts:
        params = {
            "modelId": model_id,
            "source": source,
            "text": one,
            "numResults": num_results,
            "ignoreBos": ignore_bos,
            "densityThreshold": density_threshold,
            "single": single,
            "weights": weights,
        }
        key = cache_key("topk-by-token", params)
        cached = saved_result(session, key)
        if cached is not None:
            docs.append(dict(cached))
            continue
        r = svc.topk_by_token(model_id, one, source, num_results, ignore_bos)
        wanted = [(source, f["feature_index"]) for item in r["results"] for f in item["top_features"]]
        facts = feature_facts(session, model_id, wanted, with_explanations=single)
        results = []
        for item in r["results"]:
            if single and ignore_bos and item["is_special"]:
                continue  # BOS is already gone; this drops EOS and other scaffolding too, as neuronpedia.org does
            feats = []
            for f in item["top_features"]:
                fact = facts.get((source, f["feature_index"]))
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
        doc = {"source": source, "results": results, "tokens": r["tokens"]}
        save_result(
            session,
            key,
            kind="topk-by-token",
            query=one,
            model_id=model_id,
            source_set=source_set_name_of(source) if "-" in source else None,
            params=params,
            result=doc,
        )
        session.commit()
        docs.append(doc)
    if single:
        return docs[0]
    return {"results": [{"source": d["source"], "results": d["results"]} for d in docs]}
