"""Uploads over HTTP: ``/api/feature/upload-batch`` and ``/api/activation/upload-batch``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from interpedia.ingest.uploads import feature_record, upload_activations, upload_features
from interpedia.ingest.validate import without_nul
from interpedia.search.embeddings import import_embedder
from interpedia.store.formats import parse_index
from interpedia.store.records import ActivationRecord
from interpedia.web.deps import RequiredUser, SettingsDep, session_factory
from interpedia.web.schemas import ActivationUploadBody, FeatureUploadBody
from interpedia.web.urls import absolute_url, page_path

router = APIRouter(tags=["uploads"])


@router.post("/feature/upload-batch", summary="Upload 1-128 feature dashboards into your source set")
def feature_upload_batch(
    body: FeatureUploadBody, request: Request, user: RequiredUser, settings: SettingsDep
) -> dict[str, Any]:
    """Create or replace dashboards (examples, logits, density, explanations) in one transaction."""
    # The NUL rule (as the importers apply it): these texts reach the database through bulk inserts, past the ORM.
    records = [
        feature_record(
            f.index,
            without_nul([a.model_dump() for a in f.activations]),
            density=f.density,
            top_logits=without_nul([t.model_dump() for t in f.topLogits]) if f.topLogits is not None else None,
            bottom_logits=(
                without_nul([t.model_dump() for t in f.bottomLogits]) if f.bottomLogits is not None else None
            ),
            explanations=without_nul([e.model_dump() for e in f.explanations or []]),
            author_id=user.id,
        )
        for f in body.features
    ]
    result = upload_features(
        session_factory(request), user, body.modelId, body.source, records, embed=import_embedder(settings)
    )
    return {
        "message": f"uploaded {result.counts.features} features",
        "modelId": result.model_id,
        "source": result.source_id,
        "features": result.counts.features,
        "activations": result.counts.activations,
        "explanations": result.counts.explanations,
        "url": absolute_url(request, page_path(result.model_id, result.source_id)),
    }


@router.post("/activation/upload-batch", summary="Add examples to one of your features")
def activation_upload_batch(body: ActivationUploadBody, request: Request, user: RequiredUser) -> dict[str, Any]:
    """Append examples to a feature you created (duplicates are skipped)."""
    acts = [
        ActivationRecord(
            tokens=without_nul(a.tokens),
            values=a.values,
            bin_max=a.quantileMax,
            bin_min=a.quantileMin,
            bin_contains=a.quantileFraction,
        )
        for a in body.activations
    ]
    added = upload_activations(session_factory(request), user, body.modelId, body.source, parse_index(body.index), acts)
    return {"message": f"added {added} activations", "added": added, "skipped": len(acts) - added}
