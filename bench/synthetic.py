"""Realistic synthetic feature dashboards for benchmarks, written in the formats the importers read.

What it imitates (a GPT-2-small residual SAE exported from Neuronpedia):

- a GPT-2-like vocabulary of ``vocab_size`` distinct byte-level token strings (``Ġ`` for a leading
  space, ``Ċ`` for a newline, multi-byte characters for non-ASCII bytes), with realistic lengths:
  frequent tokens are short, so text averages about 5 UTF-8 bytes per token string;
- contexts of ``n_tokens`` tokens drawn Zipf-Mandelbrot-like from that vocabulary (rank ``r`` has
  weight ``1 / (r + 2.7) ** zipf_s``), with the activating token drawn from a few per-feature
  "trigger" tokens as in real dashboards;
- per feature ``n_top`` top examples plus ``n_quantiles x per_quantile`` interval samples; each
  example has 2-10% of its positions non-zero (SAE activations are sparse), values rounded to
  ``decimals`` places, the peak decreasing down the top list and inside its interval for samples;
- dashboard statistics sized as SAEDashboard writes them (10 logit-lens tokens each way, 50-bin
  histograms, top-10 neuron alignment and correlation lists).

Everything is deterministic: the vocabulary comes from ``default_rng([seed, 1])`` and feature ``i``
from ``default_rng([seed, 2, i])``, so feature 7 is the same whatever ``n_features`` is.

Outputs: the Neuronpedia export layout (reference/neuronpedia.md §7.1; column names of its
``Neuron`` and ``Activation`` tables, §2.3/§2.4) and, optionally, SAEDashboard ``batch-N.json``.
"""

from __future__ import annotations

import gzip
import logging
import string
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

log = logging.getLogger(__name__)

_ALPHABET36 = np.array(list(string.digits + string.ascii_lowercase))
# English letter frequencies (a..z), for pseudo-words that look like BPE pieces.
_LETTERS = np.array(list(string.ascii_lowercase))
_LETTER_P = np.array(
    [
        8.2,
        1.5,
        2.8,
        4.3,
        12.7,
        2.2,
        2.0,
        6.1,
        7.0,
        0.15,
        0.77,
        4.0,
        2.4,
        6.7,
        7.5,
        1.9,
        0.095,
        6.0,
        6.3,
        9.1,
        2.8,
        0.98,
        2.4,
        0.15,
        2.0,
        0.074,
    ]
)
_LETTER_P = _LETTER_P / _LETTER_P.sum()
# GPT-2's byte-to-unicode map turns each non-ASCII UTF-8 byte into one of these (2 UTF-8 bytes each).
_HIGH_BYTES = np.array(list("âĢĻľĿĵãģĤĥĦħĨĩĪīĬĭĮįİıĲĳĴĶķĸĹĺĻļĽľĿŀŁłŃ"))
# The most frequent GPT-2 tokens, in rank order; then specials that only need to exist.
_FREQUENT = [
    ",",
    "Ġthe",
    ".",
    "Ġof",
    "Ġand",
    "Ġto",
    "Ġa",
    "Ġin",
    "Ċ",
    "-",
    "Ġis",
    "'s",
    "Ġ(",
    ")",
    ":",
    '"',
    "Ġfor",
    "Ġthat",
    "ĊĊ",
    "Ġon",
]
_SPECIAL = _FREQUENT + [
    "<|endoftext|>",
    "Ġ",
    "ĠĠ",
    "ĠĠĠĠ",
    "ĉ",
    "âĢĻ",
    "âĢĵ",
    "âĢľ",
    ";",
    'Ġ"',
    "Ġ$",
    "Ġ1",
    "Ġ2",
    "Ġ=",
    "Ġ{",
    "Ġ}",
    "Ġé",
    "æĹ¥",
    "ĠæĹ¥æľ¬",
    "Ā",
]
_CREATOR_ID = "clsxbench0000000000000000"
_CREATED_AT = "2024-05-01T00:00:00.000Z"


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate; round-trips to JSON with :func:`dataclasses.asdict`."""

    n_features: int = 2000
    n_top: int = 20
    n_quantiles: int = 5
    per_quantile: int = 5
    n_tokens: int = 128
    vocab_size: int = 50_000
    zipf_s: float = 1.07
    density_min: float = 0.02
    density_max: float = 0.10
    decimals: int = 4
    seed: int = 0
    model_id: str = "gpt2-small"
    source_set: str = "res-jb"
    layer: int = 0
    features_per_file: int = 1024

    @property
    def source_id(self) -> str:
        """Neuronpedia's source id (``0-res-jb``)."""
        return f"{self.layer}-{self.source_set}"

    @property
    def acts_per_feature(self) -> int:
        """Examples per feature (top plus interval samples)."""
        return self.n_top + self.n_quantiles * self.per_quantile

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON-able data."""
        return {**asdict(self), "source_id": self.source_id, "acts_per_feature": self.acts_per_feature}


@dataclass
class Vocab:
    """Token strings by id and the Zipf sampling table (ranks shuffled onto ids, short tokens frequent)."""

    strings: npt.NDArray[np.object_]
    cdf: npt.NDArray[np.float64]
    rank_to_id: npt.NDArray[np.int64]

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> npt.NDArray[np.int64]:
        """Token ids drawn from the Zipf distribution."""
        ranks = np.searchsorted(self.cdf, rng.random(shape), side="right")
        return self.rank_to_id[np.minimum(ranks, len(self.cdf) - 1)]


@dataclass
class SyntheticFeature:
    """One feature as Neuronpedia export lines: its ``Neuron`` row and its ``Activation`` rows."""

    index: int
    neuron: dict[str, Any]
    activations: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ExportInfo:
    """Where an export was written and what it holds."""

    root: Path
    source_dir: Path
    n_features: int
    n_activations: int
    n_token_positions: int
    n_nonzero: int
    token_utf8_bytes: int
    distinct_tokens: int
    gz_bytes: int
    files: list[str]

    def to_dict(self) -> dict[str, Any]:
        """Summary figures (JSON-able)."""
        return {
            "root": str(self.root),
            "n_features": self.n_features,
            "n_activations": self.n_activations,
            "n_token_positions": self.n_token_positions,
            "nonzero_fraction": round(self.n_nonzero / max(self.n_token_positions, 1), 4),
            "mean_token_utf8_bytes": round(self.token_utf8_bytes / max(self.n_token_positions, 1), 3),
            "distinct_tokens_used": self.distinct_tokens,
            "gz_bytes": self.gz_bytes,
            "files": self.files,
        }


def build_vocab(cfg: SyntheticConfig) -> Vocab:
    """A GPT-2-like vocabulary of ``cfg.vocab_size`` distinct token strings and its Zipf table."""
    rng = np.random.default_rng([cfg.seed, 1])
    seen: set[str] = set(_SPECIAL)
    words: list[str] = list(_SPECIAL)
    while len(words) < cfg.vocab_size:
        need = (cfg.vocab_size - len(words)) * 2
        lengths = np.clip(np.rint(rng.lognormal(np.log(5.5), 0.5, need)), 1, 16).astype(int)
        kinds = rng.random(need)
        letters = rng.choice(_LETTERS, size=(need, 16), p=_LETTER_P)
        for n, (length, kind) in enumerate(zip(lengths.tolist(), kinds.tolist(), strict=True)):
            if kind < 0.03:  # numbers: "Ġ1998", "45"
                word = ("Ġ" if kind < 0.015 else "") + "".join(rng.choice(list(string.digits), length % 4 + 1))
            elif kind < 0.06:  # non-ASCII text as GPT-2 byte-level characters
                word = ("Ġ" if kind < 0.045 else "") + "".join(rng.choice(_HIGH_BYTES, 2 + length % 4))
            else:
                word = "".join(letters[n, :length])
                if kind < 0.22:
                    word = word.capitalize()
                if kind < 0.70:  # most BPE pieces carry the leading space
                    word = "Ġ" + word
            if word not in seen:
                seen.add(word)
                words.append(word)
                if len(words) == cfg.vocab_size:
                    break
    strings = np.array(words, dtype=object)
    # Frequent ranks go to short tokens (noisily), like a real BPE vocabulary; the top ranks are fixed.
    lengths_arr = np.array([len(w.encode()) for w in words], dtype=np.float64)
    order_key = lengths_arr + rng.normal(0, 4.0, len(words))
    order_key[: len(_FREQUENT)] = np.arange(len(_FREQUENT)) - 100.0
    rank_to_id = np.argsort(order_key, kind="stable").astype(np.int64)
    weights = 1.0 / (np.arange(cfg.vocab_size) + 2.7) ** cfg.zipf_s
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    return Vocab(strings=strings, cdf=cdf, rank_to_id=rank_to_id)


def _cuids(rng: np.random.Generator, n: int) -> list[str]:
    digits = _ALPHABET36[rng.integers(0, 36, size=(n, 24))]
    return ["c" + "".join(row) for row in digits.tolist()]


def _round(values: npt.NDArray[np.float64], decimals: int) -> list[float]:
    return np.round(values, decimals).tolist()  # type: ignore[no-any-return]


def _example(
    rng: np.random.Generator, cfg: SyntheticConfig, vocab: Vocab, triggers: npt.NDArray[np.int64], peak: float
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], int]:
    """Token ids, values and the peak position of one example."""
    n = cfg.n_tokens
    ids = vocab.sample(rng, (n,))
    density = rng.uniform(cfg.density_min, cfg.density_max)
    nnz = max(1, int(round(density * n)))
    peak_at = int(rng.integers(0, n))
    # Activity clusters around the peak, as a feature fires on a phrase rather than at random.
    offsets = rng.normal(0, 6, nnz * 3).round().astype(int) + peak_at
    others = np.unique(np.clip(offsets, 0, n - 1))
    others = rng.permutation(others[others != peak_at])[: nnz - 1]
    values = np.zeros(n)
    step = 10.0**-cfg.decimals
    values[others] = np.maximum(peak * rng.uniform(0.02, 0.9, len(others)), step)
    values[peak_at] = peak
    ids[peak_at] = triggers[rng.integers(0, len(triggers))]
    return ids, np.round(values, cfg.decimals), peak_at


def _histogram(rng: np.random.Generator, top: float, bins: int = 50) -> tuple[list[float], list[float]]:
    edges = np.linspace(0, top, bins + 1)
    centers = (edges[:-1] + edges[1:]) / 2
    heights = np.maximum(np.rint(rng.lognormal(5, 1.5, bins) * np.exp(-np.arange(bins) / 8)), 0)
    return heights.tolist(), _round(centers, 4)


def make_feature(cfg: SyntheticConfig, vocab: Vocab, index: int) -> SyntheticFeature:
    """Feature ``index``: its Neuron row and its examples (top ones first, then interval samples)."""
    rng = np.random.default_rng([cfg.seed, 2, index])
    max_act = float(np.round(rng.lognormal(np.log(8.0), 0.8), cfg.decimals))
    triggers = vocab.sample(rng, (int(rng.integers(1, 6)),))
    peaks: list[tuple[float, float, float, float]] = []  # (peak, binMin, binMax, binContains)
    for k in range(cfg.n_top):
        peaks.append((max_act * (1 - 0.5 * k / cfg.n_top) * rng.uniform(0.97, 1.0), -1.0, max_act, -1.0))
    for q in range(cfg.n_quantiles):
        lo, hi = max_act * q / cfg.n_quantiles, max_act * (q + 1) / cfg.n_quantiles
        contains = float(np.round(rng.uniform(0.001, 0.6) / (q + 1), 6))
        for _ in range(cfg.per_quantile):
            peaks.append((rng.uniform(lo, hi), float(np.round(lo, 4)), float(np.round(hi, 4)), contains))
    ids_list = _cuids(rng, len(peaks))
    acts: list[dict[str, Any]] = []
    for act_id, (peak, bin_min, bin_max, contains) in zip(ids_list, peaks, strict=True):
        peak = max(float(np.round(peak, cfg.decimals)), 10.0**-cfg.decimals)
        ids, values, peak_at = _example(rng, cfg, vocab, triggers, peak)
        vals = values.tolist()
        acts.append(
            {
                "id": act_id,
                "tokens": vocab.strings[ids].tolist(),
                "dataIndex": None,
                "index": str(index),
                "layer": cfg.source_id,
                "modelId": cfg.model_id,
                "dataSource": None,
                "maxValue": max(vals),
                "maxValueTokenIndex": vals.index(max(vals)),
                "minValue": min(vals),
                "values": vals,
                "dfaValues": [],
                "dfaTargetIndex": None,
                "dfaMaxValue": None,
                "zIndices": [[], []],
                "zValues": [],
                "creatorId": _CREATOR_ID,
                "createdAt": _CREATED_AT,
                "lossValues": [],
                "logitContributions": None,
                "binMin": bin_min,
                "binMax": bin_max,
                "binContains": contains,
                "qualifyingTokenIndex": peak_at,
            }
        )
    freq_heights, freq_values = _histogram(rng, max_act)
    logit_heights, logit_values = _histogram(rng, 1.0)
    pos = np.sort(rng.uniform(0.2, 1.2, 10))[::-1]
    neg = np.sort(-rng.uniform(0.2, 1.2, 10))
    neuron = {
        "modelId": cfg.model_id,
        "layer": cfg.source_id,
        "index": str(index),
        "sourceSetName": cfg.source_set,
        "creatorId": _CREATOR_ID,
        "createdAt": _CREATED_AT,
        "maxActApprox": max(a["maxValue"] for a in acts),
        "hasVector": False,
        "vector": [],
        "vectorLabel": None,
        "vectorDefaultSteerStrength": 10,
        "hookName": None,
        "topkCosSimIndices": [],
        "topkCosSimValues": [],
        "neuron_alignment_indices": rng.integers(0, 768, 10).tolist(),
        "neuron_alignment_values": _round(rng.normal(0, 0.2, 10), 4),
        "neuron_alignment_l1": _round(rng.uniform(0, 0.05, 10), 4),
        "correlated_neurons_indices": rng.integers(0, 768, 10).tolist(),
        "correlated_neurons_pearson": _round(rng.uniform(0, 0.6, 10), 4),
        "correlated_neurons_l1": _round(rng.uniform(0, 0.05, 10), 4),
        "correlated_features_indices": [],
        "correlated_features_pearson": [],
        "correlated_features_l1": [],
        "neg_str": vocab.strings[vocab.sample(rng, (10,))].tolist(),
        "neg_values": _round(neg, 4),
        "pos_str": vocab.strings[vocab.sample(rng, (10,))].tolist(),
        "pos_values": _round(pos, 4),
        "frac_nonzero": float(np.round(10 ** rng.uniform(-5, -2), 7)),
        "freq_hist_data_bar_heights": freq_heights,
        "freq_hist_data_bar_values": freq_values,
        "logits_hist_data_bar_heights": logit_heights,
        "logits_hist_data_bar_values": logit_values,
        "decoder_weights_dist": [],
        "umap_cluster": None,
        "umap_log_feature_sparsity": None,
        "umap_x": None,
        "umap_y": None,
    }
    return SyntheticFeature(index=index, neuron=neuron, activations=acts)


def iter_features(cfg: SyntheticConfig, vocab: Vocab | None = None) -> Iterator[SyntheticFeature]:
    """Features ``0 .. n_features-1`` in order."""
    vocab = vocab or build_vocab(cfg)
    for index in range(cfg.n_features):
        yield make_feature(cfg, vocab, index)


def _write_gz_lines(path: Path, rows: list[dict[str, Any]]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = gzip.compress(b"".join(orjson.dumps(r) + b"\n" for r in rows), compresslevel=5, mtime=0)
    path.write_bytes(data)
    return len(data)


def _write_jsonl(path: Path, row: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(row) + b"\n")


def catalogue_rows(cfg: SyntheticConfig) -> dict[str, dict[str, Any]]:
    """The ``model.jsonl``, ``sourceset.jsonl`` and ``source.jsonl`` rows."""
    return {
        "model.jsonl": {
            "id": cfg.model_id,
            "displayNameShort": "GPT2-SM",
            "displayName": "GPT2-Small",
            "creatorId": _CREATOR_ID,
            "tlensId": "gpt2-small",
            "dimension": 768,
            "visibility": "PUBLIC",
            "inferenceEnabled": False,
            "instruct": False,
            "layers": 12,
            "neuronsPerLayer": 3072,
            "owner": "OpenAI",
            "website": "https://openai.com",
            "createdAt": _CREATED_AT,
            "updatedAt": _CREATED_AT,
        },
        "sourceset.jsonl": {
            "modelId": cfg.model_id,
            "name": cfg.source_set,
            "hasDashboards": True,
            "allowInferenceSearch": True,
            "visibility": "PUBLIC",
            "description": "Synthetic residual SAEs (benchmark data)",
            "type": "res",
            "creatorName": "bench",
            "urls": [],
            "creatorId": _CREATOR_ID,
            "releaseName": None,
            "defaultRange": 1,
            "defaultShowBreaks": True,
            "showDfa": False,
            "showCorrelated": False,
            "showHeadAttribution": False,
            "showUmap": False,
            "createdAt": _CREATED_AT,
        },
        "source.jsonl": {
            "id": cfg.source_id,
            "modelId": cfg.model_id,
            "hasDashboards": True,
            "inferenceEnabled": False,
            "saelensConfig": None,
            "saelensRelease": None,
            "saelensSaeId": None,
            "hfRepoId": None,
            "hfFolderId": None,
            "visibility": "PUBLIC",
            "setName": cfg.source_set,
            "creatorId": _CREATOR_ID,
            "hasUmap": False,
            "hasUmapLogSparsity": False,
            "hasUmapClusters": False,
            "num_prompts": 24576,
            "num_tokens_in_prompt": cfg.n_tokens,
            "dataset": "synthetic",
            "notes": None,
            "createdAt": _CREATED_AT,
        },
    }


def write_np_export(cfg: SyntheticConfig, root: Path, *, vocab: Vocab | None = None) -> ExportInfo:
    """Write ``root/<model>/<source>/`` in the Neuronpedia export layout; returns what it holds."""
    vocab = vocab or build_vocab(cfg)
    src_dir = root / cfg.model_id / cfg.source_id
    for name, row in catalogue_rows(cfg).items():
        _write_jsonl(src_dir / name, row)
    n_acts = n_pos = n_nz = n_bytes = gz = 0
    used: set[str] = set()
    files: list[str] = []
    feats: list[dict[str, Any]] = []
    acts: list[dict[str, Any]] = []

    def flush(batch: int) -> None:
        nonlocal gz
        for kind, rows in (("features", feats), ("activations", acts)):
            path = src_dir / kind / f"batch-{batch}.jsonl.gz"
            gz += _write_gz_lines(path, rows)
            files.append(str(path.relative_to(root)))

    batch = 0
    for feat in iter_features(cfg, vocab):
        feats.append(feat.neuron)
        acts.extend(feat.activations)
        for act in feat.activations:
            n_acts += 1
            n_pos += len(act["tokens"])
            n_nz += sum(1 for v in act["values"] if v)
            n_bytes += sum(len(t.encode()) for t in act["tokens"])
            used.update(act["tokens"])
        if len(feats) == cfg.features_per_file:
            flush(batch)
            batch += 1
            feats, acts = [], []
    if feats:
        flush(batch)
    info = ExportInfo(
        root=root,
        source_dir=src_dir,
        n_features=cfg.n_features,
        n_activations=n_acts,
        n_token_positions=n_pos,
        n_nonzero=n_nz,
        token_utf8_bytes=n_bytes,
        distinct_tokens=len(used),
        gz_bytes=gz,
        files=files,
    )
    log.info("wrote Neuronpedia export: %s", info.to_dict())
    return info


def write_saedashboard(
    cfg: SyntheticConfig, out: Path, *, vocab: Vocab | None = None, features_per_file: int = 128
) -> list[Path]:
    """Write the same features as SAEDashboard ``batch-N.json`` files (``neuronpedia-runner`` output)."""
    vocab = vocab or build_vocab(cfg)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        doc = {
            "model_id": cfg.model_id,
            "layer": cfg.layer,
            "sae_set": cfg.source_set,
            "sae_id_suffix": None,
            "features": batch,
        }
        path = out / f"batch-{len(paths)}.json"
        path.write_bytes(orjson.dumps(doc))
        paths.append(path)

    for feat in iter_features(cfg, vocab):
        n = feat.neuron
        stats = {
            k: v
            for k, v in n.items()
            if k.startswith(("neuron_", "correlated_", "pos_", "neg_", "freq_", "logits_", "decoder_", "frac_"))
        }
        batch.append(
            {
                "feature_index": feat.index,
                **stats,
                "n_prompts_total": 24576,
                "n_tokens_in_prompt": cfg.n_tokens,
                "dataset": "synthetic",
                "vector": [],
                "activations": [
                    {
                        "tokens": a["tokens"],
                        "values": a["values"],
                        "bin_min": a["binMin"],
                        "bin_max": a["binMax"],
                        "bin_contains": a["binContains"],
                        "qualifying_token_index": a["qualifyingTokenIndex"],
                        "dfa_values": [],
                        "loss_values": [],
                        "logit_contributions": None,
                    }
                    for a in feat.activations
                ],
            }
        )
        if len(batch) == features_per_file:
            flush()
            batch = []
    if batch:
        flush()
    (out / "skipped_indexes.json").write_bytes(
        orjson.dumps(
            {
                "model_id": cfg.model_id,
                "layer": str(cfg.layer),
                "sae_set": cfg.source_set,
                "log_sparsity": 1,
                "skipped_indexes": [],
            }
        )
    )
    return paths


def main() -> None:
    """``python bench/synthetic.py OUT [--n-features N] [--saedashboard]``: write a data set and exit."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--n-features", type=int, default=SyntheticConfig.n_features)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--saedashboard", action="store_true", help="also write SAEDashboard batch-N.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = SyntheticConfig(n_features=args.n_features, seed=args.seed)
    vocab = build_vocab(cfg)
    info = write_np_export(cfg, args.out / "np-export", vocab=vocab)
    if args.saedashboard:
        write_saedashboard(cfg, args.out / "saedashboard", vocab=vocab)
    print(json.dumps({"config": cfg.to_dict(), "export": info.to_dict()}, indent=2))


if __name__ == "__main__":
    main()
