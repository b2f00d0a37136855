"""circuit-tracer's side of the graph oracle and bench; runs in ``bench/.venv-circuit-tracer`` (circuit-tracer 0.5.0).

    bench/.venv-circuit-tracer/bin/python bench/circuit_tracer_side.py SPEC.json

SPEC.json holds one spec or a list of them (one process, so the imports are paid once). A spec: ``model_dir``
(``tl_config.json``, ``model.safetensors``, ``tokenizer.json``), ``transcoders`` ({layer: per-layer safetensors})
or ``clt`` (a cross-layer transcoder directory), ``input_hook``/``output_hook`` (default ``mlp.hook_in`` /
``mlp.hook_out``), ``tokens``, ``slug``, ``scan``, ``max_n_logits``, ``desired_logit_prob``, ``batch_size``,
``max_feature_nodes``, ``node_threshold``, ``edge_threshold``, ``repeats`` and ``out_dir``.

Writes to ``out_dir``: ``graph.safetensors`` (active_features, activation_values, selected_features, adjacency,
logit_tokens, logit_probabilities), ``{slug}.json`` (``create_graph_files``'s output) and ``timing.json``
(seconds of each ``attribute`` call, peak RSS). ``threads`` sets torch's thread count.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def main() -> None:
    specs = json.loads(Path(sys.argv[1]).read_text())
    for spec in specs if isinstance(specs, list) else [specs]:
        run(spec)


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss it does not carry the parent's over exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(spec: dict) -> None:
    """Build one graph with circuit-tracer and write what it found under ``spec["out_dir"]``."""
    import torch
    from circuit_tracer import attribute
    from circuit_tracer.replacement_model.replacement_model_transformerlens import TransformerLensReplacementModel
    from circuit_tracer.transcoder.single_layer_transcoder import load_transcoder_set
    from circuit_tracer.utils.create_graph_files import create_graph_files
    from safetensors.torch import load_file, save_file
    from transformer_lens import HookedTransformerConfig
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    torch.set_grad_enabled(True)
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    out = Path(spec["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    model_dir = Path(spec["model_dir"])
    # A tokenizer saved by transformers 5 does not load in 4.57: rebuild it from tokenizer.json and save it here.
    special = spec.get("special_token", "<|endoftext|>")
    tok = PreTrainedTokenizerFast(
        tokenizer_file=str(model_dir / "tokenizer.json"), bos_token=special, eos_token=special, unk_token=special
    )
    tok_dir = out / "tokenizer"
    tok.save_pretrained(str(tok_dir))
    tok = AutoTokenizer.from_pretrained(str(tok_dir))  # TransformerLens wants the saved one (name_or_path)

    kwargs = json.loads((model_dir / "tl_config.json").read_text())
    kwargs.update(device="cpu", dtype=torch.float32, tokenizer_name=str(tok_dir))
    if spec.get("clt"):
        from circuit_tracer.transcoder.cross_layer_transcoder import load_clt

        transcoders = load_clt(
            spec["clt"],
            scan=spec["scan"],
            feature_input_hook=spec.get("input_hook", "mlp.hook_in"),
            feature_output_hook=spec.get("output_hook", "mlp.hook_out"),
            lazy_encoder=False,
            lazy_decoder=False,
            device=torch.device("cpu"),
            dtype=torch.float32,
        )
    else:
        transcoders = load_transcoder_set(
            {int(k): v for k, v in spec["transcoders"].items()},
            scan=spec["scan"],
            feature_input_hook=spec.get("input_hook", "mlp.hook_in"),
            feature_output_hook=spec.get("output_hook", "mlp.hook_out"),
            device=torch.device("cpu"),
            dtype=torch.float32,
            lazy_encoder=False,
            lazy_decoder=False,
        )
    model = TransformerLensReplacementModel.from_config(HookedTransformerConfig(**kwargs), transcoders, tokenizer=tok)
    state = load_file(str(model_dir / "model.safetensors"))
    renamed = {}
    for key, value in state.items():
        if key.endswith((".mask", ".IGNORE")):
            continue
        parts = key.split(".")
        if len(parts) > 2 and parts[0] == "blocks" and parts[2] == "mlp":
            key = ".".join([*parts[:3], "old_mlp", *parts[3:]])
        elif parts[0] == "unembed":
            key = "unembed.old_unembed." + ".".join(parts[1:])
        renamed[key] = value
    missing, unexpected = model.load_state_dict(renamed, strict=False)
    bad = [k for k in missing if not k.endswith((".mask", ".IGNORE")) and not k.startswith("transcoders.")]
    if bad or unexpected:
        raise SystemExit(f"state dict mismatch: missing {bad[:5]}, unexpected {unexpected[:5]}")

    tokens = torch.tensor(spec["tokens"], dtype=torch.long)
    seconds = []
    graph = None
    for _ in range(int(spec.get("repeats", 1))):
        started = time.perf_counter()
        graph = attribute(
            tokens,
            model,
            max_n_logits=spec.get("max_n_logits", 10),
            desired_logit_prob=spec.get("desired_logit_prob", 0.95),
            batch_size=spec.get("batch_size", 64),
            max_feature_nodes=spec.get("max_feature_nodes"),
        )
        seconds.append(time.perf_counter() - started)
    assert graph is not None
    save_file(
        {
            "active_features": graph.active_features.contiguous(),
            "activation_values": graph.activation_values.float().contiguous(),
            "selected_features": graph.selected_features.contiguous(),
            "adjacency": graph.adjacency_matrix.float().contiguous(),
            "logit_tokens": torch.tensor([t.vocab_idx for t in graph.logit_targets], dtype=torch.long),
            "logit_probabilities": graph.logit_probabilities.float().contiguous(),
        },
        str(out / "graph.safetensors"),
    )
    create_graph_files(
        graph,
        slug=spec["slug"],
        output_path=str(out),
        scan=spec["scan"],
        node_threshold=spec.get("node_threshold", 0.8),
        edge_threshold=spec.get("edge_threshold", 0.98),
    )
    peak_mib = peak_rss_mib()
    (out / "timing.json").write_text(json.dumps({"attribute_seconds": seconds, "peak_rss_mib": peak_mib}))


if __name__ == "__main__":
    main()
