"""Activations of text: one feature, one vector, top-k features per token, a whole source, a source set.

Every function here runs under the model's lock (see ``registry``) and returns the inference server's wire
shape (snake_case, as the official ``neuronpedia-inference-client`` parses it).

BOS, explicitly: a prompt is its tokens (no special tokens added) with BOS in front when the source's
dashboards were generated that way (``SaePlan.prepend_bos``). ``single`` then zeroes the tokens the generator
excluded (BOS/EOS/PAD by default) and drops an excluded BOS position, so its values line up with a stored example's
tokens; ``topk_by_token`` and ``source`` report BOS but leave it out of the results with ``ignore_bos``;
``all_sources`` zeroes the excluded tokens with ``ignore_bos``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from interpedia.errors import Invalid
from interpedia.inference.registry import LoadedModel, LoadedSource


@dataclass(frozen=True)
class Prompt:
    """A tokenized prompt."""

    ids: list[int]
    bos_prepended: bool


def token_limit(model: LoadedModel, configured: int) -> int:
    """The most tokens a prompt may have on this model."""
    return min(configured, model.n_ctx) if model.bounded_by_ctx else configured


def tokenize(model: LoadedModel, text: str, *, prepend_bos: bool, limit: int, field: str = "prompt") -> Prompt:
    """Token ids of ``text``, BOS first when asked (and not already there); Invalid when empty or too long."""
    if not text:
        raise Invalid(f"{field} is empty", field=field)
    ids = model.encode(text)
    if not ids:
        raise Invalid(f"{field} has no tokens", field=field)
    added = False
    if prepend_bos and model.bos_id is not None and ids[0] != model.bos_id:
        ids = [model.bos_id, *ids]
        added = True
    if len(ids) > limit:
        raise Invalid(
            f"{field} is {len(ids)} tokens long; the limit is {limit} (INTERPEDIA_INFERENCE_TOKEN_LIMIT "
            f"and the model's context of {model.n_ctx})",
            field=field,
        )
    return Prompt(ids, bos_prepended=added or (prepend_bos and ids[0] == model.bos_id))


def prepend_bos_for(model: LoadedModel, source: LoadedSource | None) -> bool:
    """Whether prompts for this source get a BOS token (as its dashboards did)."""
    if source is not None and source.plan.prepend_bos is not None:
        return source.plan.prepend_bos and model.bos_id is not None
    return model.default_prepend_bos


def _excluded(model: LoadedModel, source: LoadedSource, ids: list[int]) -> torch.Tensor:
    """[pos] bool: tokens the generator left out of the source's statistics."""
    plan_ids = source.plan.excluded_token_ids
    excluded = (
        set(plan_ids)
        if plan_ids is not None
        else {i for i in (model.bos_id, model.eos_id, model.tokenizer.pad_token_id) if i is not None}
    )
    return torch.tensor([i in excluded for i in ids], dtype=torch.bool)


def _is_special(model: LoadedModel, ids: list[int]) -> list[bool]:
    return [i in model.special_ids for i in ids]


def _dense(model: LoadedModel, source: LoadedSource, prompt: Prompt, ignore: torch.Tensor | None) -> torch.Tensor:
    x = model.hook_activations(prompt.ids, [source.hook_name])[source.hook_name]
    return source.encode(x, ignore)  # [pos, d_sae]


def _max(values: list[float]) -> tuple[float, int]:
    if not values:
        return 0.0, 0
    best = max(range(len(values)), key=lambda i: values[i])  # first of equal maxima
    return values[best], best


@torch.inference_mode()
def single_feature(model: LoadedModel, source: LoadedSource, prompt: Prompt, index: int) -> dict[str, Any]:
    """Values of one feature at every token (BOS dropped), with the tokens and which are special."""
    source.check_index(index)
    excluded = _excluded(model, source, prompt.ids)
    dense = _dense(model, source, prompt, excluded)
    values = [float(v) for v in dense[:, index].tolist()]
    ids = prompt.ids
    # The generator's examples start after BOS when BOS is excluded; otherwise they show it.
    skip = 1 if prompt.bos_prepended and bool(excluded[0]) and len(ids) > 1 else 0
    values, ids = values[skip:], ids[skip:]
    top, at = _max(values)
    activation: dict[str, Any] = {"values": values, "max_value": top, "max_value_index": at}
    dfa = source.dfa(model)
    if dfa is not None and top > 0:  # attribution of the maximum, over the positions shown (as generate stores it)
        dfa_values = dfa.prompt(prompt.ids, index, at + skip)[skip:]
        activation.update(dfa_values=dfa_values, dfa_target_index=at, dfa_max_value=max(dfa_values))
    return {
        "activation": activation,
        "tokens": model.token_strings(ids),
        "tokens_is_special": _is_special(model, ids),
    }


@torch.inference_mode()
def single_vector(model: LoadedModel, prompt: Prompt, vector: list[float], hook: str) -> dict[str, Any]:
    """Dot products of a vector with the activations at ``hook``, at every token."""
    x = model.hook_activations(prompt.ids, [hook])[hook].float()
    if x.shape[1] != len(vector):
        raise Invalid(f"vector has {len(vector)} values; {hook} has width {x.shape[1]}", field="vector")
    values = [float(v) for v in (x @ torch.tensor(vector, dtype=torch.float32, device=x.device)).tolist()]
    top, at = _max(values)
    return {
        "activation": {"values": values, "max_value": top, "max_value_index": at},
        "tokens": model.token_strings(prompt.ids),
        "tokens_is_special": _is_special(model, prompt.ids),
    }


@torch.inference_mode()
def topk_by_token(
    model: LoadedModel, source: LoadedSource, prompt: Prompt, top_k: int, ignore_bos: bool
) -> dict[str, Any]:
    """The ``top_k`` most active features (positive only) at each token; BOS left out with ``ignore_bos``."""
    dense = _dense(model, source, prompt, None)
    k = min(top_k, source.d_sae)
    vals, idx = torch.topk(dense, k=k, dim=1)
    tokens = model.token_strings(prompt.ids)
    special = _is_special(model, prompt.ids)
    results = []
    for pos in range(len(prompt.ids)):
        if ignore_bos and pos == 0 and prompt.bos_prepended:
            continue
        feats = [
            {"feature_index": int(f), "activation_value": float(v)}
            for v, f in zip(vals[pos].tolist(), idx[pos].tolist(), strict=True)
            if v > 0
        ]
        results.append({"token_position": pos, "token": tokens[pos], "is_special": special[pos], "top_features": feats})
    return {"results": results, "tokens": tokens}


@torch.inference_mode()
def source_sparse(model: LoadedModel, source: LoadedSource, prompt: Prompt) -> dict[str, Any]:
    """Every positive activation of the source: ``{feature: [[token, value], ...]}`` (BOS position left out)."""
    dense = _dense(model, source, prompt, None)
    if prompt.bos_prepended:
        dense[0] = 0
    pos, feat = torch.nonzero(dense > 0, as_tuple=True)
    order = torch.argsort(feat * dense.shape[0] + pos)  # by feature, then token
    active: dict[str, list[list[float]]] = {}
    for p, f, v in zip(pos[order].tolist(), feat[order].tolist(), dense[pos[order], feat[order]].tolist(), strict=True):
        active.setdefault(str(f), []).append([p, float(v)])
    return {"tokens": model.token_strings(prompt.ids), "activeFeatures": active}


@torch.inference_mode()
def all_sources(
    model: LoadedModel,
    sources: list[LoadedSource],
    prompt: Prompt,
    *,
    sort_by: list[int],
    ignore_bos: bool,
    num_results: int,
) -> dict[str, Any]:
    """The ``num_results`` features of ``sources`` with the highest max (or sum at ``sort_by``) activation."""
    n = len(prompt.ids)
    bad = [i for i in sort_by if not 0 <= i < n]
    if bad:
        raise Invalid(
            f"sort token index {bad[0]} is out of range for a prompt of {n} tokens", field="sort_by_token_indexes"
        )
    hooks = list(dict.fromkeys(s.hook_name for s in sources))
    acts = model.hook_activations(prompt.ids, hooks)
    rows: list[tuple[float, int, int, torch.Tensor, float, float, int]] = []
    for order, source in enumerate(sources):
        ignore = _excluded(model, source, prompt.ids) if ignore_bos else None
        dense = source.encode(acts[source.hook_name], ignore).T  # [d_sae, pos]
        max_vals, max_idx = dense.max(dim=1)
        sums = dense[:, sort_by].sum(dim=1) if sort_by else torch.zeros_like(max_vals)
        key = sums if sort_by else max_vals
        keep = min(num_results, int((key > 0).sum()))
        if keep == 0:
            continue
        top = torch.topk(key, k=keep)
        for feat in top.indices.tolist():
            rows.append(
                (
                    -float(key[feat]),
                    order,
                    feat,
                    dense[feat],
                    float(sums[feat]),
                    float(max_vals[feat]),
                    int(max_idx[feat]),
                )
            )
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    activations = [
        {
            "source": sources[order].source_id,
            "index": feat,
            "values": [float(v) for v in vals.tolist()],
            "sum_values": total,
            "max_value": top_val,
            "max_value_index": at,
        }
        for _, order, feat, vals, total, top_val, at in rows[:num_results]
    ]
    return {"activations": activations, "tokens": model.token_strings(prompt.ids)}
