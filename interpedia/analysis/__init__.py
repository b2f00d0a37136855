"""Analysis of stored sources: UMAP maps, decoder cosine neighbours across sources, SAEBench evals."""
