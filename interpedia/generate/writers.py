"""Writers: SAEDashboard ``batch-N.json`` files, and the database through the foundation importer.

Both take ``DashboardBlock``s as they are built, so nothing holds more than one block plus one output
batch. Token windows are rendered once per prompt (a prompt is shown by many features).
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from interpedia.generate.dashboards import DashboardBlock
from interpedia.store.formats import public_name
from interpedia.store.records import ActivationRecord, FeatureRecord
from interpedia.store.runs import RunRecord

log = logging.getLogger(__name__)

_BATCH_RE = re.compile(r"^batch-\d+\.json$")
_EMPTY_CORRELATIONS = (
    "correlated_neurons_indices",
    "correlated_neurons_l1",
    "correlated_neurons_pearson",
    "correlated_features_indices",
    "correlated_features_l1",
    "correlated_features_pearson",
)
# SAEDashboard's key order (NeuronpediaDashboardFeature.to_dict) up to the per-run fields.
_HEAD_KEYS = (
    "neuron_alignment_indices",
    "neuron_alignment_values",
    "neuron_alignment_l1",
    *_EMPTY_CORRELATIONS,
    "neg_str",
    "neg_values",
    "pos_str",
    "pos_values",
    "frac_nonzero",
    "freq_hist_data_bar_values",
    "freq_hist_data_bar_heights",
    "logits_hist_data_bar_heights",
    "logits_hist_data_bar_values",
)


def _r(arr: Any, digits: int = 5) -> list[float]:
    return np.round(np.asarray(arr, dtype=np.float64), digits).tolist()  # type: ignore[no-any-return]


@dataclass
class RenderContext:
    """What every writer needs to turn ids into strings and label the output."""

    tokens: np.ndarray  # [n_prompts, ctx] token ids
    vocab: list[str]
    window_start: int
    dataset: str
    hook_name: str
    _windows: dict[int, list[str]] = field(default_factory=dict)

    def window(self, prompt: int) -> list[str]:
        """The shown token strings of one prompt (cached)."""
        got = self._windows.get(prompt)
        if got is None:
            ids = self.tokens[prompt, self.window_start :]
            got = [self.vocab[i] if 0 <= i < len(self.vocab) else "<|outofrange|>" for i in ids.tolist()]
            self._windows[prompt] = got
        return got

    def string_rows(self, ids: Any) -> list[list[str]]:
        """Vocabulary strings of a matrix of token ids, row by row."""
        vocab, n = self.vocab, len(self.vocab)
        return [[vocab[i] if 0 <= i < n else "<|outofrange|>" for i in row] for row in np.asarray(ids).tolist()]


class BlockColumns:
    """A block's columns as Python lists, converted once per block (not once per feature)."""

    def __init__(self, block: DashboardBlock, ctx: RenderContext) -> None:
        dec = block.decoder
        self.index = block.index.tolist()
        self.offsets = block.ex_offsets.tolist()
        self.prompt = block.ex_prompt.tolist()
        self.qualifying = block.ex_qualifying.tolist()
        self.bin_min = _r(block.ex_bin_min)
        self.bin_max = _r(block.ex_bin_max)
        self.bin_contains = block.ex_bin_contains.tolist()
        self.values = block.ex_values
        self.dfa = block.ex_dfa_values
        self.dfa_mask = block.ex_dfa_mask.tolist() if block.ex_dfa_mask is not None else None
        self.dfa_target = block.ex_values.argmax(axis=1).tolist() if block.ex_values.shape[0] else []
        self.head_attribution = _r(block.head_attribution) if block.head_attribution is not None else None
        self.stats = {
            "neuron_alignment_indices": dec.align_ids.tolist(),
            "neuron_alignment_values": _r(dec.align_vals),
            "neuron_alignment_l1": _r(dec.align_l1),
            "neg_str": ctx.string_rows(dec.neg_ids),
            "neg_values": _r(dec.neg_vals),
            "pos_str": ctx.string_rows(dec.pos_ids),
            "pos_values": _r(dec.pos_vals),
            "frac_nonzero": block.frac_nonzero.tolist(),
            "freq_hist_data_bar_values": _r(block.freq_hist_values),
            "freq_hist_data_bar_heights": block.freq_hist_heights.tolist(),
            "logits_hist_data_bar_heights": dec.logit_hist_heights.tolist(),
            "logits_hist_data_bar_values": _r(dec.logit_hist_values),
            "topk_cos_sim_indices": dec.cos_ids.tolist(),
            "topk_cos_sim_values": _r(dec.cos_vals),
        }

    def feature_stats(self, row: int) -> dict[str, Any]:
        """The statistics of one feature, under SAEDashboard's / interpedia's column names."""
        out = {name: column[row] for name, column in self.stats.items()}
        out.update({name: [] for name in _EMPTY_CORRELATIONS})
        out["decoder_weights_dist"] = self.head_attribution[row] if self.head_attribution is not None else []
        return out

    def dfa_fields(self, e: int) -> dict[str, Any] | None:
        """Example ``e``'s DFA as SAEDashboard names it (None when not computed)."""
        if self.dfa is None or self.dfa_mask is None or not self.dfa_mask[e]:
            return None
        values = self.dfa[e].tolist()
        return {"dfa_values": values, "dfa_maxValue": max(values), "dfa_targetIndex": self.dfa_target[e]}


class SaeDashboardWriter:
    """``batch-N.json`` files in SAEDashboard's Neuronpedia format (reference/generation.md §1.5).

    Beyond the format: ``topk_cos_sim_indices``/``topk_cos_sim_values`` per feature (decoder cosine
    neighbours); ``correlated_*`` are left empty (not computed).
    """

    def __init__(
        self,
        out: Path,
        ctx: RenderContext,
        *,
        header: dict[str, Any],
        n_prompts: int,
        context_size: int,
        features_per_file: int,
    ) -> None:
        self.out = out
        self.ctx = ctx
        self.header = header
        self.n_prompts = n_prompts
        self.context_size = context_size
        self.per_file = features_per_file
        self.pending: list[bytes] = []
        self.files = 0
        self.features = 0
        out.mkdir(parents=True, exist_ok=True)
        for old in out.iterdir():  # a rerun rewrites every file; stale numbering must not survive
            if _BATCH_RE.match(old.name):
                old.unlink()
        self._fragments: dict[int, orjson.Fragment] = {}

    def _tokens_fragment(self, prompt: int) -> orjson.Fragment:
        frag = self._fragments.get(prompt)
        if frag is None:
            frag = orjson.Fragment(orjson.dumps(self.ctx.window(prompt)))
            self._fragments[prompt] = frag
        return frag

    def write_block(self, block: DashboardBlock) -> None:
        """Add a block's features; full files are written as they fill."""
        cols = BlockColumns(block, self.ctx)
        frag = self._tokens_fragment
        for row, index in enumerate(cols.index):
            acts = [
                {
                    "bin_min": cols.bin_min[e],
                    "bin_max": cols.bin_max[e],
                    "bin_contains": cols.bin_contains[e],
                    "tokens": frag(cols.prompt[e]),
                    "values": cols.values[e],
                    "qualifying_token_index": cols.qualifying[e],
                    **(cols.dfa_fields(e) or {}),
                }
                for e in range(cols.offsets[row], cols.offsets[row + 1])
            ]
            stats = cols.feature_stats(row)
            doc = {
                "feature_index": index,
                **{k: stats[k] for k in _HEAD_KEYS},
                "n_prompts_total": self.n_prompts,
                "n_tokens_in_prompt": self.context_size,
                "dataset": self.ctx.dataset,
                "decoder_weights_dist": stats["decoder_weights_dist"],
                "activations": acts,
                "vector": [],
                "topk_cos_sim_indices": stats["topk_cos_sim_indices"],
                "topk_cos_sim_values": stats["topk_cos_sim_values"],
            }
            self.pending.append(orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY))
            if len(self.pending) >= self.per_file:
                self._flush()
        if len(self._fragments) > 50_000:
            self._fragments.clear()

    def _flush(self) -> None:
        if not self.pending:
            return
        head = orjson.dumps(self.header)[:-1]  # the header object without its closing brace
        data = head + b',"features":[' + b",".join(self.pending) + b"]}"
        path = self.out / f"batch-{self.files}.json"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        self.features += len(self.pending)
        self.files += 1
        self.pending = []

    def finish(self, dead: list[int], run_settings: dict[str, Any]) -> None:
        """Write the last file, the dead features (``skipped_indexes.json``) and ``run_settings.json``."""
        self._flush()
        skipped = {
            "model_id": self.header["model_id"],
            "layer": str(self.header["layer"]),
            "sae_set": self.header["sae_set"],
            "log_sparsity": None,
            "skipped_indexes": dead,
        }
        (self.out / "skipped_indexes.json").write_text(json.dumps(skipped))
        (self.out / "run_settings.json").write_text(json.dumps(run_settings, indent=2, default=str))


def block_records(block: DashboardBlock, ctx: RenderContext) -> list[FeatureRecord]:
    """A block as the store's records (what ``interpedia import`` would make of the same batch file)."""
    cols = BlockColumns(block, ctx)
    out = []
    for row, index in enumerate(cols.index):
        acts = []
        for e in range(cols.offsets[row], cols.offsets[row + 1]):
            dfa = cols.dfa_fields(e)
            acts.append(
                ActivationRecord(
                    tokens=ctx.window(cols.prompt[e]),
                    values=cols.values[e].tolist(),
                    bin_min=cols.bin_min[e],
                    bin_max=cols.bin_max[e],
                    bin_contains=cols.bin_contains[e],
                    qualifying_token_index=cols.qualifying[e],
                    dfa_target_index=dfa["dfa_targetIndex"] if dfa else None,
                    dfa_max_value=dfa["dfa_maxValue"] if dfa else None,
                    extras={"dfaValues": dfa["dfa_values"]} if dfa else None,
                )
            )
        stats = cols.feature_stats(row)
        stats["max_act_approx"] = max((a.max_value for a in acts), default=0.0)
        stats["hook_name"] = ctx.hook_name
        out.append(FeatureRecord(index=index, stats=stats, activations=acts))
    return out


class DatabaseWriter:
    """Feeds blocks to the foundation ``BatchImporter`` (one transaction per batch, resumable)."""

    def __init__(
        self, factory: Any, target: Any, ctx: RenderContext, *, run_key: str, creator: str, features_per_batch: int
    ) -> None:
        from interpedia.ingest.pipeline import BatchImporter

        self.factory = factory
        self.ctx = ctx
        self.importer = BatchImporter(factory, creator_name=creator)
        self.source = self.importer.prepare_source(target)
        self.run_key = run_key
        self.per_batch = features_per_batch
        self.pending: list[FeatureRecord] = []
        self.batches = 0

    def write_block(self, block: DashboardBlock) -> None:
        """Queue a block's records; full batches are written as they fill."""
        self.pending.extend(block_records(block, self.ctx))
        while len(self.pending) >= self.per_batch:
            self._write(self.pending[: self.per_batch])
            self.pending = self.pending[self.per_batch :]

    def _write(self, records: list[FeatureRecord]) -> None:
        from interpedia.ingest.pipeline import Batch

        self.importer.write(self.source, Batch(key=f"generate/{self.run_key}/{self.batches}", records=records))
        self.batches += 1

    def finish(self, dead: list[int]) -> Any:
        """Write what is left and stubs for dead features (no dashboard); returns the import summary."""
        from interpedia.ingest.pipeline import Batch

        if self.pending:
            self._write(self.pending)
            self.pending = []
        if dead:
            stubs = [
                FeatureRecord(index=i, stats={"max_act_approx": 0.0, "frac_nonzero": 0.0}, activations=[]) for i in dead
            ]
            self.importer.write(self.source, Batch(key=f"generate/{self.run_key}/dead", records=stubs))
        return self.importer.finish()


def source_target(
    cfg: Any,
    model: Any,
    sae: Any,
    hook_name: str,
    names: tuple[str, str, str],
    n_prompts: int,
    *,
    show_dfa: bool = False,
) -> Any:
    """The catalogue rows a run's dashboards go under (an ``ingest.pipeline.SourceTarget``)."""
    from interpedia.ingest.pipeline import SourceTarget

    model_id, layer, source_set = names
    is_dir = Path(cfg.sae).is_dir()
    release, _, sae_id = cfg.sae.partition("/")
    return SourceTarget(
        model_id=model_id,
        source_id=f"{layer}-{source_set}",
        model_fields={
            "display_name": model_id,
            "layers": int(model.cfg.n_layers),
            "dimension": int(model.cfg.d_model),
            "tlens_id": model.name,
        },
        set_fields={
            "description": f"{source_set} (generated by interpedia)",
            **({"show_dfa": True} if show_dfa else {}),
        },
        source_fields={
            "hook_name": hook_name,
            "num_prompts": n_prompts,
            "num_tokens_in_prompt": cfg.context_size,
            "dataset": public_name(cfg.dataset),  # its name or hub id, never a path of this machine
            "saelens_config": sae.cfg_dict(),
            "weights_path": cfg.sae if is_dir else None,
            "saelens_release": None if is_dir else release,
            "saelens_sae_id": None if is_dir else sae_id,
        },
    )


def record_run(factory: Any, source: Any, record: RunRecord) -> None:
    """Keep the run's record in the ``generate_runs`` table (one row per run; a resumed run updates it)."""
    from interpedia.db.engine import transaction
    from interpedia.store.runs import record_run as store_record

    with transaction(factory) as session:
        store_record(session, source, record)
