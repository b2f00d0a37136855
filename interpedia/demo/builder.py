"""Builds the demo end to end, each step cached under ``INTERPEDIA_HOME/demo`` (the second run takes seconds).

corpus -> tokenizer -> token rows -> model -> Jacobian lens -> SAE -> ``interpedia generate --into-db`` ->
explanations -> UMAP, then the circuit side: per-layer transcoders -> their dashboards (source set
``tc-demo``) -> explanations -> a few featured attribution graphs.
Every step records the settings it was built with; a step reruns only when those change.
"""

from __future__ import annotations

import hashlib
import json
import logging
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from interpedia.config import Settings
from interpedia.demo.graphs import DEMO_GRAPH_PROMPTS, trace_demo_graphs
from interpedia.demo.lm import LMConfig
from interpedia.demo.sae import SAETrainConfig
from interpedia.demo.transcoder import TranscoderTrainConfig

log = logging.getLogger(__name__)

# When the model hub is reachable: the seed's own example (gpt2-small, SAELens gpt2-small-res-jb layer 0).
PRETRAINED_MODEL = "gpt2-small"
PRETRAINED_SAE = "gpt2-small-res-jb/blocks.0.hook_resid_pre"


@dataclass(frozen=True)
class DemoConfig:
    """What the demo builds; ``toy()`` is the same pipeline at test size."""

    model_id: str = "tiny-demo"
    source_set: str = "res-demo"
    vocab_size: int = 4096
    lm: LMConfig = field(default_factory=LMConfig)
    sae: SAETrainConfig = field(default_factory=SAETrainConfig)
    transcoder: TranscoderTrainConfig = field(default_factory=TranscoderTrainConfig)
    transcoder_set: str = "tc-demo"
    graph_prompts: tuple[str, ...] = DEMO_GRAPH_PROMPTS
    n_prompts: int = 2048
    lens_prompts: int = 16  # prompts the Jacobian lens is fitted on (4 positions each)
    corpus: str | None = None
    max_documents: int | None = None
    seed: int = 0

    @classmethod
    def toy(cls, corpus: str | None = None) -> DemoConfig:
        """A pipeline small enough for a test (seconds), same code path."""
        return cls(
            vocab_size=400,
            lm=LMConfig(
                n_layers=2,
                d_model=32,
                n_heads=2,
                d_head=16,
                d_mlp=64,
                n_ctx=32,
                train_tokens=16_384,
                batch_size=16,
                warmup_steps=4,
            ),
            sae=SAETrainConfig(
                d_sae=256,
                k=8,
                training_tokens=40_960,
                train_batch_size_tokens=1024,
                context_size=32,
                init="data",
                resample_phases=3,
            ),
            transcoder=TranscoderTrainConfig(
                d_transcoder=128,
                k=8,
                training_tokens=10_000,
                batch_rows=16,
                dead_after_tokens=2_000,
                resample_every_tokens=2_000,
                eval_rows=16,
                calibration_batches=2,
            ),
            graph_prompts=DEMO_GRAPH_PROMPTS[:1],
            n_prompts=64,
            lens_prompts=8,
            corpus=corpus,
            max_documents=800,
        )

    @property
    def layer(self) -> int:
        """The layer the SAE reads (from its hook name)."""
        return int(self.sae.hook_name.split(".")[1])

    @property
    def source_id(self) -> str:
        """The Neuronpedia source id, e.g. ``1-res-demo``."""
        return f"{self.layer}-{self.source_set}"

    def transcoder_source_ids(self) -> list[str]:
        """The transcoder sources, one per layer: ``0-tc-demo``, ``1-tc-demo``, ..."""
        return [f"{layer}-{self.transcoder_set}" for layer in range(self.lm.n_layers)]


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


class DemoBuilder:
    """Runs the demo steps in order, skipping those whose cached output matches their settings."""

    def __init__(self, cfg: DemoConfig, settings: Settings, factory: sessionmaker[Session]) -> None:
        self.cfg = cfg
        self.settings = settings
        self.root = settings.home / "demo"
        self.factory = factory
        self.report: dict[str, Any] = {}

    def _step(self, name: str, inputs: Any, build: Callable[[Path], dict[str, Any] | None]) -> Path:
        """Run ``build(dir)`` unless ``dir/step.json`` records the same inputs."""
        out = self.root / name
        marker = out / "step.json"
        key = _digest(inputs)
        if marker.exists() and json.loads(marker.read_text()).get("key") == key:
            log.info("demo: %s is cached", name)
            self.report[name] = json.loads(marker.read_text()).get("stats") or {}
            return out
        started, cpu = time.perf_counter(), _cpu_seconds()
        out.mkdir(parents=True, exist_ok=True)
        stats = build(out) or {}
        stats["seconds"] = round(time.perf_counter() - started, 1)
        # CPU time (all threads) as well: on a shared machine wall time says more about the neighbours
        stats["cpu_seconds"] = round(_cpu_seconds() - cpu, 1)
        marker.write_text(json.dumps({"key": key, "inputs": inputs, "stats": stats}, indent=2, default=str))
        self.report[name] = stats
        log.info("demo: %s built in %.1fs", name, stats["seconds"])
        return out

    def build_pretrained(self, model: str = PRETRAINED_MODEL, sae: str = PRETRAINED_SAE) -> dict[str, Any]:
        """The hub path: dashboards for a pretrained model and SAELens SAE (names, or local stand-ins) on the corpus."""
        cfg = self.cfg
        corpus_dir = self._step(
            "corpus", {"corpus": cfg.corpus, "seed": cfg.seed, "max": cfg.max_documents}, self._build_corpus
        )
        self._step(
            "pretrained-dashboards",
            {"model": model, "sae": sae, "n_prompts": cfg.n_prompts, "db": self._db_marker()},
            lambda d: self._build_dashboards(
                corpus_dir / "corpus.txt",
                Path(model) if Path(model).exists() else model,
                Path(sae) if Path(sae).exists() else sae,
                d,
                catalogue=False,
            ),
        )
        return self.report

    def build(self) -> dict[str, Any]:
        """Build everything (or confirm it is built) and return a report of each step."""
        cfg = self.cfg
        corpus_dir = self._step(
            "corpus", {"corpus": cfg.corpus, "seed": cfg.seed, "max": cfg.max_documents}, self._build_corpus
        )
        corpus = corpus_dir / "corpus.txt"
        tok_dir = self._step(
            "tokenizer",
            {"corpus": self.report["corpus"], "vocab": cfg.vocab_size},
            lambda d: self._build_tokenizer(corpus, d),
        )
        rows_dir = self._step(
            "rows",
            {"tok": self.report["tokenizer"], "n_ctx": cfg.lm.n_ctx},
            lambda d: self._build_rows(corpus, tok_dir, d),
        )
        model_dir = self._step(
            "model",
            {"rows": self.report["rows"], "lm": asdict(cfg.lm)},
            lambda d: self._build_model(rows_dir, tok_dir, d),
        )
        self._step(
            "lens",
            {"model": self.report["model"], "prompts": cfg.lens_prompts, "seed": cfg.seed},
            lambda d: self._build_lens(rows_dir, model_dir),
        )
        sae_dir = self._step(
            "sae",
            {"model": self.report["model"], "sae": asdict(cfg.sae)},
            lambda d: self._build_sae(rows_dir, model_dir, d),
        )
        self._step(
            "dashboards",
            {"sae": self.report["sae"], "n_prompts": cfg.n_prompts, "db": self._db_marker()},
            lambda d: self._build_dashboards(corpus, model_dir, sae_dir, d),
        )
        self._step(
            "explanations",
            {"dashboards": self.report["dashboards"], "db": self._db_marker()},
            lambda d: self._build_explanations(cfg.model_id, cfg.source_id),
        )
        self._step(
            "umap",
            {"dashboards": self.report["dashboards"], "seed": cfg.seed, "db": self._db_marker()},
            lambda d: self._build_umap(cfg.model_id, cfg.source_id, sae_dir),
        )
        self.build_transcoders(corpus, rows_dir, model_dir)
        return self.report

    def build_transcoders(self, corpus: Path, rows_dir: Path, model_dir: Path) -> None:
        """The circuit side: a transcoder per layer, dashboards and labels for each as a source set, then a few
        featured attribution graphs through them."""
        cfg = self.cfg
        tc_dir = self._step(
            "transcoders",
            {"model": self.report["model"], "transcoder": asdict(cfg.transcoder)},
            lambda d: self._build_transcoders(rows_dir, model_dir, d),
        )
        for layer, source_id in enumerate(cfg.transcoder_source_ids()):
            name = f"tc-dashboards-{layer}"
            self._step(
                name,
                {"transcoders": self.report["transcoders"], "n_prompts": cfg.n_prompts, "db": self._db_marker()},
                lambda d, layer=layer: self._build_dashboards(  # type: ignore[misc]
                    corpus,
                    model_dir,
                    tc_dir / "saelens" / f"layer_{layer}",
                    d,
                    source_set=cfg.transcoder_set,
                    layer=layer,
                ),
            )
            self._step(
                f"tc-explanations-{layer}",
                {"dashboards": self.report[name], "db": self._db_marker()},
                lambda d, source_id=source_id: self._build_explanations(cfg.model_id, source_id),  # type: ignore[misc]
            )
        # featured graphs of a few prompts, their feature nodes linking to the tc-demo dashboards
        dashboards = [self.report[f"tc-dashboards-{layer}"] for layer in range(cfg.lm.n_layers)]
        prompts = cfg.graph_prompts
        inputs = {"transcoders": self.report["transcoders"], "dashboards": dashboards, "prompts": prompts}
        self._step(
            "graphs",
            {**inputs, "db": self._db_marker()},
            lambda d: trace_demo_graphs(self.settings, self.factory, cfg.model_id, cfg.transcoder_set, prompts),
        )

    # --- steps -----------------------------------------------------------------------------------

    def _build_corpus(self, out: Path) -> dict[str, Any]:
        from interpedia.demo.corpus import build_corpus

        path = build_corpus(
            out / "corpus.txt", source=Path(self.cfg.corpus) if self.cfg.corpus else None, seed=self.cfg.seed
        )
        if self.cfg.max_documents is not None:
            lines = path.read_text().splitlines()[: self.cfg.max_documents]
            path.write_text("\n".join(lines) + "\n")
        return {"documents": sum(1 for _ in path.open()), "bytes": path.stat().st_size}

    def _build_tokenizer(self, corpus: Path, out: Path) -> dict[str, Any]:
        from interpedia.demo.tokenizer import train_tokenizer

        return {"vocab_size": len(train_tokenizer(corpus, out, vocab_size=self.cfg.vocab_size))}

    def _build_rows(self, corpus: Path, tok_dir: Path, out: Path) -> dict[str, Any]:
        from transformers import AutoTokenizer

        from interpedia.demo.lm import tokenize_rows

        rows = tokenize_rows(corpus, AutoTokenizer.from_pretrained(str(tok_dir)), self.cfg.lm.n_ctx)
        np.save(out / "rows.npy", rows)
        return {"rows": int(rows.shape[0]), "tokens": int(rows.size)}

    def _build_model(self, rows_dir: Path, tok_dir: Path, out: Path) -> dict[str, Any]:
        from transformers import AutoTokenizer

        from interpedia.demo.lm import train_lm

        rows = np.load(rows_dir / "rows.npy")
        lm = replace(self.cfg.lm, model_name=self.cfg.model_id)
        return train_lm(rows, AutoTokenizer.from_pretrained(str(tok_dir)), lm, out)

    def _build_sae(self, rows_dir: Path, model_dir: Path, out: Path) -> dict[str, Any]:
        from interpedia.demo.sae import train_sae
        from interpedia.generate.model import HookedModel

        model = HookedModel.load(str(model_dir))
        rows = np.load(rows_dir / "rows.npy")
        return train_sae(model.model, rows, self.cfg.sae, out)

    def _build_lens(self, rows_dir: Path, model_dir: Path) -> dict[str, Any]:
        """The model's Jacobian lens (the lens page's second readout), beside its weights."""
        from interpedia.generate.lens import LENS_FILE, fit_jacobian_lens
        from interpedia.generate.model import HookedModel

        model = HookedModel.load(str(model_dir))
        rows = np.load(rows_dir / "rows.npy")[: self.cfg.lens_prompts]
        lens = fit_jacobian_lens(model, rows, positions_per_prompt=4, seed=self.cfg.seed)
        lens.meta.update(model_id=self.cfg.model_id, dataset="the demo corpus")
        lens.save(model_dir / LENS_FILE)
        return {"positions": lens.meta["positions"]}

    def _build_transcoders(self, rows_dir: Path, model_dir: Path, out: Path) -> dict[str, Any]:
        from interpedia.demo.transcoder import train_transcoders
        from interpedia.generate.model import HookedModel

        model = HookedModel.load(str(model_dir))
        return train_transcoders(model.model, np.load(rows_dir / "rows.npy"), self.cfg.transcoder, out)

    def _build_explanations(self, model_id: str, source_id: str) -> dict[str, Any]:
        """Readable labels for every live feature with no LLM (offline explainer), embedded for search."""
        from interpedia.autointerp.runner import explain_source

        # Every core for the embeddings (a build, not a server sharing them among requests), and chunks large
        # enough for the embedder to batch labels of similar length.
        settings = self.settings.model_copy(update={"embedding_threads": 0})
        summary = explain_source(
            self.factory, settings, model_id, source_id, type_name="interpedia_top-tokens", chunk=512
        )
        return {"written": summary.done, "failed": summary.failed}

    def _build_umap(self, model_id: str, source_id: str, sae_dir: Path) -> dict[str, Any]:
        """The source page's map: UMAP of the SAE's decoder directions, clusters and log sparsity."""
        from interpedia.analysis.umap_layout import UmapConfig, run_umap

        summary = run_umap(self.factory, model_id, source_id, sae=str(sae_dir), cfg=UmapConfig(seed=self.cfg.seed))
        return {"features": summary.features, "clusters": summary.clusters, "noise": summary.noise}

    def _db_marker(self) -> str:
        """Changes when the database is another one, so dashboards are regenerated into it."""
        return str(self.factory.kw["bind"].url.render_as_string(hide_password=True))

    def _build_dashboards(
        self,
        corpus: Path,
        model_dir: Path | str,
        sae_dir: Path | str,
        out: Path,
        *,
        catalogue: bool = True,
        source_set: str | None = None,
        layer: int | None = None,
    ) -> dict[str, Any]:
        from interpedia.generate import GenerateConfig, GenerateRun

        dataset = out / "demo-corpus.jsonl"  # pages name the dataset by its file name
        docs = corpus.read_text().splitlines()
        with dataset.open("w") as fh:
            for doc in docs:
                fh.write(json.dumps({"text": doc}) + "\n")
        gen = GenerateConfig(
            model=str(model_dir),
            sae=str(sae_dir),
            dataset=str(dataset),
            into_db=True,
            context_size=self.cfg.lm.n_ctx,
            n_prompts=self.cfg.n_prompts,
            model_id=self.cfg.model_id if catalogue else None,
            source_set=(source_set or self.cfg.source_set) if catalogue else None,
            layer=str(self.cfg.layer if layer is None else layer) if catalogue else None,
            work_dir=str(out / "work"),
            seed=self.cfg.seed,
        )
        result = GenerateRun(gen, factory=self.factory).run()
        run = result.run
        return {
            "features_written": result.features_written,
            "dead": len(result.dead),
            "pass_seconds": run.get("pass_seconds"),
            "tokens_per_s": run.get("tokens_per_second"),
        }
