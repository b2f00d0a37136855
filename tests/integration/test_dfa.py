"""Direct feature attribution for SAEs on an attention layer's ``hook_z``: the per-source terms add up to the
feature's pre-activation as SAELens computes it (less its biases), ``interpedia generate`` stores them per example
as Neuronpedia does, live ``activation/single`` returns them, and the dashboard shows them on hover."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from parts import require_module

require_module("torch")

import torch  # noqa: E402
from click.testing import CliRunner  # noqa: E402
from generate_helpers import CTX, D_MODEL, Tiny, tiny_inputs  # noqa: E402

from interpedia.cli import main  # noqa: E402

HOOK_Z = "blocks.1.attn.hook_z"
N_HEADS, D_HEAD = 4, 8  # the tiny model's attention (n_heads x d_head = D_MODEL)
D_SAE = 48
MODEL_ID, SET = "tiny-gen", "att-gen"


def make_attention_sae(out: Path, arch: str = "standard", seed: int = 3) -> Path:
    """A SAELens SAE on ``blocks.1.attn.hook_z`` that reshapes [heads, d_head] inputs itself, as released ones do."""
    from sae_lens import SAE, StandardSAEConfig, TopKSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    meta = SAEMetadata(model_name="tiny-gen", hook_name=HOOK_Z, context_size=CTX, prepend_bos=True)
    common: dict[str, Any] = {
        "d_in": N_HEADS * D_HEAD,
        "d_sae": D_SAE,
        "dtype": "float32",
        "device": "cpu",
        "metadata": meta,
        "reshape_activations": "hook_z",
    }
    cfg = TopKSAEConfig(k=6, **common) if arch == "topk" else StandardSAEConfig(**common)
    sae = SAE.get_sae_class_for_architecture(arch)(cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(N_HEADS * D_HEAD, D_SAE, generator=gen) * 0.8)
        sae.W_dec.copy_(
            torch.randn(D_SAE, N_HEADS * D_HEAD, generator=gen) * (0.5 + torch.rand(D_SAE, 1, generator=gen))
        )
        sae.b_dec.copy_(torch.randn(N_HEADS * D_HEAD, generator=gen) * 0.05)
        sae.b_enc.copy_(-0.3 - 0.4 * torch.rand(D_SAE, generator=gen))
    sae.save_model(str(out))
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    return tiny_inputs(tmp_path_factory)


@pytest.fixture(scope="module")
def att_sae(tiny: Tiny) -> Path:
    path = tiny.root / "sae-attn"
    return path if path.exists() else make_attention_sae(path)


def _oracle(tiny: Tiny, sae_dir: Path, ids: list[int], feature: int, target: int) -> tuple[float, list[float]]:
    """(SAELens's pre-activation at ``target`` less its bias terms, the per-source split from TransformerLens's
    own cached pattern and values), with the decoder norm folded in as the dashboards report it."""
    from sae_lens import SAE

    from interpedia.generate.model import HookedModel

    model = HookedModel.load(str(tiny.model))
    sae = SAE.load_from_disk(str(sae_dir), device="cpu")
    sae.fold_W_dec_norm()
    _, cache = model.model.run_with_cache(torch.tensor([ids]))
    z = cache[HOOK_Z][0]  # [pos, heads, d_head]
    _, sae_cache = sae.run_with_cache(z)
    pre = float(sae_cache["hook_sae_acts_pre"][target, feature])
    w = sae.W_enc.detach()[:, feature]
    bias = float(sae.b_enc[feature]) - float(sae.b_dec @ w) * float(sae.cfg.apply_b_dec_to_input)
    pattern, v = cache["blocks.1.attn.hook_pattern"][0], cache["blocks.1.attn.hook_v"][0]
    w_heads = w.reshape(N_HEADS, D_HEAD)
    terms = [
        float(sum(pattern[h, target, s] * (v[s, h] @ w_heads[h]) for h in range(N_HEADS))) for s in range(len(ids))
    ]
    return pre - bias, terms


def test_dfa_terms_add_up_to_the_pre_activation(tiny: Tiny, att_sae: Path) -> None:
    from interpedia.generate.dfa import DfaCalculator, dfa_layer
    from interpedia.generate.model import HookedModel
    from interpedia.generate.sae import LoadedSae

    model = HookedModel.load(str(tiny.model))
    sae = LoadedSae.load(str(att_sae))
    layer = dfa_layer(sae, HOOK_Z)
    assert layer == 1 and dfa_layer(sae, "blocks.1.hook_resid_pre") is None
    calc = DfaCalculator(model, sae, layer)
    ids = model.tokenizer("the king spoke unto his people and the dog ran", add_special_tokens=False)["input_ids"]
    ids = [model.bos_token_id, *ids][:CTX]
    for feature, target in ((0, len(ids) - 1), (7, 3), (D_SAE - 1, 5)):
        dfa = calc.prompt(ids, feature, target)
        want, terms = _oracle(tiny, att_sae, ids, feature, target)
        assert len(dfa) == len(ids)
        assert sum(dfa) == pytest.approx(want, abs=1e-4)
        assert dfa == pytest.approx(terms, abs=1e-5)
        assert all(d == 0 for d in dfa[target + 1 :])  # causal: later tokens are not attended to
    # the encoder the pass uses agrees: relu(pre) is what the dashboards store
    x = model.activations(torch.tensor([ids]), HOOK_Z)
    sparse = sae.encoder()(x, None)
    got = {(int(f), int(t)): float(v) for f, t, v in zip(sparse.feat, sparse.tok, sparse.val, strict=True)}
    want7, _ = _oracle(tiny, att_sae, ids, 7, 3)
    bias7 = float(sae.sae.b_enc[7]) - float(sae.sae.b_dec @ sae.sae.W_enc[:, 7])
    assert got.get((7, 3), 0.0) == pytest.approx(max(0.0, want7 + bias7), abs=1e-4)


def test_generate_stores_dfa_per_example(tiny: Tiny, att_sae: Path, factory: Any, client: Any, tmp_path: Path) -> None:
    args = [
        "generate",
        *("--model", str(tiny.model), "--sae", str(att_sae), "--dataset", str(tiny.jsonl)),
        *("--context-size", str(CTX), "--n-prompts", "24", "--top-k", "4", "--shard-prompts", "8"),
        *("--model-id", MODEL_ID, "--source-set", SET, "--out", str(tmp_path / "out"), "--into-db", "--no-progress"),
    ]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    batch = json.loads((tmp_path / "out" / "batch-0.json").read_text())
    feature = next(f for f in batch["features"] if f["activations"])
    assert len(feature["decoder_weights_dist"]) == N_HEADS and sum(feature["decoder_weights_dist"]) == pytest.approx(1)
    top = feature["activations"][0]
    assert len(top["dfa_values"]) == len(top["tokens"]) == len(top["values"])
    assert top["dfa_targetIndex"] == top["values"].index(max(top["values"]))
    assert top["dfa_maxValue"] == max(top["dfa_values"])
    # the database keeps them as Neuronpedia's dfaValues / dfaTargetIndex / dfaMaxValue
    doc = client.get(f"/api/feature/{MODEL_ID}/1-{SET}/{feature['feature_index']}").json()
    stored = doc["activations"][0]
    assert stored["dfaValues"] == pytest.approx(top["dfa_values"])
    assert stored["dfaTargetIndex"] == top["dfa_targetIndex"] and stored["dfaMaxValue"] == pytest.approx(
        top["dfa_maxValue"]
    )
    assert doc["sourceSet"]["showDfa"] is True
    # the dashboard marks each attributed token and the target, shown on hover
    page = client.get(f"/{MODEL_ID}/1-{SET}/{feature['feature_index']}").text
    assert 'class="acts show-dfa' in page or "show-dfa" in page
    assert " dt" in page and 'data-d="' in page
    # a residual-stream SAE gets none, and --dfa refuses it
    resid = [a if a != str(att_sae) else str(tiny.sae("standard")) for a in args if a != "--into-db"]
    bad = CliRunner().invoke(main, [*resid[: resid.index("--out")], "--out", str(tmp_path / "x"), "--dfa"])
    assert bad.exit_code != 0 and "hook_z" in bad.output


def test_live_activation_single_returns_dfa(tiny: Tiny, att_sae: Path, factory: Any, client: Any) -> None:
    from interpedia.db import transaction
    from interpedia.store.catalogue import ensure_model, ensure_source

    with transaction(factory) as session:
        ensure_model(session, MODEL_ID, layers=2, dimension=D_MODEL, tlens_id=str(tiny.model), inference_enabled=True)
        ensure_source(
            session, MODEL_ID, f"1-{SET}", weights_path=str(att_sae), hook_name=HOOK_Z, inference_enabled=True
        )
    text = "the cat sat on a mat"
    body = {"model": MODEL_ID, "prompt": text, "source": f"1-{SET}", "index": "0"}
    found = None
    for index in range(D_SAE):
        r = client.post("/v1/activation/single", json={**body, "index": str(index)})
        assert r.status_code == 200, r.text
        if r.json()["activation"]["max_value"] > 0:
            found = (index, r.json())
            break
    assert found is not None
    index, doc = found
    act = doc["activation"]
    assert len(act["dfa_values"]) == len(doc["tokens"]) == len(act["values"])
    assert act["dfa_target_index"] == act["max_value_index"] and act["dfa_max_value"] == max(act["dfa_values"])
    from interpedia.generate.model import HookedModel

    tok = HookedModel.load(str(tiny.model)).tokenizer
    ids = [tok.bos_token_id, *tok(text, add_special_tokens=False)["input_ids"]]
    want, terms = _oracle(tiny, att_sae, ids, index, act["max_value_index"] + 1)  # BOS is not shown
    assert act["dfa_values"] == pytest.approx(terms[1:], abs=1e-4)
    assert sum(act["dfa_values"]) + terms[0] == pytest.approx(want, abs=1e-4)
    # the webapp route passes them on under Neuronpedia's names
    new = client.post(
        "/api/activation/new",
        json={"feature": {"modelId": MODEL_ID, "source": f"1-{SET}", "index": str(index)}, "customText": text},
    ).json()
    assert new["activations"]["dfaValues"] == pytest.approx(act["dfa_values"])
    assert new["activations"]["dfaTargetIndex"] == act["dfa_target_index"]
