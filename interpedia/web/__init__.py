"""The web layer: FastAPI app with the Neuronpedia-compatible /api, the /v1 servers and the pages."""
