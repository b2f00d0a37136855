"""UMAP maps of a source's decoder directions: 2-D coordinates, clusters and log sparsity per feature.

The map follows Neuronpedia's: UMAP (cosine metric) over the unit decoder rows, clusters found in
the 2-D embedding, and ``log10`` of each feature's stored density (``frac_nonzero``) for colouring.
Results go on the ``features`` rows (``umap_x/umap_y/umap_cluster/umap_log_feature_sparsity``) and
the source's ``has_umap*`` flags, so pages and ``/api/umap`` read them without any computation.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session, sessionmaker

from interpedia.analysis.decoder import load_directions, sae_spec
from interpedia.db.tables import Feature, Source
from interpedia.errors import Invalid
from interpedia.store.catalogue import get_model, get_source
from interpedia.store.versions import touch_sources

log = logging.getLogger(__name__)

MIN_FEATURES = 4  # UMAP needs a neighbourhood graph; fewer points give no map worth drawing
_WRITE_BATCH = 1000


@dataclass(frozen=True)
class UmapConfig:
    """How a map is computed; stored with the run's summary."""

    n_neighbors: int = 15
    min_dist: float = 0.1
    metric: str = "cosine"
    seed: int = 0
    clusterer: Literal["hdbscan", "kmeans"] = "hdbscan"
    n_clusters: int | None = None  # kmeans: default sqrt(n / 2); hdbscan: unused
    min_cluster_size: int | None = None  # hdbscan: default max(5, n // 100)


@dataclass
class UmapResult:
    """Per-feature map coordinates; arrays are aligned with ``indices``."""

    indices: np.ndarray  # [n] int64 feature indexes
    x: np.ndarray  # [n] float32
    y: np.ndarray  # [n] float32
    cluster: np.ndarray  # [n] int64, -1 = noise (HDBSCAN)
    log_sparsity: list[float | None]


@dataclass
class UmapSummary:
    """What ``interpedia umap`` reports."""

    model_id: str
    source_id: str
    features: int
    clusters: int
    noise: int
    seconds: float
    config: dict[str, Any]


def log_sparsity(frac_nonzero: float | None) -> float | None:
    """``log10`` of a feature's density; None for dead or unknown features (no finite log)."""
    if frac_nonzero is None or not frac_nonzero > 0 or not math.isfinite(frac_nonzero):
        return None
    return math.log10(frac_nonzero)


def embed(directions: np.ndarray, cfg: UmapConfig) -> np.ndarray:
    """UMAP of ``directions`` [n, d] into [n, 2] (float32), deterministic for a seed."""
    import umap  # numba compiles on first import: only the umap command pays for it

    n = directions.shape[0]
    if n < MIN_FEATURES:
        raise Invalid(f"a UMAP needs at least {MIN_FEATURES} features, the source has {n}", field="source")
    reducer = umap.UMAP(
        n_neighbors=max(2, min(cfg.n_neighbors, n - 1)),
        min_dist=cfg.min_dist,
        metric=cfg.metric,
        random_state=cfg.seed,
        n_jobs=1,
        # spectral init needs a connected graph of more points than components
        init="spectral" if n > cfg.n_neighbors + 1 else "random",
    )
    return np.asarray(reducer.fit_transform(directions), dtype=np.float32)


def cluster(points: np.ndarray, cfg: UmapConfig) -> np.ndarray:
    """Cluster labels of 2-D ``points`` [n, 2]: HDBSCAN (``-1`` = noise) or k-means."""
    n = points.shape[0]
    if cfg.clusterer == "kmeans":
        from sklearn.cluster import KMeans

        k = cfg.n_clusters or max(2, round(math.sqrt(n / 2)))
        return np.asarray(
            KMeans(n_clusters=min(k, n), n_init=4, random_state=cfg.seed).fit_predict(points), dtype=np.int64
        )
    from sklearn.cluster import HDBSCAN

    size = cfg.min_cluster_size or max(5, n // 100)
    return np.asarray(HDBSCAN(min_cluster_size=min(size, n), copy=True).fit_predict(points), dtype=np.int64)


def compute(directions: np.ndarray, indices: np.ndarray, densities: list[float | None], cfg: UmapConfig) -> UmapResult:
    """Embed, cluster and compute log sparsity for the features ``indices`` (rows of ``directions``)."""
    points = embed(directions, cfg)
    labels = cluster(points, cfg)
    return UmapResult(
        indices=indices,
        x=points[:, 0],
        y=points[:, 1],
        cluster=labels,
        log_sparsity=[log_sparsity(d) for d in densities],
    )


def _features(session: Session, source: Source) -> tuple[np.ndarray, list[float | None]]:
    rows = session.execute(
        select(Feature.index, Feature.frac_nonzero).where(Feature.source_id == source.id).order_by(Feature.index)
    ).all()
    return np.array([r[0] for r in rows], dtype=np.int64), [r[1] for r in rows]


def store(session: Session, source: Source, result: UmapResult) -> None:
    """Write the map onto the source's features (batched executemany) and set the source's flags."""
    params = [
        {"s": source.id, "i": int(i), "x": float(x), "y": float(y), "c": int(c), "l": ls}
        for i, x, y, c, ls in zip(result.indices, result.x, result.y, result.cluster, result.log_sparsity, strict=True)
    ]
    table = cast(Table, Feature.__table__)
    cols = table.c
    stmt = (
        update(table)
        .where(cols["source_id"] == bindparam("s"), cols["index"] == bindparam("i"))
        .values(
            umap_x=bindparam("x"),
            umap_y=bindparam("y"),
            umap_cluster=bindparam("c"),
            umap_log_feature_sparsity=bindparam("l"),
        )
    )
    for start in range(0, len(params), _WRITE_BATCH):
        session.execute(stmt, params[start : start + _WRITE_BATCH])
        log.info("umap: stored %d/%d features", min(start + _WRITE_BATCH, len(params)), len(params))
    touch_sources(session, [source.id])  # the features' umap_* are part of their documents
    source.has_umap = True
    source.has_umap_clusters = True
    source.has_umap_log_sparsity = any(v is not None for v in result.log_sparsity)


def run_umap(
    factory: sessionmaker[Session],
    model_id: str,
    source_id: str,
    *,
    sae: str | None = None,
    cfg: UmapConfig | None = None,
) -> UmapSummary:
    """Compute and store the UMAP of a source's features from its SAE's decoder (``sae`` overrides the path)."""
    cfg = cfg or UmapConfig()
    started = time.perf_counter()
    with factory() as session:
        get_model(session, model_id)
        source = get_source(session, model_id, source_id)
        spec = sae_spec(source, sae)
        indices, densities = _features(session, source)
    if len(indices) == 0:
        raise Invalid(
            f"source {model_id}/{source_id} has no features; import or generate dashboards first", field="source"
        )
    log.info("umap: loading decoder of %s/%s from %s", model_id, source_id, spec)
    directions = load_directions(spec)
    if int(indices.max()) >= directions.shape[0]:
        raise Invalid(
            f"the SAE at {spec!r} has {directions.shape[0]} features but the source has feature "
            f"{int(indices.max())}: wrong SAE for this source?",
            field="sae",
        )
    log.info("umap: embedding %d features (d_in %d, %s)", len(indices), directions.shape[1], cfg)
    result = compute(directions[indices], indices, densities, cfg)
    log.info("umap: embedded in %.1fs; storing", time.perf_counter() - started)
    with factory() as session, session.begin():
        source = get_source(session, model_id, source_id)
        if sae and not source.weights_path and Path(sae).is_dir():
            source.weights_path = str(Path(sae).resolve())  # the next cossim/umap call finds the weights without --sae
        store(session, source, result)
    labels = set(result.cluster.tolist())
    return UmapSummary(
        model_id=model_id,
        source_id=source_id,
        features=len(indices),
        clusters=len(labels - {-1}),
        noise=int((result.cluster == -1).sum()),
        seconds=round(time.perf_counter() - started, 2),
        config=asdict(cfg),
    )
