"""Hugging Face models of seven architectures load through the one seam (``HookedModel``), and every hook the
SAEs and transcoders of Gemma Scope / Llama Scope read equals what the Hugging Face model itself computes: its
``output_hidden_states`` and, where it has no hidden state, the inputs and outputs of its own modules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from parts import require_module

torch = require_module("torch")

from hf_model_helpers import D_MODEL, FAMILIES, TinyHf, tiny_hf  # noqa: E402

from interpedia.errors import Invalid, Unsupported  # noqa: E402
from interpedia.generate.model import HookedModel  # noqa: E402

NAMES = list(FAMILIES)


@pytest.fixture(scope="module", params=NAMES)
def tiny(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> TinyHf:
    return tiny_hf(tmp_path_factory, request.param)


@pytest.fixture(scope="module")
def loaded(tiny: TinyHf) -> HookedModel:
    """The family's model loaded once (float32) for the tests that only read it."""
    return HookedModel.load(str(tiny.model))


def _hf_reference(tiny: TinyHf, tokens: Any, dtype: Any) -> tuple[Any, dict[str, Any]]:
    """The Hugging Face model's own numbers: hidden states, logits, and its modules' inputs and outputs."""
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(str(tiny.model), dtype=dtype, attn_implementation="eager").eval()
    got: dict[str, Any] = {}

    def keep(key: str, which: str = "out") -> Any:
        def hook(module: Any, args: Any, out: Any) -> None:
            got[key] = args[0] if which == "in" else out[0] if isinstance(out, tuple) else out

        return hook

    gpt2 = tiny.family.name == "gpt2"
    layers = hf.transformer.h if gpt2 else hf.model.layers
    handles = []
    for n, layer in enumerate(layers):
        if gpt2:
            parts = {
                "attn_out": (layer.attn, "out"),
                "mlp_out": (layer.mlp, "out"),
                "z": (layer.attn.c_proj, "in"),
                "mlp_post": (layer.mlp.c_proj, "in"),
                "mlp_input": (layer.mlp, "in"),
                "ln2_in": (layer.ln_2, "in"),
            }
        else:
            gemma = hasattr(layer, "pre_feedforward_layernorm")  # Gemma 2/3 normalise outputs again
            parts = {
                "attn_out": (layer.post_attention_layernorm if gemma else layer.self_attn, "out"),
                "mlp_out": (layer.post_feedforward_layernorm if gemma else layer.mlp, "out"),
                "z": (layer.self_attn.o_proj, "in"),
                "mlp_post": (layer.mlp.down_proj, "in"),
                "mlp_input": (layer.mlp, "in"),
                "ln2_in": (layer.pre_feedforward_layernorm if gemma else layer.post_attention_layernorm, "in"),
            }
        for key, (module, which) in parts.items():
            handles.append(module.register_forward_hook(keep(f"{n}.{key}", which)))
    with torch.no_grad():
        out = hf(tokens, output_hidden_states=True)
    for h in handles:
        h.remove()
    eps = float(getattr(hf.config, "rms_norm_eps", None) or getattr(hf.config, "layer_norm_epsilon", 1e-5))
    for n in range(len(layers)):
        x = got[f"{n}.ln2_in"].float()
        if gpt2:
            x = x - x.mean(-1, keepdim=True)
        got[f"{n}.ln2_scale"] = (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()
        got[f"{n}.ln2_normalized"] = x / got[f"{n}.ln2_scale"]
    return out, got


def _close(a: Any, b: Any, tol: float) -> None:
    torch.testing.assert_close(a.float(), b.float(), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_every_hook_equals_the_hugging_face_model(tiny: TinyHf, dtype: str) -> None:
    model = HookedModel.load(str(tiny.model), dtype=dtype)
    assert model.backend == "TransformerBridge" and model.facts["architecture"] == tiny.family.architecture
    model.enable_hooks(["blocks.0.hook_mlp_in"])
    tokens = torch.randint(5, len(tiny.tokenizer), (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        logits, cache = model.model.run_with_cache(tokens)
    ref, mods = _hf_reference(tiny, tokens, getattr(torch, dtype))
    tol = 1e-5 if dtype == "float32" else 1e-2  # bf16: the same ops, so in practice equal
    n_layers = int(model.cfg.n_layers)
    hs = ref.hidden_states
    embed = cache["hook_embed"] + (cache["hook_pos_embed"] if tiny.family.name == "gpt2" else 0)
    _close(embed, hs[0], tol)  # Gemma's sqrt(d_model) scale included, as in Hugging Face's hidden states
    for n in range(n_layers):
        _close(cache[f"blocks.{n}.hook_resid_pre"], hs[n], tol)
        if n + 1 < n_layers:  # Hugging Face's last hidden state is after the final norm
            _close(cache[f"blocks.{n}.hook_resid_post"], hs[n + 1], tol)
        _close(cache[f"blocks.{n}.hook_attn_out"], mods[f"{n}.attn_out"], tol)
        _close(cache[f"blocks.{n}.hook_resid_mid"], hs[n].float() + mods[f"{n}.attn_out"].float(), tol)
        _close(cache[f"blocks.{n}.hook_mlp_out"], mods[f"{n}.mlp_out"], tol)
        z = cache[f"blocks.{n}.attn.hook_z"]
        assert z.shape[-2:] == (4, 16)  # [batch, pos, head, d_head], as SAELens's hook_z SAEs expect
        _close(z.flatten(-2), mods[f"{n}.z"], tol)
        _close(cache[f"blocks.{n}.mlp.hook_post"], mods[f"{n}.mlp_post"], tol)
        _close(cache[f"blocks.{n}.mlp.hook_in"], mods[f"{n}.mlp_input"], tol)  # Qwen 3 transcoders read it
        _close(cache[f"blocks.{n}.ln2.hook_normalized"], mods[f"{n}.ln2_normalized"], max(tol, 1e-4))
        _close(cache[f"blocks.{n}.ln2.hook_scale"], mods[f"{n}.ln2_scale"], max(tol, 1e-4))
    _close(cache["blocks.0.hook_mlp_in"], cache["blocks.0.hook_resid_mid"], 0)
    _close(logits, ref.logits, max(tol, 1e-4))
    # the generator's path: the forward stops at the hook and returns the same activations
    hook = tiny.family.hook
    acts = model.activations(tokens, hook)
    _close(acts, cache[hook].reshape(acts.shape[0], -1), tol)


def test_norm_weights_are_what_the_norm_multiplies_by(tiny: TinyHf, loaded: HookedModel) -> None:
    """Gemma stores RMSNorm weights as offsets from 1; the logit lens and the graph engine need the multiplier."""
    model = loaded
    ln = model.model.ln_final
    x = torch.randn(3, int(model.cfg.d_model))
    with torch.no_grad():
        out = ln.original_component(x)
    centred = x - x.mean(-1, keepdim=True) if tiny.family.name == "gpt2" else x
    eps = float(getattr(ln.original_component, "eps", None) or getattr(ln.original_component, "variance_epsilon", 1e-6))
    normalized = centred / (centred.pow(2).mean(-1, keepdim=True) + eps).sqrt()
    bias = getattr(ln.original_component, "bias", None)
    expected = normalized * model.ln_final_scale() + (bias if bias is not None else 0)
    _close(out, expected, 1e-5)


def test_the_run_record_says_what_changes_activations(tiny: TinyHf, loaded: HookedModel) -> None:
    model = loaded
    facts = model.record()
    family = tiny.family
    assert facts["backend"] == "TransformerBridge" and facts["tested"] is True
    assert facts["embedding_scale"] == (8.0 if family.name.startswith("gemma") else None)
    assert facts["checkpoint_dtype"] == ("bfloat16" if family.bfloat16 else "float32")
    assert facts["tokenizer_adds_bos"] is family.adds_bos and facts["chat_template"] is bool(family.chat_template)
    assert facts["post_norms"] is family.name.startswith("gemma")
    assert model.cfg.use_normalization_before_and_after is family.name.startswith("gemma")
    if family.name == "gemma2":
        assert facts["final_logit_softcapping"] == 30.0 and facts["attn_logit_softcapping"] == 50.0
    ends = [tiny.tokenizer.convert_tokens_to_ids(t) for t in family.end_of_turn]
    assert set(model.stop_token_ids) == {tiny.tokenizer.eos_token_id, *ends}
    # Qwen has no BOS: TransformerLens (and SAELens training) puts its EOS there; prompts get none by default
    assert model.default_prepend_bos is (family.bos is not None)
    assert model.bos_token_id == tiny.tokenizer.convert_tokens_to_ids(family.bos or family.eos)


def test_steps_with_and_without_cache_give_the_same_logits(tiny: TinyHf, loaded: HookedModel) -> None:
    model = loaded
    ids = [int(i) for i in torch.randint(5, len(tiny.tokenizer), (8,), generator=torch.Generator().manual_seed(2))]
    steps = model.logit_steps()
    for end in range(5, 9):
        logits = steps.next_logits(ids[steps.fed : end])
        with torch.inference_mode():
            full = model.model(torch.tensor([ids[:end]]))[0, -1].float()
        _close(logits, full, 1e-4)


# --- what a user gets when it does not load ---------------------------------------------------------


def _hf_dir(tmp_path: Path, config: dict[str, Any]) -> Path:
    out = tmp_path / "model"
    out.mkdir(parents=True)
    (out / "config.json").write_text(json.dumps(config))
    return out


def test_an_unsupported_architecture_is_named(tmp_path: Path) -> None:
    path = _hf_dir(tmp_path, {"architectures": ["BertForMaskedLM"], "model_type": "bert"})
    with pytest.raises(Unsupported, match="architecture BertForMaskedLM .model_type 'bert'. is not supported"):
        HookedModel.load(str(path))
    with pytest.raises(Unsupported, match="names no architecture"):
        HookedModel.load(str(_hf_dir(tmp_path / "x", {"model_type": "llama"})))
    # Multimodal checkpoints (Gemma 3 4B-27B) are refused before TransformerLens starts: loading one makes it
    # pip-install torchvision into the running environment when the image processor is missing.
    multimodal = {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3"}
    with pytest.raises(Unsupported, match="architecture Gemma3ForConditionalGeneration"):
        HookedModel.load(str(_hf_dir(tmp_path / "mm", multimodal)))
    both = {"architectures": ["Gemma3ForConditionalGeneration", "Gemma3ForCausalLM"], "model_type": "gemma3_text"}
    with pytest.raises(Unsupported, match="TransformerLens reads this config as Gemma3ForConditionalGeneration"):
        HookedModel.load(str(_hf_dir(tmp_path / "both", both)))


def test_bad_paths_are_named(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    with pytest.raises(Invalid, match=f"no model directory at {tmp_path}/missing"):
        HookedModel.load(str(tmp_path / "missing"))
    with pytest.raises(Invalid, match="is a directory but not a model"):
        HookedModel.load(str(tmp_path))
    (tmp_path / "weights.bin").write_text("x")
    with pytest.raises(Invalid, match="is a file"):
        HookedModel.load(str(tmp_path / "weights.bin"))
    tiny = tiny_hf(tmp_path_factory, "llama")
    bare = tmp_path / "no-tokenizer"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        (bare / name).write_bytes((tiny.model / name).read_bytes())
    with pytest.raises(Invalid, match="has no tokenizer interpedia can load"):
        HookedModel.load(str(bare))
    (bare / "model.safetensors").unlink()
    for extra in tiny.model.glob("tokenizer*"):
        (bare / extra.name).write_bytes(extra.read_bytes())
    with pytest.raises(Invalid, match="LlamaForCausalLM model could not be loaded"):
        HookedModel.load(str(bare))


def test_a_hub_id_without_the_hub_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    from interpedia.errors import Unavailable

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no network wait in the test
    with pytest.raises(Unavailable, match="no model directory at gpt2-small, and gpt2 could not be loaded from the"):
        HookedModel.load("gpt2-small")  # a TransformerLens name, resolved to its hub id


def test_a_missing_sae_path_is_named(tmp_path: Path) -> None:
    from interpedia.generate.sae import LoadedSae

    with pytest.raises(Invalid, match=f"^no SAE directory at {tmp_path}/nope "):
        LoadedSae.load(str(tmp_path / "nope"))
    with pytest.raises(Invalid, match="no SAE directory at saes/mine, and 'saes' is not a SAELens release"):
        LoadedSae.load("saes/mine")
    with pytest.raises(Invalid, match="has no cfg.json"):
        LoadedSae.load(str(tmp_path))


def test_steering_at_an_optional_hook_switches_it_on(tmp_path_factory: pytest.TempPathFactory) -> None:
    """hook_mlp_in fires only when switched on: a steer there on a fresh model must still change the output."""
    from interpedia.inference.plans import ModelPlan
    from interpedia.inference.registry import LoadedModel
    from interpedia.inference.steering import Direction, SteerSettings, check_directions, generate

    tiny = tiny_hf(tmp_path_factory, "mistral")
    fresh = LoadedModel(ModelPlan("m", str(tiny.model), "float32", "settings"), HookedModel.load(str(tiny.model)))
    ids = fresh.encode(tiny.docs[0])
    settings = SteerSettings(n_tokens=2, temperature=0, n_logprobs=1)
    vector = torch.randn(D_MODEL, generator=torch.Generator().manual_seed(0)) * 20
    steer = [Direction("blocks.1.hook_mlp_in", vector, 1.0)]
    check_directions(fresh, steer, settings)
    steered = generate(fresh, ids, steer, settings)
    plain = generate(fresh, ids, [], settings)
    assert steered.logprobs is not None and plain.logprobs is not None
    assert steered.logprobs[0]["logprob"] != pytest.approx(plain.logprobs[0]["logprob"], abs=1e-4)
