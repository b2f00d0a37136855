"""Steered generation: change the activations at a hook on every position, then sample.

Methods, with ``c = strength x strength_multiplier`` and ``v`` the steering vector (unit length first when
``normalize_steering``), applied to each activation ``h`` at the vector's hook:

- ``SIMPLE_ADDITIVE``: ``h + c v``.
- ``ORTHOGONAL_DECOMP``: ``(I - P) h + c P h`` with ``P`` the projection onto ``v``: the component of ``h``
  along ``v`` is scaled by ``c``, the rest kept (Neuronpedia's ``OrthogonalProjector``).
- ``PROJECTION_CAP``: ``h + (min(h . u, c) - h . u) u`` with ``u = v / |v|``: the component along ``v`` is
  capped at ``c`` from above, never raised (Neuronpedia's ``ProjectionCapSpec(max=c)``).

Sampling follows TransformerLens's ``generate``: the frequency penalty subtracts ``freq_penalty x count`` of
each token seen so far (prompt included) from the logits, temperature 0 is greedy, and generation stops at
EOS or at an end-of-turn token of the model's generation config (``<|eot_id|>``, ``<end_of_turn>``,
``<|im_end|>``). The RNG is a ``torch.Generator`` seeded per generation, so a seed gives the same text whatever else the
process is doing, and STEERED and DEFAULT start from the same seed. Log-probabilities are of the model's
raw next-token distribution.
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from interpedia.errors import Invalid, Unsupported
from interpedia.inference.options import SteerSettings
from interpedia.inference.registry import LoadedModel

STEER_METHODS = ("SIMPLE_ADDITIVE", "ORTHOGONAL_DECOMP", "PROJECTION_CAP")

__all__ = [
    "STEER_METHODS",
    "Direction",
    "Generation",
    "SteerSettings",
    "check_directions",
    "generate",
    "generate_steps",
    "render_chat",
]


@dataclass(frozen=True)
class Direction:
    """One steering vector at one hook."""

    hook: str
    vector: torch.Tensor  # [d_in] float32
    strength: float


@dataclass
class Generation:
    """A completion: its token ids, text and (when asked) per-token log-probabilities."""

    ids: list[int]
    text: str
    logprobs: list[dict[str, Any]] | None


def check_directions(model: LoadedModel, directions: list[Direction], settings: SteerSettings) -> None:
    """Invalid unless every direction can be applied with this method on this model."""
    if settings.method not in STEER_METHODS:
        raise Unsupported(
            f"steer method {settings.method!r} is not one of {', '.join(STEER_METHODS)}", field="steer_method"
        )
    for n, d in enumerate(directions):
        if not model.hooked.has_hook(d.hook):
            raise Invalid(f"hook {d.hook!r} is not a hook of model {model.model_id}", field=f"vectors[{n}].hook")
        if not bool(torch.isfinite(d.vector).all()):
            raise Invalid("steering vector contains NaN or infinite values", field=f"vectors[{n}]")
        if not math.isfinite(d.strength):
            raise Invalid("strength must be a finite number", field=f"features[{n}].strength")
        needs_direction = settings.normalize or settings.method != "SIMPLE_ADDITIVE"
        if needs_direction and float(d.vector.norm()) == 0.0:
            raise Invalid(
                f"steering vector {n} is zero, which has no direction for {settings.method}"
                + (" with normalize_steering" if settings.normalize else ""),
                field=f"vectors[{n}]",
            )
    # optional hooks (hook_mlp_in, ...) fire only when switched on; without this a steer there would do nothing
    model.hooked.enable_hooks([d.hook for d in directions])


def _make_hook(dirs: list[Direction], settings: SteerSettings, state: dict[str, Any]) -> Callable[..., torch.Tensor]:
    prepared = []
    for d in dirs:
        vec = d.vector.float()
        if settings.normalize:
            vec = vec / vec.norm()
        unit = vec / vec.norm() if float(vec.norm()) > 0 else vec
        prepared.append((vec, unit, settings.strength_multiplier * d.strength))

    def steer(act: torch.Tensor, hook: Any) -> torch.Tensor:
        shape = act.shape
        flat = act.reshape(shape[0], shape[1], -1)
        if flat.shape[-1] != prepared[0][0].shape[0]:
            raise Invalid(
                f"steering vector has {prepared[0][0].shape[0]} values; {hook.name} has width {flat.shape[-1]}",
                field="vectors",
            )
        mask = state.get("mask")
        for vec, unit, coeff in prepared:
            vec_, unit_ = vec.to(flat.dtype), unit.to(flat.dtype)
            if settings.method == "SIMPLE_ADDITIVE":
                delta = (coeff * vec_).expand_as(flat)
            else:
                proj = flat @ unit_  # [batch, pos]
                target = coeff * proj if settings.method == "ORTHOGONAL_DECOMP" else proj.clamp(max=coeff)
                delta = (target - proj)[..., None] * unit_
            if mask is not None:
                delta = delta * mask.to(flat.dtype)[None, :, None]
            flat = flat + delta
        return flat.reshape(shape)

    return steer


def generate(
    model: LoadedModel,
    prompt_ids: list[int],
    directions: list[Direction],
    settings: SteerSettings,
    *,
    mask_special: bool = False,
) -> Generation:
    """Complete ``prompt_ids`` with ``directions`` applied (none: the default completion)."""
    steps = deque(generate_steps(model, prompt_ids, directions, settings, mask_special=mask_special), maxlen=1)
    return steps[0] if steps else Generation([], "", [] if settings.n_logprobs > 0 else None)


def generate_steps(
    model: LoadedModel,
    prompt_ids: list[int],
    directions: list[Direction],
    settings: SteerSettings,
    *,
    mask_special: bool = False,
) -> Iterator[Generation]:
    """:func:`generate` one token at a time: the completion so far after each new token (for streaming)."""
    tm = model.model
    device = model.hooked.device
    state: dict[str, Any] = {"mask": None}
    by_hook: dict[str, list[Direction]] = defaultdict(list)
    for d in directions:
        by_hook[d.hook].append(d)
    fwd_hooks = [(hook, _make_hook(dirs, settings, state)) for hook, dirs in by_hook.items()]
    rng = torch.Generator(device="cpu").manual_seed(settings.seed % (2**63))
    counts = torch.zeros(model.d_vocab, dtype=torch.float32)
    counts.index_add_(0, torch.tensor(prompt_ids, dtype=torch.long), torch.ones(len(prompt_ids)))
    ids = list(prompt_ids)
    out: list[int] = []
    logprobs: list[dict[str, Any]] | None = [] if settings.n_logprobs > 0 else None
    steps = model.hooked.logit_steps()  # a KV cache where the backend has a working one
    for _ in range(settings.n_tokens):
        # Hooks and inference mode are entered per token: a generator may be paused between tokens (a slow client),
        # and neither may leak into whatever runs on this thread meanwhile.
        with torch.inference_mode(), tm.hooks(fwd_hooks=fwd_hooks):
            feed = ids[steps.fed :]
            if mask_special and not settings.steer_special_tokens:
                state["mask"] = torch.tensor([0.0 if i in model.special_ids else 1.0 for i in feed], device=device)
            logits = steps.next_logits(feed)
            adjusted = logits - settings.freq_penalty * counts if settings.freq_penalty else logits
            if settings.temperature <= 0:
                tok = int(torch.argmax(adjusted))
            else:
                probs = torch.softmax(adjusted / settings.temperature, dim=-1)
                tok = int(torch.multinomial(probs, 1, generator=rng))
            if tok in model.stop_ids:  # EOS, or an instruct model's end of turn
                return
            if logprobs is not None:
                logprobs.append(_logprob(model, logits, tok, settings.n_logprobs))
        out.append(tok)
        ids.append(tok)
        counts[tok] += 1
        yield Generation(list(out), model.decode(out), list(logprobs) if logprobs is not None else None)


def _logprob(model: LoadedModel, logits: torch.Tensor, tok: int, n: int) -> dict[str, Any]:
    lp = torch.log_softmax(logits, dim=-1)
    top = torch.topk(lp, k=min(n, lp.shape[0]))
    return {
        "token": model.decode([tok]),
        "logprob": float(lp[tok]),
        "top_logprobs": [
            {"token": model.decode([int(i)]), "logprob": float(v)}
            for v, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
        ],
    }


def render_chat(model: LoadedModel, messages: list[dict[str, str]]) -> str:
    """The chat as the tokenizer's chat template renders it, ready for the assistant's turn."""
    tok = model.tokenizer
    if not getattr(tok, "chat_template", None):
        raise Unsupported(
            f"model {model.model_id!r} has no chat template, so chat steering is not possible; "
            "use completion steering (/api/steer or /v1/steer/completion)",
            field="modelId",
        )
    try:
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception as exc:  # jinja2 raises TemplateError for e.g. "roles must alternate"
        raise Invalid(
            f"the chat messages do not fit model {model.model_id}'s chat template: {exc}", field="messages"
        ) from None
    if not isinstance(text, str) or not text:
        raise Invalid("the chat template rendered nothing for these messages", field="messages")
    return text
