"""Nash-MTL (Navon et al., ICML 2022, "Multi-task learning as a bargaining game", §3, Claim 3.1 / eq. for the
bargaining solution).

The Nash bargaining direction is d = Σ_t α_t g_t with α > 0 solving

    (GGᵀ α)_t = 1/α_t   for every t.

Here this is solved without cvxpy: it is the stationarity condition of the strictly convex
f(α) = ½ αᵀMα − Σ_t log α_t (M = GGᵀ), minimised by damped Newton's method (Hessian M + diag(1/α²), backtracking
that keeps α > 0; ≤ ``max_iter`` iterations, stop when max_t |α_t (Mα)_t − 1| < 1e-10) in float64 on T×T.

Scale: the equation is invariant under diagonal rescaling. With D = diag(‖g_t‖) and the correlation matrix
C = D⁻¹MD⁻¹ (unit diagonal), β = Dα solves (Cβ)_t = 1/β_t, and α_t (Mα)_t = β_t (Cβ)_t. Newton therefore runs on C
(start β = 1) and returns α = β/‖g‖: gradients whose norms differ by 1e6 (M's diagonal by 1e12) are solved to the
same relative residual as equal ones. No ridge is added unless Newton fails to converge (C singular with a
positive null vector, e.g. two exactly opposite gradients: then no solution exists); the retry adds 1e-10·I to C,
a ridge relative to every task's own scale. A task with a zero gradient gets α_t = 0 and the equation is solved
for the others. (Before this, a ridge of 1e-10·trace(M)/T on M swamped the small task's diagonal at a 1e5 norm
ratio: residual 0.33, cosine 0.995 to the exact direction; at 1e6 residual 0.98, cosine 0.80.)

``normalize``: the authors' code divides GᵀG by its Frobenius norm ‖M‖_F before its convex solver but multiplies
the same factor back into every constraint (−log(α_t·‖M‖_F) − log((M/‖M‖_F)α)_t ≤ 0), so it solves the paper's
equation for M itself: ``normalize=False`` (default) is the paper and the authors' code. ``normalize=True`` solves
the equation for M/‖M‖_F instead, which rescales α by ‖M‖_F^{1/2} (‖d‖ then scales with the gradients rather than
‖d‖ = √T); it is kept for runs made before the default changed.

``max_norm`` (authors' default 1.0; 0 disables) clips ‖d‖, standing in for the authors' clip_grad_norm_ of the
shared parameters after their backward (theirs also clips the rest of the shared gradient, e.g. a distillation
term; mtkd clips the task direction only).

``update_weights_every`` = k (authors' option name, default 1) is an alias of every Gram method's ``update_every``
(:class:`mtkd.weighting.base.GramWeighting`): α is recomputed at steps 0, k, 2k, … and the last α is reused in
between with one plain backward of Σ_t α_t L_t, as the authors do. Not done: the authors' sequential-convex
refinement (Newton solves the same equation to 1e-10; theirs stops at ‖Mα − 1/α‖ < 1e-3 on the normalised M or
after 20 rounds). The logged weights are α (after clipping, i.e. the effective weights).

Options: ``normalize`` = False, ``max_norm`` = 1.0, ``max_iter`` = 100, ``update_every`` (alias
``update_weights_every``) = 1.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mtkd.errors import MtkdError
from mtkd.weighting.base import WEIGHTINGS, GramWeighting


def _newton(C: Tensor, max_iter: int, rtol: float) -> tuple[Tensor, bool]:
    """β > 0 with (Cβ)_t = 1/β_t by damped Newton on ½βᵀCβ − Σ log β from β = 1; (β, converged)."""
    beta = torch.ones(C.shape[0], dtype=C.dtype)

    def f(b):
        return 0.5 * float(b @ C @ b) - float(torch.log(b).sum())

    for _ in range(max_iter):
        grad = C @ beta - 1.0 / beta
        if float((grad * beta).abs().max()) < rtol:  # |β_t (Cβ)_t − 1| < rtol
            return beta, True
        H = C + torch.diag(1.0 / beta**2)
        try:
            step = torch.linalg.solve(H, grad)
        except RuntimeError:  # H numerically singular: β diverging along a positive null vector of C
            return beta, False
        t, f0, slope = 1.0, f(beta), float(grad @ step)
        while True:
            cand = beta - t * step
            if bool((cand > 0).all()) and f(cand) <= f0 - 1e-4 * t * slope:
                break
            t *= 0.5
            if t < 1e-12:
                return beta, False
        beta = cand
    grad = C @ beta - 1.0 / beta
    return beta, float((grad * beta).abs().max()) < rtol


def nash_weights(M: Tensor, max_iter: int = 100, rtol: float = 1e-10) -> Tensor:
    """α ≥ 0 with (Mα)_t = 1/α_t for every task with a nonzero gradient (M = GGᵀ PSD, float64); α_t = 0 where
    M_tt = 0. Solved on the correlation matrix (scale-free, see the module docstring)."""
    M = M.double()
    diag = M.diagonal().clamp_min(0)
    live = diag > 0
    alpha = torch.zeros(M.shape[0], dtype=M.dtype)
    if not bool(live.any()):
        return alpha
    s = diag[live].sqrt()
    C = M[live][:, live] / s[:, None] / s[None, :]
    beta, ok = _newton(C, max_iter, rtol)
    if not ok:  # singular C with a positive null vector: relative ridge
        beta, _ = _newton(C + 1e-10 * torch.eye(C.shape[0], dtype=C.dtype), max_iter, rtol)
    alpha[live] = beta / s
    return alpha


@WEIGHTINGS.register("nashmtl")
class NashMTL(GramWeighting):
    name = "nashmtl"
    defaults = {"normalize": False, "max_norm": 1.0, "max_iter": 100}

    def __init__(self, tasks=(), **options: Any):
        k = options.pop("update_weights_every", None)  # the authors' name for update_every
        if k is not None:
            if options.get("update_every", k) != k:
                raise MtkdError("weighting 'nashmtl': give update_every or its alias update_weights_every, not both")
            options["update_every"] = k
        super().__init__(tasks, **options)

    def alpha(self, gram: Tensor, losses: Tensor | None) -> Tensor:
        scale = float(torch.linalg.norm(gram)) if self.opts["normalize"] else 1.0
        if scale <= 0:
            a = torch.zeros(gram.shape[0], dtype=gram.dtype)
        else:
            a = nash_weights(gram / scale, int(self.opts["max_iter"]))
            mx = float(self.opts["max_norm"])
            if mx > 0:
                norm = max(float(a @ gram @ a), 0.0) ** 0.5
                if norm > mx:
                    a = a * (mx / norm)
        return a

    def get_extra_state(self) -> Any:
        return self._hold_state()

    def set_extra_state(self, state: Any) -> None:
        self._load_hold_state(state)
