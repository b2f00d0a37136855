"""What this server can serve (``GET /v1/capabilities``) and how its live models are doing
(``GET /v1/steer/health``), in the shape of Neuronpedia's inference server.

Upstream runs one model per server, so its capabilities describe that model. interpedia serves every catalogue model
that has weights here: without ``model`` the answer describes the server and lists the models it can serve; with
``model`` (loaded if it is not warm) it adds that model's layers, hook points, source sets and chat template, and
whether a Jacobian lens is fitted for it.
"""

from __future__ import annotations

import resource
import sys
from typing import TYPE_CHECKING, Any

import torch

from interpedia.inference.lens import jacobian_lens
from interpedia.inference.probes import HOOK_POINTS

if TYPE_CHECKING:
    from interpedia.inference.service import InferenceService

__all__ = ["capabilities", "health"]


def _endpoints(chat: bool | None, jacobian: bool | None) -> dict[str, bool]:
    return {
        "tokenize": True,
        "activation_single": True,
        "activation_all": True,
        "activation_source": True,
        "activation_raw": True,
        "activation_topk_by_token": True,
        "activation_attention": True,
        "dfa": True,  # on sources that read an attention layer's hook_z
        "steer_completion": True,
        "steer_completion_chat": chat if chat is not None else True,
        "apply_chat_template": chat if chat is not None else True,
        "lens_logit": True,
        "lens_jacobian": jacobian if jacobian is not None else False,
        "neurons": False,
        "similarity_matrix_pred": False,
        "initialize": False,
    }


def capabilities(svc: InferenceService, models: list[str], model_id: str | None, sae_sets: list[str]) -> dict[str, Any]:
    """The server's (and, with ``model_id``, that model's) capabilities; ``models`` are the servable model ids,
    ``sae_sets`` the model's source sets with SAE weights."""
    settings = svc.settings
    out: dict[str, Any] = {
        "model": model_id,
        "models": models,
        "backend": "eager",
        "device": settings.inference_device,
        "dtype": settings.inference_dtype,
        "max_concurrent_requests": 1,  # per model: requests to one model are served one at a time
        "max_tokens": settings.steer_max_tokens,
        "token_limit": settings.inference_token_limit,
        "lens_token_limit": settings.inference_token_limit,
        "activation_token_limit": settings.inference_token_limit,
        "max_num_results": settings.inference_max_results,
        "max_batch_prompts": settings.inference_max_batch_prompts,
        "hooks_available": True,
        "graph_replay": False,
        "generation_only": False,
        "raw_hook_points": list(HOOK_POINTS),
        "warm": svc.registry.warm(),
    }
    if model_id is None:
        out.update(num_layers=None, capture_points=[], sae_sets=[], endpoints=_endpoints(None, None))
        return out
    model = svc.model(model_id)
    lens, _ = jacobian_lens(svc, model_id)
    chat = bool(getattr(model.tokenizer, "chat_template", None))
    hooks = sorted(model.model.hook_dict)
    out.update(
        num_layers=int(model.hooked.cfg.n_layers),
        d_model=int(model.hooked.cfg.d_model),
        capture_points=hooks,
        chat_template=chat,
        sae_sets=sae_sets,
        endpoints=_endpoints(chat, lens is not None),
    )
    return out


def health(svc: InferenceService) -> dict[str, Any]:
    """``{stats, summary}``: what is loaded, where, and the process's memory."""
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak_mb = round(rss_kb / (1024 * 1024) if sys.platform == "darwin" else rss_kb / 1024, 1)
    warm = svc.registry.warm()
    stats: dict[str, Any] = {
        "models_loaded": warm["models"],
        "sources_loaded": warm["sources"],
        "device": svc.settings.inference_device,
        "torch_threads": torch.get_num_threads(),
        "peak_rss_mb": peak_mb,
        "cuda": None,
    }
    if torch.cuda.is_available():
        stats["cuda"] = {
            "device": torch.cuda.get_device_name(),
            "allocated_mb": round(torch.cuda.memory_allocated() / 2**20, 1),
            "reserved_mb": round(torch.cuda.memory_reserved() / 2**20, 1),
            "total_mb": round(torch.cuda.get_device_properties(0).total_memory / 2**20, 1),
        }
    summary = (
        f"{len(warm['models'])} model(s) and {len(warm['sources'])} SAE(s) loaded on {stats['device']}; "
        f"peak RSS {peak_mb} MB"
    )
    return {"status": "ok", "stats": stats, "summary": summary}
