"""The settings of one generation run: a frozen dataclass that round-trips to JSON (``run.json``)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

DTYPES = ("float32", "bfloat16", "float16")

# Settings that change what the streaming pass writes into a shard; a shard written under other values
# of these is not reused on resume. Output-only settings (seed, writers, file layout) are left out.
_PASS_FIELDS = (
    "model",
    "sae",
    "dataset",
    "dataset_split",
    "text_field",
    "hook_name",
    "context_size",
    "n_prompts",
    "prepend_bos",
    "exclude_bos",
    "concat",
    "top_k",
    "distinct_prompts",
    "dtype",
    "fold_decoder_norm",
    "shard_prompts",
)

# Settings that change how a run executes but not what it writes.
_TRANSIENT_FIELDS = ("out", "into_db", "work_dir", "device", "batch_size", "ray", "ray_workers", "ray_address")


@dataclass(frozen=True)
class GenerateConfig:
    """Everything ``interpedia generate`` was asked to do; written to ``run.json`` beside the output."""

    model: str
    sae: str
    dataset: str
    out: str | None = None
    into_db: bool = False
    # tokens
    context_size: int = 128
    n_prompts: int = 24576
    # None: the SAE's own prepend_bos (its SAELens metadata), else whether the tokenizer has a BOS token;
    # the run resolves it and records the value it used
    prepend_bos: bool | None = None
    exclude_bos: bool = True
    concat: bool = True
    dataset_split: str = "train"
    text_field: str = "text"
    # statistics
    top_k: int = 20
    # top examples are distinct prompts (each at its maximum); False: any positions, as SAEDashboard
    distinct_prompts: bool = True
    n_quantiles: int = 5
    quantile_samples: int = 5
    n_logits: int = 10
    n_cos_sim: int = 10
    hist_bins: int = 50
    fold_decoder_norm: bool = True
    fold_ln_final: bool = False
    # direct feature attribution per example (SAEs on an attention layer's hook_z); None: whenever it is defined
    dfa: bool | None = None
    seed: int = 0
    # compute
    hook_name: str | None = None
    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int = 32
    shard_prompts: int = 256
    finalize_block_entries: int = 8_000_000
    # output and catalogue
    features_per_file: int = 128
    model_id: str | None = None
    source_set: str | None = None
    layer: str | None = None
    creator: str = "bot"
    work_dir: str | None = None
    # scale-out
    ray: bool = False
    ray_workers: int | None = None
    ray_address: str | None = None

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {self.dtype!r}")
        for name in (
            "context_size",
            "n_prompts",
            "top_k",
            "batch_size",
            "shard_prompts",
            "features_per_file",
            "n_quantiles",
            "hist_bins",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.context_size < 2:
            raise ValueError("context_size must be at least 2")
        if self.quantile_samples < 0 or self.n_logits < 0 or self.n_cos_sim < 0:
            raise ValueError("quantile_samples, n_logits and n_cos_sim must not be negative")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerateConfig:
        """The inverse of :meth:`to_dict`; unknown keys are ignored (older or newer run.json files)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def with_(self, **changes: Any) -> GenerateConfig:
        """A copy with some settings changed."""
        return replace(self, **changes)

    def output_key(self, fingerprint: str) -> str:
        """Identifies a run's output: the pass fingerprint plus every setting that changes what is written.

        Database batches and the ``generate_runs`` row are keyed by it, so a rerun of the same run skips
        what it already imported, and a rerun with, say, another seed writes its own dashboards.
        """
        doc = {k: v for k, v in self.to_dict().items() if k not in _TRANSIENT_FIELDS}
        return hashlib.sha256(json.dumps([fingerprint, doc], sort_keys=True).encode()).hexdigest()[:32]

    def fingerprint(self, inputs: dict[str, Any] | None = None) -> str:
        """A hash of what shards depend on: the pass settings plus the identity of the input files."""
        doc = {name: getattr(self, name) for name in _PASS_FIELDS}
        doc["inputs"] = inputs or {}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32]


def path_identity(spec: str) -> dict[str, Any]:
    """Size and modification time of a local file or directory's files (empty for hub names)."""
    path = Path(spec)
    if not path.exists():
        return {"name": spec}
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {
        "path": str(path.resolve()),
        "files": [
            [str(p.relative_to(path)) if p != path else p.name, p.stat().st_size, int(p.stat().st_mtime)]
            for p in files[:1000]
        ],
    }
