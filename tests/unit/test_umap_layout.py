"""UMAP maps and clustering on small SAEs: decoder loading, structure kept, clusters found, log sparsity."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))

from generate_helpers import make_sae_dir  # noqa: E402

from interpedia.analysis.decoder import load_directions  # noqa: E402
from interpedia.analysis.umap_layout import UmapConfig, cluster, compute, embed, log_sparsity  # noqa: E402
from interpedia.errors import Invalid  # noqa: E402


def _blobs(n_per: int = 40, k: int = 3, d: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit directions in ``k`` tight cones around random centres, and which cone each is in."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d))
    labels = np.repeat(np.arange(k), n_per)
    x = centres[labels] + 0.08 * rng.normal(size=(k * n_per, d)) * np.linalg.norm(centres, axis=1)[labels, None]
    x *= rng.uniform(0.5, 3.0, size=(len(x), 1))  # decoder norms vary; directions are what count
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = {(int(x), int(y)) for x, y in zip(a, b, strict=True)}
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_directions_from_safetensors_match_saelens(tmp_path: Path) -> None:
    from interpedia.generate.sae import LoadedSae

    sae_dir = make_sae_dir(tmp_path / "sae", "standard", d_sae=64)
    fast = load_directions(str(sae_dir))
    ref = LoadedSae.load(str(sae_dir), fold=False).decoder_directions().numpy()
    assert fast.shape == (64, 32)
    np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(fast, ref, atol=1e-6)


def test_directions_of_missing_sae_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(Invalid, match="cannot load SAE"):
        load_directions(str(tmp_path / "nowhere"))


def test_umap_keeps_clusters_apart_and_clusterers_find_them() -> None:
    directions, truth = _blobs()
    cfg = UmapConfig(n_neighbors=10, seed=0)
    points = embed(directions, cfg)
    assert points.shape == (120, 2) and np.isfinite(points).all()
    centroids = np.stack([points[truth == k].mean(0) for k in range(3)])
    spread = max(float(np.linalg.norm(points[truth == k] - centroids[k], axis=1).max()) for k in range(3))
    gaps = min(float(np.linalg.norm(centroids[i] - centroids[j])) for i in range(3) for j in range(i + 1, 3))
    assert gaps > spread, "each cone should map to its own island"
    assert _same_partition(cluster(points, UmapConfig(clusterer="kmeans", n_clusters=3)), truth)
    hdb = cluster(points, UmapConfig(clusterer="hdbscan", min_cluster_size=10))
    assert (hdb >= 0).mean() > 0.9 and _same_partition(hdb[hdb >= 0], truth[hdb >= 0])
    assert np.array_equal(embed(directions, cfg), points), "a seed gives the same map"


def test_compute_on_a_real_sae_with_log_sparsity(tmp_path: Path) -> None:
    directions = load_directions(str(make_sae_dir(tmp_path / "sae", "topk", d_sae=48)))
    indices = np.arange(48, dtype=np.int64)
    densities = [0.0, None] + [10.0 ** -(1 + i % 4) for i in range(46)]
    result = compute(directions, indices, densities, UmapConfig(n_neighbors=8, clusterer="kmeans", n_clusters=4))
    assert result.x.shape == result.y.shape == (48,)
    assert set(result.cluster.tolist()) == {0, 1, 2, 3}
    assert result.log_sparsity[:2] == [None, None]
    assert result.log_sparsity[2] == pytest.approx(-1.0) and result.log_sparsity[5] == pytest.approx(-4.0)


def test_log_sparsity_and_too_few_features() -> None:
    assert log_sparsity(0.01) == pytest.approx(-2.0)
    assert log_sparsity(0.0) is None and log_sparsity(None) is None and log_sparsity(math.nan) is None
    with pytest.raises(Invalid, match="at least"):
        embed(np.eye(3, dtype=np.float32), UmapConfig())
