"""Decoder directions of a source's SAE, read from where the Source row says its weights live.

A SAELens directory (``cfg.json`` + ``sae_weights.safetensors``) is read straight from the
safetensors file with numpy: cosine similarity and UMAP only need the ``W_dec`` rows' directions,
and skipping SAELens keeps a web request free of torch. Anything else (a ``RELEASE/SAE_ID``, or a
directory without ``W_dec``) goes through :meth:`interpedia.generate.sae.LoadedSae.load`.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from interpedia.db.tables import Source
from interpedia.errors import Invalid

log = logging.getLogger(__name__)

WEIGHTS_FILE = "sae_weights.safetensors"


def sae_spec(source: Source, override: str | None = None) -> str:
    """Where the source's SAE weights are: ``override``, its ``weights_path``, or its SAELens release/id."""
    if override:
        return override
    if source.weights_path:
        return source.weights_path
    if source.saelens_release and source.saelens_sae_id:
        return f"{source.saelens_release}/{source.saelens_sae_id}"
    raise Invalid(
        f"source {source.model_id}/{source.name} has no SAE weights recorded (no weights_path or "
        "SAELens release); pass --sae DIR",
        field="source",
    )


def _unit_rows(w: np.ndarray) -> np.ndarray:
    w = np.ascontiguousarray(w, dtype=np.float32)
    norms = np.linalg.norm(w, axis=1, keepdims=True)
    return w / np.maximum(norms, 1e-8)


def load_directions(spec: str) -> np.ndarray:
    """Unit-norm decoder rows ``[d_sae, d_in]`` (float32) of the SAE at ``spec``."""
    path = Path(spec)
    weights = path / WEIGHTS_FILE
    if path.is_dir() and weights.is_file():
        from safetensors import safe_open

        with safe_open(str(weights), framework="numpy") as fh:
            if "W_dec" in fh.keys():  # noqa: SIM118 (safe_open is not a mapping)
                w = fh.get_tensor("W_dec")
                if w.ndim == 2:
                    return _unit_rows(w)
    if path.exists() and not path.is_dir():
        raise Invalid(f"SAE {spec!r} is a file; give the SAELens directory that holds it", field="sae")
    from interpedia.generate.sae import LoadedSae  # torch: only when the fast path does not apply

    try:
        sae = LoadedSae.load(spec, fold=False)
    except Exception as exc:  # SAELens and the hub raise many kinds; the user needs the message, not the type
        raise Invalid(f"cannot load SAE {spec!r}: {exc}", field="sae") from None
    return _unit_rows(sae.decoder_directions().numpy())


class DirectionCache:
    """A few local SAEs' decoder directions kept in memory (one web worker answers many cossim calls)."""

    def __init__(self, capacity: int = 4) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, spec: str) -> np.ndarray:
        """The directions of ``spec``, loaded on first use (and again when its weights file changes)."""
        if not Path(spec).is_dir():
            # A web request must not start a hub download: only SAEs already on this machine are read here.
            raise Invalid(
                f"the SAE {spec!r} is not a directory on this server; /api/cossim reads local SAELens "
                "directories (see the source's weights_path)",
                field="source",
            )
        weights = Path(spec) / WEIGHTS_FILE
        key = f"{spec}@{weights.stat().st_mtime_ns}" if weights.is_file() else spec
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        directions = load_directions(spec)
        with self._lock:
            self._items[key] = directions
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        log.info("decoder directions of %s loaded: %s", spec, directions.shape)
        return directions
