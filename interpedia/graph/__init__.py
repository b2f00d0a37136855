"""Attribution graphs (circuit tracing, Ameisen et al. 2025) over transcoders: loading, the engine, pruning,
Neuronpedia's graph JSON and its validation."""

from interpedia.graph.attribution import Attribution, AttributionSettings, attribute
from interpedia.graph.document import build_graph_document
from interpedia.graph.loading import load_transcoder_set
from interpedia.graph.pruning import Pruned, prune
from interpedia.graph.schema import InvalidGraph, validate_graph
from interpedia.graph.transcoders import TranscoderError, TranscoderSet

__all__ = [
    "Attribution",
    "AttributionSettings",
    "InvalidGraph",
    "Pruned",
    "TranscoderError",
    "TranscoderSet",
    "attribute",
    "build_graph_document",
    "load_transcoder_set",
    "prune",
    "validate_graph",
]
