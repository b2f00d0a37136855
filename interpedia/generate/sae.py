"""The SAE side of generation: load with SAELens, and encode straight into sparse (feature, token, value) form.

Encoders are registered by SAELens ``architecture`` (standard, jumprelu, gated, topk, and the transcoders:
transcoder, skip_transcoder, jumprelu_transcoder, jumprelu_skip_transcoder); anything else falls back to
``sae.encode``. A transcoder reads ``hook_name`` like an SAE; its decoder writes ``metadata.hook_name_out``.
The fast encoders compute exactly SAELens's formulas on its own ``process_sae_in`` (so normalisation,
``b_dec`` subtraction and ``hook_z`` reshaping are SAELens's), but lay the result out feature-major and skip
the intermediate copies, because after the model forward this is the hot loop.

Decoder norms are folded into the encoder as SAEDashboard does (``fold_W_dec_norm``), so activations are
in units of the feature's contribution to the reconstruction. A TopK SAE without
``rescale_acts_by_decoder_norm`` cannot be folded without changing which features win, so its selected
values are multiplied by the decoder norms after the top-k instead: the same numbers, same selection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from interpedia.errors import Invalid, Unavailable
from interpedia.generate.model_loading import TORCH_DTYPES

log = logging.getLogger(__name__)

# SAELens's transcoder architectures: the encoder reads ``hook_name``, the decoder writes ``hook_name_out``.
TRANSCODER_ARCHITECTURES = frozenset(
    {"transcoder", "skip_transcoder", "jumprelu_transcoder", "jumprelu_skip_transcoder"}
)


@dataclass
class SparseActs:
    """Positive activations of one minibatch, feature-major with tokens ascending within a feature.

    ``feat`` [nnz] int64, ``tok`` [nnz] int64 (row of the minibatch), ``val`` [nnz] float32.
    """

    feat: torch.Tensor
    tok: torch.Tensor
    val: torch.Tensor
    n_tokens: int


class LoadedSae:
    """A SAELens SAE ready to encode: folded (when asked), with its hook and catalogue metadata."""

    def __init__(self, sae: Any, *, spec: str, fold: bool) -> None:
        self.sae = sae
        self.spec = spec
        self.architecture: str = sae.cfg.architecture()
        self.post_scale: torch.Tensor | None = None
        self.folded = False
        if getattr(sae, "hook_z_reshaping_mode", False):
            # Activations reach the SAE already flattened to [tokens, n_heads * d_head] (HookedModel.activations);
            # SAELens's hook_z reshaping would flatten them a second time.
            sae.turn_off_forward_pass_hook_z_reshaping()
        if fold:
            if self.architecture == "topk" and not getattr(sae.cfg, "rescale_acts_by_decoder_norm", False):
                self.post_scale = sae.W_dec.detach().norm(dim=-1).clamp(min=1e-8)
            else:
                sae.fold_W_dec_norm()
            self.folded = True
        self.sae.eval()

    @classmethod
    def load(cls, spec: str, *, device: str = "cpu", dtype: str = "float32", fold: bool = True) -> LoadedSae:
        """From a directory (``cfg.json`` + ``sae_weights.safetensors``) or a SAELens ``release/sae_id``."""
        from sae_lens import SAE

        path = Path(spec).expanduser()
        if path.is_dir():
            if not (path / "cfg.json").exists():
                raise Invalid(f"{path} is not an SAE directory: it has no cfg.json (SAELens's format)", field="sae")
            try:
                sae = SAE.load_from_disk(str(path), device=device, dtype=dtype)
            except Exception as exc:  # SAELens raises ValueError, KeyError or OSError for a bad cfg or weights
                message = f"{path}: SAELens could not load the SAE: {type(exc).__name__}: {exc}"
                raise Invalid(message, field="sae") from None
            return cls(sae, spec=spec, fold=fold)
        release, _, sae_id = spec.partition("/")
        if path.exists() or _looks_like_path(spec) or not sae_id:
            raise Invalid(f"no SAE directory at {spec} (nor is it a SAELens RELEASE/SAE_ID)", field="sae")
        if release not in _releases():
            raise Invalid(
                f"no SAE directory at {spec}, and {release!r} is not a SAELens release (RELEASE/SAE_ID)", field="sae"
            )
        try:
            sae = SAE.from_pretrained(release, sae_id, device=device, dtype=dtype)
        except ValueError as exc:  # an unknown SAE id within the release
            raise Invalid(f"SAELens release {release}: {exc}", field="sae") from None
        except Exception as exc:  # offline, or the hub refused
            raise Unavailable(
                f"SAE {sae_id} of SAELens release {release} could not be downloaded: {type(exc).__name__}: {exc}",
                field="sae",
            ) from None
        return cls(sae, spec=spec, fold=fold)

    # --- facts ---------------------------------------------------------------------------------

    @property
    def d_sae(self) -> int:
        """Number of features."""
        return int(self.sae.cfg.d_sae)

    @property
    def d_in(self) -> int:
        """Input width."""
        return int(self.sae.cfg.d_in)

    @property
    def metadata(self) -> Any:
        """SAELens metadata (model_name, hook_name, neuronpedia_id, ...)."""
        return self.sae.cfg.metadata

    @property
    def hook_name(self) -> str:
        """The TransformerLens hook the SAE reads."""
        return str(self.metadata.hook_name)

    @property
    def is_transcoder(self) -> bool:
        """True for SAELens transcoders (they read one hook and write another)."""
        return self.architecture in TRANSCODER_ARCHITECTURES

    @property
    def hook_name_out(self) -> str | None:
        """The hook a transcoder's decoder writes to (``metadata.hook_name_out``); None for an SAE."""
        out = self.metadata.hook_name_out if self.is_transcoder else None
        return str(out) if out else None

    @property
    def d_out(self) -> int:
        """Decoder width: ``d_out`` for a transcoder, ``d_in`` for an SAE."""
        return int(getattr(self.sae.cfg, "d_out", None) or self.d_in)

    def cfg_dict(self) -> dict[str, Any]:
        """The SAE's ``cfg.json`` content."""
        return dict(self.sae.cfg.to_dict())

    @torch.no_grad()
    def decoder_directions(self) -> torch.Tensor:
        """Unit-norm decoder rows [d_sae, d_in], float32."""
        w = self.sae.W_dec.detach().float()
        return w / w.norm(dim=-1, keepdim=True).clamp(min=1e-8)

    @torch.no_grad()
    def dense(self, x: torch.Tensor) -> torch.Tensor:
        """Reference activations [T, d_sae] through SAELens's own ``encode`` (post-scaled like the pass)."""
        acts = self.sae.encode(x).float()
        return acts * self.post_scale if self.post_scale is not None else acts

    def encoder(self) -> Callable[[torch.Tensor, torch.Tensor | None], SparseActs]:
        """The fastest exact encoder for this architecture: ``(x [T, d_in], ignore [T] bool) -> SparseActs``."""
        build = _ENCODERS.get(self.architecture, _GenericEncoder)
        return build(self)


def _looks_like_path(spec: str) -> bool:
    """A spec that can only be a path (a SAELens id is ``release/sae_id`` with a relative release name)."""
    return spec.startswith(("/", "./", "../", "~"))


def _releases() -> set[str]:
    """SAELens's known releases (its bundled directory; no download)."""
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    return set(get_pretrained_saes_directory())


# --- encoders ---------------------------------------------------------------------------------------


class _Scratch:
    """Reused output buffers: a fresh 64 MB tensor per minibatch costs more in page faults than the GEMM
    spends filling it (measured: 47 ms into a reused buffer, 69-84 ms into a new one)."""

    def __init__(self) -> None:
        self.buffers: dict[str, torch.Tensor] = {}

    def get(self, name: str, rows: int, cols: int, like: torch.Tensor) -> torch.Tensor:
        """A contiguous [rows, cols] tensor (contents undefined) backed by a buffer kept between calls."""
        buf = self.buffers.get(name)
        if buf is None or buf.numel() < rows * cols or buf.dtype != like.dtype or buf.device != like.device:
            buf = torch.empty(rows * cols, dtype=like.dtype, device=like.device)
            self.buffers[name] = buf
        return buf[: rows * cols].view(rows, cols)


def _sparse_from_dense_ft(acts: torch.Tensor, ignore: torch.Tensor | None) -> SparseActs:
    """Non-zero entries of non-negative feature-major acts [F, T], minus those at ignored tokens."""
    n_feat, n_tok = acts.shape
    flat = torch.nonzero(acts.view(-1)).squeeze(1)
    feat = torch.div(flat, n_tok, rounding_mode="floor")
    tok = flat - feat * n_tok
    val = torch.take(acts, flat).float()
    if ignore is not None:
        keep = ~ignore[tok]
        feat, tok, val = feat[keep], tok[keep], val[keep]
    return SparseActs(feat=feat, tok=tok, val=val, n_tokens=n_tok)


class _StandardEncoder:
    """``relu((x - b_dec) @ W_enc + b_enc)`` computed as [F, T]."""

    def __init__(self, loaded: LoadedSae) -> None:
        self.loaded = loaded
        sae = loaded.sae
        self.w_t = sae.W_enc.detach().T.contiguous()  # [F, d_in]
        self.b = sae.b_enc.detach()[:, None]
        self.scratch = _Scratch()

    def pre(self, sae_in: torch.Tensor, name: str = "pre") -> torch.Tensor:
        out = self.scratch.get(name, self.w_t.shape[0], sae_in.shape[0], sae_in)
        return torch.addmm(self.b, self.w_t, sae_in.T, out=out)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, ignore: torch.Tensor | None) -> SparseActs:
        acts = self.pre(self.loaded.sae.process_sae_in(x)).relu_()
        return _sparse_from_dense_ft(acts, ignore)


class _JumpReluEncoder(_StandardEncoder):
    """``relu(pre) * (pre > threshold)``."""

    def __init__(self, loaded: LoadedSae) -> None:
        super().__init__(loaded)
        self.threshold = loaded.sae.threshold.detach()[:, None]

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, ignore: torch.Tensor | None) -> SparseActs:
        pre = self.pre(self.loaded.sae.process_sae_in(x))
        # relu(pre) > thr <=> pre > thr whenever the result is non-zero, so masking after the relu is exact.
        acts = pre.relu_().masked_fill_(pre <= self.threshold, 0)
        return _sparse_from_dense_ft(acts, ignore)


class _GatedEncoder:
    """``(x' @ W_enc + b_gate > 0) * relu(x' @ (W_enc * exp(r_mag)) + b_mag)``."""

    def __init__(self, loaded: LoadedSae) -> None:
        self.loaded = loaded
        sae = loaded.sae
        w = sae.W_enc.detach()
        self.w_gate_t = w.T.contiguous()
        self.w_mag_t = (w * sae.r_mag.detach().exp()).T.contiguous()
        self.b_gate = sae.b_gate.detach()[:, None]
        self.b_mag = sae.b_mag.detach()[:, None]
        self.scratch = _Scratch()

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, ignore: torch.Tensor | None) -> SparseActs:
        sae_in = self.loaded.sae.process_sae_in(x)
        n_feat, n_tok = self.w_gate_t.shape[0], sae_in.shape[0]
        gate = torch.addmm(self.b_gate, self.w_gate_t, sae_in.T, out=self.scratch.get("gate", n_feat, n_tok, sae_in))
        acts = torch.addmm(
            self.b_mag, self.w_mag_t, sae_in.T, out=self.scratch.get("mag", n_feat, n_tok, sae_in)
        ).relu_()
        acts.masked_fill_(gate <= 0, 0)
        return _sparse_from_dense_ft(acts, ignore)


class _TopKEncoder:
    """Top-k of the pre-activations per token, then ReLU: sparse by construction, no dense pass needed."""

    def __init__(self, loaded: LoadedSae) -> None:
        self.loaded = loaded
        sae = loaded.sae
        self.k = int(sae.cfg.k)
        self.w = sae.W_enc.detach()
        self.b = sae.b_enc.detach()
        self.rescale = sae.W_dec.detach().norm(dim=-1) if sae.cfg.rescale_acts_by_decoder_norm else None
        self.scratch = _Scratch()

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, ignore: torch.Tensor | None) -> SparseActs:
        sae_in = self.loaded.sae.process_sae_in(x)
        # [T, F]: SAELens's expression (sae_in @ W_enc + b_enc), evaluated into a reused buffer
        pre = torch.mm(sae_in, self.w, out=self.scratch.get("pre", sae_in.shape[0], self.w.shape[1], sae_in))
        pre += self.b
        if self.rescale is not None:
            pre *= self.rescale
        top = torch.topk(pre, k=self.k, dim=-1)
        n_tok = pre.shape[0]
        val = top.values.relu().float().reshape(-1)
        feat = top.indices.reshape(-1)
        tok = torch.arange(n_tok, device=pre.device).repeat_interleave(self.k)
        keep = val > 0
        if ignore is not None:
            keep &= ~ignore[tok]
        feat, tok, val = feat[keep], tok[keep], val[keep]
        if self.loaded.post_scale is not None:
            val = val * self.loaded.post_scale[feat].float()
        order = torch.sort(feat, stable=True).indices  # feature-major, tokens stay ascending
        return SparseActs(feat=feat[order], tok=tok[order], val=val[order], n_tokens=n_tok)


class _GenericEncoder:
    """Any other architecture: SAELens's ``encode``, then the positive entries."""

    def __init__(self, loaded: LoadedSae) -> None:
        self.loaded = loaded

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, ignore: torch.Tensor | None) -> SparseActs:
        # Only positive activations are statistics here (as in SAEDashboard's histograms and density).
        acts = self.loaded.dense(x).T.contiguous().relu_()
        return _sparse_from_dense_ft(acts, ignore)


_ENCODERS: dict[str, Callable[[LoadedSae], Callable[[torch.Tensor, torch.Tensor | None], SparseActs]]] = {
    "standard": _StandardEncoder,
    "jumprelu": _JumpReluEncoder,
    "gated": _GatedEncoder,
    "topk": _TopKEncoder,
    # SAELens transcoders encode like these SAEs (their process_sae_in leaves b_dec out; a skip
    # connection only changes the output)
    "transcoder": _StandardEncoder,
    "skip_transcoder": _StandardEncoder,
    "jumprelu_transcoder": _JumpReluEncoder,
    "jumprelu_skip_transcoder": _JumpReluEncoder,
}


def sae_dtype(name: str) -> torch.dtype:
    """The torch dtype of a dtype name."""
    return TORCH_DTYPES[name]
