"""The official ``neuronpedia-inference-client``, unmodified, against a live interpedia server: every operation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import neuronpedia_inference_client as nic
import pytest
from inference_helpers import D_MODEL, MODEL_ID, PLAIN_MODEL_ID, TinyInference, register
from inference_helpers import tiny_inf as tiny_inf  # noqa: F401  (session fixture)


@pytest.fixture
def registered(factory: Any, tiny_inf: TinyInference) -> TinyInference:  # noqa: F811
    register(factory, tiny_inf)
    return tiny_inf


@pytest.fixture
def api(registered: TinyInference, live_server: str) -> Iterator[Any]:
    yield nic.DefaultApi(nic.ApiClient(nic.Configuration(host=f"{live_server}/v1")))


def _steer(**overrides: Any) -> Any:
    body = dict(
        prompt="the cat sat on",
        model=MODEL_ID,
        steer_method=nic.NPSteerMethod.SIMPLE_ADDITIVE,
        normalize_steering=False,
        types=[nic.NPSteerType.STEERED, nic.NPSteerType.DEFAULT],
        features=[nic.NPSteerFeature(model=MODEL_ID, source="1-res-standard", index=5, strength=40.0)],
        n_completion_tokens=6,
        temperature=0.0,
        strength_multiplier=1.0,
        freq_penalty=0.0,
        seed=7.0,
    )
    body.update(overrides)
    return nic.SteerCompletionRequest(**body)


def test_tokenize(api: Any) -> None:
    r = api.tokenize_post(nic.TokenizePostRequest(model=MODEL_ID, text="the cat sat"))
    assert r.prepend_bos is True and r.token_strings[0] == "<|endoftext|>" and len(r.tokens) == len(r.token_strings)
    plain = api.tokenize_post(nic.TokenizePostRequest(model=MODEL_ID, text="the cat sat", prepend_bos=False))
    assert plain.tokens == r.tokens[1:] and plain.prepend_bos is False


def test_activation_single_and_batch(api: Any) -> None:
    r = api.activation_single_post(
        nic.ActivationSinglePostRequest(
            prompt="the dog ran to the park", model=MODEL_ID, source="1-res-standard", index="12"
        )
    )
    assert len(r.activation.values) == len(r.tokens) == len(r.tokens_is_special)
    assert r.tokens[0] != "<|endoftext|>"  # BOS is not reported for a latent
    assert r.activation.max_value == max(r.activation.values)
    assert r.activation.values[r.activation.max_value_index] == r.activation.max_value
    batch = api.activation_single_batch_post(
        nic.ActivationSingleBatchPostRequest(
            prompts=["the dog ran to the park", "a cat"], model=MODEL_ID, source="1-res-standard", index="12"
        )
    )
    assert [x.activation.values for x in batch.results][0] == r.activation.values
    assert len(batch.results) == 2
    vec = api.activation_single_post(
        nic.ActivationSinglePostRequest(
            prompt="a cat", model=MODEL_ID, vector=[0.1] * D_MODEL, hook="blocks.1.hook_resid_pre"
        )
    )
    assert len(vec.activation.values) == len(vec.tokens)


def test_activation_all_and_batch(api: Any) -> None:
    req = dict(
        model=MODEL_ID,
        source_set="res-standard",
        selected_sources=[],
        sort_by_token_indexes=[],
        ignore_bos=True,
        num_results=5,
    )
    r = api.activation_all_post(nic.ActivationAllPostRequest(prompt="the king spoke unto his people", **req))
    assert 0 < len(r.activations) <= 5
    assert {a.source for a in r.activations} <= {"0-res-standard", "1-res-standard"}
    maxes = [a.max_value for a in r.activations]
    assert maxes == sorted(maxes, reverse=True) and all(len(a.values) == len(r.tokens) for a in r.activations)
    assert all(a.values[0] == 0 for a in r.activations)  # BOS zeroed with ignore_bos
    by_sum = api.activation_all_post(
        nic.ActivationAllPostRequest(
            prompt="the king spoke unto his people", **{**req, "sort_by_token_indexes": [2, 3]}
        )
    )
    sums = [a.sum_values for a in by_sum.activations]
    assert sums == sorted(sums, reverse=True) and sums[0] > 0
    batch = api.activation_all_batch_post(nic.ActivationAllBatchPostRequest(prompts=["a cat", "the dog"], **req))
    assert len(batch.results) == 2 and batch.results[0].tokens[1:]


def test_topk_by_token_and_batch(api: Any) -> None:
    r = api.activation_topk_by_token_post(
        nic.ActivationTopkByTokenPostRequest(
            prompt="the cat sat on a mat", model=MODEL_ID, source="1-res-topk", top_k=3, ignore_bos=True
        )
    )
    assert r.results[0].token_position == 1 and len(r.results) == len(r.tokens) - 1
    for item in r.results:
        values = [f.activation_value for f in item.top_features]
        assert len(values) <= 3 and values == sorted(values, reverse=True)
    with_bos = api.activation_topk_by_token_post(
        nic.ActivationTopkByTokenPostRequest(
            prompt="the cat sat on a mat", model=MODEL_ID, source="1-res-topk", top_k=3, ignore_bos=False
        )
    )
    assert with_bos.results[0].token_position == 0 and with_bos.results[0].is_special
    batch = api.activation_topk_by_token_batch_post(
        nic.ActivationTopkByTokenBatchPostRequest(
            prompts=["the cat sat on a mat", "a dog"], model=MODEL_ID, source="1-res-topk", top_k=3, ignore_bos=True
        )
    )
    assert batch.results[0].results == r.results


def test_activation_source(api: Any) -> None:
    r = api.activation_source_post(
        nic.ActivationSourcePostRequest(prompts=["the cat sat", "a dog ran"], model=MODEL_ID, source="1-res-gated")
    )
    assert len(r.results) == 2
    for result in r.results:
        assert result.active_features
        for pairs in result.active_features.values():
            assert all(0 < int(tok) < len(result.tokens) and value > 0 for tok, value in pairs)


@pytest.mark.parametrize("method", ["SIMPLE_ADDITIVE", "ORTHOGONAL_DECOMP", "PROJECTION_CAP"])
def test_steer_completion_methods(api: Any, method: str) -> None:
    strength = {"SIMPLE_ADDITIVE": 40.0, "ORTHOGONAL_DECOMP": -30.0, "PROJECTION_CAP": -5.0}[method]
    feature = nic.NPSteerFeature(model=MODEL_ID, source="1-res-standard", index=5, strength=strength)
    r = api.steer_completion_post(_steer(steer_method=nic.NPSteerMethod(method), features=[feature], n_logprobs=2))
    out = {o.type: o for o in r.outputs}
    assert set(out) == {nic.NPSteerType.STEERED, nic.NPSteerType.DEFAULT}
    assert out[nic.NPSteerType.STEERED].output != out[nic.NPSteerType.DEFAULT].output
    assert all(len(lp.top_logprobs) == 2 for lp in out[nic.NPSteerType.DEFAULT].logprobs)
    again = api.steer_completion_post(_steer(steer_method=nic.NPSteerMethod(method), features=[feature], n_logprobs=2))
    assert again == r  # greedy and seeded: the same text twice


def test_steer_completion_with_vectors_and_sampling(api: Any) -> None:
    vec = nic.NPSteerVector(steering_vector=[3.0] * D_MODEL, strength=10.0, hook="blocks.1.hook_resid_pre")
    r = api.steer_completion_post(
        _steer(
            features=None,
            vectors=[vec],
            temperature=0.8,
            seed=3.0,
            types=[nic.NPSteerType.DEFAULT, nic.NPSteerType.STEERED],
        )
    )
    assert [o.type for o in r.outputs] == [nic.NPSteerType.DEFAULT, nic.NPSteerType.STEERED]
    assert r.outputs[0].logprobs is None
    same_seed = api.steer_completion_post(
        _steer(features=None, vectors=[vec], temperature=0.8, seed=3.0, types=[nic.NPSteerType.DEFAULT])
    )
    assert same_seed.outputs[0].output == r.outputs[0].output


def test_steer_chat(api: Any) -> None:
    req = nic.SteerCompletionChatPostRequest(
        prompt=[nic.NPSteerChatMessage(role="user", content="tell me about the river")],
        model=MODEL_ID,
        steer_method=nic.NPSteerMethod.SIMPLE_ADDITIVE,
        normalize_steering=False,
        types=[nic.NPSteerType.STEERED, nic.NPSteerType.DEFAULT],
        features=[nic.NPSteerFeature(model=MODEL_ID, source="1-res-standard", index=5, strength=40.0)],
        n_completion_tokens=6,
        temperature=0.0,
        strength_multiplier=1.0,
        freq_penalty=0.0,
        seed=1.0,
        steer_special_tokens=False,
    )
    r = api.steer_completion_chat_post(req)
    assert r.input.raw == "<|endoftext|>user: tell me about the river\nassistant:"
    assert [m.role for m in r.input.chat_template] == ["user"]
    for out in r.outputs:
        assert out.raw.startswith(r.input.raw)
        assert out.chat_template[-1].role == "assistant" and out.raw == r.input.raw + out.chat_template[-1].content
    with pytest.raises(nic.exceptions.UnprocessableEntityException, match="chat template"):
        api.steer_completion_chat_post(
            req.model_copy(
                update={
                    "model": PLAIN_MODEL_ID,
                    "features": [
                        nic.NPSteerFeature(model=PLAIN_MODEL_ID, source="1-res-standard", index=5, strength=1.0)
                    ],
                }
            )
        )


def test_sae_vector_and_decoder_cossim(api: Any, registered: TinyInference) -> None:
    r = api.util_sae_vector_post(nic.UtilSaeVectorPostRequest(model=MODEL_ID, source="1-res-standard", index=5))
    assert r.hook_name == "blocks.1.hook_resid_pre" and len(r.vector) == D_MODEL
    from sae_lens import SAE

    raw = SAE.load_from_disk(str(registered.saes["standard"]), device="cpu")
    assert r.vector == pytest.approx(raw.W_dec[5].tolist(), rel=1e-5, abs=1e-6)  # the trained row, not the folded one
    feature = nic.NPFeature(model=MODEL_ID, source="1-res-standard", index=5)
    near = api.util_sae_topk_by_decoder_cossim_post(
        nic.UtilSaeTopkByDecoderCossimPostRequest(
            feature=feature, model=MODEL_ID, source="1-res-standard", num_results=4
        )
    )
    sims = [x.cosine_similarity for x in near.topk_decoder_cossim_features]
    assert len(sims) == 4 and sims == sorted(sims, reverse=True)
    assert 5 not in [x.feature.index for x in near.topk_decoder_cossim_features] and near.feature == feature
    by_vector = api.util_sae_topk_by_decoder_cossim_post(
        nic.UtilSaeTopkByDecoderCossimPostRequest(
            vector=r.vector, model=MODEL_ID, source="1-res-standard", num_results=1
        )
    )
    assert by_vector.topk_decoder_cossim_features[0].feature.index == 5
    assert by_vector.topk_decoder_cossim_features[0].cosine_similarity == pytest.approx(1.0, abs=1e-5)


def test_secret_is_required_when_set(registered: TinyInference, settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    import uvicorn

    from interpedia.web.app import create_app

    app = create_app(settings.model_copy(update={"secret": "cat"}), role="inference")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        anonymous = nic.DefaultApi(nic.ApiClient(nic.Configuration(host=f"http://127.0.0.1:{port}/v1")))
        with pytest.raises(nic.exceptions.UnauthorizedException):
            anonymous.tokenize_post(nic.TokenizePostRequest(model=MODEL_ID, text="a cat"))
        keyed = nic.DefaultApi(
            nic.ApiClient(nic.Configuration(host=f"http://127.0.0.1:{port}/v1", api_key={"SimpleSecretAuth": "cat"}))
        )
        assert keyed.tokenize_post(nic.TokenizePostRequest(model=MODEL_ID, text="a cat")).tokens
    finally:
        server.should_exit = True
        thread.join(timeout=10)
