"""Nash-MTL (Navon et al., ICML 2022, "Multi-task learning as a bargaining game", §3, Claim 3.1 / eq. for the
bargaining solution).

The Nash bargaining direction is d = Σ_t α_t g_t with α > 0 solving

    (GGᵀ α)_t = 1/α_t   for every t.

Here this is solved without cvxpy: it is the stationarity condition of the strictly convex
f(α) = ½ αᵀMα − Σ_t log α_t (M = GGᵀ), minimised by damped Newton's method (Hessian M + diag(1/α²), backtracking
that keeps α > 0; start α_t = 1/‖g_t‖; ≤ 100 iterations, stop at a relative residual of 1e-10) in float64 on T×T.
A ridge of 1e-10·trace(M)/T is added to M so a solution exists when the gradients are linearly dependent.

``normalize=True`` (default, as the authors' code) solves the system for M/‖M‖_F instead — which only rescales α by
‖M‖_F^{1/2} and makes ‖d‖ scale with the gradients; ``normalize=False`` gives the paper's equation for M itself
(then αᵀMα = T, i.e. ‖d‖ = √T whatever the gradient scale). ``max_norm`` (authors' default 1.0; 0 disables)
clips ‖d‖, standing in for the authors' clip_grad_norm_ of the shared parameters. Not done: the authors'
``update_weights_every`` (α is recomputed every step) and their sequential-convex refinement (Newton solves the
same equation exactly). The logged weights are α (after clipping, i.e. the effective weights).

Options: ``normalize`` = True, ``max_norm`` = 1.0, ``max_iter`` = 100.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mtkd.weighting.base import WEIGHTINGS, GramWeighting


def nash_weights(M: Tensor, max_iter: int = 100, rtol: float = 1e-10) -> Tensor:
    """α > 0 with (Mα)_t = 1/α_t, M PSD (float64), by damped Newton on ½αᵀMα − Σ log α."""
    T = M.shape[0]
    M = M + (1e-10 * float(M.trace()) / T + 1e-300) * torch.eye(T, dtype=M.dtype)
    alpha = 1.0 / M.diagonal().sqrt()

    def f(a):
        return 0.5 * float(a @ M @ a) - float(torch.log(a).sum())

    for _ in range(max_iter):
        grad = M @ alpha - 1.0 / alpha
        if float((grad * alpha).abs().max()) < rtol:  # |α_t (Mα)_t − 1| < rtol
            break
        H = M + torch.diag(1.0 / alpha**2)
        step = torch.linalg.solve(H, grad)
        t, f0, slope = 1.0, f(alpha), float(grad @ step)
        while True:
            cand = alpha - t * step
            if bool((cand > 0).all()) and f(cand) <= f0 - 1e-4 * t * slope:
                break
            t *= 0.5
            if t < 1e-12:
                cand = alpha
                break
        alpha = cand
    return alpha


@WEIGHTINGS.register("nashmtl")
class NashMTL(GramWeighting):
    name = "nashmtl"
    defaults = {"normalize": True, "max_norm": 1.0, "max_iter": 100}

    def alpha(self, gram: Tensor, losses: Tensor | None) -> Tensor:
        scale = float(torch.linalg.norm(gram)) if self.opts["normalize"] else 1.0
        if scale <= 0:
            return torch.zeros(gram.shape[0], dtype=gram.dtype)
        a = nash_weights(gram / scale, int(self.opts["max_iter"]))
        mx = float(self.opts["max_norm"])
        if mx > 0:
            norm = float(a @ gram @ a) ** 0.5
            if norm > mx:
                a = a * (mx / norm)
        return a
