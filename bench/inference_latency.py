"""Latency of live inference against the bare model forward, on the demo-sized model.

What is measured, for 64-token prompts (BOS + 63 tokens) on a 2-layer, d_model 128, 4,096-token model with a
TopK SAE (2,048 latents, k 16) at ``blocks.1.hook_resid_pre`` — the demo's shapes (the demo's trained weights
when ``INTERPEDIA_HOME/demo`` holds them, else the same shapes untrained):

1. **bare forward**: ``HookedTransformer(tokens)`` — the whole model, logits out — in this process, one prompt
   at a time, with the same torch thread count as the server; and, for reference, the same request's work
   without HTTP (``InferenceService.activation_single`` called in this process);
2. **activation/single** and **topk-by-token** (top 10): ``POST /v1/activation/...`` to a real server
   (``interpedia serve --role inference`` in a subprocess), one request at a time over a keep-alive connection;
   the latency is the client's round trip (HTTP, JSON, validation, tokenizing, forward to the hook, SAE);
3. **throughput**: 8 client threads, each with its own connection, sending activation/single for ``--seconds``.

The overhead ratio is p50(endpoint) / p50(bare forward); the target is <= 1.5x. The server stops the forward
at the SAE's hook (layer 1 of 2), which is less work than the full forward it is compared with.

    .venv/bin/python bench/inference_latency.py [--requests 400] [--rounds 8] [--threads 1] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _common import ROOT, log, setup_logging, table, write_results

MODEL_ID = "demo-sized"
SOURCE = "1-res-demo"
HOOK = "blocks.1.hook_resid_pre"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def _corpus(out: Path) -> Path:
    from interpedia.demo.corpus import CorpusUnavailable, build_corpus

    try:
        return build_corpus(out / "corpus.txt", source=None, seed=0)
    except (CorpusUnavailable, OSError, subprocess.CalledProcessError) as exc:
        log.warning("demo corpus unavailable (%s); using synthetic text", exc)
        rng = random.Random(0)
        words = [f"w{rng.randrange(20000)}" for _ in range(8000)]
        path = out / "corpus.txt"
        path.write_text("\n".join(" ".join(rng.choice(words) for _ in range(200)) for _ in range(3000)))
        return path


def build_inputs(root: Path) -> tuple[Path, Path, list[str], str]:
    """(model dir, SAE dir, prompts, where they came from): the demo's, or untrained ones of the same shapes."""
    demo = Path(os.environ.get("INTERPEDIA_HOME", "~/.interpedia")).expanduser() / "demo"
    corpus_dir = root / "corpus"
    corpus_dir.mkdir(parents=True, exist_ok=True)
    if (demo / "model" / "tl_config.json").exists() and (demo / "sae" / "cfg.json").exists():
        model_dir, sae_dir, origin = demo / "model", demo / "sae", "trained demo"
        corpus = demo / "corpus" / "corpus.txt"
    else:
        import torch
        from sae_lens import SAE, TopKSAEConfig
        from sae_lens.saes.sae import SAEMetadata
        from safetensors.torch import save_file
        from transformer_lens import HookedTransformer, HookedTransformerConfig

        from interpedia.demo.lm import LMConfig, tl_config_kwargs
        from interpedia.demo.tokenizer import train_tokenizer

        corpus = _corpus(corpus_dir)
        model_dir, sae_dir, origin = root / "model", root / "sae", "untrained, demo shapes"
        tok = train_tokenizer(corpus, model_dir, vocab_size=4096)
        kwargs = tl_config_kwargs(LMConfig(model_name=MODEL_ID), 4096)
        torch.manual_seed(0)
        model = HookedTransformer(HookedTransformerConfig(device="cpu", **kwargs))
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(model_dir / "model.safetensors"))
        (model_dir / "tl_config.json").write_text(json.dumps(kwargs))
        meta = SAEMetadata(
            model_name=MODEL_ID, hook_name=HOOK, context_size=128, prepend_bos=True, dataset_path="local"
        )
        sae = SAE.get_sae_class_for_architecture("topk")(
            TopKSAEConfig(k=16, d_in=128, d_sae=2048, dtype="float32", device="cpu", metadata=meta)
        )
        with torch.no_grad():
            sae.W_enc.normal_(0, 128**-0.5)
            sae.W_dec.copy_(sae.W_enc.T)
        sae.save_model(str(sae_dir))
        log.info("built untrained demo-sized model (vocab %d) and SAE in %s", len(tok), root)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    prompts: list[str] = []
    for line in corpus.read_text().splitlines():
        ids = tok(line, add_special_tokens=False)["input_ids"]
        if len(ids) < 63:
            continue
        text = tok.decode(ids[:63])
        if len(tok(text, add_special_tokens=False)["input_ids"]) == 63:  # BOS + 63 = 64 tokens
            prompts.append(text)
        if len(prompts) == 64:
            break
    return model_dir, sae_dir, prompts, origin


class BareForward:
    """One full forward pass per prompt (tokenized beforehand, as a model call sees them), in this process."""

    def __init__(self, model_dir: Path, prompts: list[str]) -> None:
        import torch

        from interpedia.generate.model import HookedModel

        self.hooked = HookedModel.load(str(model_dir))
        tok = self.hooked.tokenizer
        self.rows = [
            torch.tensor([[tok.bos_token_id, *tok(p, add_special_tokens=False)["input_ids"]]]) for p in prompts
        ]

    def times(self, n: int, warmup: int = 10) -> list[float]:
        """Seconds of ``n`` forward passes after ``warmup`` untimed ones."""
        import torch

        out = []
        with torch.inference_mode():
            for i in range(n + warmup):
                started = time.perf_counter()
                self.hooked.model(self.rows[i % len(self.rows)])
                if i >= warmup:
                    out.append(time.perf_counter() - started)
        return out


class InProcess:
    """``InferenceService.activation_single`` called directly: the model work of a request, without HTTP."""

    def __init__(self, url: str, threads: int) -> None:
        from interpedia.config import Settings
        from interpedia.db import make_engine, make_sessionmaker
        from interpedia.inference.service import InferenceService

        settings = Settings(database_url=url, inference_torch_threads=threads)
        self.service = InferenceService(settings, make_sessionmaker(make_engine(url)))

    def times(self, bodies: list[dict[str, Any]], n: int, warmup: int = 10) -> list[float]:
        """Seconds of ``n`` calls after ``warmup`` untimed ones."""
        out = []
        for i in range(n + warmup):
            b = bodies[i % len(bodies)]
            started = time.perf_counter()
            self.service.activation_single(b["model"], b["prompt"], b["source"], int(b["index"]))
            if i >= warmup:
                out.append(time.perf_counter() - started)
        return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(root: Path, model_dir: Path, sae_dir: Path, threads: int) -> tuple[subprocess.Popen[bytes], str, str]:
    """``interpedia serve --role inference`` on a fresh SQLite catalogue holding the model and its SAE."""
    from interpedia.db import make_engine, make_sessionmaker, migrate, transaction
    from interpedia.store.catalogue import ensure_model, ensure_source

    url = f"sqlite:///{root / 'catalogue.db'}"
    migrate(url)
    engine = make_engine(url)
    with transaction(make_sessionmaker(engine)) as session:
        ensure_model(session, MODEL_ID, layers=2, dimension=128, tlens_id=str(model_dir))
        ensure_source(session, MODEL_ID, SOURCE, weights_path=str(sae_dir), hook_name=HOOK)
    engine.dispose()
    port = _free_port()
    env = {
        **os.environ,
        "INTERPEDIA_DATABASE_URL": url,
        "INTERPEDIA_HOME": str(root / "home"),
        "INTERPEDIA_INFERENCE_TORCH_THREADS": str(threads),
        "INTERPEDIA_LOG_LEVEL": "WARNING",
        "OMP_NUM_THREADS": str(threads),
    }
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "interpedia"), "serve", "--role", "inference", "--port", str(port)],
        env=env,
        cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return proc, base, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the inference server did not start")


def endpoint_latency(http: Any, path: str, bodies: list[dict[str, Any]], n: int, warmup: int = 10) -> list[float]:
    """Round-trip seconds of ``n`` requests, one at a time, after ``warmup`` untimed ones."""
    times = []
    for i in range(n + warmup):
        body = bodies[i % len(bodies)]
        started = time.perf_counter()
        r = http.post(path, json=body)
        elapsed = time.perf_counter() - started
        if r.status_code != 200:
            raise RuntimeError(f"{path}: {r.status_code} {r.text[:300]}")
        if i >= warmup:
            times.append(elapsed)
    return times


def throughput(base: str, bodies: list[dict[str, Any]], clients: int, seconds: float) -> dict[str, float]:
    """Requests per second (and latencies) with ``clients`` concurrent keep-alive clients."""
    import httpx

    stop = time.monotonic() + seconds
    lat: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients

    def run(k: int) -> None:
        with httpx.Client(base_url=base, timeout=60) as http:
            i = k
            while time.monotonic() < stop:
                started = time.perf_counter()
                r = http.post("/v1/activation/single", json=bodies[i % len(bodies)])
                lat[k].append(time.perf_counter() - started)
                errors[k] += r.status_code != 200
                i += clients

    started = time.perf_counter()
    workers = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    flat = [x for per in lat for x in per]
    return {
        "clients": clients,
        "requests": len(flat),
        "errors": sum(errors),
        "seconds": round(elapsed, 2),
        "requests_per_s": round(len(flat) / elapsed, 1),
        "p50_ms": round(_pct(flat, 50) * 1e3, 2),
        "p99_ms": round(_pct(flat, 99) * 1e3, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="timed requests per measurement")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (server and bare forward alike)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients for throughput")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the throughput run")
    parser.add_argument("--rounds", type=int, default=8, help="interleaved measurement rounds")
    args = parser.parse_args()
    setup_logging()
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="ipbench-inference-") as tmp:
        root = Path(tmp)
        model_dir, sae_dir, prompts, origin = build_inputs(root)
        single = [
            {"model": MODEL_ID, "prompt": p, "source": SOURCE, "index": str(7 * i % 2048)}
            for i, p in enumerate(prompts)
        ]
        topk = [{"model": MODEL_ID, "prompt": p, "source": SOURCE, "top_k": 10, "ignore_bos": True} for p in prompts]
        proc, base, url = start_server(root, model_dir, sae_dir, args.threads)
        bare_model = BareForward(model_dir, prompts)
        service = InProcess(url, args.threads)
        bare: list[float] = []
        in_process: list[float] = []
        s_times: list[float] = []
        t_times: list[float] = []
        import httpx

        try:
            # Interleaved rounds, so that the three see the same machine (other load comes and goes).
            per_round = max(1, args.requests // args.rounds)
            with httpx.Client(base_url=base, timeout=60) as http:
                for _ in range(args.rounds):
                    bare += bare_model.times(per_round)
                    in_process += service.times(single, per_round)
                    s_times += endpoint_latency(http, "/v1/activation/single", single, per_round)
                    t_times += endpoint_latency(http, "/v1/activation/topk-by-token", topk, per_round)
            tput = throughput(base, single, args.clients, args.seconds)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
    rows = []
    figures: dict[str, Any] = {}
    bare_p50 = _pct(bare, 50)
    for name, times in (
        ("bare forward (full model)", bare),
        ("activation/single (service call, no HTTP)", in_process),
        ("activation/single (HTTP)", s_times),
        ("topk-by-token (HTTP)", t_times),
    ):
        p50, p99 = _pct(times, 50), _pct(times, 99)
        ratio = p50 / bare_p50
        figures[name] = {
            "p50_ms": round(p50 * 1e3, 3),
            "p99_ms": round(p99 * 1e3, 3),
            "n": len(times),
            "ratio_to_bare_p50": round(ratio, 2),
        }
        rows.append([name, f"{p50 * 1e3:.2f}", f"{p99 * 1e3:.2f}", f"{ratio:.2f}x"])
    print(
        f"model: {origin}; prompts: 64 tokens; torch threads: {args.threads}; "
        f"load average at start: {os.getloadavg()[0]:.1f}"
    )
    print(table(rows, ["measurement", "p50 ms", "p99 ms", "p50 / bare forward"]))
    print(
        f"throughput, {tput['clients']} concurrent clients, activation/single: {tput['requests_per_s']} req/s "
        f"(p50 {tput['p50_ms']} ms, p99 {tput['p99_ms']} ms, {tput['errors']} errors)"
    )
    single_ratio = figures["activation/single (HTTP)"]["ratio_to_bare_p50"]
    topk_ratio = figures["topk-by-token (HTTP)"]["ratio_to_bare_p50"]
    print(f"overhead ratio: activation/single {single_ratio}x, topk-by-token {topk_ratio}x (target <= 1.5x)")
    write_results(
        "inference_latency",
        {
            "parameters": vars(args),
            "model": origin,
            "figures": figures,
            "throughput": tput,
            "load_average": os.getloadavg(),
            "overhead_ratio": {"activation_single": single_ratio, "topk_by_token": topk_ratio},
        },
    )


if __name__ == "__main__":
    main()
