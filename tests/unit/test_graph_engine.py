"""The attribution engine on a tiny random model: edges equal interventions on the frozen replacement model,
transcoder files load the same from every format, bad files and prompts are refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from graph_helpers import (
    SHORT_PROMPT,
    FrozenReplacement,
    TinyGraph,
    build,
    edges_to_check,
    prompt_tokens,
    random_transcoder,
    target_value,
    without,
)
from safetensors.torch import save_file

from interpedia.errors import Invalid
from interpedia.generate.model import HookedModel
from interpedia.graph import AttributionSettings, TranscoderError, attribute, load_transcoder_set
from interpedia.graph.service import GraphRequest, generate_graph, prompt_token_ids


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyGraph:
    return build(tmp_path_factory.mktemp("graph-engine"))


@pytest.fixture(scope="module")
def hooked(tiny: TinyGraph) -> HookedModel:
    return HookedModel.load(str(tiny.model))


@pytest.mark.parametrize("kind", ["per-layer", "skip-ln2-normalized", "cross-layer"])
def test_edges_equal_interventions_on_the_frozen_replacement_model(
    tiny: TinyGraph, hooked: HookedModel, kind: str
) -> None:
    ts = {
        "per-layer": lambda: load_transcoder_set(tiny.ct_layers),
        "skip-ln2-normalized": lambda: load_transcoder_set(tiny.skip_layers, input_hook="ln2.hook_normalized"),
        "cross-layer": lambda: load_transcoder_set(tiny.clt),
    }[kind]()
    tokens = prompt_tokens(tiny.model, SHORT_PROMPT)
    graph = attribute(hooked.model, torch.tensor(tokens), ts, AttributionSettings(batch_size=32), progress=False)
    rep = FrozenReplacement(hooked.model, tokens, ts)
    base = rep.run(rep.acts, rep.errors, torch.ones(graph.n_pos))
    a = graph.adjacency
    checked = 0
    for target, source in edges_to_check(graph)[:40]:
        delta = target_value(base, graph, ts, target) - target_value(without(rep, graph, source), graph, ts, target)
        assert delta == pytest.approx(float(a[target, source]), rel=1e-3, abs=1e-4), (target, source)
        checked += 1
    assert checked >= 25 and a.abs().max() > 0.1


def test_saelens_directories_and_circuit_tracer_files_give_the_same_graph(tiny: TinyGraph, hooked: HookedModel) -> None:
    from sae_lens import SAE

    sl = load_transcoder_set(tiny.saelens_layers)  # SAELens reads ln2.hook_normalized (before ln2's w and b)
    ct = load_transcoder_set(tiny.ct_layers, input_hook="ln2.hook_normalized")
    assert sl.input_site == "ln2_normalized"
    x = torch.randn(5, 32)
    sae = SAE.load_from_disk(str(tiny.saelens_layers[1]))
    torch.testing.assert_close(sl.encode(1, x), sae.encode(x).detach())
    tokens = torch.tensor(prompt_tokens(tiny.model, SHORT_PROMPT))
    g1 = attribute(hooked.model, tokens, sl, progress=False)
    g2 = attribute(hooked.model, tokens, ct, progress=False)
    assert torch.equal(g1.active_features, g2.active_features)
    torch.testing.assert_close(g1.adjacency, g2.adjacency)


def test_bad_transcoder_files_are_refused_by_path_and_field(tiny: TinyGraph, tmp_path: Path) -> None:
    w = random_transcoder(0)
    missing = tmp_path / "missing.safetensors"
    save_file({k: v for k, v in w.items() if k != "W_enc"}, str(missing))
    with pytest.raises(TranscoderError, match=r"missing\.safetensors: tensor 'W_enc' is missing") as exc:
        load_transcoder_set({0: missing, 1: tiny.ct_layers[1]})
    assert exc.value.field == "W_enc"
    wrong = tmp_path / "wrong.safetensors"
    save_file({**w, "W_dec": torch.zeros(3, 32)}, str(wrong))
    with pytest.raises(TranscoderError, match=r"wrong\.safetensors: W_dec has shape \[3, 32\], expected \[64, 32\]"):
        load_transcoder_set({0: wrong, 1: tiny.ct_layers[1]})
    with pytest.raises(TranscoderError, match=r"every layer 0\.\.1, got layers \[1\]"):
        load_transcoder_set({1: tiny.ct_layers[1]})
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a tensor file")
    with pytest.raises(TranscoderError, match="garbage.safetensors: not a readable safetensors file"):
        load_transcoder_set({0: garbage, 1: tiny.ct_layers[1]})
    sae_dir = tmp_path / "not-a-transcoder"
    sae_dir.mkdir()
    cfg = json.loads((tiny.saelens_layers[0] / "cfg.json").read_text())
    (sae_dir / "cfg.json").write_text(json.dumps({**cfg, "architecture": "standard"}))
    with pytest.raises(TranscoderError, match="architecture 'standard' is not a transcoder"):
        load_transcoder_set({0: sae_dir, 1: tiny.ct_layers[1]})
    cfg["metadata"].pop("hook_name_out")
    (sae_dir / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(TranscoderError, match="metadata.hook_name_out is missing"):
        load_transcoder_set({0: sae_dir, 1: tiny.ct_layers[1]})
    with pytest.raises(TranscoderError, match="input hook 'hook_resid_pre' is not supported"):
        load_transcoder_set(tiny.ct_layers, input_hook="hook_resid_pre")
    with pytest.raises(TranscoderError, match="no such file or directory"):
        load_transcoder_set(tmp_path / "nowhere")


def test_circuit_tracer_directory_with_config_yaml(tiny: TinyGraph, tmp_path: Path) -> None:
    d = tmp_path / "set"
    d.mkdir()
    for layer, p in tiny.skip_layers.items():
        (d / f"layer_{layer}.safetensors").write_bytes(p.read_bytes())
    (d / "config.yaml").write_text(
        "model_kind: transcoder_set\nfeature_input_hook: hook_resid_mid\nfeature_output_hook: hook_mlp_out\n"
    )
    ts = load_transcoder_set(d)
    assert ts.n_layers == 2 and ts.input_site == "resid_mid" and ts.W_skip[1] is not None


def test_prompt_limits_and_the_graph_document(tiny: TinyGraph, hooked: HookedModel) -> None:
    tok = hooked.tokenizer
    ids = prompt_token_ids(tok, "the cat sat", 64)
    assert ids[0] == tok.bos_token_id and len(ids) == len(tok("the cat sat")["input_ids"]) + 1
    with pytest.raises(Invalid, match=r"graphs take at most 8") as exc:
        prompt_token_ids(tok, "the cat sat on a mat and the dog ran to the park", 8)
    assert exc.value.field == "prompt"
    with pytest.raises(Invalid, match="empty"):
        prompt_token_ids(tok, "   ", 64)
    ts = load_transcoder_set(tiny.ct_layers)
    doc = generate_graph(
        hooked.model,
        tok,
        ts,
        GraphRequest(prompt=SHORT_PROMPT, slug="g1"),
        scan="tiny",
        source_set="tc",
        progress=False,
    )
    meta = doc["metadata"]
    assert meta["slug"] == "g1" and meta["scan"] == "tiny" and meta["schema_version"] == 1
    assert meta["feature_details"] == {"neuronpedia_source_set": "tc"}
    assert meta["prompt_tokens"][0] == "<|endoftext|>" and "".join(meta["prompt_tokens"][1:]) == SHORT_PROMPT
    assert meta["generation_settings"]["max_n_logits"] == 10
    assert meta["pruning_settings"] == {"node_threshold": 0.8, "edge_threshold": 0.98}
    kinds = {n["feature_type"] for n in doc["nodes"]}
    assert kinds >= {"cross layer transcoder", "embedding", "logit"}
    feature = next(n for n in doc["nodes"] if n["feature_type"] == "cross layer transcoder")
    layer, index, pos = (int(x) for x in feature["node_id"].split("_"))
    assert feature["feature"] == (layer + index) * (layer + index + 1) // 2 + index  # the page decodes this
    assert feature["ctx_idx"] == pos and 0 < feature["influence"] <= 1 and feature["activation"] > 0
    logits = [n for n in doc["nodes"] if n["feature_type"] == "logit"]
    assert sum(n["is_target_logit"] for n in logits) == 1 and logits[0]["clerp"].startswith('Output "')
    ids_ = {n["node_id"] for n in doc["nodes"]}
    assert all(lk["source"] in ids_ and lk["target"] in ids_ for lk in doc["links"])
