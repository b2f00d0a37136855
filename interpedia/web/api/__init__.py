"""The Neuronpedia webapp API under /api."""

from fastapi import APIRouter

from interpedia.web.api import (
    analysis,
    catalogue,
    community,
    explanation_search,
    explanations,
    features,
    graphs,
    inference,
    keys,
    lens,
    lists,
    steer,
    uploads,
    vectors,
)

router = APIRouter(prefix="/api")
router.include_router(analysis.router)
router.include_router(features.router)
router.include_router(graphs.router)
router.include_router(catalogue.router)
router.include_router(uploads.router)
router.include_router(explanations.router)
router.include_router(explanation_search.router)
router.include_router(inference.router)
router.include_router(steer.router)
router.include_router(lens.router)
router.include_router(vectors.router)
router.include_router(lists.router)
router.include_router(community.router)
router.include_router(keys.router)
