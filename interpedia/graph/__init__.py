"""Attribution graphs (circuit tracing, Ameisen et al. 2025) over transcoders: loading, the engine, pruning and
Neuronpedia's graph JSON (validated by ``interpedia.store.graph_schema``)."""

from interpedia.graph.attribution import Attribution, AttributionSettings, attribute
from interpedia.graph.document import build_graph_document
from interpedia.graph.loading import load_transcoder_set
from interpedia.graph.pruning import Pruned, prune
from interpedia.graph.transcoders import TranscoderError, TranscoderSet

__all__ = [
    "Attribution",
    "AttributionSettings",
    "Pruned",
    "TranscoderError",
    "TranscoderSet",
    "attribute",
    "build_graph_document",
    "load_transcoder_set",
    "prune",
]
