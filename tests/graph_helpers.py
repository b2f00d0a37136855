"""Tiny, deterministic inputs for the attribution-graph tests: a 2-layer model directory with a BPE tokenizer,
random per-layer transcoders saved in circuit-tracer's and SAELens's formats, a cross-layer transcoder, and the
circuit-tracer oracle's output for them (run in its own venv, ``bench/.venv-circuit-tracer``)."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generate_helpers import corpus, make_tokenizer

ROOT = Path(__file__).resolve().parents[1]
CT_PYTHON = ROOT / "bench" / ".venv-circuit-tracer" / "bin" / "python"
CT_SIDE = ROOT / "bench" / "circuit_tracer_side.py"
D_MODEL = 32
D_TC = 64
PROMPT = "the cat sat on a mat and the dog ran to the park while birds sang"
SHORT_PROMPT = "the cat sat on a mat and the dog ran"


@dataclass
class TinyGraph:
    """Paths of one set of tiny graph inputs."""

    root: Path
    model: Path
    ct_layers: dict[int, Path]  # circuit-tracer per-layer safetensors
    saelens_layers: dict[int, Path]  # SAELens transcoder directories (same weights)
    skip_layers: dict[int, Path]  # circuit-tracer files with W_skip and JumpReLU
    clt: Path  # circuit-tracer cross-layer transcoder directory


def random_transcoder(seed: int, *, skip: bool = False, jump: bool = False) -> dict[str, Any]:
    """Weights of a random transcoder in circuit-tracer's layout (a few features fire per token)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    t = {
        "W_enc": torch.randn(D_TC, D_MODEL, generator=gen) / D_MODEL**0.5,
        "W_dec": torch.randn(D_TC, D_MODEL, generator=gen) * 0.3,
        "b_enc": -0.6 - 0.6 * torch.rand(D_TC, generator=gen),
        "b_dec": torch.randn(D_MODEL, generator=gen) * 0.05,
    }
    if skip:
        t["W_skip"] = torch.randn(D_MODEL, D_MODEL, generator=gen) * 0.05
    if jump:
        t["activation_function.threshold"] = torch.rand(D_TC, generator=gen) * 0.3
    return t


def save_saelens(out: Path, weights: dict[str, Any], layer: int) -> Path:
    """The same transcoder as a SAELens directory (``cfg.json`` + ``sae_weights.safetensors``), via SAELens."""
    from sae_lens import Transcoder, TranscoderConfig
    from sae_lens.saes.sae import SAEMetadata

    meta = SAEMetadata(
        model_name="tiny-gen",
        hook_name=f"blocks.{layer}.ln2.hook_normalized",
        hook_name_out=f"blocks.{layer}.hook_mlp_out",
        context_size=16,
        prepend_bos=True,
    )
    cfg = TranscoderConfig(
        d_in=D_MODEL,
        d_sae=D_TC,
        d_out=D_MODEL,
        dtype="float32",
        device="cpu",
        metadata=meta,
        apply_b_dec_to_input=False,
    )
    tc = Transcoder(cfg)
    import torch

    with torch.no_grad():
        tc.W_enc.copy_(weights["W_enc"].T)
        tc.W_dec.copy_(weights["W_dec"])
        tc.b_enc.copy_(weights["b_enc"])
        tc.b_dec.copy_(weights["b_dec"])
    tc.save_model(str(out))
    return out


def make_model_dir(out: Path, d_vocab: int, *, seed: int = 0, n_ctx: int = 64) -> Path:
    """A 2-layer HookedTransformer (d_model 32) saved as tl_config.json + model.safetensors."""
    import torch
    from safetensors.torch import save_file
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    kwargs = {
        "n_layers": 2,
        "d_model": D_MODEL,
        "n_ctx": n_ctx,
        "d_head": 8,
        "n_heads": 4,
        "d_mlp": 64,
        "act_fn": "gelu",
        "d_vocab": d_vocab,
        "normalization_type": "LN",
        "model_name": "tiny-graph",
        "seed": seed,
    }
    torch.manual_seed(seed)
    model = HookedTransformer(HookedTransformerConfig(device="cpu", **kwargs))
    with torch.no_grad():  # LayerNorm weights and biases away from 1 and 0, so a wrong LN transpose shows
        for name, p in model.named_parameters():
            if name.endswith(".w") or name.endswith(".b"):
                p.add_(torch.randn(p.shape) * 0.2)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    (out / "tl_config.json").write_text(json.dumps(kwargs))
    return out


def build(root: Path) -> TinyGraph:
    """Every tiny input under ``root``."""
    import torch
    from safetensors.torch import save_file

    model_dir = root / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    tok = make_tokenizer(model_dir, corpus())
    make_model_dir(model_dir, d_vocab=len(tok))
    ct, sl, sk = {}, {}, {}
    for layer in range(2):
        w = random_transcoder(layer)
        ct[layer] = root / "ct" / f"layer_{layer}.safetensors"
        ct[layer].parent.mkdir(exist_ok=True)
        save_file({k: v.contiguous() for k, v in w.items()}, str(ct[layer]))
        sl[layer] = save_saelens(root / "saelens" / f"{layer}-tc", w, layer)
        ws = random_transcoder(10 + layer, skip=True, jump=True)
        sk[layer] = root / "skip" / f"layer_{layer}.safetensors"
        sk[layer].parent.mkdir(exist_ok=True)
        save_file({k: v.contiguous() for k, v in ws.items()}, str(sk[layer]))
    clt = root / "clt"
    clt.mkdir()
    gen = torch.Generator().manual_seed(7)
    for i in range(2):
        enc = {
            f"W_enc_{i}": torch.randn(D_TC, D_MODEL, generator=gen) / D_MODEL**0.5,
            f"b_enc_{i}": -0.6 - 0.6 * torch.rand(D_TC, generator=gen),
            f"b_dec_{i}": torch.randn(D_MODEL, generator=gen) * 0.05,
        }
        save_file(enc, str(clt / f"W_enc_{i}.safetensors"))
        dec = {f"W_dec_{i}": torch.randn(D_TC, 2 - i, D_MODEL, generator=gen) * 0.3}
        save_file(dec, str(clt / f"W_dec_{i}.safetensors"))
    return TinyGraph(root=root, model=model_dir, ct_layers=ct, saelens_layers=sl, skip_layers=sk, clt=clt)


def prompt_tokens(model_dir: Path, text: str = PROMPT) -> list[int]:
    """BOS + the prompt's token ids."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    return [int(tok.bos_token_id), *tok(text, add_special_tokens=False)["input_ids"]]


def run_circuit_tracer(specs: list[dict[str, Any]], work: Path, *, timeout: float = 600) -> list[dict[str, Any]]:
    """Run circuit-tracer (its own venv, one process) on each spec; its graph tensors, JSON and timing for each."""
    from safetensors.torch import load_file

    specs = [{**spec, "out_dir": str(work / f"ct-{i}")} for i, spec in enumerate(specs)]
    spec_path = work / "ct-specs.json"
    spec_path.write_text(json.dumps(specs))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [str(CT_PYTHON), str(CT_SIDE), str(spec_path)], capture_output=True, text=True, timeout=timeout, env=env
    )
    if done.returncode != 0:
        raise AssertionError(f"circuit-tracer failed:\n{done.stderr[-4000:]}")
    results = []
    for spec in specs:
        out = Path(spec["out_dir"])
        result: dict[str, Any] = dict(load_file(str(out / "graph.safetensors")))
        result["json"] = json.loads((out / f"{spec['slug']}.json").read_text())
        result["timing"] = json.loads((out / "timing.json").read_text())
        results.append(result)
    return results
