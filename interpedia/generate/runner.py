"""One generation run, start to finish: load, tokenise, stream the shards, build dashboards, write, record.

Resume: shards are saved to the work directory (``<work>/<fingerprint>/shards``) as they finish; a rerun
with the same pass settings and unchanged input files skips them. The work directory is removed after a
successful run unless ``keep_work``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import resource
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from interpedia.generate.config import GenerateConfig, path_identity
from interpedia.generate.model import HookedModel, layer_of
from interpedia.generate.sae import LoadedSae
from interpedia.generate.state import ShardResult, ShardStore
from interpedia.store.formats import public_name
from interpedia.store.runs import RunCatalogue, RunModel, RunRecord, RunSae, RunTokens

log = logging.getLogger(__name__)

_HOOK_KINDS = (("resid", "res"), ("mlp", "mlp"), ("attn", "att"), ("hook_z", "att"))


@dataclass
class RunResult:
    """What a run did: its record (``run.json``), where it wrote, its dead features."""

    record: RunRecord
    out: Path | None
    dead: list[int] = field(default_factory=list)
    features_written: int = 0

    @property
    def run(self) -> dict[str, Any]:
        """The record as the ``run.json`` document."""
        return self.record.to_dict()


def catalogue_names(cfg: GenerateConfig, sae: LoadedSae, model: HookedModel, hook_name: str) -> tuple[str, str, str]:
    """(model id, layer, source set) for the output: flags first, then the SAE's metadata, then defaults."""
    np_id = getattr(sae.metadata, "neuronpedia_id", None) or ""
    np_model, _, np_source = np_id.partition("/")
    np_layer, _, np_set = np_source.partition("-")
    model_id = cfg.model_id or np_model or getattr(sae.metadata, "model_name", None) or model.name
    layer_num = layer_of(hook_name)
    layer = cfg.layer or np_layer or (str(layer_num) if layer_num is not None else "0")
    kind = "tc" if sae.is_transcoder else next((short for key, short in _HOOK_KINDS if key in hook_name), "sae")
    source_set = cfg.source_set or np_set.split("__")[0] or f"{kind}-{sae.architecture}"
    return str(model_id), str(layer), source_set


class GenerateRun:
    """Runs ``interpedia generate`` for one config; ``factory`` is needed only with ``into_db``."""

    def __init__(
        self,
        cfg: GenerateConfig,
        *,
        factory: Any = None,
        keep_work: bool = False,
        progress: bool | None = None,
        stop_after_shards: int | None = None,
    ) -> None:
        self.cfg = cfg
        self.factory = factory
        self.keep_work = keep_work
        self.progress = progress
        self.stop_after_shards = stop_after_shards  # tests: simulate a kill after this many new shards
        self.timings: dict[str, float] = {}
        self.threads: dict[str, Any] = {}
        self.bos_from = "--prepend-bos"

    # --- stages ----------------------------------------------------------------------------------

    def _timed(self, name: str, started: float) -> None:
        self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - started, 4)

    def work_root(self) -> Path:
        """Where shards are kept until the run finishes."""
        if self.cfg.work_dir:
            return Path(self.cfg.work_dir)
        if self.cfg.out:
            return Path(self.cfg.out) / ".interpedia-work"
        raise ValueError("a work directory is needed: pass work_dir or out")

    def _prepend_bos(self, model: HookedModel, sae: LoadedSae) -> bool:
        """--prepend-bos as given, else as the SAE was trained (its metadata), else the tokenizer's convention."""
        if self.cfg.prepend_bos is not None:
            self.bos_from = "--prepend-bos" if self.cfg.prepend_bos else "--no-prepend-bos"
            return self.cfg.prepend_bos
        trained = getattr(sae.metadata, "prepend_bos", None)
        if isinstance(trained, bool):
            self.bos_from = "the SAE's metadata (prepend_bos)"
            return trained
        self.bos_from = "the tokenizer (it has a BOS token)" if model.default_prepend_bos else "the tokenizer (no BOS)"
        return model.default_prepend_bos

    def _tokens(self, model: HookedModel, work: Path) -> tuple[np.ndarray, dict[str, Any]]:
        from interpedia.generate.tokens import TokenSource

        path, meta_path = work / "tokens.npy", work / "tokens.json"
        if path.exists() and meta_path.exists():
            return np.load(path), json.loads(meta_path.read_text())
        cfg = self.cfg
        rows = TokenSource(
            cfg.dataset,
            model.tokenizer,
            context_size=cfg.context_size,
            n_prompts=cfg.n_prompts,
            prepend_bos=bool(cfg.prepend_bos),
            concat=cfg.concat,
            split=cfg.dataset_split,
            text_field=cfg.text_field,
            bos_id=model.bos_token_id,
        ).rows()
        meta = {"kind": rows.kind, "n_prompts": rows.n_prompts, "skipped_short_documents": rows.skipped_short}
        work.mkdir(parents=True, exist_ok=True)
        np.save(work / "tokens.tmp.npy", rows.tokens)
        (work / "tokens.tmp.npy").replace(path)
        meta_path.write_text(json.dumps(meta))
        return rows.tokens, meta

    def run(self) -> RunResult:
        """Do the whole run; returns the run record."""
        import torch

        cfg = self.cfg
        t_all = time.perf_counter()
        started = time.perf_counter()
        model = HookedModel.load(cfg.model, device=cfg.device, dtype=cfg.dtype)
        sae = LoadedSae.load(cfg.sae, device=cfg.device, dtype=cfg.dtype, fold=cfg.fold_decoder_norm)
        self._timed("load_seconds", started)
        hook_name = cfg.hook_name or sae.hook_name
        model.enable_hooks([hook_name])  # an unknown hook fails now, before any tokenising
        processing = getattr(sae.metadata, "model_from_pretrained_kwargs", None) or {}
        if processing.get("center_writing_weights"):
            log.warning(
                "the SAE was trained on a model loaded with %s; interpedia reads the weights as stored, so "
                "residual-stream activations differ from the SAE's training by each token's mean",
                processing,
            )
        cfg = self.cfg = cfg.with_(prepend_bos=self._prepend_bos(model, sae))
        inputs = {k: path_identity(getattr(cfg, k)) for k in ("model", "sae", "dataset")}
        fingerprint = cfg.fingerprint(inputs)
        work = self.work_root() / fingerprint
        started = time.perf_counter()
        tokens, token_meta = self._tokens(model, work)
        self._timed("tokenize_seconds", started)

        from interpedia.generate.feature_pass import FeaturePass, plan_shards

        ignore_ids = model.special_token_ids() if cfg.exclude_bos else None
        window_start = 1 if (cfg.prepend_bos and cfg.exclude_bos) else 0
        shards = plan_shards(len(tokens), cfg.shard_prompts)
        store = ShardStore(work / "shards")
        done = store.done()
        todo = [s for s in shards if s.shard not in done]
        if self.stop_after_shards is not None:
            todo = todo[: self.stop_after_shards]
        ctx_len = cfg.context_size
        bar = tqdm(
            total=len(tokens) * ctx_len,
            initial=sum(s.end - s.start for s in shards if s.shard in done) * ctx_len,
            unit="tok",
            unit_scale=True,
            desc="generate",
            disable=None if self.progress is None else not self.progress,
        )
        new_tokens = sum(s.end - s.start for s in todo) * ctx_len
        cluster: dict[str, Any] | None = None
        started = time.perf_counter()

        def save(result: ShardResult) -> None:
            store.save(result)
            if cfg.ray:
                bar.update((result.prompt_end - result.prompt_start) * ctx_len)

        if todo and cfg.ray:
            from interpedia.generate.ray_runner import RayRunner

            cluster = RayRunner(cfg, tokens, hook_name=hook_name, ignore_ids=ignore_ids).run(todo, save)
        elif todo:
            feature_pass = FeaturePass(
                model,
                sae,
                tokens,
                hook_name=hook_name,
                top_k=cfg.top_k,
                distinct_prompts=cfg.distinct_prompts,
                batch_size=cfg.batch_size,
                ignore_ids=ignore_ids,
            )
            for spec in todo:
                save(feature_pass.run_shard(spec, progress=bar.update))
            self.threads = {
                "max": feature_pass.max_threads,
                "chosen": feature_pass.tuner.choice,
                "minibatches_by_threads": feature_pass.tuner.used,
            }
        bar.close()
        self._timed("pass_seconds", started)
        if self.stop_after_shards is not None and len(store.done()) < len(shards):
            raise InterruptedError(f"stopped after {self.stop_after_shards} shards (as asked)")

        started = time.perf_counter()
        state = store.merged_state([s.shard for s in shards])
        results = [store.load(s.shard, with_state=False) for s in shards]
        self._timed("merge_seconds", started)
        names = catalogue_names(cfg, sae, model, hook_name)
        max_threads = torch.get_num_threads()
        torch.set_num_threads(self.threads.get("chosen", max_threads))  # what the pass found fastest
        try:
            written, dead, db_source = self._write(
                model, sae, state, results, tokens, hook_name, window_start, names, fingerprint
            )
        finally:
            torch.set_num_threads(max_threads)
        self.timings["generate_seconds"] = round(time.perf_counter() - t_all - self.timings["load_seconds"], 4)
        self.timings["total_seconds"] = round(time.perf_counter() - t_all, 4)
        record = self._record(
            model,
            sae,
            hook_name,
            names,
            fingerprint,
            token_meta,
            len(tokens),
            window_start,
            ignore_ids,
            written,
            dead,
            new_tokens,
            len(shards) - len(todo),
            cluster,
            torch.__version__,
        )
        if db_source is not None:
            from interpedia.generate.writers import record_run

            record_run(self.factory, db_source, record)
        if cfg.out:
            (Path(cfg.out) / "run.json").write_text(json.dumps(record.to_dict(), indent=2))
        if not self.keep_work:
            shutil.rmtree(work, ignore_errors=True)
        return RunResult(record=record, out=Path(cfg.out) if cfg.out else None, dead=dead, features_written=written)

    def _write(
        self,
        model: HookedModel,
        sae: LoadedSae,
        state: Any,
        results: list[ShardResult],
        tokens: np.ndarray,
        hook_name: str,
        window_start: int,
        names: tuple[str, str, str],
        fingerprint: str,
    ) -> tuple[int, list[int], Any]:
        """Build dashboards block by block and hand them to the writers; returns (written, dead, db source)."""
        from interpedia.generate.dashboards import DashboardBuilder
        from interpedia.generate.decoder import DecoderStats
        from interpedia.generate.dfa import dfa_for_run
        from interpedia.generate.writers import DatabaseWriter, RenderContext, SaeDashboardWriter, source_target

        cfg = self.cfg
        model_id, layer, source_set = names
        # A transcoder's decoder writes to its output hook: the logit lens maps its rows from there.
        decoder = DecoderStats(
            model,
            sae,
            sae.hook_name_out or hook_name,
            n_logits=cfg.n_logits,
            n_cos_sim=cfg.n_cos_sim,
            hist_bins=cfg.hist_bins,
            fold_ln_final=cfg.fold_ln_final,
        )
        dfa = dfa_for_run(model, sae, hook_name, wanted=cfg.dfa, batch_size=cfg.batch_size)
        builder = DashboardBuilder(
            state,
            results,
            decoder,
            dfa=dfa,
            tokens=tokens if dfa is not None else None,
            context_size=cfg.context_size,
            window_start=window_start,
            n_quantiles=cfg.n_quantiles,
            quantile_samples=cfg.quantile_samples,
            hist_bins=cfg.hist_bins,
            seed=cfg.seed,
            block_entries=cfg.finalize_block_entries,
        )
        ctx = RenderContext(
            tokens=tokens,
            vocab=model.vocab_strings(),
            window_start=window_start,
            dataset=public_name(cfg.dataset) or "",
            hook_name=hook_name,
        )
        writers: list[Any] = []
        if cfg.out:
            layer_value: Any = int(layer) if layer.isdigit() else layer
            header = {"model_id": model_id, "layer": layer_value, "sae_set": source_set, "sae_id_suffix": None}
            writers.append(
                SaeDashboardWriter(
                    Path(cfg.out),
                    ctx,
                    header=header,
                    n_prompts=len(tokens),
                    context_size=cfg.context_size,
                    features_per_file=cfg.features_per_file,
                )
            )
        db: DatabaseWriter | None = None
        if cfg.into_db:
            if self.factory is None:
                raise ValueError("into_db needs a database session factory")
            db = DatabaseWriter(
                self.factory,
                source_target(cfg, model, sae, hook_name, names, len(tokens), show_dfa=dfa is not None),
                ctx,
                run_key=cfg.output_key(fingerprint),
                creator=cfg.creator,
                features_per_batch=cfg.features_per_file,
            )
            writers.append(db)
        written = 0
        build_started = time.perf_counter()
        for block in builder.build():
            self._timed("dashboard_seconds", build_started)
            started = time.perf_counter()
            for writer in writers:
                writer.write_block(block)
            self._timed("write_seconds", started)
            written += len(block.index)
            build_started = time.perf_counter()
        self._timed("dashboard_seconds", build_started)
        dead = builder.dead.tolist()
        started = time.perf_counter()
        run_settings = {
            "model_id": model_id,
            "layer": layer,
            "sae_set": source_set,
            "hook_name": hook_name,
            "n_prompts_total": len(tokens),
            "n_tokens_in_prompt": cfg.context_size,
            "huggingface_dataset_path": cfg.dataset,
            "generator": "interpedia",
        }
        for writer in writers:
            if isinstance(writer, SaeDashboardWriter):
                writer.finish(dead, run_settings)
        source = None
        if db is not None:
            db.finish(dead)
            source = db.source
        self._timed("write_seconds", started)
        return written, dead, source

    def _record(
        self,
        model: HookedModel,
        sae: LoadedSae,
        hook_name: str,
        names: tuple[str, str, str],
        fingerprint: str,
        token_meta: dict[str, Any],
        n_prompts: int,
        window_start: int,
        ignore_ids: list[int] | None,
        written: int,
        dead: list[int],
        new_tokens: int,
        resumed: int,
        cluster: dict[str, Any] | None,
        torch_version: str,
    ) -> RunRecord:
        """The run's record (``run.json``)."""
        from importlib.metadata import PackageNotFoundError, version

        cfg = self.cfg
        versions = model.library_versions()
        for package in ("interpedia", "sae-lens", "ray", "numpy"):
            try:
                versions[package] = version(package)
            except PackageNotFoundError:
                continue
        pass_seconds = self.timings.get("pass_seconds", 0.0)
        n_tokens = n_prompts * cfg.context_size
        model_id, layer, source_set = names
        return RunRecord(
            generator="interpedia generate",
            created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            fingerprint=fingerprint,
            output_key=cfg.output_key(fingerprint),
            config=cfg.to_dict(),
            catalogue=RunCatalogue(
                model_id=model_id, source_id=f"{layer}-{source_set}", layer=layer, source_set=source_set
            ),
            model=RunModel(
                spec=cfg.model,
                name=model.name,
                loaded_from=model.source,
                n_layers=int(model.cfg.n_layers),
                d_model=int(model.cfg.d_model),
                d_vocab=int(model.cfg.d_vocab),
                dtype=cfg.dtype,
                device=str(model.device),
                extra=model.record(),
            ),
            sae=RunSae(
                spec=cfg.sae,
                architecture=sae.architecture,
                d_in=sae.d_in,
                d_sae=sae.d_sae,
                hook_name=hook_name,
                decoder_norm_folded=sae.folded,
                folded_by=(
                    "post-scaling the selected values"
                    if sae.post_scale is not None
                    else "fold_W_dec_norm"
                    if sae.folded
                    else None
                ),
                cfg=sae.cfg_dict(),
                extra={"hook_name_out": sae.hook_name_out, "d_out": sae.d_out} if sae.is_transcoder else {},
            ),
            tokens=RunTokens(
                context_size=cfg.context_size,
                n_tokens=n_tokens,
                prepend_bos=cfg.prepend_bos,
                bos_excluded_from_statistics=cfg.exclude_bos,
                excluded_token_ids=ignore_ids or [],
                concat_documents=cfg.concat,
                example_window=f"positions {window_start}..{cfg.context_size - 1}",
                extra={
                    **token_meta,
                    "prepend_bos_from": self.bos_from,
                    "bos_token_id": model.bos_token_id if cfg.prepend_bos else None,
                },
            ),
            features_written=written,
            dead_features=dead,
            extra={
                "definitions": {
                    "frac_nonzero": "positions with activation > 0 / all positions (excluded tokens count as 0)",
                    "quantile_intervals": "SAEDashboard's: linspace(0, max, n+1), closed, over all positions "
                    "(zeros in the lowest); samples uniform without replacement (seeded), "
                    "from an exact second pass over the stored non-zero activations",
                    "top_k": "exact running top-k of positive activations, ties to the earlier position",
                    "logit_lens": "unit decoder direction (to the residual stream"
                    + (f", from the transcoder's output hook {sae.hook_name_out}" if sae.hook_name_out else "")
                    + ") @ W_U, no b_U; final LayerNorm "
                    + ("scale folded into W_U" if cfg.fold_ln_final else "scale not folded"),
                    "correlated_neurons_and_features": "not computed (empty lists)",
                    "topk_cos_sim": f"top {cfg.n_cos_sim} other features by cosine of decoder rows",
                },
                "versions": versions,
                "torch": torch_version,
                "timings": self.timings,
                "pass_seconds": pass_seconds,
                "tokens_per_second": round(new_tokens / pass_seconds, 1) if pass_seconds > 0 and new_tokens else None,
                "tokens_in_this_run": new_tokens,
                "shards": {"total": -(-n_prompts // cfg.shard_prompts), "resumed": resumed},
                "ray": cluster,
                "cpu_threads": self.threads or None,
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            },
        )
