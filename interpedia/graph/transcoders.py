"""Transcoders as the attribution engine reads them: one typed, in-memory layout for every file format.

A transcoder replaces an MLP: it reads the MLP's input (``ln2`` output, or the residual stream before ``ln2``),
encodes it into sparse features, and decodes them into the MLP's output. A *per-layer* transcoder (PLT) decodes
into its own layer only; a *cross-layer* transcoder (CLT) decodes a feature read at layer ``l`` into the MLP
outputs of layers ``l .. n_layers - 1``. Both are held here as a :class:`TranscoderSet`, whatever file they came
from (``loading.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from interpedia.errors import Invalid

# Where the encoders read: the MLP's input (ln2's output, after its weight and bias), ln2's normalized value before
# its weight and bias (TransformerLens's ``ln2.hook_normalized``), or the residual stream before ln2.
InputSite = Literal["mlp_in", "ln2_normalized", "resid_mid"]
ActivationKind = Literal["relu", "jumprelu", "topk"]

# TransformerLens / circuit-tracer hook names (relative to ``blocks.{layer}``) -> where the transcoder reads.
INPUT_HOOKS: dict[str, InputSite] = {
    "ln2.hook_normalized": "ln2_normalized",  # TransformerLens: (x - mean) / scale, before ln2's w and b
    "mlp.hook_in": "mlp_in",  # circuit-tracer's ReplacementMLP input = ln2's output
    "hook_resid_mid": "resid_mid",
    "hook_mlp_in": "resid_mid",  # TransformerLens copies resid_mid here, before ln2
}
OUTPUT_HOOKS = {"hook_mlp_out", "mlp.hook_out"}


class TranscoderError(Invalid):
    """A transcoder file or set that cannot be used; the message names the path and the field."""


@dataclass(frozen=True)
class Activation:
    """A transcoder's nonlinearity.

    ``relu``: ``max(pre, 0)``. ``jumprelu``: ``pre * (pre > threshold)`` (and ``max(pre, 0)`` first when
    ``relu_first``, as SAELens does; the two agree for non-negative thresholds). ``topk``: the ``k`` largest
    pre-activations of each token kept as they are (circuit-tracer's TopK: no ReLU), the rest zero.
    """

    kind: ActivationKind
    threshold: torch.Tensor | None = None  # [d_transcoder]
    k: int | None = None
    relu_first: bool = False

    def __call__(self, pre: torch.Tensor) -> torch.Tensor:
        """Activations [..., d_transcoder] from pre-activations [..., d_transcoder]."""
        if self.kind == "relu":
            return pre.relu()
        if self.kind == "jumprelu":
            assert self.threshold is not None
            base = pre.relu() if self.relu_first else pre
            return base * (pre > self.threshold.to(pre))
        assert self.k is not None
        top = torch.topk(pre, k=self.k, dim=-1).indices
        return torch.zeros_like(pre).scatter_(-1, top, pre.gather(-1, top))

    def to(self, device: torch.device | str, dtype: torch.dtype) -> Activation:
        """The same activation with its threshold on ``device``."""
        thr = None if self.threshold is None else self.threshold.to(device, dtype)
        return Activation(self.kind, thr, self.k, self.relu_first)


@dataclass
class TranscoderSet:
    """The transcoders of all layers of a model.

    Shapes (``d`` = d_model, ``F_l`` = features of layer ``l``, ``L`` = n_layers):

    - ``W_enc[l]`` [F_l, d]: row ``f`` is feature ``f``'s encoder vector (circuit-tracer's orientation; the
      transpose of SAELens's ``W_enc``); ``b_enc[l]`` [F_l].
    - ``W_dec[l]`` [F_l, n_out_l, d]: decoder of layer ``l``'s features into the MLP outputs of layers
      ``l .. l + n_out_l - 1`` (``n_out_l`` = 1 for per-layer transcoders, ``L - l`` for cross-layer ones).
    - ``b_dec`` [L, d]: bias of each layer's reconstruction.
    - ``W_skip[l]`` [d, d] or None: a linear skip path, ``skip(x) = x @ W_skip[l].T``.
    - ``input_site``: the encoders read the MLP input (ln2's output; circuit-tracer's ``mlp.hook_in``), ln2's
      normalized value before its weight and bias (``blocks.l.ln2.hook_normalized``), or the residual stream
      before ln2 (``blocks.l.hook_resid_mid``); the decoders always write ``blocks.l.hook_mlp_out``.
    """

    W_enc: list[torch.Tensor]
    b_enc: list[torch.Tensor]
    W_dec: list[torch.Tensor]
    b_dec: torch.Tensor
    W_skip: list[torch.Tensor | None]
    activations: list[Activation]
    input_site: InputSite
    cross_layer: bool = False
    origin: str = ""  # where it was loaded from, for messages and metadata

    def __post_init__(self) -> None:
        n = len(self.W_enc)
        lists = (self.b_enc, self.W_dec, self.W_skip, self.activations)
        if n == 0 or any(len(x) != n for x in lists) or self.b_dec.shape[0] != n:
            raise TranscoderError(f"{self.origin or 'transcoder set'}: every layer needs encoder, decoder and biases")
        d = self.d_model
        for layer in range(n):
            f = self.W_enc[layer].shape[0]
            n_out = n - layer if self.cross_layer else 1
            checks = {
                "W_enc": (tuple(self.W_enc[layer].shape), (f, d)),
                "b_enc": (tuple(self.b_enc[layer].shape), (f,)),
                "W_dec": (tuple(self.W_dec[layer].shape), (f, n_out, d)),
            }
            skip = self.W_skip[layer]
            if skip is not None:
                checks["W_skip"] = (tuple(skip.shape), (d, d))
            thr = self.activations[layer].threshold
            if thr is not None:
                checks["threshold"] = (tuple(thr.shape), (f,))
            for name, (got, want) in checks.items():
                if got != want:
                    raise TranscoderError(
                        f"{self.origin or 'transcoder set'}: layer {layer} {name} has shape {list(got)}, "
                        f"expected {list(want)}"
                    )

    # --- facts ---------------------------------------------------------------------------------

    @property
    def n_layers(self) -> int:
        """Number of layers covered (0 .. n_layers - 1)."""
        return len(self.W_enc)

    @property
    def d_model(self) -> int:
        """Residual stream width."""
        return int(self.b_dec.shape[-1])

    def d_transcoder(self, layer: int) -> int:
        """Number of features of one layer."""
        return int(self.W_enc[layer].shape[0])

    @property
    def input_hook(self) -> str:
        """The hook (relative to ``blocks.{layer}``) the encoders read."""
        return {"mlp_in": "mlp.hook_in", "ln2_normalized": "ln2.hook_normalized", "resid_mid": "hook_resid_mid"}[
            self.input_site
        ]

    @property
    def output_hook(self) -> str:
        """The hook (relative to ``blocks.{layer}``) the decoders write."""
        return "hook_mlp_out"

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> TranscoderSet:
        """A copy on ``device`` in ``dtype``."""

        def mv(t: torch.Tensor) -> torch.Tensor:
            return t.to(device, dtype)

        return TranscoderSet(
            W_enc=[mv(w) for w in self.W_enc],
            b_enc=[mv(b) for b in self.b_enc],
            W_dec=[mv(w) for w in self.W_dec],
            b_dec=mv(self.b_dec),
            W_skip=[None if w is None else mv(w) for w in self.W_skip],
            activations=[a.to(device, dtype) for a in self.activations],
            input_site=self.input_site,
            cross_layer=self.cross_layer,
            origin=self.origin,
        )

    # --- computing -----------------------------------------------------------------------------

    def encode(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """Feature activations [..., F_l] of layer ``layer`` from its input [..., d]."""
        pre = x @ self.W_enc[layer].T + self.b_enc[layer]
        return self.activations[layer](pre)

    def skip(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """The skip path's output [..., d] (zeros without a skip)."""
        w = self.W_skip[layer]
        return torch.zeros_like(x) if w is None else x @ w.T

    def reconstruct(self, acts: list[torch.Tensor], inputs: list[torch.Tensor]) -> torch.Tensor:
        """MLP outputs [L, pos, d] the transcoders predict from activations [pos, F_l] and inputs [pos, d]."""
        out = self.b_dec[:, None, :].expand(self.n_layers, acts[0].shape[0], self.d_model).clone()
        for layer in range(self.n_layers):
            dec = self.W_dec[layer]  # [F, n_out, d]
            written = torch.einsum("pf,fod->opd", acts[layer], dec)
            out[layer : layer + dec.shape[1]] += written
            out[layer] += self.skip(layer, inputs[layer])
        return out


def input_site_of(hook: str, *, where: str) -> InputSite:
    """The input site of a hook name (``blocks.3.ln2.hook_normalized``, ``mlp.hook_in``, ``hook_resid_mid`` ...)."""
    rel = hook.split(".", 2)[2] if hook.startswith("blocks.") and hook.count(".") >= 2 else hook
    site = INPUT_HOOKS.get(rel)
    if site is None:
        raise TranscoderError(
            f"{where}: input hook {hook!r} is not supported; a transcoder must read the MLP input "
            f"({', '.join(sorted(INPUT_HOOKS))})"
        )
    return site


def check_output_hook(hook: str, *, where: str) -> None:
    """Refuse an output hook that is not the MLP output."""
    rel = hook.split(".", 2)[2] if hook.startswith("blocks.") and hook.count(".") >= 2 else hook
    if rel not in OUTPUT_HOOKS:
        raise TranscoderError(
            f"{where}: output hook {hook!r} is not supported; a transcoder must write the MLP output "
            f"({', '.join(sorted(OUTPUT_HOOKS))})"
        )
