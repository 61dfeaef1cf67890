"""OKD-MTL's online task weighting, OTW (Jacob, Agarwal & Stenger, WACV 2023, seed 002, Eq. 3), as a pure function.

    λ_i = N_t · exp(m_i / T) / Σ_j exp(m_j / T),     m_i = L_MTL^i / L_STL^i,     T = 0.1

so Σ_i λ_i = N_t and the task whose multi-task loss lags its single-task loss the most gets the largest weight.
``clamp`` (the authors' public code: 10) caps each exponential before normalising,
``λ_i = N_t · min(exp(m_i/T), c) / Σ_j min(exp(m_j/T), c)``; with T = 0.1 every ratio above T·ln c ≈ 0.23 hits the
cap, so the code form is close to equal weighting unless some task's MTL loss is far below its STL loss.

A zero single-task loss (e.g. a batch without labels for that task) would divide by zero: the denominator is clamped
at ``eps`` and a ratio 0/0 is taken as 0. Weights are computed without gradient (they are constants in Eq. 1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from mtkd.errors import MtkdError


def _as_vector(values: Sequence[float] | Mapping[str, float] | Tensor, name: str) -> Tensor:
    if isinstance(values, Mapping):
        values = list(values.values())
    if isinstance(values, Tensor):
        v = values.detach().float().reshape(-1)
    else:
        v = torch.stack([x.detach().float().reshape(()) if isinstance(x, Tensor) else torch.tensor(float(x))
                         for x in values]) if len(values) else torch.zeros(0)
    if v.numel() == 0:
        raise MtkdError(f"otw_weights: {name} is empty")
    if not torch.isfinite(v).all() or (v < 0).any():
        raise MtkdError(f"otw_weights: {name} must be finite and ≥ 0, got {v.tolist()}")
    return v


def loss_ratios(mtl_losses, stl_losses, eps: float = 1e-8) -> Tensor:
    """``m_i = L_MTL^i / max(L_STL^i, eps)`` (0 where both are 0), as a float vector."""
    mtl, stl = _as_vector(mtl_losses, "mtl_losses"), _as_vector(stl_losses, "stl_losses")
    if mtl.shape != stl.shape:
        raise MtkdError(f"otw_weights: {mtl.numel()} MTL losses but {stl.numel()} STL losses")
    return torch.where(mtl == 0, torch.zeros_like(mtl), mtl / stl.clamp_min(eps))


def otw_weights_from_ratios(ratios: Tensor, T: float = 0.1, clamp: float | None = None) -> Tensor:
    """Eq. 3 from given ratios ``m`` (a vector): ``N_t · softmax(m / T)``, or the clamped form (see module doc)."""
    if not (isinstance(T, (int, float)) and T > 0 and math.isfinite(T)):
        raise MtkdError(f"OTW temperature must be a finite number > 0, got {T!r}")
    m = ratios.detach().float().reshape(-1)
    n = m.numel()
    if clamp is None:
        return n * torch.softmax(m / T, dim=0)
    if not (isinstance(clamp, (int, float)) and clamp > 0):
        raise MtkdError(f"OTW clamp must be a number > 0 or None, got {clamp!r}")
    e = torch.exp(torch.minimum(m / T, torch.full_like(m, math.log(clamp))))  # = min(exp(m/T), clamp), no overflow
    total = e.sum()
    if total <= 0:  # every exponential underflowed (impossible for m ≥ 0): fall back to equal weights
        return torch.ones_like(m)
    return n * e / total


def otw_weights(mtl_losses, stl_losses, T: float = 0.1, clamp: float | None = None, eps: float = 1e-8) -> Tensor:
    """λ (one per task, in the given order, summing to N_t) from the MTL and STL losses (sequences, mappings with
    the same key order, or tensors). ``clamp=None``: the paper's softmax; ``clamp=10``: the public code's cap."""
    return otw_weights_from_ratios(loss_ratios(mtl_losses, stl_losses, eps), T=T, clamp=clamp)


__all__ = ["loss_ratios", "otw_weights", "otw_weights_from_ratios"]
