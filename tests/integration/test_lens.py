"""The lens family: the logit lens (its last layer is the model's own prediction), ``interpedia lens fit`` (the mean
same-position Jacobian, checked against torch's own Jacobian), the Jacobian lens read out with it, and the ways to
reach them: ``/v1/lens/prompt`` (NDJSON or buffered), ``/api/lens/prompt`` and the ``/{model}/lens`` page with its
JSON twin, on SQLite and Postgres."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from inference_helpers import D_MODEL, MODEL_ID, TinyInference, register
from inference_helpers import tiny_inf as tiny_inf  # noqa: F401  (session fixture)

from interpedia.cli import main

PROMPT = "the king spoke unto his people"
LENS_MODEL = "tiny-lens"  # a copy of the tiny model's directory, so a fitted lens lands beside its own weights


@pytest.fixture
def registered(factory: Any, tiny_inf: TinyInference) -> TinyInference:  # noqa: F811
    register(factory, tiny_inf)
    return tiny_inf


def _hooked(path: Path) -> Any:
    from interpedia.generate.model import HookedModel

    return HookedModel.load(str(path))


def _ids(model: Any, text: str) -> list[int]:
    return [model.bos_token_id, *model.tokenizer(text, add_special_tokens=False)["input_ids"]]


def _frames(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines() if line]


def test_logit_lens_last_layer_is_the_models_own_prediction(registered: TinyInference, client: Any) -> None:
    body = {"model": MODEL_ID, "type": ["LOGIT_LENS"], "prompt": PROMPT, "top_n": 5, "filter_non_word_tokens": False}
    frames = _frames(client.post("/v1/lens/prompt", json=body))
    kinds = [f["kind"] for f in frames]
    model = _hooked(registered.model)
    ids = _ids(model, PROMPT)
    assert kinds == ["meta", "prompt", *["token"] * len(ids), "done"]
    meta, tokens, done = frames[0], frames[2:-1], frames[-1]
    assert meta["layers_by_type"] == {"LOGIT_LENS": [0, 1]} and meta["prompt_len"] == len(ids)
    assert [t["id"] for t in tokens] == ids and done["seq_len"] == len(ids)
    with torch.no_grad():
        probs = torch.softmax(model.model(torch.tensor([ids]))[0].float(), dim=-1)  # the model's own forward
    top = torch.topk(probs, k=5, dim=-1)
    for pos, frame in enumerate(tokens):
        (res,) = frame["results"]
        assert res["type"] == "LOGIT_LENS" and len(res["top_tokens"]) == 2
        want = [model.tokenizer.decode([i]) for i in top.indices[pos].tolist()]
        assert res["top_tokens"][-1] == want
        assert res["top_probs"][-1] == pytest.approx(top.values[pos].tolist(), abs=1e-5)
    # an earlier layer reads out something else (the lens is not the output copied)
    assert any(f["results"][0]["top_tokens"][0] != f["results"][0]["top_tokens"][-1] for f in tokens)
    # buffered: the same frames in one document
    buffered = client.post("/v1/lens/prompt", json={**body, "stream": False}).json()
    assert buffered["meta"] == meta and buffered["tokens"] == tokens and buffered["done"] == done


def test_lens_words_only_and_bad_input(registered: TinyInference, client: Any) -> None:
    base = {"model": MODEL_ID, "type": ["LOGIT_LENS"], "prompt": PROMPT, "top_n": 8, "stream": False}
    doc = client.post("/v1/lens/prompt", json=base).json()
    from interpedia.inference.lens import is_word_like

    for frame in doc["tokens"]:
        for layer_tokens in frame["results"][0]["top_tokens"]:
            assert all(is_word_like(t) for t in layer_tokens[1:])  # only a layer's own top-1 may be a non-word
    r = client.post("/v1/lens/prompt", json={**base, "layers": [7]})
    assert r.status_code == 422 and "layer 7" in r.json()["message"]
    r = client.post("/v1/lens/prompt", json={**base, "type": ["JACOBIAN_LENS"]})
    assert r.status_code == 422 and "interpedia lens fit" in r.json()["message"]
    r = client.post("/v1/lens/prompt", json={**base, "steer_tokens": [{"token": " the", "type": "LOGIT_LENS"}]})
    assert r.status_code == 422
    r = client.post("/v1/lens/prompt", json={**base, "chat": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 422  # prompt and chat together
    only_layer = client.post("/v1/lens/prompt", json={**base, "layers": [0]}).json()
    assert only_layer["meta"]["layers_by_type"]["LOGIT_LENS"] == [0, 1]  # the output layer is always read out
    gen = client.post("/v1/lens/prompt", json={**base, "num_completion_tokens": 3, "temperature": 0}).json()
    assert gen["done"]["seq_len"] == gen["done"]["prompt_len"] + 3 and gen["tokens"][-1]["is_generated"]


def test_lens_fit_then_the_jacobian_lens(
    registered: TinyInference, factory: Any, client: Any, tmp_path: Path, settings: Any
) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(registered.model, model_dir)
    from interpedia.db import transaction
    from interpedia.store.catalogue import ensure_model

    with transaction(factory) as session:
        ensure_model(session, LENS_MODEL, layers=2, dimension=D_MODEL, tlens_id=str(model_dir), inference_enabled=True)
    corpus = tmp_path / "one.jsonl"
    corpus.write_text(json.dumps({"text": registered.docs[0]}) + "\n")
    ctx = 12
    args = ["lens", "fit", "--model", LENS_MODEL, "--dataset", str(corpus), "--n-prompts", "1"]
    result = CliRunner().invoke(
        main, [*args, "--context-size", str(ctx), "--positions", str(ctx), "--no-progress"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    path = model_dir / "jacobian_lens.safetensors"
    assert path.is_file() and str(path) in result.output
    from interpedia.generate.lens import load_lens

    lens = load_lens(path)
    assert lens.jacobians.shape == (2, D_MODEL, D_MODEL) and lens.meta["positions"] == ctx - 1
    assert torch.equal(lens.jacobians[1], torch.eye(D_MODEL))
    # oracle: torch's Jacobian of the final residual at each position w.r.t. layer 0's residual there, averaged
    model = _hooked(model_dir)
    ids = _ids(model, registered.docs[0])[:ctx]
    tokens = torch.tensor([ids])
    with torch.no_grad():
        _, cache = model.model.run_with_cache(tokens)
    total = torch.zeros(D_MODEL, D_MODEL)
    for t in range(1, ctx):

        def final_at(x: torch.Tensor, t: int = t) -> torch.Tensor:
            def put(act: torch.Tensor, hook: Any) -> torch.Tensor:
                act = act.clone()
                act[0, t] = x
                return act

            out: list[torch.Tensor] = []
            model.model.run_with_hooks(
                tokens,
                fwd_hooks=[
                    ("blocks.0.hook_resid_post", put),
                    ("blocks.1.hook_resid_post", lambda a, hook: out.append(a)),
                ],
                return_type=None,
            )
            return out[0][0, t]

        total += torch.autograd.functional.jacobian(final_at, cache["blocks.0.hook_resid_post"][0, t].clone())
    assert lens.jacobians[0] == pytest.approx(total / (ctx - 1), abs=1e-4)
    # the Jacobian lens reads J h out through the final norm and unembedding; its output layer is the logit lens's
    body = {"model": LENS_MODEL, "type": ["LOGIT_LENS", "JACOBIAN_LENS"], "prompt": PROMPT, "top_n": 3}
    doc = client.post("/v1/lens/prompt", json={**body, "stream": False, "filter_non_word_tokens": False}).json()
    ids = _ids(model, PROMPT)
    with torch.no_grad():
        _, cache = model.model.run_with_cache(torch.tensor([ids]))
        mapped = cache["blocks.0.hook_resid_post"][0] @ lens.jacobians[0].T
        want = torch.softmax(model.model.unembed(model.model.ln_final(mapped[None]))[0], dim=-1).argmax(-1)
    for pos, frame in enumerate(doc["tokens"]):
        logit, jac = frame["results"]
        assert logit["type"] == "LOGIT_LENS" and jac["type"] == "JACOBIAN_LENS"
        assert jac["top_tokens"][-1] == logit["top_tokens"][-1]
        assert jac["top_tokens"][0][0] == model.tokenizer.decode([int(want[pos])])
    # the page shows both, its twin is the run
    page = client.get(f"/{LENS_MODEL}/lens", params={"prompt": PROMPT, "type": ["LOGIT_LENS", "JACOBIAN_LENS"]})
    assert page.status_code == 200 and 'id="lens-jacobian_lens"' in page.text and "fitted on 11 positions" in page.text
    twin = client.get(f"/{LENS_MODEL}/lens.json", params={"prompt": PROMPT, "type": "JACOBIAN_LENS"}).json()
    assert twin["result"]["meta"]["types"] == ["JACOBIAN_LENS"] and twin["model"]["jacobian"]["available"]
    # a lens of other weights is never applied
    other = tmp_path / "other.safetensors"
    shutil.copy(path, other)
    from safetensors.torch import load_file, save_file

    save_file(
        load_file(str(other)), str(path), metadata={"interpedia": json.dumps({**lens.meta, "weights_fingerprint": "x"})}
    )
    r = client.post("/v1/lens/prompt", json={**body, "stream": False})
    assert r.status_code == 422 and "other weights" in r.json()["message"]


def test_lens_page_and_api(registered: TinyInference, client: Any, factory: Any) -> None:
    page = client.get(f"/{MODEL_ID}/lens")
    assert page.status_code == 200 and 'id="lens-form"' in page.text and "interpedia lens fit" in page.text
    page = client.get(f"/{MODEL_ID}/lens", params={"prompt": PROMPT, "topN": "3"})
    assert page.status_code == 200 and 'id="lens-logit_lens"' in page.text
    assert page.text.count('class="lens-cell') == 2 * len(_ids(_hooked(registered.model), PROMPT))
    twin = client.get(f"/{MODEL_ID}/lens.json", params={"prompt": PROMPT, "topN": "3"}).json()
    api = client.post(
        "/api/lens/prompt",
        json={"modelId": MODEL_ID, "type": ["LOGIT_LENS"], "prompt": PROMPT, "topN": 3, "stream": False},
    ).json()
    assert twin["result"] == api
    bad = client.get(f"/{MODEL_ID}/lens", params={"prompt": PROMPT, "type": "JACOBIAN_LENS"})
    assert bad.status_code == 422 and "interpedia lens fit" in bad.text
    assert client.get(f"/{MODEL_ID}/lens.json", params={"prompt": PROMPT, "topN": "99"}).status_code == 422
    assert (
        client.post("/api/lens/prompt", json={"modelId": "nope", "type": ["LOGIT_LENS"], "prompt": "x"}).status_code
        == 404
    )
    streamed = client.post("/api/lens/prompt", json={"modelId": MODEL_ID, "type": ["LOGIT_LENS"], "prompt": PROMPT})
    assert [f["kind"] for f in _frames(streamed)][:2] == ["meta", "prompt"]
