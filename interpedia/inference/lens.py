"""A lens run as Neuronpedia's inference server streams it (``/v1/lens/prompt``): NDJSON frames ``meta``, ``prompt``,
one ``token`` per position, then ``done``.

Each ``token`` frame holds, per lens type, the top ``top_n`` next-token predictions of every selected layer at that
position: ``top_tokens`` and ``top_probs``, ``[n_layers][top_n]``, layers in ``meta.layers_by_type`` order (the
last is always the model's final layer, whose logit-lens readout is the model's own prediction). Probabilities are
over the whole vocabulary; with ``filter_non_word_tokens`` only the choice of tokens skips punctuation, whitespace
and special tokens, and each layer's own top-1 token is kept whatever it is. Frame keys are snake_case, as upstream
pins them (they are stored verbatim in shares). The lens maths is :mod:`interpedia.generate.lens`.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from interpedia.errors import Invalid, Unsupported
from interpedia.generate.lens import JacobianLens, lens_paths, load_lens, readout, residuals, weights_fingerprint
from interpedia.inference.activations import token_limit, tokenize
from interpedia.inference.registry import LoadedModel
from interpedia.inference.steering import SteerSettings, generate, render_chat

if TYPE_CHECKING:
    from interpedia.inference.service import InferenceService

LENS_TYPES = ("LOGIT_LENS", "JACOBIAN_LENS")

__all__ = ["LENS_TYPES", "buffered", "is_word_like", "jacobian_lens", "lens_frames", "run_lens"]


def is_word_like(token: str) -> bool:
    """Letters and digits (inner ``'``, ``-``, ``’`` allowed) after trimming; never a special token."""
    text = token.strip()
    if not text or "<|" in text or (text.startswith("<") and text.endswith(">")):
        return False
    last = len(text) - 1
    return all(
        unicodedata.category(ch)[0] in ("L", "N") or (0 < i < last and ch in "'-\u2019") for i, ch in enumerate(text)
    )


def _word_mask(model: LoadedModel) -> torch.Tensor:
    """[d_vocab] bool, cached on the model: which token ids are word-like."""
    mask = getattr(model, "_lens_word_mask", None)
    if mask is None:
        mask = torch.tensor([is_word_like(model.decode([i])) for i in range(model.d_vocab)], dtype=torch.bool)
        model._lens_word_mask = mask  # type: ignore[attr-defined]
    return mask


def _select_layers(n_layers: int, layers: list[int]) -> list[int]:
    bad = sorted({x for x in layers if not 0 <= x < n_layers})
    if bad:
        raise Invalid(f"layer {bad[0]} is out of range: the model has layers 0 to {n_layers - 1}", field="layers")
    return sorted({*layers, n_layers - 1}) if layers else list(range(n_layers))


def _top(
    logits: torch.Tensor, top_n: int, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:  # [..., top_n] ids and probs
    probs = torch.softmax(logits.float(), dim=-1)
    if mask is None:
        top = torch.topk(probs, k=top_n, dim=-1)
        return top.indices, top.values
    first = probs.argmax(dim=-1, keepdim=True)  # a layer's own top-1 is shown even when it is not a word
    chosen = probs.masked_fill(~mask.to(probs.device), -1.0).scatter(-1, first, 2.0)
    idx = torch.topk(chosen, k=top_n, dim=-1).indices
    return idx, probs.gather(-1, idx)


def lens_frames(
    model: LoadedModel,
    ids: list[int],
    *,
    prompt_len: int,
    types: list[str],
    layers: list[int],
    top_n: int,
    jacobian: JacobianLens | None,
    filter_non_word: bool,
    meta: dict[str, Any],
) -> Iterator[dict[str, Any]]:
    """The frames of a lens run over ``ids`` (the prompt's ``prompt_len`` tokens, then any generated ones)."""
    n_layers = int(model.hooked.cfg.n_layers)
    chosen = _select_layers(n_layers, layers)
    top_n = min(top_n, model.d_vocab)
    resid, _ = residuals(model.hooked, ids)  # [n_layers, pos, d_model]
    picked = resid[chosen]
    mask = _word_mask(model) if filter_non_word else None
    results: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for kind in types:
        if kind == "JACOBIAN_LENS":
            assert jacobian is not None
            jac = jacobian.jacobians[chosen].to(picked.device)  # [layers, d, d]
            mapped = torch.einsum("lij,lpj->lpi", jac, picked)
        else:
            mapped = picked
        results[kind] = _top(readout(model.hooked, mapped), top_n, mask)
    texts = [model.decode([i]) for i in ids]
    yield {
        "kind": "meta",
        "model": model.model_id,
        "types": types,
        "layers_by_type": {kind: chosen for kind in types},
        "top_n": top_n,
        "prompt_len": prompt_len,
        **meta,
        "reuse_len": 0,
    }
    tokens = [_token(pos, texts[pos], ids[pos], pos >= prompt_len) for pos in range(len(ids))]
    yield {"kind": "prompt", "tokens": tokens[:prompt_len]}
    decode_cache: dict[int, str] = {}

    def text(i: int) -> str:
        if i not in decode_cache:
            decode_cache[i] = model.decode([i])
        return decode_cache[i]

    for pos in range(len(ids)):
        slices = []
        for kind in types:
            idx, probs = results[kind]
            slices.append(
                {
                    "type": kind,
                    "top_tokens": [[text(int(i)) for i in row] for row in idx[:, pos].tolist()],
                    "top_probs": [[round(float(p), 6) for p in row] for row in probs[:, pos].tolist()],
                }
            )
        yield {"kind": "token", **tokens[pos], "results": slices}
    yield {
        "kind": "done",
        "seq_len": len(ids),
        "prompt_len": prompt_len,
        "vocab_size": model.d_vocab,
        "completion": model.decode(ids[prompt_len:]),
    }


def _checked_ids(model: LoadedModel, ids: list[int], limit: int) -> list[int]:
    if not ids:
        raise Invalid("input_token_ids is empty", field="input_token_ids")
    if len(ids) > limit:
        raise Invalid(f"input_token_ids has {len(ids)} tokens; the limit is {limit}", field="input_token_ids")
    bad = next((i for i in ids if not 0 <= i < model.d_vocab), None)
    if bad is not None:
        raise Invalid(f"token id {bad} is not in the model's vocabulary of {model.d_vocab}", field="input_token_ids")
    return list(ids)


def _token(pos: int, text: str, token_id: int, generated: bool) -> dict[str, Any]:
    return {
        "position": pos,
        "token": text,
        "id": token_id,
        "is_generated": generated,
        "is_char_continuation": False,
        "message_index": None,
        "role": None,
        "channel": None,
        "section": None,
    }


def buffered(frames: Iterator[dict[str, Any]]) -> dict[str, Any]:
    """The frames as one document ``{meta, prompt, tokens, done}`` (``stream: false``)."""
    out: dict[str, Any] = {"tokens": []}
    for frame in frames:
        if frame["kind"] == "token":
            out["tokens"].append(frame)
        else:
            out[frame["kind"]] = frame
    return out


# --- the workflow: resolve, validate, run under the model's lock ---------------------------------------------------


def jacobian_lens(svc: InferenceService, model_id: str) -> tuple[JacobianLens | None, str]:
    """The model's fitted Jacobian lens (None and why not when there is none that fits its weights)."""
    model = svc.model(model_id)
    paths = lens_paths(model.plan.spec, svc.settings.home, model_id)
    found = next((p for p in paths if p.is_file()), None)
    if found is None:
        return None, (
            f"no Jacobian lens is fitted for model {model_id}: run `interpedia lens fit --model {model_id}` "
            f"(it is looked for at {paths[-1].name} beside the weights, or under INTERPEDIA_HOME/lenses/{model_id})"
        )
    cache: dict[str, tuple[float, JacobianLens]] = svc.__dict__.setdefault("_jacobian_lenses", {})
    stamp = found.stat().st_mtime
    hit = cache.get(str(found))
    if hit is None or hit[0] != stamp:
        hit = (stamp, load_lens(found))
        cache[str(found)] = hit
    lens = hit[1]
    fingerprint = getattr(model, "_weights_fingerprint", None)
    if fingerprint is None:
        with model.lock:
            fingerprint = weights_fingerprint(model.hooked)
        model._weights_fingerprint = fingerprint  # type: ignore[attr-defined]
    if lens.meta.get("weights_fingerprint") != fingerprint:
        return None, (
            f"the Jacobian lens at {found.name} was fitted on other weights than model {model_id}'s; "
            f"fit it again with `interpedia lens fit --model {model_id}`"
        )
    return lens, ""


def run_lens(
    svc: InferenceService,
    model_id: str,
    *,
    prompt: str | None,
    chat: list[dict[str, str]] | None,
    token_ids: list[int] | None = None,
    types: list[str],
    layers: list[int],
    top_n: int,
    prepend_bos: bool,
    num_completion_tokens: int,
    temperature: float,
    seed: int,
    filter_non_word: bool,
) -> list[dict[str, Any]]:
    """Every frame of a lens run (validated and computed before the first is sent, so errors keep their status)."""
    if sum(x is not None for x in (prompt, chat, token_ids)) != 1:
        raise Invalid("give exactly one of prompt, chat and input_token_ids", field="prompt")
    types = list(dict.fromkeys(types))
    jacobian = None
    if "JACOBIAN_LENS" in types:
        jacobian, why = jacobian_lens(svc, model_id)
        if jacobian is None:
            raise Unsupported(why, field="type")
    model = svc.model(model_id)
    limit = token_limit(model, svc.settings.inference_token_limit)
    with model.lock:
        if token_ids is not None:
            ids, bos = _checked_ids(model, token_ids, limit), False
        elif chat is not None:
            text, bos = render_chat(model, chat), False  # the template writes any BOS itself
            ids = tokenize(model, text, prepend_bos=False, limit=limit, field="chat").ids
        else:
            bos = prepend_bos and model.bos_id is not None
            ids = tokenize(model, str(prompt), prepend_bos=bos, limit=limit, field="prompt").ids
        if num_completion_tokens:
            if len(ids) + num_completion_tokens > limit:
                raise Invalid(
                    f"the prompt ({len(ids)} tokens) plus {num_completion_tokens} new tokens exceed the limit of "
                    f"{limit}",
                    field="num_completion_tokens",
                )
            settings = SteerSettings(n_tokens=num_completion_tokens, temperature=temperature, seed=seed)
            completion = generate(model, ids, [], settings).ids
        else:
            completion = []
        meta = {"num_completion_tokens": num_completion_tokens, "temperature": temperature, "prepend_bos": bos}
        return list(
            lens_frames(
                model,
                [*ids, *completion],
                prompt_len=len(ids),
                types=types,
                layers=layers,
                top_n=top_n,
                jacobian=jacobian,
                filter_non_word=filter_non_word,
                meta=meta,
            )
        )
