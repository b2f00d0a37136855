"""Read transcoders from disk into a :class:`TranscoderSet`.

Formats:

- **SAELens transcoder directories** (``cfg.json`` + ``sae_weights.safetensors``; architectures ``transcoder``,
  ``skip_transcoder``, ``jumprelu_transcoder``, ``jumprelu_skip_transcoder``), one per layer, loaded with SAELens
  itself. The input hook is ``hook_name``, the output hook ``metadata.hook_name_out``.
- **circuit-tracer per-layer safetensors** (``W_enc`` [F, d], ``W_dec`` [F, d], ``b_enc``, ``b_dec``, optional
  ``W_skip`` [d, d], ``activation_function.threshold`` [F] (JumpReLU), ``k`` (TopK)), one file per layer, either
  listed by layer or in a directory as ``layer_{i}.safetensors``, with an optional ``config.yaml``
  (``feature_input_hook``, ``feature_output_hook``, ``transcoders: [paths]``, ``activation``, ``k``).
- **circuit-tracer cross-layer transcoders**: a directory of ``W_enc_{i}.safetensors`` (``W_enc_{i}`` [F, d],
  ``b_enc_{i}``, ``b_dec_{i}``, optional ``threshold_{i}``) and ``W_dec_{i}.safetensors`` (``W_dec_{i}``
  [F, L - i, d]), with an optional ``config.yaml`` (``model_kind: cross_layer_transcoder``).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from interpedia.graph.transcoders import (
    Activation,
    InputSite,
    TranscoderError,
    TranscoderSet,
    check_output_hook,
    input_site_of,
)

log = logging.getLogger(__name__)

SAELENS_ARCHITECTURES = {"transcoder", "skip_transcoder", "jumprelu_transcoder", "jumprelu_skip_transcoder"}
_LAYER_FILE = re.compile(r"^layer_(\d+)\.safetensors$")
_BLOCK = re.compile(r"^blocks\.(\d+)\.")


@dataclass
class LayerTranscoder:
    """One layer's transcoder as read from a file (shapes as in :class:`TranscoderSet`, ``W_dec`` [F, d])."""

    layer: int | None  # None: the file does not say
    W_enc: torch.Tensor
    b_enc: torch.Tensor
    W_dec: torch.Tensor
    b_dec: torch.Tensor
    W_skip: torch.Tensor | None
    activation: Activation
    input_site: InputSite | None  # None: the file does not say
    origin: str


def load_transcoder_set(
    spec: str | Path | Mapping[int, str | Path],
    *,
    input_hook: str | None = None,
    output_hook: str | None = None,
) -> TranscoderSet:
    """A transcoder set from a directory (any format above) or a ``{layer: path}`` map of per-layer files."""
    if isinstance(spec, Mapping):
        layers = {int(k): load_layer(Path(v)) for k, v in spec.items()}
        return assemble(layers, input_hook=input_hook, output_hook=output_hook, origin=_describe(spec))
    path = Path(spec)
    if not path.exists():
        raise TranscoderError(f"{path}: no such file or directory", field="transcoders")
    if path.is_file():
        raise TranscoderError(
            f"{path}: a single file is one layer; give a directory or a {{layer: path}} map", field="transcoders"
        )
    config = _read_config(path)
    if config.get("model_kind") == "cross_layer_transcoder" or (path / "W_enc_0.safetensors").exists():
        return load_clt(path, config, input_hook=input_hook, output_hook=output_hook)
    if "transcoders" in config:
        files = {i: _resolve(path, p) for i, p in enumerate(config["transcoders"])}
    else:
        files = {int(m.group(1)): path / m.group(0) for f in path.iterdir() if (m := _LAYER_FILE.match(f.name))}
    if not files:
        raise TranscoderError(
            f"{path}: no transcoders found (expected layer_{{i}}.safetensors, config.yaml with 'transcoders', "
            "or W_enc_{i}.safetensors)",
            field="transcoders",
        )
    layers = {i: load_layer(p, k=config.get("k")) for i, p in files.items()}
    return assemble(
        layers,
        input_hook=input_hook or config.get("feature_input_hook"),
        output_hook=output_hook or config.get("feature_output_hook"),
        origin=str(path),
    )


def load_layer(path: Path, *, k: Any = None) -> LayerTranscoder:
    """One layer: a SAELens transcoder directory or a circuit-tracer ``.safetensors`` file."""
    if path.is_dir():
        if not (path / "cfg.json").exists():
            raise TranscoderError(f"{path}: a directory without cfg.json is not a SAELens transcoder", field="path")
        return load_saelens(path)
    if path.suffix == ".safetensors" and path.is_file():
        return load_circuit_tracer_layer(path, k=k)
    raise TranscoderError(
        f"{path}: expected a SAELens transcoder directory or a circuit-tracer .safetensors file", field="path"
    )


def load_saelens(path: Path) -> LayerTranscoder:
    """A SAELens transcoder directory, loaded with SAELens (``SAE.load_from_disk``)."""
    from sae_lens import SAE

    where = str(path)
    try:
        raw = json.loads((path / "cfg.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise TranscoderError(f"{path / 'cfg.json'}: not readable JSON ({exc})", field="cfg.json") from None
    arch = raw.get("architecture")
    if arch not in SAELENS_ARCHITECTURES:
        raise TranscoderError(
            f"{path / 'cfg.json'}: architecture {arch!r} is not a transcoder "
            f"(one of {', '.join(sorted(SAELENS_ARCHITECTURES))})",
            field="architecture",
        )
    meta = raw.get("metadata") or {}
    hook_in = meta.get("hook_name") or raw.get("hook_name")
    hook_out = meta.get("hook_name_out") or raw.get("hook_name_out")
    for name, value in (("metadata.hook_name", hook_in), ("metadata.hook_name_out", hook_out)):
        if not isinstance(value, str) or not value:
            raise TranscoderError(f"{path / 'cfg.json'}: {name} is missing", field=name)
    assert isinstance(hook_in, str) and isinstance(hook_out, str)
    norm = raw.get("normalize_activations", "none")
    if norm not in (None, "none"):
        raise TranscoderError(
            f"{path / 'cfg.json'}: normalize_activations={norm!r} is not supported (fold it into the weights)",
            field="normalize_activations",
        )
    site = input_site_of(hook_in, where=f"{path / 'cfg.json'} metadata.hook_name")
    check_output_hook(hook_out, where=f"{path / 'cfg.json'} metadata.hook_name_out")
    layer_in, layer_out = _block_of(hook_in), _block_of(hook_out)
    if layer_in != layer_out:
        raise TranscoderError(
            f"{path / 'cfg.json'}: hook_name {hook_in!r} and hook_name_out {hook_out!r} are in different layers; "
            "a per-layer transcoder replaces one MLP",
            field="metadata.hook_name_out",
        )
    try:
        sae = SAE.load_from_disk(str(path), device="cpu", dtype="float32")
    except Exception as exc:  # SAELens raises many kinds; the user needs the path and the reason
        raise TranscoderError(f"{path}: SAELens could not load it: {type(exc).__name__}: {exc}", field="path") from None
    with torch.no_grad():
        w_enc = sae.W_enc.detach().T.contiguous().float()  # SAELens [d_in, d_sae] -> [d_sae, d_in]
        skip = getattr(sae, "W_skip", None)
        if arch.startswith("jumprelu"):
            act = Activation("jumprelu", threshold=sae.threshold.detach().float().clone(), relu_first=True)
        else:
            act = Activation("relu")
        return LayerTranscoder(
            layer=layer_in,
            W_enc=w_enc,
            b_enc=sae.b_enc.detach().float().clone(),
            W_dec=sae.W_dec.detach().float().clone(),
            b_dec=sae.b_dec.detach().float().clone(),
            W_skip=None if skip is None else skip.detach().float().clone(),
            activation=act,
            input_site=site,
            origin=where,
        )


def load_circuit_tracer_layer(path: Path, *, k: Any = None) -> LayerTranscoder:
    """One circuit-tracer per-layer ``.safetensors`` file."""
    tensors = _read_safetensors(path)
    for key in ("W_enc", "W_dec", "b_enc", "b_dec"):
        if key not in tensors:
            raise TranscoderError(f"{path}: tensor {key!r} is missing (found {sorted(tensors)})", field=key)
    w_enc, w_dec = tensors["W_enc"].float(), tensors["W_dec"].float()
    if w_enc.ndim != 2:
        raise TranscoderError(f"{path}: W_enc must be [d_transcoder, d_model], got {list(w_enc.shape)}", field="W_enc")
    f, d = w_enc.shape
    _expect(path, "W_dec", w_dec, (f, d))
    _expect(path, "b_enc", tensors["b_enc"], (f,))
    _expect(path, "b_dec", tensors["b_dec"], (d,))
    skip = tensors.get("W_skip")
    if skip is not None:
        _expect(path, "W_skip", skip, (d, d))
    if "k" in tensors:
        k = int(tensors["k"].reshape(-1)[0].item())
    if "activation_function.threshold" in tensors:
        thr = tensors["activation_function.threshold"].float().reshape(-1)
        if thr.numel() == 1:
            thr = thr.expand(f).clone()
        _expect(path, "activation_function.threshold", thr, (f,))
        act = Activation("jumprelu", threshold=thr)
    elif k is not None:
        if not 0 < int(k) <= f:
            raise TranscoderError(f"{path}: TopK k={k} is not in 1..{f}", field="k")
        act = Activation("topk", k=int(k))
    else:
        act = Activation("relu")
    return LayerTranscoder(
        layer=None,
        W_enc=w_enc,
        b_enc=tensors["b_enc"].float(),
        W_dec=w_dec,
        b_dec=tensors["b_dec"].float(),
        W_skip=None if skip is None else skip.float(),
        activation=act,
        input_site=None,
        origin=str(path),
    )


def assemble(
    layers: Mapping[int, LayerTranscoder], *, input_hook: str | None, output_hook: str | None, origin: str
) -> TranscoderSet:
    """A per-layer set from one transcoder per layer ``0 .. n - 1``; hooks given here override the files'."""
    if sorted(layers) != list(range(len(layers))):
        raise TranscoderError(
            f"{origin}: a transcoder set needs one transcoder for every layer 0..{max(layers, default=0)}, "
            f"got layers {sorted(layers)}",
            field="layers",
        )
    if output_hook is not None:
        check_output_hook(output_hook, where=f"{origin} feature_output_hook")
    site = input_site_of(input_hook, where=f"{origin} feature_input_hook") if input_hook else None
    sites = {t.input_site for t in layers.values() if t.input_site is not None}
    if site is None:
        if len(sites) > 1:
            raise TranscoderError(f"{origin}: the layers read different hooks ({sorted(sites)})", field="hook_name")
        # circuit-tracer's files do not name their hooks; its tests read the MLP input (``mlp.hook_in``)
        site = sites.pop() if sites else "mlp_in"
    for i, t in layers.items():
        if t.layer is not None and t.layer != i:
            raise TranscoderError(f"{t.origin}: reads layer {t.layer} but is given as layer {i}", field="hook_name")
    ordered = [layers[i] for i in range(len(layers))]
    d_models = {int(t.b_dec.shape[0]) for t in ordered}
    if len(d_models) != 1:
        raise TranscoderError(f"{origin}: the layers have different d_model ({sorted(d_models)})", field="d_model")
    return TranscoderSet(
        W_enc=[t.W_enc for t in ordered],
        b_enc=[t.b_enc for t in ordered],
        W_dec=[t.W_dec[:, None, :] for t in ordered],
        b_dec=torch.stack([t.b_dec for t in ordered]),
        W_skip=[t.W_skip for t in ordered],
        activations=[t.activation for t in ordered],
        input_site=site,
        cross_layer=False,
        origin=origin,
    )


def load_clt(
    path: Path, config: Mapping[str, Any], *, input_hook: str | None = None, output_hook: str | None = None
) -> TranscoderSet:
    """A circuit-tracer cross-layer transcoder directory (``W_enc_{i}`` / ``W_dec_{i}`` files)."""
    n = 0
    while (path / f"W_enc_{n}.safetensors").exists():
        n += 1
    if n == 0:
        raise TranscoderError(f"{path}: W_enc_0.safetensors is missing", field="W_enc_0")
    w_enc, b_enc, b_dec, w_dec, acts = [], [], [], [], []
    for i in range(n):
        enc_path, dec_path = path / f"W_enc_{i}.safetensors", path / f"W_dec_{i}.safetensors"
        enc = _read_safetensors(enc_path)
        for key in (f"W_enc_{i}", f"b_enc_{i}", f"b_dec_{i}"):
            if key not in enc:
                raise TranscoderError(f"{enc_path}: tensor {key!r} is missing (found {sorted(enc)})", field=key)
        we = enc[f"W_enc_{i}"].float()
        if we.ndim != 2:
            raise TranscoderError(f"{enc_path}: W_enc_{i} must be [d_transcoder, d_model]", field=f"W_enc_{i}")
        f, d = we.shape
        _expect(enc_path, f"b_enc_{i}", enc[f"b_enc_{i}"], (f,))
        _expect(enc_path, f"b_dec_{i}", enc[f"b_dec_{i}"], (d,))
        if not dec_path.exists():
            raise TranscoderError(f"{dec_path}: missing (layer {i}'s decoder)", field=f"W_dec_{i}")
        dec = _read_safetensors(dec_path)
        if f"W_dec_{i}" not in dec:
            raise TranscoderError(f"{dec_path}: tensor 'W_dec_{i}' is missing (found {sorted(dec)})", field="W_dec")
        wd = dec[f"W_dec_{i}"].float()
        _expect(dec_path, f"W_dec_{i}", wd, (f, n - i, d))
        thr = enc.get(f"threshold_{i}")
        if thr is not None:
            thr = thr.float().reshape(-1)
            _expect(enc_path, f"threshold_{i}", thr, (f,))
        acts.append(Activation("jumprelu", threshold=thr) if thr is not None else Activation("relu"))
        w_enc.append(we)
        b_enc.append(enc[f"b_enc_{i}"].float())
        b_dec.append(enc[f"b_dec_{i}"].float())
        w_dec.append(wd)
    hook_in = input_hook or config.get("feature_input_hook") or "mlp.hook_in"
    hook_out = output_hook or config.get("feature_output_hook") or "hook_mlp_out"
    check_output_hook(hook_out, where=f"{path} feature_output_hook")
    return TranscoderSet(
        W_enc=w_enc,
        b_enc=b_enc,
        W_dec=w_dec,
        b_dec=torch.stack(b_dec),
        W_skip=[None] * n,
        activations=acts,
        input_site=input_site_of(hook_in, where=f"{path} feature_input_hook"),
        cross_layer=True,
        origin=str(path),
    )


# --- helpers ------------------------------------------------------------------------------------------


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # a truncated or foreign file: say which, and why
        raise TranscoderError(f"{path}: not a readable safetensors file ({exc})", field="path") from None


def _read_config(path: Path) -> dict[str, Any]:
    cfg = path / "config.yaml"
    if not cfg.exists():
        return {}
    import yaml

    try:
        data = yaml.safe_load(cfg.read_text())
    except yaml.YAMLError as exc:
        raise TranscoderError(f"{cfg}: not valid YAML ({exc})", field="config.yaml") from None
    if not isinstance(data, dict):
        raise TranscoderError(f"{cfg}: expected a mapping at the top level", field="config.yaml")
    if "transcoders" in data and not (
        isinstance(data["transcoders"], list) and all(isinstance(p, str) for p in data["transcoders"])
    ):
        raise TranscoderError(f"{cfg}: 'transcoders' must be a list of paths", field="transcoders")
    return data


def _resolve(root: Path, ref: str) -> Path:
    if ref.startswith("hf://"):
        raise TranscoderError(f"{root / 'config.yaml'}: {ref!r} is on the hub; give local files", field="transcoders")
    p = Path(ref)
    return p if p.is_absolute() else root / p


def _expect(path: Path, name: str, t: torch.Tensor, shape: tuple[int, ...]) -> None:
    if tuple(t.shape) != shape:
        raise TranscoderError(f"{path}: {name} has shape {list(t.shape)}, expected {list(shape)}", field=name)


def _block_of(hook: str) -> int | None:
    m = _BLOCK.match(hook)
    return int(m.group(1)) if m else None


def _describe(spec: Mapping[int, str | Path]) -> str:
    items = sorted(spec.items())
    return ", ".join(f"{k}: {v}" for k, v in items[:3]) + (" ..." if len(items) > 3 else "")
