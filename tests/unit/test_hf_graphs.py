"""The attribution engine on Hugging Face models (through the one seam, so on a TransformerBridge): every edge of
a graph equals an intervention on the frozen replacement model, for GPT-2 (LayerNorm with bias), Llama and
Mistral (grouped-query attention), Qwen 2 (attention biases) and Qwen 3 (query/key norms); Gemma 2 and 3, whose
blocks normalise the attention and MLP outputs again, are refused by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from parts import require_module

torch = require_module("torch")

from graph_helpers import FrozenReplacement, edges_to_check, target_value, without  # noqa: E402
from hf_model_helpers import D_MODEL, TinyHf, tiny_hf  # noqa: E402

from interpedia.generate.model import HookedModel  # noqa: E402
from interpedia.graph import AttributionSettings, attribute, load_transcoder_set  # noqa: E402
from interpedia.graph.replacement import UnsupportedModel  # noqa: E402

D_TC = 48


def _transcoders(root: Path, n_layers: int, *, skip: bool, input_scale: float = 1.0) -> dict[int, Path]:
    """Random per-layer transcoders in circuit-tracer's file layout, a few features firing per token on inputs of
    typical size ``input_scale`` (1 after a norm)."""
    from safetensors.torch import save_file

    root.mkdir(parents=True, exist_ok=True)
    files = {}
    for layer in range(n_layers):
        gen = torch.Generator().manual_seed(layer + (10 if skip else 0))
        weights = {
            "W_enc": torch.randn(D_TC, D_MODEL, generator=gen) / D_MODEL**0.5 / input_scale,
            "W_dec": torch.randn(D_TC, D_MODEL, generator=gen) * 0.3,
            "b_enc": -0.6 - 0.6 * torch.rand(D_TC, generator=gen),
            "b_dec": torch.randn(D_MODEL, generator=gen) * 0.05,
        }
        if skip:
            weights["W_skip"] = torch.randn(D_MODEL, D_MODEL, generator=gen) * 0.05
            weights["activation_function.threshold"] = torch.rand(D_TC, generator=gen) * 0.3
        files[layer] = root / f"layer_{layer}.safetensors"
        save_file(weights, str(files[layer]))
    return files


def _tokens(model: HookedModel) -> list[int]:
    bos = model.bos_token_id
    assert bos is not None
    return [bos, *model.tokenizer("the cat sat on a mat and the dog ran", add_special_tokens=False)["input_ids"]]


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("gpt2", "mlp-in"),
        ("llama", "mlp-in"),
        ("llama", "skip-ln2-normalized"),
        ("qwen2", "mlp-in"),
        ("qwen3", "resid-mid"),
        ("mistral", "skip-ln2-normalized"),
    ],
)
def test_edges_equal_interventions_on_a_hugging_face_model(
    name: str, kind: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tiny: TinyHf = tiny_hf(tmp_path_factory, name)
    hooked = HookedModel.load(str(tiny.model))
    assert hooked.backend == "TransformerBridge"
    skip = kind.startswith("skip")
    tokens = _tokens(hooked)
    scale = 1.0
    if kind == "resid-mid":  # the raw residual stream of a random model is small: size the encoders to it
        scale = float(hooked.activations(torch.tensor([tokens]), "blocks.0.hook_resid_mid").std())
    files = _transcoders(tmp_path / "tc", int(hooked.cfg.n_layers), skip=skip, input_scale=scale)
    hook = {"mlp-in": None, "skip-ln2-normalized": "ln2.hook_normalized", "resid-mid": "hook_mlp_in"}[kind]
    ts = load_transcoder_set(files, input_hook=hook)
    sites = {"mlp-in": "mlp_in", "skip-ln2-normalized": "ln2_normalized", "resid-mid": "resid_mid"}
    assert ts.input_site == sites[kind]
    graph = attribute(hooked.model, torch.tensor(tokens), ts, AttributionSettings(batch_size=32), progress=False)
    rep = FrozenReplacement(hooked.model, tokens, ts)
    base = rep.run(rep.acts, rep.errors, torch.ones(graph.n_pos))
    a = graph.adjacency
    checked = 0
    for target, source in edges_to_check(graph)[:30]:
        delta = target_value(base, graph, ts, target) - target_value(without(rep, graph, source), graph, ts, target)
        assert delta == pytest.approx(float(a[target, source]), rel=1e-3, abs=1e-4), (target, source)
        checked += 1
    assert checked >= 20 and a.abs().max() > 0.1


@pytest.mark.parametrize("name", ["gemma2", "gemma3"])
def test_gemma_blocks_are_refused_by_name(name: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    tiny: Any = tiny_hf(tmp_path_factory, name)
    hooked = HookedModel.load(str(tiny.model))
    ts = load_transcoder_set(_transcoders(tmp_path / "tc", int(hooked.cfg.n_layers), skip=False))
    with pytest.raises(UnsupportedModel, match="normalization after attention/MLP"):
        attribute(hooked.model, torch.tensor(_tokens(hooked)), ts, AttributionSettings(batch_size=32), progress=False)
