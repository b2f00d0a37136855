"""The three steering methods, checked on plain tensors against their definitions."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from interpedia.inference.steering import Direction, SteerSettings, _make_hook


def _apply(
    method: str,
    act: torch.Tensor,
    vec: torch.Tensor,
    strength: float,
    *,
    multiplier: float = 1.0,
    normalize: bool = False,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    settings = SteerSettings(method=method, strength_multiplier=multiplier, normalize=normalize)
    hook = _make_hook([Direction("blocks.0.hook_resid_pre", vec, strength)], settings, {"mask": mask})
    return hook(act.clone(), SimpleNamespace(name="blocks.0.hook_resid_pre"))


@pytest.fixture
def act() -> torch.Tensor:
    return torch.randn(1, 5, 8, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def vec() -> torch.Tensor:
    return torch.randn(8, generator=torch.Generator().manual_seed(1)) * 3


def test_simple_additive_adds_strength_times_multiplier_times_vector_everywhere(
    act: torch.Tensor, vec: torch.Tensor
) -> None:
    out = _apply("SIMPLE_ADDITIVE", act, vec, 2.0, multiplier=1.5)
    assert torch.allclose(out, act + 3.0 * vec, atol=1e-6)


def test_normalize_steering_uses_the_unit_vector(act: torch.Tensor, vec: torch.Tensor) -> None:
    out = _apply("SIMPLE_ADDITIVE", act, vec, 2.0, normalize=True)
    assert torch.allclose(out, act + 2.0 * vec / vec.norm(), atol=1e-6)


def test_orthogonal_decomp_scales_only_the_parallel_component(act: torch.Tensor, vec: torch.Tensor) -> None:
    out = _apply("ORTHOGONAL_DECOMP", act, vec, 4.0)
    unit = vec / vec.norm()
    p = torch.outer(unit, unit)
    expected = act @ (torch.eye(8) - p).T + 4.0 * act @ p.T  # (I - P)h + c P h
    assert torch.allclose(out, expected, atol=1e-5)
    assert torch.allclose((out - act) @ torch.linalg.svd(p).U[:, 1:], torch.zeros(1, 5, 7), atol=1e-5)


def test_projection_cap_lowers_the_projection_to_the_cap_and_never_raises_it(
    act: torch.Tensor, vec: torch.Tensor
) -> None:
    unit = vec / vec.norm()
    proj = act @ unit
    cap = float(proj.median())
    out = _apply("PROJECTION_CAP", act, vec, cap)
    new_proj = out @ unit
    assert torch.allclose(new_proj, proj.clamp(max=cap), atol=1e-5)
    assert torch.allclose(out - new_proj[..., None] * unit, act - proj[..., None] * unit, atol=1e-5)


def test_mask_leaves_masked_positions_untouched(act: torch.Tensor, vec: torch.Tensor) -> None:
    mask = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0])
    out = _apply("SIMPLE_ADDITIVE", act, vec, 1.0, mask=mask)
    assert torch.equal(out[0, 0], act[0, 0]) and torch.equal(out[0, 3], act[0, 3])
    assert torch.allclose(out[0, 1], act[0, 1] + vec, atol=1e-6)


def test_attention_hook_shapes_are_steered_flat() -> None:
    act = torch.randn(1, 3, 4, 2)  # [batch, pos, head, d_head], as at hook_z
    vec = torch.arange(8, dtype=torch.float32)
    out = _apply("SIMPLE_ADDITIVE", act, vec, 1.0)
    assert torch.allclose(out, act + vec.view(4, 2), atol=1e-6)
