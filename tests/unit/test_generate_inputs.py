"""Loading for generation: the model directory, SAEs of every architecture, and every kind of dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from parts import require_module

torch = require_module("torch")

from generate_helpers import ARCHITECTURES, CTX, HOOK, Tiny, tiny_inputs  # noqa: E402

from interpedia.errors import Invalid  # noqa: E402
from interpedia.generate.model import HookedModel, layer_of  # noqa: E402
from interpedia.generate.sae import LoadedSae  # noqa: E402
from interpedia.generate.tokens import TokenSource  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    return tiny_inputs(tmp_path_factory)


@pytest.fixture(scope="module")
def model(tiny: Tiny) -> HookedModel:
    return HookedModel.load(str(tiny.model))


def _dense(sparse, n_feat: int) -> torch.Tensor:
    out = torch.zeros(sparse.n_tokens, n_feat)
    out[sparse.tok, sparse.feat] = sparse.val
    return out


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("fold", [True, False])
def test_fast_encoder_equals_saelens_encode(tiny: Tiny, model: HookedModel, arch: str, fold: bool) -> None:
    sae = LoadedSae.load(str(tiny.sae(arch)), fold=fold)
    assert sae.architecture == arch and sae.hook_name == HOOK
    toks = torch.randint(0, model.cfg.d_vocab, (4, CTX), generator=torch.Generator().manual_seed(0))
    x = model.activations(toks, HOOK)
    sparse = sae.encoder()(x, None)
    reference = sae.dense(x)
    assert reference.gt(0).any() and not reference.gt(0).all()
    torch.testing.assert_close(_dense(sparse, sae.d_sae), reference, rtol=1e-5, atol=1e-5)
    # feature-major, tokens ascending within a feature
    key = sparse.feat * sparse.n_tokens + sparse.tok
    assert bool((key[1:] > key[:-1]).all())


def test_topk_without_rescale_is_post_scaled_not_refused(tiny: Tiny) -> None:
    """SAELens refuses to fold a TopK SAE; SAEDashboard then crashes. We scale the selected values."""
    plain = LoadedSae.load(str(tiny.sae("topk")), fold=False)
    folded = LoadedSae.load(str(tiny.sae("topk")), fold=True)
    assert folded.folded and folded.post_scale is not None
    x = torch.randn(8, plain.d_in)
    torch.testing.assert_close(folded.dense(x), plain.dense(x) * plain.sae.W_dec.norm(dim=-1))


def test_forward_stops_at_the_hook(model: HookedModel) -> None:
    toks = torch.randint(0, model.cfg.d_vocab, (2, CTX))
    x = model.activations(toks, HOOK)
    _, cache = model.model.run_with_cache(toks, names_filter=[HOOK])
    torch.testing.assert_close(x, cache[HOOK].reshape(2 * CTX, -1))
    assert layer_of(HOOK) == 1 and layer_of("hook_embed") is None
    with pytest.raises(Invalid, match="not a hook"):
        model.activations(toks, "blocks.0.no_such_hook")


def test_vocab_strings_are_saedashboard_style(model: HookedModel) -> None:
    vocab = model.vocab_strings()
    assert len(vocab) == model.cfg.d_vocab
    assert not any("Ġ" in v for v in vocab) and any(v.startswith(" ") for v in vocab)
    assert model.special_token_ids() == [model.tokenizer.bos_token_id]


def _source(tiny: Tiny, spec: Path | str, model: HookedModel, **kw: object) -> np.ndarray:
    opts = {"context_size": CTX, "n_prompts": 10, "prepend_bos": True} | kw
    return TokenSource(str(spec), model.tokenizer, **opts).rows().tokens  # type: ignore[arg-type]


def test_jsonl_txt_and_hf_text_give_the_same_rows(tiny: Tiny, model: HookedModel, tmp_path: Path) -> None:
    from datasets import Dataset

    texts = [json.loads(line)["text"] for line in tiny.jsonl.read_text().splitlines()]
    Dataset.from_dict({"text": texts}).save_to_disk(str(tmp_path / "hf"))
    rows = _source(tiny, tiny.jsonl, model)
    assert rows.shape == (10, CTX) and rows.dtype == np.int32
    bos = model.tokenizer.bos_token_id
    assert (rows[:, 0] == bos).all()
    np.testing.assert_array_equal(rows, _source(tiny, tmp_path / "hf", model))
    txt = _source(tiny, tiny.txt_dir, model)
    assert txt.shape == (10, CTX) and (txt[:, 0] == bos).all()
    # concatenated documents are separated by EOS; the text between matches the tokenizer's own output
    first = model.tokenizer(texts[0], add_special_tokens=False)["input_ids"]
    assert rows[0, 1 : 1 + min(len(first), CTX - 1)].tolist() == first[: CTX - 1]


def test_no_concat_skips_short_documents_and_no_bos(tiny: Tiny, model: HookedModel) -> None:
    rows = TokenSource(
        str(tiny.jsonl), model.tokenizer, context_size=CTX, n_prompts=1000, prepend_bos=False, concat=False
    ).rows()
    assert rows.skipped_short > 0 and rows.n_prompts > 0
    assert not (rows.tokens[:, 0] == model.tokenizer.bos_token_id).all()


def test_input_ids_rows_are_used_as_they_are(model: HookedModel, tmp_path: Path, tiny: Tiny) -> None:
    from datasets import Dataset

    ids = [[5 + i] * (CTX + 3) for i in range(4)] + [[9] * 3]  # the last row is too short
    Dataset.from_dict({"input_ids": ids}).save_to_disk(str(tmp_path / "ids"))
    plain = TokenSource(
        str(tmp_path / "ids"), model.tokenizer, context_size=CTX, n_prompts=10, prepend_bos=False
    ).rows()
    assert plain.n_prompts == 4 and plain.skipped_short == 1 and (plain.tokens[:, 0] == [5, 6, 7, 8]).all()
    with_bos = TokenSource(
        str(tmp_path / "ids"), model.tokenizer, context_size=CTX, n_prompts=10, prepend_bos=True
    ).rows()
    assert (with_bos.tokens[:, 0] == model.tokenizer.bos_token_id).all()
    assert (with_bos.tokens[:, 1] == [5, 6, 7, 8]).all()


def test_unusable_dataset_is_refused(model: HookedModel, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"body": "no text field"}\n')
    with pytest.raises(ValueError, match="text"):
        TokenSource(str(bad), model.tokenizer, context_size=CTX, n_prompts=2, prepend_bos=True).rows()


def test_hugging_face_model_directory_loads(tiny: Tiny, tmp_path: Path) -> None:
    """A plain HF directory (config.json + weights) is converted by TransformerLens, weights unprocessed."""
    from generate_helpers import corpus, make_tokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = make_tokenizer(tmp_path, corpus(20))
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=32, n_ctx=32, n_embd=32, n_layer=2, n_head=4))
    hf.eval().save_pretrained(str(tmp_path))
    model = HookedModel.load(str(tmp_path))
    assert model.source == "hf-dir" and model.cfg.n_layers == 2
    toks = torch.randint(0, len(tok), (2, 12))
    with torch.no_grad():
        expected = hf(toks, output_hidden_states=True).hidden_states[1]
    torch.testing.assert_close(
        model.activations(toks, "blocks.1.hook_resid_pre"), expected.reshape(24, -1), rtol=1e-4, atol=1e-4
    )
