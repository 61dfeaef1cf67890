"""CAGrad, conflict-averse gradient descent (Liu, Liu, Jin, Stone & Liu, NeurIPS 2021, §3.1, Algorithm 1).

Primal sub-problem: max_d min_t ⟨g_t, d⟩ s.t. ‖d − g₀‖ ≤ c‖g₀‖, with g₀ = (1/T) Σ_t g_t. Its dual over the simplex

    w* = argmin_{w ∈ Δ_T} g_wᵀ g₀ + c‖g₀‖ ‖g_w‖,   g_w = Σ_t w_t g_t,

gives d = g₀ + (c‖g₀‖ / ‖g_w*‖) g_w*. The dual is solved on the T×T Gram matrix with scipy's SLSQP (as the authors'
code), with an analytic gradient, the Gram matrix scaled to unit mean diagonal (the minimiser is scale-invariant)
and a tight tolerance.

``rescale`` as in the authors' code: 0 → d, 1 → d/(1+c²) (default), 2 → d/(1+c).
The logged weights are the effective α with d = Σ_t α_t g_t: (1/T + λ w*_t)/rescale, λ = c‖g₀‖/‖g_w*‖.
Note the scale: like MGDA's (α sums to ~1) and unlike EW/PCGrad (which sum the gradients).

Options: ``c`` = 0.4 (the paper's NYUv2/Cityscapes value), ``rescale`` = 1.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from mtkd.weighting.base import WEIGHTINGS, GramWeighting


def cagrad_dual(M: np.ndarray, c: float) -> np.ndarray:
    """w ∈ Δ minimising wᵀ M 1/T + c √(1ᵀM1/T²) √(wᵀMw) for a PSD Gram matrix M."""
    from scipy.optimize import minimize  # imported here: scipy.optimize is slow to import and only CAGrad needs it

    T = M.shape[0]
    scale = float(np.mean(np.diag(M)))
    if scale <= 0:
        return np.full(T, 1.0 / T)
    A = M / scale
    b = A.mean(1)  # A (1/T)
    k = c * np.sqrt(max(float(b.mean()), 0.0) + 1e-12)

    def f(w):
        return float(w @ b + k * np.sqrt(w @ A @ w + 1e-12))

    def jac(w):
        return b + k * (A @ w) / np.sqrt(w @ A @ w + 1e-12)

    x0 = np.full(T, 1.0 / T)
    res = minimize(f, x0, jac=jac, method="SLSQP", bounds=[(0.0, 1.0)] * T,
                   constraints=({"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones_like(w)},),
                   options={"ftol": 1e-12, "maxiter": 200})
    w = np.clip(res.x, 0.0, None)
    w = w / w.sum() if w.sum() > 0 else x0
    return w if f(w) <= f(x0) else x0


@WEIGHTINGS.register("cagrad")
class CAGrad(GramWeighting):
    name = "cagrad"
    defaults = {"c": 0.4, "rescale": 1}

    def __init__(self, tasks=(), **options):
        super().__init__(tasks, **options)
        self._choice("rescale", (0, 1, 2))

    def alpha(self, gram: Tensor, losses: Tensor | None) -> Tensor:
        T = gram.shape[0]
        c = float(self.opts["c"])
        M = gram.numpy()
        w = cagrad_dual(M, c)
        g0_norm = np.sqrt(max(M.sum() / T**2, 0.0))
        gw_norm = np.sqrt(max(w @ M @ w, 0.0))
        lam = c * g0_norm / gw_norm if gw_norm > 1e-15 else 0.0
        a = np.full(T, 1.0 / T) + lam * w
        r = {0: 1.0, 1: 1.0 + c**2, 2: 1.0 + c}[int(self.opts["rescale"])]
        return torch.from_numpy(a / r)
