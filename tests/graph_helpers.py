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


class FrozenReplacement:
    """The replacement model run forward with TransformerLens hooks: attention patterns and LayerNorm scales fixed
    to a clean run's, each MLP output = the transcoder's decoding of given (frozen) feature activations + its skip
    path + the error. Independent of the engine's transpose: a direct effect is what a patched run measures.
    Works on a HookedTransformer and on a TransformerBridge (hooks are made per name, because the bridge fires
    some under their canonical name)."""

    def __init__(self, model: Any, tokens: list[int], ts: Any) -> None:
        import torch

        self.model, self.ts = model, ts
        self.tokens = torch.tensor([tokens])
        names = [n for n in model.hook_dict if n.endswith(("hook_pattern", "hook_scale"))]
        with torch.no_grad():
            _, cache = model.run_with_cache(self.tokens)
        self.frozen: dict[str, Any] = {n: cache[n] for n in names}
        self.inputs = [self._site(cache, layer)[0] for layer in range(ts.n_layers)]
        self.acts = [ts.encode(layer, x) for layer, x in enumerate(self.inputs)]
        for a in self.acts:
            a[:1] = 0
        mlp_out = torch.stack([cache[f"blocks.{layer}.hook_mlp_out"][0] for layer in range(ts.n_layers)])
        self.errors = mlp_out - ts.reconstruct(self.acts, self.inputs)
        self.errors[:, :1] = 0

    def _site(self, cache: Any, layer: int) -> Any:
        from interpedia.generate.model import norm_weight

        if self.ts.input_site == "resid_mid":
            return cache[f"blocks.{layer}.hook_resid_mid"]
        normalized = cache[f"blocks.{layer}.ln2.hook_normalized"]
        if self.ts.input_site == "ln2_normalized":
            return normalized
        ln = self.model.blocks[layer].ln2
        bias = getattr(ln, "b", None)
        return normalized * norm_weight(self.model, ln) + (bias if bias is not None else 0)

    def run(self, acts: list[Any], errors: Any, embed_scale: Any) -> dict[str, Any]:
        """Logits [d_vocab] at the last position and each layer's transcoder input [P, d] of a patched run."""
        import torch

        inputs: list[Any] = [None] * self.ts.n_layers

        def freeze(name: str) -> Any:
            return lambda act, hook: self.frozen[name]

        def read(name: str, layer: int) -> Any:
            def keep(act: Any, hook: Any) -> None:
                inputs[layer] = self._site({name: act}, layer)[0] if "normalized" in name else act[0]

            return keep

        def write(layer: int) -> Any:
            def replace(act: Any, hook: Any) -> Any:
                out = self.ts.b_dec[layer] + self.ts.skip(layer, inputs[layer]) + errors[layer]
                for src in range(layer + 1):  # features read at ``src`` that decode into ``layer``
                    dec = self.ts.W_dec[src]
                    if layer - src < dec.shape[1]:
                        out = out + acts[src] @ dec[:, layer - src]
                return out[None].to(act.dtype)

            return replace

        hooks: list[tuple[str, Any]] = [(n, freeze(n)) for n in self.frozen]
        site = "hook_resid_mid" if self.ts.input_site == "resid_mid" else "ln2.hook_normalized"
        for layer in range(self.ts.n_layers):
            hooks += [(f"blocks.{layer}.{site}", read(f"blocks.{layer}.{site}", layer))]
            hooks += [(f"blocks.{layer}.hook_mlp_out", write(layer))]
        hooks.append(("hook_embed", lambda act, hook: act * embed_scale[None, :, None].to(act.dtype)))
        with torch.no_grad():
            logits = self.model.run_with_hooks(self.tokens, fwd_hooks=hooks)[0, -1]
        return {"logits": logits, "inputs": inputs}


def target_value(run: dict[str, Any], graph: Any, ts: Any, node: int) -> float:
    """A graph node's value in a patched run: a feature's pre-activation, or a logit minus the mean logit."""
    n_feat = graph.n_features
    if node < n_feat:
        layer, pos, feat = graph.active_features[graph.selected_features[node]].tolist()
        return float(run["inputs"][layer][pos] @ ts.W_enc[layer][feat] + ts.b_enc[layer][feat])
    logits = run["logits"]
    tok = graph.logit_tokens[node - (graph.adjacency.shape[0] - len(graph.logit_tokens))]
    return float(logits[tok] - logits.mean())


def without(rep: FrozenReplacement, graph: Any, source: int) -> dict[str, Any]:
    """The patched run with one source node (a feature, an error, a token's embedding) removed."""
    import torch

    acts = [a.clone() for a in rep.acts]
    errors = rep.errors.clone()
    scale = torch.ones(graph.n_pos)
    n_feat, n_pos = graph.n_features, graph.n_pos
    if source < n_feat:
        layer, pos, feat = graph.active_features[graph.selected_features[source]].tolist()
        acts[layer][pos, feat] = 0
    elif source < n_feat + graph.n_layers * n_pos:
        layer, pos = divmod(source - n_feat, n_pos)
        errors[layer, pos] = 0
    else:
        scale[source - n_feat - graph.n_layers * n_pos] = 0
    return rep.run(acts, errors, scale)


def edges_to_check(graph: Any) -> list[tuple[int, int]]:
    """Every edge into the top logit, plus the strongest and a random sample of the feature-to-feature edges."""
    import torch

    a = graph.adjacency
    top_logit = a.shape[0] - len(graph.logit_tokens)
    edges = [(top_logit, int(s)) for s in torch.nonzero(a[top_logit]).flatten()]
    feat_block = a[: graph.n_features]
    strongest = torch.topk(feat_block.abs().flatten(), 10).indices
    nonzero = torch.nonzero(feat_block.flatten()).flatten()
    sample = nonzero[torch.randperm(len(nonzero), generator=torch.Generator().manual_seed(0))[:10]]
    return edges + [divmod(int(i), a.shape[1]) for i in torch.cat([strongest, sample])]
