"""Which way to put TransformerLens hooks on a Hugging Face model: faithful to the model, and fast on a CPU.

For each of the seven families interpedia loads (GPT-2, Llama, Gemma 2, Gemma 3, Qwen 2, Qwen 3, Mistral), a
random model of a small but not toy size (d_model 512, 6 layers, vocab 32,000, grouped-query attention where
the family has it, norm weights randomised) is saved with ``save_pretrained`` and loaded three ways:

- **hf**: ``AutoModelForCausalLM`` itself (eager attention, and the default SDPA for speed): the reference;
- **bridge**: ``HookedModel.load`` = TransformerLens 3's ``TransformerBridge``, compatibility mode, no weight
  processing (what interpedia uses);
- **ht**: TransformerLens's converter into a ``HookedTransformer`` (``get_pretrained_model_config`` +
  ``get_pretrained_state_dict``, no processing): what interpedia did before, where it still loads.

Faithfulness: the largest absolute difference from the Hugging Face model at every hook (hidden states, the
attention and MLP outputs and their inputs as the model's own modules see them, logits), next to the largest
absolute value there. Speed: forwards of ``--batch`` x ``--ctx`` tokens, the whole model (logits) and up to
the middle layer's ``hook_resid_post`` (what ``interpedia generate`` runs), with
``torch.set_num_threads(--threads)``, in ``--rounds`` rounds that run every variant once each; reported as
medians and as the median per-round ratio to the Hugging Face model (eager attention); and the load time.

    .venv/bin/python bench/models_bridge.py [--rounds 7] [--batch 2] [--ctx 128] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from _common import log, median, setup_logging, table, write_results

FAMILIES = {
    "gpt2": ("GPT2LMHeadModel", "GPT2Config"),
    "llama": ("LlamaForCausalLM", "LlamaConfig"),
    "gemma2": ("Gemma2ForCausalLM", "Gemma2Config"),
    "gemma3": ("Gemma3ForCausalLM", "Gemma3TextConfig"),
    "qwen2": ("Qwen2ForCausalLM", "Qwen2Config"),
    "qwen3": ("Qwen3ForCausalLM", "Qwen3Config"),
    "mistral": ("MistralForCausalLM", "MistralConfig"),
}
D_MODEL, LAYERS, VOCAB = 512, 6, 32000


def build(name: str, out: Path) -> None:
    """A random model of the family, saved with a byte-level tokenizer."""
    import torch
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    arch, config_cls = FAMILIES[name]
    if name == "gpt2":
        config = transformers.GPT2Config(n_embd=D_MODEL, n_layer=LAYERS, n_head=8, n_positions=1024, vocab_size=VOCAB)
    else:
        extra: dict[str, Any] = {"head_dim": 64} if name in ("gemma2", "gemma3", "qwen3") else {}
        config = getattr(transformers, config_cls)(
            hidden_size=D_MODEL,
            num_hidden_layers=LAYERS,
            num_attention_heads=8,
            num_key_value_heads=2,
            intermediate_size=1408,
            max_position_embeddings=1024,
            vocab_size=VOCAB,
            **extra,
        )
    config.architectures = [arch]
    torch.manual_seed(0)
    model = getattr(transformers, arch)(config)
    with torch.no_grad():
        for pname, param in model.named_parameters():
            if "norm" in pname or ".ln_" in pname:
                param.add_(torch.randn_like(param) * 0.3)
    model.save_pretrained(str(out))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.add_special_tokens(["<|endoftext|>"])
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>").save_pretrained(
        str(out)
    )


def hf_reference(hf: Any, name: str, tokens: Any) -> tuple[Any, dict[str, Any]]:
    """The model's hidden states and logits, and its modules' inputs and outputs at the hooks' places."""
    import torch

    got: dict[str, Any] = {}

    def keep(key: str, which: str) -> Any:
        def hook(module: Any, args: Any, out: Any) -> None:
            got[key] = args[0] if which == "in" else out[0] if isinstance(out, tuple) else out

        return hook

    layers = hf.transformer.h if name == "gpt2" else hf.model.layers
    handles = []
    for n, layer in enumerate(layers):
        if name == "gpt2":
            places = {"attn_out": (layer.attn, "out"), "mlp_out": (layer.mlp, "out"), "z": (layer.attn.c_proj, "in")}
            places |= {"mlp_post": (layer.mlp.c_proj, "in"), "mlp_input": (layer.ln_2, "out")}
        else:
            gemma = hasattr(layer, "pre_feedforward_layernorm")
            places = {
                "attn_out": (layer.post_attention_layernorm if gemma else layer.self_attn, "out"),
                "mlp_out": (layer.post_feedforward_layernorm if gemma else layer.mlp, "out"),
                "z": (layer.self_attn.o_proj, "in"),
                "mlp_post": (layer.mlp.down_proj, "in"),
                "mlp_input": (layer.pre_feedforward_layernorm if gemma else layer.post_attention_layernorm, "out"),
            }
        for key, (module, which) in places.items():
            handles.append(module.register_forward_hook(keep(f"{n}.{key}", which)))
    with torch.inference_mode():
        out = hf(tokens, output_hidden_states=True)
    for h in handles:
        h.remove()
    return out, got


def differences(cache: Any, logits: Any, ref: Any, mods: dict[str, Any]) -> dict[str, list[float]]:
    """{hook kind: [max |ours - hf|, max |hf|]} over all layers."""
    out: dict[str, list[float]] = {}

    def note(kind: str, ours: Any, theirs: Any) -> None:
        diff = float((ours.float() - theirs.float()).abs().max())
        scale = float(theirs.float().abs().max())
        old = out.get(kind, [0.0, 0.0])
        out[kind] = [max(old[0], diff), max(old[1], scale)]

    hs = ref.hidden_states
    for n in range(LAYERS):
        note("hook_resid_pre", cache[f"blocks.{n}.hook_resid_pre"], hs[n])
        if n + 1 < LAYERS:
            note("hook_resid_post", cache[f"blocks.{n}.hook_resid_post"], hs[n + 1])
        note("hook_resid_mid", cache[f"blocks.{n}.hook_resid_mid"], hs[n].float() + mods[f"{n}.attn_out"].float())
        note("hook_attn_out", cache[f"blocks.{n}.hook_attn_out"], mods[f"{n}.attn_out"])
        note("hook_mlp_out", cache[f"blocks.{n}.hook_mlp_out"], mods[f"{n}.mlp_out"])
        note("attn.hook_z", cache[f"blocks.{n}.attn.hook_z"].flatten(-2), mods[f"{n}.z"])
        note("mlp.hook_post", cache[f"blocks.{n}.mlp.hook_post"], mods[f"{n}.mlp_post"])
        if f"blocks.{n}.ln2.hook_out" in cache:  # the bridge: what the MLP reads
            note("ln2 output (MLP input)", cache[f"blocks.{n}.ln2.hook_out"], mods[f"{n}.mlp_input"])
    note("logits", logits, ref.logits)
    return out


def ht_convert(path: Path) -> Any:
    """TransformerLens's converter into a HookedTransformer, no weight processing (the path before the bridge)."""
    import torch
    from transformer_lens import HookedTransformer
    from transformer_lens import loading_from_pretrained as loading
    from transformers import AutoModelForCausalLM

    cfg = loading.get_pretrained_model_config(str(path), device="cpu", dtype=torch.float32, fold_ln=False)
    hf = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    state = loading.get_pretrained_state_dict(str(path), cfg, hf_model=hf, dtype=torch.float32)
    model = HookedTransformer(cfg)
    model.load_and_process_state_dict(
        state,
        fold_ln=False,
        center_writing_weights=False,
        center_unembed=False,
        fold_value_biases=False,
        refactor_factored_attn_matrices=False,
    )
    return model.eval()


def timed_rounds(fns: dict[str, Any], rounds: int) -> tuple[dict[str, float], dict[str, float]]:
    """Median seconds of each callable, and its median ratio to the first one within the same round.

    Each round runs every callable once, in an order rotated from round to round, so a burst of load from
    other processes falls on all of them alike; the per-round ratios are what to quote on a shared machine.
    """
    names = list(fns)
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            started = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - started)
    base = names[0]
    ratios = {n: median([t / b for t, b in zip(times[n], times[base], strict=True)]) for n in names}
    return {n: median(v) for n, v in times.items()}, ratios


def measure(name: str, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Faithfulness and speed of one family."""
    import torch
    from transformers import AutoModelForCausalLM

    from interpedia.generate.model import HookedModel

    path = root / name
    build(name, path)
    tokens = torch.randint(0, VOCAB, (args.batch, args.ctx), generator=torch.Generator().manual_seed(0))
    small = tokens[:2, :32]
    hook = f"blocks.{LAYERS // 2}.hook_resid_post"
    result: dict[str, Any] = {"architecture": FAMILIES[name][0]}

    hf = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32, attn_implementation="eager").eval()
    hf_sdpa = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()
    ref, mods = hf_reference(hf, name, small)

    started = time.perf_counter()
    bridge = HookedModel.load(str(path))
    result["bridge_load_s"] = round(time.perf_counter() - started, 3)
    bridge.enable_hooks([f"blocks.{n}.hook_mlp_in" for n in range(LAYERS)])
    with torch.inference_mode():
        logits, cache = bridge.model.run_with_cache(small)
    result["bridge_vs_hf"] = differences(cache, logits, ref, mods)

    fns = {
        "hf_eager_full": lambda: hf(tokens),
        "hf_sdpa_full": lambda: hf_sdpa(tokens),
        "bridge_full": lambda: bridge.model(tokens),
        "bridge_to_hook": lambda: bridge.activations(tokens, hook),
    }
    try:
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ht = ht_convert(path)
        result["ht_load_s"] = round(time.perf_counter() - started, 3)
        with torch.inference_mode():
            ht_logits, ht_cache = ht.run_with_cache(small)
        result["ht_vs_hf"] = differences(ht_cache, ht_logits, ref, mods)
        ht_model = HookedModel(ht, bridge.tokenizer, name=name, source="hf-dir")
        fns["ht_full"] = lambda: ht(tokens)
        fns["ht_to_hook"] = lambda: ht_model.activations(tokens, hook)
    except Exception as exc:  # the converter's failures are part of the finding
        result["ht_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    with torch.inference_mode():
        seconds, ratios = timed_rounds(fns, args.rounds)
    result["seconds"] = {k: round(v, 4) for k, v in seconds.items()}
    result["ratio_to_hf_eager"] = {k: round(v, 3) for k, v in ratios.items()}
    log.info("%s: %s", name, result["ratio_to_hf_eager"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--ctx", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--families", nargs="*", default=list(FAMILIES))
    args = parser.parse_args()
    setup_logging()
    import torch

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    results = {}
    with tempfile.TemporaryDirectory(prefix="models-bridge-") as tmp:
        for name in args.families:
            results[name] = measure(name, Path(tmp), args)
    rows = []
    for name, r in results.items():
        q = r["ratio_to_hf_eager"]
        worst = max(v[0] for k, v in r["bridge_vs_hf"].items() if k != "logits")
        ht = r.get("ht_vs_hf")
        rows.append(
            [
                name,
                f"{worst:.1e}",
                f"{r['bridge_vs_hf']['logits'][0]:.1e}",
                f"{max(v[0] for v in ht.values()):.1e}" if ht else r.get("ht_error", "")[:48],
                f"{r['seconds']['hf_eager_full']:.3f}",
                f"{q['hf_sdpa_full']:.2f}",
                f"{q['bridge_full']:.2f}",
                f"{q['ht_full']:.2f}" if "ht_full" in q else "-",
                f"{q['bridge_to_hook']:.2f}",
                f"{q['ht_to_hook']:.2f}" if "ht_to_hook" in q else "-",
            ]
        )
    headers = ["family", "bridge max|d| hooks", "logits", "HT converter max|d| / error", "hf eager s", "sdpa"]
    print(table(rows, [*headers, "bridge", "HT", "bridge->hook", "HT->hook"]))
    write_results(
        "models_bridge",
        {
            "parameters": vars(args) | {"d_model": D_MODEL, "n_layers": LAYERS, "vocab": VOCAB},
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
