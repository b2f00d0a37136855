"""Transcoders as sources: ``interpedia generate`` dashboards (the encoder reads ``hook_name``, the logit lens
maps the decoder from ``hook_name_out``) and live inference (activations, top-k by token, steering at the output
hook), each checked against SAELens and TransformerLens computed here, on a tiny transcoder made by the test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from inference_helpers import D_MODEL, GEN_CTX, MODEL_ID, TinyInference, register
from inference_helpers import tiny_inf as tiny_inf  # noqa: F401  (session fixture)

D_TC = 48
D_MLP = 64  # the tiny model's MLP width


def make_transcoder_dir(out: Path, arch: str, layer: int, *, hook_out: str, seed: int) -> Path:
    """A SAELens transcoder of ``arch`` (random weights, biases so features fire on some tokens), saved to ``out``."""
    from sae_lens import SAE

    d_out = D_MLP if hook_out.endswith("mlp.hook_post") else D_MODEL
    cfg = {
        "architecture": arch,
        "d_in": D_MODEL,
        "d_sae": D_TC,
        "d_out": d_out,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": False,
        "metadata": {
            "model_name": "tiny-inf",
            "hook_name": f"blocks.{layer}.ln2.hook_normalized",
            "hook_name_out": hook_out,
            "prepend_bos": True,
            "context_size": GEN_CTX,
        },
    }
    cls = SAE.get_sae_class_for_architecture(arch)
    tc = cls(SAE.get_sae_config_class_for_architecture(arch).from_dict(cfg))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        tc.W_enc.copy_(torch.randn(D_MODEL, D_TC, generator=gen) / D_MODEL**0.5 * 3)
        tc.W_dec.copy_(torch.randn(D_TC, d_out, generator=gen) * (0.5 + torch.rand(D_TC, 1, generator=gen)))
        tc.b_dec.copy_(torch.randn(d_out, generator=gen) * 0.1)
        tc.b_enc.copy_(-1.0 - 2.0 * torch.rand(D_TC, generator=gen))
        if arch == "jumprelu_transcoder":
            tc.threshold.copy_(torch.rand(D_TC, generator=gen) * 0.5)
    tc.save_model(str(out))
    return out


def _generate(factory: Any, tiny: TinyInference, tc_dir: Path, layer: int, set_name: str, tmp: Path) -> str:
    from interpedia.generate import GenerateConfig, GenerateRun

    cfg = GenerateConfig(
        model=str(tiny.model),
        sae=str(tc_dir),
        dataset=str(tiny.dataset),
        into_db=True,
        context_size=GEN_CTX,
        n_prompts=len(tiny.docs),
        concat=False,
        model_id=MODEL_ID,
        source_set=set_name,
        layer=str(layer),
        work_dir=str(tmp / f"work-{set_name}-{layer}"),
        batch_size=8,
    )
    run = GenerateRun(cfg, factory=factory, progress=False).run().run
    assert run["sae"]["hook_name"] == f"blocks.{layer}.ln2.hook_normalized"
    return f"{layer}-{set_name}"


def _model(tiny: TinyInference) -> Any:
    from interpedia.generate.model import HookedModel

    return HookedModel.load(str(tiny.model))


def _oracle_acts(hooked: Any, tc_dir: Path, layer: int, ids: list[int]) -> torch.Tensor:
    """SAELens's own encode (decoder norms folded, as generate does) of the MLP input: [pos, d_tc]."""
    from sae_lens import SAE

    tc = SAE.load_from_disk(str(tc_dir), fold_W_dec_norm=True)
    _, cache = hooked.model.run_with_cache(torch.tensor([ids]), names_filter=[f"blocks.{layer}.ln2.hook_normalized"])
    with torch.no_grad():
        return tc.encode(cache[f"blocks.{layer}.ln2.hook_normalized"][0]).float()


@pytest.mark.parametrize("arch", ["transcoder", "jumprelu_transcoder"])
def test_transcoder_dashboards_and_live_inference(
    arch: str,
    factory: Any,
    client: Any,
    tiny_inf: TinyInference,  # noqa: F811
    tmp_path: Path,
) -> None:
    from sae_lens import SAE

    register(factory, tiny_inf)
    hooked = _model(tiny_inf)
    set_name = f"tc-{arch.split('_')[0]}"
    dirs = {
        layer: make_transcoder_dir(
            tmp_path / f"tc{layer}", arch, layer, hook_out=f"blocks.{layer}.hook_mlp_out", seed=10 + layer
        )
        for layer in (0, 1)
    }
    sources = {layer: _generate(factory, tiny_inf, dirs[layer], layer, set_name, tmp_path) for layer in (0, 1)}
    w_u = hooked.model.W_U.detach().float()
    for layer, source_id in sources.items():
        # The dashboard: the encoder read the MLP input, and the logit lens is the decoder row (written to the
        # MLP output, already in the residual stream) times W_U.
        folded = SAE.load_from_disk(str(dirs[layer]), fold_W_dec_norm=True)
        page = client.post("/api/features-offset", json={"modelId": MODEL_ID, "layer": source_id, "offset": 0})
        live = [f for f in page.json() if (f["maxActApprox"] or 0) > 0]
        assert len(live) >= 5
        index = int(live[0]["index"])
        doc = client.get(f"/api/feature/{MODEL_ID}/{source_id}/{index}").json()
        direction = folded.W_dec.detach()[index]
        expected = torch.topk(direction / direction.norm() @ w_u, len(doc["pos_values"])).values
        assert doc["pos_values"] == pytest.approx(expected.tolist(), rel=1e-4, abs=1e-5)
        assert doc["activations"]

        # Live activation: SAELens's encode of the MLP input (BOS dropped, as a stored example).
        text = tiny_inf.docs[0]
        body = {"model": MODEL_ID, "prompt": text, "source": source_id, "index": str(index)}
        got = client.post("/v1/activation/single", json=body)
        assert got.status_code == 200, got.text
        ids = [hooked.tokenizer.bos_token_id, *hooked.tokenizer(text, add_special_tokens=False)["input_ids"]]
        oracle = _oracle_acts(hooked, dirs[layer], layer, ids)
        assert got.json()["activation"]["values"] == pytest.approx(oracle[1:, index].tolist(), rel=1e-4, abs=1e-5)

        # Top-k by token: the largest of those activations at each position.
        top = client.post(
            "/v1/activation/topk-by-token",
            json={"model": MODEL_ID, "prompt": text, "source": source_id, "top_k": 3},
        ).json()
        for row in top["results"]:
            want = torch.topk(oracle[row["token_position"]], 3)
            want_idx = [int(i) for v, i in zip(want.values, want.indices, strict=True) if v > 0]
            assert [f["feature_index"] for f in row["top_features"]] == want_idx

        # The decoder vector lives at the output hook.
        vec = client.post("/v1/util/sae-vector", json={"model": MODEL_ID, "source": source_id, "index": index}).json()
        assert vec["hookName"] == f"blocks.{layer}.hook_mlp_out"
        raw = SAE.load_from_disk(str(dirs[layer])).W_dec.detach()[index]
        assert vec["vector"] == pytest.approx(raw.tolist(), rel=1e-5, abs=1e-6)

    # Steering with a transcoder feature adds its decoder row at the MLP output: greedy text equals TransformerLens
    # generating with that hook.
    layer, index, strength = 1, 5, 40.0
    prompt = "the king spoke"
    out = client.post(
        "/v1/steer/completion",
        json={
            "model": MODEL_ID,
            "prompt": prompt,
            "features": [{"model": MODEL_ID, "source": sources[layer], "index": index, "strength": strength}],
            "n_completion_tokens": 6,
            "temperature": 0,
        },
    )
    assert out.status_code == 200, out.text
    texts = {o["type"]: o["output"] for o in out.json()["outputs"]}
    row = SAE.load_from_disk(str(dirs[layer])).W_dec.detach()[index]
    expected_text = _greedy(hooked, prompt, f"blocks.{layer}.hook_mlp_out", strength * row, 6)
    assert texts["STEERED"] == expected_text
    assert texts["STEERED"] != texts["DEFAULT"] == _greedy(hooked, prompt, None, None, 6)


def _greedy(hooked: Any, prompt: str, hook: str | None, delta: torch.Tensor | None, n: int) -> str:
    """Greedy completion recomputing the whole sequence each step, ``delta`` added at ``hook`` everywhere."""
    tok = hooked.tokenizer
    ids = [tok.bos_token_id, *tok(prompt, add_special_tokens=False)["input_ids"]]
    out: list[int] = []
    hooks = [] if hook is None else [(hook, lambda act, hook: act + delta)]
    with torch.no_grad():
        for _ in range(n):
            logits = hooked.model.run_with_hooks(torch.tensor([ids]), fwd_hooks=hooks)[0, -1]
            nxt = int(torch.argmax(logits))
            if nxt == tok.eos_token_id:
                break
            ids.append(nxt)
            out.append(nxt)
    return str(tok.decode(out, skip_special_tokens=False, clean_up_tokenization_spaces=False))


def test_transcoder_writing_mlp_neurons_maps_its_logit_lens_through_w_out(
    factory: Any,
    client: Any,
    tiny_inf: TinyInference,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A transcoder whose output hook is ``mlp.hook_post`` (d_out = d_mlp, not d_in): its decoder rows reach the
    residual stream through ``W_out``, and steering adds them there."""
    from sae_lens import SAE

    register(factory, tiny_inf)
    hooked = _model(tiny_inf)
    tc_dir = make_transcoder_dir(tmp_path / "post", "transcoder", 0, hook_out="blocks.0.mlp.hook_post", seed=3)
    source_id = _generate(factory, tiny_inf, tc_dir, 0, "posttc", tmp_path)
    folded = SAE.load_from_disk(str(tc_dir), fold_W_dec_norm=True)
    page = client.post("/api/features-offset", json={"modelId": MODEL_ID, "layer": source_id, "offset": 0}).json()
    index = next(int(f["index"]) for f in page if (f["maxActApprox"] or 0) > 0)
    doc = client.get(f"/api/feature/{MODEL_ID}/{source_id}/{index}").json()
    direction = folded.W_dec.detach()[index]
    resid = (direction / direction.norm()) @ hooked.model.blocks[0].mlp.W_out.detach()
    expected = torch.topk(resid @ hooked.model.W_U.detach(), len(doc["pos_values"])).values
    assert doc["pos_values"] == pytest.approx(expected.tolist(), rel=1e-4, abs=1e-5)
    vec = client.post("/v1/util/sae-vector", json={"model": MODEL_ID, "source": source_id, "index": index}).json()
    assert vec["hookName"] == "blocks.0.mlp.hook_post" and len(vec["vector"]) == D_MLP
    out = client.post(
        "/v1/steer/completion",
        json={
            "model": MODEL_ID,
            "prompt": "the cat",
            "features": [{"model": MODEL_ID, "source": source_id, "index": index, "strength": 30.0}],
            "n_completion_tokens": 4,
            "temperature": 0,
            "types": ["STEERED"],
        },
    )
    assert out.status_code == 200, out.text
    row = SAE.load_from_disk(str(tc_dir)).W_dec.detach()[index]
    assert out.json()["outputs"][0]["output"] == _greedy(hooked, "the cat", "blocks.0.mlp.hook_post", 30.0 * row, 4)
