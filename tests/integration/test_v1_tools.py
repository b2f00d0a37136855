"""The inference server's model-only operations under ``/v1``: ``capabilities``, ``activation/raw`` (a hook's raw
activations, for probes), ``activation/attention`` and ``apply-chat-template``, on SQLite and Postgres. The official
``neuronpedia-inference-client`` (1.10) has none of these operations, so the oracles are TransformerLens run on the
saved weights and the tokenizer's own ``apply_chat_template``."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from inference_helpers import MODEL_ID, PLAIN_MODEL_ID, TinyInference, register
from inference_helpers import tiny_inf as tiny_inf  # noqa: F401  (session fixture)

PROMPT = "the cat sat on the mat"


@pytest.fixture
def registered(factory: Any, tiny_inf: TinyInference) -> TinyInference:  # noqa: F811
    register(factory, tiny_inf)
    return tiny_inf


@pytest.fixture(scope="module")
def oracle(tiny_inf: TinyInference) -> tuple[Any, Any]:  # noqa: F811
    """The tiny model loaded by TransformerLens from its saved weights, and its tokenizer."""
    import warnings

    from safetensors.torch import load_file
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformers import AutoTokenizer

    cfg = json.loads((tiny_inf.model / "tl_config.json").read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = HookedTransformer(HookedTransformerConfig(device="cpu", **cfg))
    model.load_state_dict(load_file(str(tiny_inf.model / "model.safetensors")))
    model.eval()
    return model, AutoTokenizer.from_pretrained(str(tiny_inf.model))


def test_capabilities(registered: TinyInference, client: Any) -> None:
    server = client.get("/v1/capabilities").json()
    assert MODEL_ID in server["models"] and PLAIN_MODEL_ID in server["models"]
    assert server["model"] is None and server["endpoints"]["activation_raw"] and server["endpoints"]["steer_completion"]
    assert not server["endpoints"]["neurons"] and server["max_tokens"] == 256
    doc = client.get("/v1/capabilities", params={"model": MODEL_ID}).json()
    assert doc["model"] == MODEL_ID and doc["num_layers"] == 2 and doc["d_model"] == 32
    assert "blocks.1.hook_resid_pre" in doc["capture_points"] and doc["chat_template"] is True
    assert "res-standard" in doc["sae_sets"]
    assert doc["endpoints"]["apply_chat_template"] and not doc["endpoints"]["lens_jacobian"]  # no lens fitted
    plain = client.get("/v1/capabilities", params={"model": PLAIN_MODEL_ID}).json()
    assert plain["chat_template"] is False and not plain["endpoints"]["steer_completion_chat"]
    assert client.get("/v1/capabilities", params={"model": "nope"}).status_code == 404


def _ids(tok: Any, text: str, got: list[int]) -> None:
    """The server's token ids are the tokenizer's, after a BOS where the model prepends one."""
    plain = tok(text, add_special_tokens=False)["input_ids"]
    assert got[-len(plain) :] == plain and len(got) - len(plain) in (0, 1)


def test_activation_raw_equals_transformer_lens(registered: TinyInference, client: Any, oracle: Any) -> None:
    model, tok = oracle
    body = {"model": MODEL_ID, "prompts": [PROMPT, "a dog"], "layers": [1, 0]}
    doc = client.post("/v1/activation/raw", json=body).json()
    assert doc["hook_point"] == "residual_stream" and doc["type"] == "final_output_token" and doc["device"] == "cpu"
    assert len(doc["results"]) == 2
    for text, result in zip(body["prompts"], doc["results"], strict=True):
        ids = result["token_ids"]
        _ids(tok, text, ids)
        assert len(result["token_strings"]) == len(ids)
        _, cache = model.run_with_cache(torch.tensor([ids]))
        assert [a["layer"] for a in result["activations"]] == [0, 1]
        for act in result["activations"]:
            assert act["token_indices"] == [len(ids) - 1]
            want = cache[f"blocks.{act['layer']}.hook_resid_post"][0, -1]
            assert torch.allclose(torch.tensor(act["values"][0]), want, atol=1e-4)
    # every token at another hook point (z flattened to n_heads * d_head), every layer when none are named
    every = client.post(
        "/v1/activation/raw", json={"model": MODEL_ID, "prompts": [PROMPT], "hook_point": "z", "type": "all_tokens"}
    ).json()
    (result,) = every["results"]
    ids = result["token_ids"]
    _, cache = model.run_with_cache(torch.tensor([ids]))
    assert [a["layer"] for a in result["activations"]] == [0, 1]
    for act in result["activations"]:
        assert act["token_indices"] == list(range(len(ids)))
        want = cache[f"blocks.{act['layer']}.attn.hook_z"][0].reshape(len(ids), -1)
        assert torch.allclose(torch.tensor(act["values"]), want, atol=1e-4)
    # two models are served here, so the model must be named
    r = client.post("/v1/activation/raw", json={"prompts": [PROMPT]})
    assert r.status_code == 422 and "name the model" in r.json()["message"]
    r = client.post("/v1/activation/raw", json={"model": MODEL_ID, "prompts": [PROMPT], "layers": [2]})
    assert r.status_code == 422 and "out of range" in r.json()["message"]
    r = client.post("/v1/activation/raw", json={"model": MODEL_ID, "prompts": [PROMPT], "hook_point": "q"})
    assert r.status_code == 422


def test_activation_attention_equals_transformer_lens(registered: TinyInference, client: Any, oracle: Any) -> None:
    model, _ = oracle
    doc = client.post("/v1/activation/attention", json={"model": MODEL_ID, "prompt": PROMPT, "layer": 1, "head": 2})
    assert doc.status_code == 200, doc.text
    doc = doc.json()
    ids = client.post("/v1/tokenize", json={"model": MODEL_ID, "text": PROMPT}).json()["tokens"]
    n = len(ids)
    assert doc["seq_len"] == n and len(doc["tokens"]) == n
    _, cache = model.run_with_cache(torch.tensor([ids]))
    pattern = cache["blocks.1.attn.hook_pattern"][0, 2]
    got = dict(zip(doc["attention_indices"], doc["attention_values"], strict=True))
    for q in range(n):
        row = pattern[q]
        top = torch.topk(row, k=min(8, n))
        want = {q * n + int(k): float(v) for v, k in zip(top.values, top.indices, strict=True) if v >= 0.005}
        have = {i: v for i, v in got.items() if i // n == q}
        assert have.keys() == want.keys()
        assert all(abs(have[i] - want[i]) < 1e-4 for i in have)
    assert abs(doc["max_activation"] - float(pattern[1:, 1:].max())) < 1e-4
    r = client.post("/v1/activation/attention", json={"model": MODEL_ID, "prompt": PROMPT, "layer": 0, "head": 4})
    assert r.status_code == 422 and "head 4" in r.json()["message"]


def test_apply_chat_template(registered: TinyInference, client: Any, oracle: Any) -> None:
    _, tok = oracle
    messages = [{"role": "user", "content": "hello there"}, {"role": "assistant", "content": "the cat sat"}]
    doc = client.post("/v1/apply-chat-template", json={"model": MODEL_ID, "messages": messages}).json()
    assert doc["prompt"] == tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert doc["tokens"] == tok(doc["prompt"], add_special_tokens=False)["input_ids"]
    spans = doc["spans"]
    assert [s["position"] for s in spans] == list(range(len(doc["tokens"])))
    assert "".join(s["token_str"] for s in spans) == doc["prompt"]
    for index, message in enumerate(messages):
        mine = [s for s in spans if s["message_index"] == index]
        assert all(s["role"] == message["role"] for s in mine)
        content = "".join(s["token_str"] for s in mine if s["section"] == "content")
        assert content.strip() == message["content"]  # a word token may carry the space before it
        assert any(s["section"] == "template" for s in mine)  # "user:" / "assistant:" and the newline
    tail = [s for s in spans if s["section"] == "generation_prompt"]
    assert tail and "".join(s["token_str"] for s in tail) == "assistant:" and tail[-1] == spans[-1]
    # without the generation prompt, and with camelCase input
    bare = client.post(
        "/v1/apply-chat-template", json={"model": MODEL_ID, "messages": messages, "addGenerationPrompt": False}
    ).json()
    assert bare["prompt"] == tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    assert all(s["section"] != "generation_prompt" for s in bare["spans"])
    r = client.post("/v1/apply-chat-template", json={"model": PLAIN_MODEL_ID, "messages": messages})
    assert r.status_code == 422 and "no chat template" in r.json()["message"]
