"""One attribution graph of a 32-token prompt: interpedia against circuit-tracer 0.5.0, same model, transcoders,
prompt and settings, in one run; plus the floor of an autograd method (one forward, then the backward passes it
needs: one per batch of targets through the frozen model). Medians of repeats; peak memory of each process.

    .venv/bin/python bench/graph_speed.py [--repeats 5] [--ct-repeats 3] [--batch-sizes 48,256]
        [--model DIR --transcoders LAYER0.safetensors,LAYER1.safetensors] [--workdir DIR]

circuit-tracer runs in ``bench/.venv-circuit-tracer`` (``make test`` builds it; so does this script when it is
missing). Each side runs in its own process, started cold; the first graph of each process is a warm-up and is
not timed. Writes ``bench/results/graph_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, log, median, setup_logging, table, write_results  # noqa: E402
from circuit_tracer_side import peak_rss_mib  # noqa: E402

CT_VENV = ROOT / "bench" / ".venv-circuit-tracer"
CT_PINS = ["torch==2.13.0", "circuit-tracer==0.5.0", "transformer-lens==3.2.1", "transformers==4.57.3"]


def ensure_ct_venv() -> Path:
    """circuit-tracer's venv (what ``make test`` builds), created when missing."""
    python = CT_VENV / "bin" / "python"
    if not python.exists():
        log.info("creating %s (a few minutes, once)", CT_VENV)
        subprocess.run(["python3", "-m", "venv", str(CT_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *CT_PINS], check=True)
    return python


def interpedia_side(spec: dict[str, Any]) -> dict[str, Any]:
    """Time interpedia's graph and the autograd floor in this (fresh) process."""
    import torch

    from interpedia.generate.model import HookedModel
    from interpedia.graph import AttributionSettings, attribute, load_transcoder_set, prune
    from interpedia.graph.document import build_graph_document

    torch.set_num_threads(int(spec["threads"]))
    model = HookedModel.load(spec["model_dir"]).model
    ts = load_transcoder_set({int(k): v for k, v in spec["transcoders"].items()})
    tokens = torch.tensor(spec["tokens"])
    settings = AttributionSettings(batch_size=spec["batch_size"])
    attribute(model, tokens, ts, settings, progress=False)  # warm-up
    seconds, post = [], []
    graph = None
    for _ in range(spec["repeats"]):
        started = time.perf_counter()
        graph = attribute(model, tokens, ts, settings, progress=False)
        seconds.append(time.perf_counter() - started)
        started = time.perf_counter()
        pruned = prune(graph)
        build_graph_document(
            graph, pruned, slug="b", scan="bench", prompt="", prompt_tokens=[], logit_strings=[""] * 10,
            source_set="tc", settings=settings, node_threshold=0.8, edge_threshold=0.98,
        )  # fmt: skip
        post.append(time.perf_counter() - started)
    assert graph is not None
    n_rows = len(graph.logit_tokens) + int(graph.active_features.shape[0])
    peak = peak_rss_mib()
    floor = [floor_seconds(model, tokens, spec["batch_size"], n_rows) for _ in range(spec["repeats"])]
    torch.save(graph.adjacency, spec["adjacency_out"])
    return {
        "attribute_seconds": seconds,
        "prune_and_json_seconds": post,
        "floor_seconds": floor,
        "active_features": int(graph.active_features.shape[0]),
        "logits": len(graph.logit_tokens),
        "backward_passes_of_an_autograd_method": math.ceil(len(graph.logit_tokens) / spec["batch_size"])
        + math.ceil(int(graph.active_features.shape[0]) / spec["batch_size"]),
        "peak_rss_mib": peak,
    }


def floor_seconds(model: Any, tokens: Any, batch: int, n_rows: int) -> float:
    """One forward of ``batch`` copies through the frozen model, then one backward per batch of rows."""
    import torch

    def frozen(act: Any, hook: Any) -> Any:
        return act.detach()

    embeds: list[Any] = []

    def leaf(act: Any, hook: Any) -> Any:
        act = act.detach().requires_grad_(True)
        embeds.append(act)
        return act

    hooks = [(n, frozen) for n in model.hook_dict if n.endswith(("hook_pattern", "hook_scale", "hook_mlp_out"))]
    started = time.perf_counter()
    with torch.enable_grad(), model.hooks(fwd_hooks=[*hooks, ("hook_embed", leaf)]):
        resid = model(tokens[None].expand(batch, -1), stop_at_layer=model.cfg.n_layers)
        final = model.ln_final(resid)
        gen = torch.Generator().manual_seed(0)
        for _ in range(math.ceil(n_rows / batch)):
            grad = torch.randn(final.shape, generator=gen)
            torch.autograd.grad(final, embeds[0], grad_outputs=grad, retain_graph=True)
    return time.perf_counter() - started


def run_side(args: list[str], python: str, env: dict[str, str]) -> None:
    done = subprocess.run([python, *args], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{args[0]} failed:\n{done.stderr[-4000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ct-repeats", type=int, default=3)
    parser.add_argument("--batch-sizes", default="48,256")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of each side")
    parser.add_argument("--model", help="a model directory (tl_config.json, model.safetensors, tokenizer.json)")
    parser.add_argument("--transcoders", help="comma-separated circuit-tracer files, one per layer")
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "interpedia-graph-speed"))
    parser.add_argument("--side", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        spec = json.loads(Path(args.side).read_text())
        Path(spec["result_out"]).write_text(json.dumps(interpedia_side(spec)))
        return
    setup_logging()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    if args.model:
        from transformers import AutoTokenizer

        model_dir, files = Path(args.model), dict(enumerate(Path(p) for p in args.transcoders.split(",")))
        tok = AutoTokenizer.from_pretrained(str(model_dir))
        text = "In the beginning God created the heaven and the earth. And the earth was without form, and void;"
        tokens = [tok.bos_token_id, *tok(text, add_special_tokens=False)["input_ids"]][:32]
    else:
        from _graph_fixture import build_inputs

        model_dir, files, tokens = build_inputs(work)
    ct_python = ensure_ct_venv()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    main_env = {**os.environ, "PYTHONPATH": str(ROOT)}
    import torch

    results: dict[str, Any] = {}
    rows = []
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        tag = f"batch{batch}"
        spec = {
            "model_dir": str(model_dir),
            "transcoders": {str(k): str(v) for k, v in files.items()},
            "tokens": tokens,
            "batch_size": batch,
            "repeats": args.repeats,
            "threads": args.threads,
            "adjacency_out": str(work / f"ours-{tag}.pt"),
            "result_out": str(work / f"ours-{tag}.json"),
        }
        (work / f"ours-{tag}-spec.json").write_text(json.dumps(spec))
        log.info("interpedia, batch %d", batch)
        run_side([__file__, "--side", str(work / f"ours-{tag}-spec.json")], sys.executable, main_env)
        ours = json.loads((work / f"ours-{tag}.json").read_text())
        ct_spec = {
            "model_dir": str(model_dir),
            "transcoders": spec["transcoders"],
            "tokens": tokens,
            "slug": "bench",
            "scan": "bench",
            "batch_size": batch,
            "threads": args.threads,
            "repeats": args.ct_repeats + 1,
            "out_dir": str(work / f"ct-{tag}"),
        }
        (work / f"ct-{tag}-spec.json").write_text(json.dumps(ct_spec))
        log.info("circuit-tracer, batch %d", batch)
        run_side(
            [str(ROOT / "bench" / "circuit_tracer_side.py"), str(work / f"ct-{tag}-spec.json")], str(ct_python), env
        )
        ct = json.loads((work / f"ct-{tag}" / "timing.json").read_text())
        ct_seconds = ct["attribute_seconds"][1:]  # the first call is the warm-up
        from safetensors.torch import load_file

        theirs = load_file(str(work / f"ct-{tag}" / "graph.safetensors"))["adjacency"]
        mine = torch.load(spec["adjacency_out"])
        diff = float((mine - theirs).abs().max()) if mine.shape == theirs.shape else float("nan")
        ratio = median(ct_seconds) / median(ours["attribute_seconds"])
        results[tag] = {
            "interpedia": ours,
            "circuit_tracer": {"attribute_seconds": ct_seconds, "peak_rss_mib": ct["peak_rss_mib"]},
            "speedup_vs_circuit_tracer": round(ratio, 2),
            "adjacency_max_abs_diff": diff,
            "adjacency_max_abs": float(theirs.abs().max()),
        }
        rows.append([
            batch, ours["active_features"], f"{median(ours['attribute_seconds']):.3f}", f"{median(ct_seconds):.3f}",
            f"{median(ours['floor_seconds']):.3f}", f"{ratio:.1f}x", f"{ours['peak_rss_mib']:.0f}",
            f"{ct['peak_rss_mib']:.0f}", f"{diff:.1e}",
        ])  # fmt: skip
    print(table(rows, ["batch", "active", "ours s", "ct s", "floor s", "speedup", "ours MiB", "ct MiB", "max |dA|"]))
    load = os.getloadavg()
    write_results(
        "graph_speed",
        {
            "parameters": {
                "prompt_tokens": len(tokens),
                "model": str(model_dir) if args.model else "demo-size: 2 layers, d_model 128, d_mlp 512, vocab 4096",
                "transcoders": "given" if args.model else "2,048 features per layer, fitted (bench/_graph_fixture.py)",
                "max_n_logits": 10,
                "desired_logit_prob": 0.95,
                "repeats": args.repeats,
                "ct_repeats": args.ct_repeats,
                "interpedia_threads": args.threads,
                "device": "cpu",
            },
            "load_average_after": [round(x, 2) for x in load],
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
