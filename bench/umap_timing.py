"""Time ``interpedia umap``'s computation (decoder load, UMAP, clustering) on an SAE-sized decoder.

The decoder is synthetic (clustered unit directions written in SAELens's on-disk layout), since no
pretrained SAE can be downloaded here; the work UMAP does depends on the shape, not on the values.
Prints one JSON line per size: ``python bench/umap_timing.py --sizes 2048x128,24576x768``.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from interpedia.analysis.decoder import load_directions
from interpedia.analysis.umap_layout import UmapConfig, cluster, embed

log = logging.getLogger("bench.umap")


def _write_sae(root: Path, n: int, d: int, seed: int = 0) -> Path:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(8, n // 200), d))
    w = centres[rng.integers(0, len(centres), n)] + 0.7 * rng.normal(size=(n, d))
    root.mkdir(parents=True, exist_ok=True)
    save_file({"W_dec": w.astype(np.float32)}, str(root / "sae_weights.safetensors"))
    return root


def main() -> None:
    """Run each size once and print its timings."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="2048x128,24576x768", help="comma list of FEATURESxWIDTH")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    # numba compiles UMAP's kernels on first use (minutes on a busy machine): do that before timing
    t0 = time.perf_counter()
    embed(np.random.default_rng(0).normal(size=(64, 16)).astype(np.float32), UmapConfig())
    print(json.dumps({"warmup_compile_s": round(time.perf_counter() - t0, 1)}), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            n, d = (int(v) for v in size.split("x"))
            sae = _write_sae(Path(tmp) / size, n, d)
            t0 = time.perf_counter()
            directions = load_directions(str(sae))
            t1 = time.perf_counter()
            points = embed(directions, UmapConfig())
            t2 = time.perf_counter()
            labels = cluster(points, UmapConfig())
            t3 = time.perf_counter()
            print(
                json.dumps(
                    {
                        "features": n,
                        "d_in": d,
                        "load_s": round(t1 - t0, 2),
                        "umap_s": round(t2 - t1, 1),
                        "hdbscan_s": round(t3 - t2, 2),
                        "clusters": len(set(labels.tolist()) - {-1}),
                        "outliers": int((labels == -1).sum()),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
