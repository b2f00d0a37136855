"""A researcher's Hugging Face model directory, for each of seven architectures, through everything that loads a
model: ``interpedia generate --into-db`` (real CLI, real database), a live activation equal to the stored one,
top features by token, and steering, whose unsteered completion is the Hugging Face model's own greedy output;
chat steering through the model's chat template. And the errors a user gets for a bad path."""

from __future__ import annotations

from typing import Any

import pytest
from parts import require_module

torch = require_module("torch")

from click.testing import CliRunner  # noqa: E402
from hf_model_helpers import CTX, FAMILIES, N_DOCS, TinyHf, tiny_hf  # noqa: E402
from sqlalchemy import select  # noqa: E402

from interpedia.cli import main  # noqa: E402
from interpedia.db.tables import Feature, GenerateRunRow, Source  # noqa: E402
from interpedia.generate.model import layer_of  # noqa: E402
from interpedia.store.activations import list_activations  # noqa: E402

SET = "hf"


def _generate(tiny: TinyHf, model_id: str) -> str:
    args = [
        "generate",
        "--model",
        str(tiny.model),
        "--sae",
        str(tiny.sae),
        "--dataset",
        str(tiny.dataset),
        "--into-db",
        "--context-size",
        str(CTX),
        "--n-prompts",
        str(N_DOCS),
        "--no-concat",
        "--top-k",
        "4",
        "--shard-prompts",
        "16",
        "--no-progress",
        "--model-id",
        model_id,
        "--source-set",
        SET,
    ]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return f"{layer_of(tiny.family.hook)}-{SET}"


def _post(client: Any, path: str, body: dict[str, Any]) -> Any:
    r = client.post(path, json=body)
    assert r.status_code == 200, r.text
    return r.json()


def _hf_greedy(tiny: TinyHf, ids: list[int], n: int, stop: set[int]) -> str:
    """The Hugging Face model's own greedy continuation of ``ids`` (the oracle for an unsteered completion)."""
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(str(tiny.model), dtype=torch.float32).eval()
    out = hf.generate(
        torch.tensor([ids]),
        max_new_tokens=n,
        do_sample=False,
        eos_token_id=sorted(stop),
        pad_token_id=tiny.tokenizer.pad_token_id or tiny.tokenizer.eos_token_id,
    )[0, len(ids) :].tolist()
    cut = next((i for i, t in enumerate(out) if t in stop), len(out))
    return str(tiny.tokenizer.decode(out[:cut], skip_special_tokens=False, clean_up_tokenization_spaces=False))


@pytest.mark.parametrize("name", list(FAMILIES))
def test_a_hugging_face_model_through_generate_and_live_inference(
    name: str, settings: Any, factory: Any, client: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tiny = tiny_hf(tmp_path_factory, name)
    family = tiny.family
    model_id = f"tiny-{name}"
    source_id = _generate(tiny, model_id)

    with factory() as session:
        run = session.scalar(select(GenerateRunRow.run).where(GenerateRunRow.model_id == model_id))
        source = session.scalar(select(Source).where(Source.model_id == model_id, Source.name == source_id))
        features = list(
            session.scalars(
                select(Feature)
                .where(Feature.source_id == source.id, Feature.max_act_approx > 0)
                .order_by(Feature.index)
            )
        )
        examples = {f.index: list_activations(session, model_id, source_id, f)[:3] for f in features[:6]}
    assert run["model"]["architecture"] == family.architecture and run["model"]["backend"] == "TransformerBridge"
    assert run["tokens"]["prepend_bos"] is (family.bos is not None)  # Qwen has no BOS, so none is prepended
    assert run["tokens"]["prepend_bos_from"].startswith("the tokenizer")
    assert len(features) >= 4

    # live activation == stored: every stored window is a whole document
    by_tokens = {}
    for doc in tiny.docs:
        body = {"model": model_id, "prompt": doc, "source": source_id, "index": "0"}
        r = _post(client, "/v1/activation/single", body)
        by_tokens[tuple(r["tokens"])] = doc
    compared = 0
    for index, stored in examples.items():
        for example in stored:
            doc = by_tokens[tuple(example["tokens"])]
            live = _post(
                client, "/v1/activation/single", {"model": model_id, "prompt": doc, "source": source_id, "index": index}
            )
            assert live["activation"]["values"] == pytest.approx(example["values"], rel=1e-4, abs=1e-4)
            compared += 1
    assert compared >= 8

    # top features by token: the top feature's value is that feature's live activation at the token
    doc = tiny.docs[0]
    topk = _post(
        client,
        "/v1/activation/topk-by-token",
        {"model": model_id, "prompt": doc, "source": source_id, "top_k": 3, "ignore_bos": True},
    )
    assert len(topk["results"]) == len(topk["tokens"]) - (1 if family.bos is not None else 0)
    hit = next(r for r in topk["results"] if r["top_features"])
    best = hit["top_features"][0]
    single = _post(
        client,
        "/v1/activation/single",
        {"model": model_id, "prompt": doc, "source": source_id, "index": best["feature_index"]},
    )
    offset = 1 if family.bos is not None else 0  # single drops the BOS position, as stored examples do
    assert single["activation"]["values"][hit["token_position"] - offset] == pytest.approx(best["activation_value"])

    # steering: the unsteered completion is the Hugging Face model's own greedy one; steering changes it
    steer = {
        "model": model_id,
        "prompt": doc,
        "steer_method": "SIMPLE_ADDITIVE",
        "types": ["STEERED", "DEFAULT"],
        "n_completion_tokens": 5,
        "temperature": 0,
        "n_logprobs": 1,
        "features": [{"model": model_id, "source": source_id, "index": best["feature_index"], "strength": 200}],
    }
    completions = _post(client, "/v1/steer/completion", steer)["outputs"]
    outputs = {o["type"]: o["output"] for o in completions}
    logprobs = {o["type"]: o["logprobs"][0]["logprob"] for o in completions}
    tok = tiny.tokenizer
    prompt_ids = ([tok.convert_tokens_to_ids(family.bos)] if family.bos else []) + tok(doc, add_special_tokens=False)[
        "input_ids"
    ]
    ends = {tok.eos_token_id, *(tok.convert_tokens_to_ids(t) for t in family.end_of_turn)}
    assert outputs["DEFAULT"] == _hf_greedy(tiny, prompt_ids, 5, ends)
    # a random tiny model's argmax may not move, but its distribution does
    assert logprobs["STEERED"] != pytest.approx(logprobs["DEFAULT"], abs=1e-4)

    # chat steering renders the model's own chat template
    messages = [{"role": "user", "content": "the cat sat"}]
    chat = client.post("/v1/steer/completion-chat", json={**steer, "prompt": messages, "n_completion_tokens": 3})
    if family.chat_template is None:
        assert chat.status_code == 422 and "no chat template" in chat.json()["message"]
    else:
        assert chat.status_code == 200, chat.text
        raw = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert chat.json()["input"]["raw"] == raw
        assert all(o["raw"].startswith(raw) for o in chat.json()["outputs"])


def test_generate_names_a_missing_model_or_sae(tmp_path: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    tiny = tiny_hf(tmp_path_factory, "qwen2")
    base = ["generate", "--dataset", str(tiny.dataset), "--out", str(tmp_path / "out"), "--no-progress"]
    missing = tmp_path / "no-such-sae"
    result = CliRunner().invoke(main, [*base, "--model", str(tiny.model), "--sae", str(missing)])
    assert result.exit_code == 1 and f"no SAE directory at {missing}" in result.output
    assert "Traceback" not in result.output and "Release" not in result.output
    result = CliRunner().invoke(main, [*base, "--model", str(tmp_path / "nope"), "--sae", str(tiny.sae)])
    assert result.exit_code == 1 and f"no model directory at {tmp_path / 'nope'}" in result.output
