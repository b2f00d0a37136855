"""Decoder cosine neighbours across two sources of one model (``/api/cossim``).

Within a source, ``interpedia generate`` already stores each feature's top neighbours
(``topk_cos_sim_indices``); this answers the cross-source question (which features of layer 8's SAE
point where this layer-6 feature points) from the two SAEs' decoder rows, without loading the model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from interpedia.analysis.decoder import DirectionCache, sae_spec
from interpedia.db.tables import Feature
from interpedia.errors import Invalid, NotFound
from interpedia.store.catalogue import get_model, get_source

MAX_RESULTS = 128  # the inference server's clamp for the same call


def _query_vector(feature: Feature | None, directions: np.ndarray, index: int, where: str) -> np.ndarray:
    """The direction to compare: a stored steering vector, else the SAE's decoder row."""
    if feature is not None and feature.has_vector and feature.vector:
        vec = np.asarray(feature.vector, dtype=np.float32)
        norm = float(np.linalg.norm(vec))
        if not np.isfinite(vec).all() or norm == 0:
            raise Invalid(f"the vector of {where} is zero or not finite", field="index")
        return vec / norm
    if index >= directions.shape[0]:
        raise NotFound(f"feature {where} is past the SAE's {directions.shape[0]} features", field="index")
    return directions[index]


def topk_cossim(
    session: Session,
    cache: DirectionCache,
    model_id: str,
    source_id: str,
    index: int,
    target_model_id: str,
    target_source_id: str,
    num_results: int = 10,
) -> dict[str, Any]:
    """Features of the target source whose decoder rows are nearest the feature's, most similar first.

    The shape is the inference server's ``/util/sae-topk-by-decoder-cossim`` answer, which
    neuronpedia.org's ``/api/cossim`` passes through.
    """
    if not 1 <= num_results <= MAX_RESULTS:
        raise Invalid(f"numResults must be between 1 and {MAX_RESULTS}", field="numResults")
    get_model(session, model_id)
    source = get_source(session, model_id, source_id)
    if target_model_id != model_id:
        get_model(session, target_model_id)
        raise Invalid(
            f"cosine similarity is only defined between sources of the same model ({model_id} vs {target_model_id})",
            field="targetModelId",
        )
    target = get_source(session, target_model_id, target_source_id)
    feature = session.scalar(select(Feature).where(Feature.source_id == source.id, Feature.index == index))
    where = f"{model_id}/{source_id}/{index}"
    if feature is None:
        raise NotFound(f"feature {where} not found", field="index")
    if feature.has_vector and feature.vector:
        query = _query_vector(feature, np.empty((0, 0), np.float32), index, where)
    else:
        query = _query_vector(None, cache.get(sae_spec(source)), index, where)
    target_dirs = cache.get(sae_spec(target))
    if target_dirs.shape[1] != query.shape[0]:
        raise Invalid(
            f"{source_id} writes {query.shape[0]}-wide directions but {target_source_id} reads "
            f"{target_dirs.shape[1]}-wide ones",
            field="targetSourceId",
        )
    sims = target_dirs @ query
    if target.id == source.id:
        sims[index] = -np.inf  # a feature is not its own neighbour
    k = min(num_results, sims.shape[0] - (1 if target.id == source.id else 0))
    top = np.argpartition(-sims, k - 1)[:k] if k > 0 else np.array([], dtype=np.int64)
    top = top[np.argsort(-sims[top], kind="stable")]
    return {
        "feature": {"model": model_id, "source": source_id, "index": index},
        "topk_decoder_cossim_features": [
            {
                "feature": {"model": target_model_id, "source": target_source_id, "index": int(i)},
                "cosine_similarity": float(sims[i]),
            }
            for i in top
        ],
    }
