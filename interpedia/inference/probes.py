"""Model-only inference (no SAE): raw activations at a hook (for probes), an attention head's pattern, and the chat
template's per-token spans, answered as Neuronpedia's inference server answers ``/v1/activation/raw``,
``/v1/activation/attention`` and ``/v1/apply-chat-template`` (with snake_case keys, like interpedia's other ``/v1``
answers).

- Raw activations: the activations at one hook point of the chosen layers, for each prompt's last token
  (``final_output_token``, upstream's only type) or every token (``all_tokens``). The hook points are named as
  upstream names the residual stream (``residual_stream``: the residual after the block) plus TransformerLens's other
  per-layer points; ``z`` is flattened to ``n_heads * d_head``.
- Attention: one head's pattern, sparse as upstream's HeadVis pipeline stores it: per query row the 8 largest
  weights that are at least 0.005, rounded to 4 decimals, as flat indices ``q * seq_len + k``; ``max_activation``
  leaves out row 0 and column 0 (the first position's attention sink).
- Chat template spans: the rendered prompt, its token ids, and for each token the message it belongs to, found by
  rendering the messages one prefix at a time; ``section`` is ``content`` for tokens inside a message's text,
  ``template`` for the template's own markers around it, and ``generation_prompt`` for the assistant header the
  template adds at the end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from interpedia.errors import Invalid, Unsupported
from interpedia.inference import activations as acts
from interpedia.inference.registry import LoadedModel

if TYPE_CHECKING:
    from interpedia.inference.service import InferenceService

__all__ = ["HOOK_POINTS", "RAW_TYPES", "attention_pattern", "chat_template_spans", "raw_activations"]

HOOK_POINTS = {
    "residual_stream": "blocks.{}.hook_resid_post",
    "resid_pre": "blocks.{}.hook_resid_pre",
    "resid_mid": "blocks.{}.hook_resid_mid",
    "resid_post": "blocks.{}.hook_resid_post",
    "attn_out": "blocks.{}.hook_attn_out",
    "mlp_out": "blocks.{}.hook_mlp_out",
    "mlp_post": "blocks.{}.mlp.hook_post",
    "z": "blocks.{}.attn.hook_z",
}
RAW_TYPES = ("final_output_token", "all_tokens")
ATTENTION_TOP_PER_ROW = 8
ATTENTION_THRESHOLD = 0.005
ATTENTION_DECIMALS = 4


def _layers(model: LoadedModel, requested: list[int] | None) -> list[int]:
    n_layers = int(model.hooked.cfg.n_layers)
    if not requested:
        return list(range(n_layers))
    bad = sorted({x for x in requested if not 0 <= x < n_layers})
    if bad:
        raise Invalid(f"layers {bad} are out of range: the model has layers 0 to {n_layers - 1}", field="layers")
    return sorted(set(requested))


def raw_activations(
    svc: InferenceService,
    model_id: str,
    prompts: list[str],
    layers: list[int] | None,
    hook_point: str,
    kind: str,
) -> dict[str, Any]:
    """``{hook_point, type, dtype, device, results: [{token_strings, token_ids, activations: [{layer,
    token_indices, values}]}]}``: the activations at ``hook_point`` of each layer, for each prompt."""
    if hook_point not in HOOK_POINTS:
        raise Invalid(f"hook_point must be one of {', '.join(HOOK_POINTS)}, not {hook_point!r}", field="hook_point")
    if kind not in RAW_TYPES:
        raise Invalid(f"type must be one of {', '.join(RAW_TYPES)}, not {kind!r}", field="type")
    model = svc.model(model_id)
    chosen = _layers(model, layers)
    hooks = [HOOK_POINTS[hook_point].format(layer) for layer in chosen]
    limit = acts.token_limit(model, svc.settings.inference_token_limit)
    results = []
    with model.lock:
        for n, text in enumerate(prompts):
            ids = acts.tokenize(
                model, text, prepend_bos=acts.prepend_bos_for(model, None), limit=limit, field=f"prompts[{n}]"
            ).ids
            captured = model.hook_activations(ids, hooks)
            positions = [len(ids) - 1] if kind == "final_output_token" else list(range(len(ids)))
            results.append(
                {
                    "token_strings": model.token_strings(ids),
                    "token_ids": ids,
                    "activations": [
                        {
                            "layer": layer,
                            "token_indices": positions,
                            "values": captured[hook][positions].float().cpu().tolist(),
                        }
                        for layer, hook in zip(chosen, hooks, strict=True)
                    ],
                }
            )
    return {
        "hook_point": hook_point,
        "type": kind,
        "dtype": model.plan.dtype,
        "device": str(model.hooked.device),
        "results": results,
    }


def attention_pattern(svc: InferenceService, model_id: str, prompt: str, layer: int, head: int) -> dict[str, Any]:
    """``{tokens, seq_len, attention_indices, attention_values, max_activation}`` of one head on ``prompt``."""
    model = svc.model(model_id)
    cfg = model.hooked.cfg
    if not 0 <= layer < int(cfg.n_layers):
        raise Invalid(f"layer {layer} is out of range: the model has layers 0 to {int(cfg.n_layers) - 1}", "layer")
    if not 0 <= head < int(cfg.n_heads):
        raise Invalid(f"head {head} is out of range: the model has heads 0 to {int(cfg.n_heads) - 1}", "head")
    hook = f"blocks.{layer}.attn.hook_pattern"
    limit = acts.token_limit(model, svc.settings.inference_token_limit)
    with model.lock:
        ids = acts.tokenize(model, prompt, prepend_bos=acts.prepend_bos_for(model, None), limit=limit).ids
        if not model.hooked.has_hook(hook):
            raise Unsupported(f"model {model_id} has no attention pattern hook ({hook})", field="layer")
        pattern = _pattern(model, ids, hook, head)
    return {"tokens": model.token_strings(ids), **_sparse(pattern)}


@torch.inference_mode()
def _pattern(model: LoadedModel, ids: list[int], hook: str, head: int) -> torch.Tensor:
    captured: list[torch.Tensor] = []

    def keep(act: torch.Tensor, hook: Any) -> None:
        captured.append(act)

    model.hooked.enable_hooks([hook])
    tokens = torch.tensor([ids], dtype=torch.long, device=model.hooked.device)
    layer = int(hook.split(".")[1])
    model.model.run_with_hooks(tokens, fwd_hooks=[(hook, keep)], stop_at_layer=layer + 1, return_type=None)
    return captured[0][0, head].float().cpu()  # [query, key]


def _sparse(attention: torch.Tensor) -> dict[str, Any]:
    """Upstream's sparse COO form of a [query, key] pattern (see the module docstring)."""
    seq_len = int(attention.shape[0])
    if seq_len < 2:
        return {"seq_len": seq_len, "attention_indices": [], "attention_values": [], "max_activation": 0.0}
    top = torch.topk(attention, k=min(ATTENTION_TOP_PER_ROW, seq_len), dim=-1)
    entries = sorted(
        (q, int(k), round(float(v), ATTENTION_DECIMALS))
        for q in range(seq_len)
        for v, k in zip(top.values[q].tolist(), top.indices[q].tolist(), strict=True)
        if v >= ATTENTION_THRESHOLD
    )
    return {
        "seq_len": seq_len,
        "attention_indices": [q * seq_len + k for q, k, _ in entries],
        "attention_values": [v for _, _, v in entries],
        "max_activation": round(float(attention[1:, 1:].max()), ATTENTION_DECIMALS),
    }


def chat_template_spans(
    svc: InferenceService,
    model_id: str,
    messages: list[dict[str, Any]],
    add_generation_prompt: bool,
    template_kwargs: dict[str, Any],
) -> dict[str, Any]:
    """``{prompt, tokens, spans: [{position, token_id, token_str, message_index, role, channel, section}]}``."""
    model = svc.model(model_id)
    tok = model.tokenizer
    if not getattr(tok, "chat_template", None):
        raise Unsupported(f"model {model_id!r} has no chat template", field="model")
    plain = [{k: v for k, v in m.items() if k != "channel" or v is not None} for m in messages]

    def render(upto: int, generation: bool) -> str:
        try:
            text = tok.apply_chat_template(
                plain[:upto], tokenize=False, add_generation_prompt=generation, **template_kwargs
            )
        except Exception as exc:  # jinja2's TemplateError, a bad keyword argument: the caller's input
            raise Invalid(f"the chat template could not render these messages: {exc}", field="messages") from None
        return str(text)

    limit = acts.token_limit(model, svc.settings.inference_token_limit)
    with model.lock:
        prompt = render(len(plain), add_generation_prompt)
        # Where each message ends in the rendered text; a template that rewrites earlier turns leaves the rest as is.
        ends = [len(render(i + 1, False)) for i in range(len(plain))]
        ids = acts.tokenize(model, prompt, prepend_bos=False, limit=limit, field="messages").ids
        starts = _char_starts(model, prompt, ids)
    spans = []
    for pos, (token_id, start) in enumerate(zip(ids, starts, strict=True)):
        end = starts[pos + 1] if pos + 1 < len(starts) else len(prompt)
        index = next((i for i, stop in enumerate(ends) if start < stop), None)
        role: str | None
        channel: str | None
        if index is None:
            section, role, channel = "generation_prompt", "assistant", None
        else:
            lo = ends[index - 1] if index else 0
            content = str(plain[index].get("content", ""))
            at = prompt.find(content, lo, ends[index]) if content else -1
            # A token that overlaps the message's text is content (" hello" after "user:" carries its space).
            section = "content" if at >= 0 and start < at + len(content) and end > at else "template"
            role, channel = plain[index].get("role"), plain[index].get("channel")
        spans.append(
            {
                "position": pos,
                "token_id": token_id,
                "token_str": model.decode([token_id]),
                "message_index": index,
                "role": role,
                "channel": channel,
                "section": section,
            }
        )
    return {"prompt": prompt, "tokens": ids, "spans": spans}


def _char_starts(model: LoadedModel, text: str, ids: list[int]) -> list[int]:
    """The character offset in ``text`` where each token starts (the fast tokenizer's offsets, else decoding)."""
    try:
        enc = model.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
        if [int(i) for i in enc["input_ids"]] == ids:
            return [int(a) for a, _ in offsets]
    except (NotImplementedError, KeyError, TypeError, ValueError):
        pass
    out, done = [], 0
    for n in range(len(ids)):
        out.append(done)
        done = len(model.decode(ids[: n + 1]))
    return out
