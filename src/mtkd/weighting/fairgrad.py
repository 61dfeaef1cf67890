"""FairGrad, α-fair resource allocation of the update among tasks (Ban & Ji, ICML 2024, "Fair resource allocation in
multi-task learning", arXiv 2402.15638: the α-fair update and its optimality condition).

The update d maximises the α-fair utility of the task "rates" u_t = ⟨g_t, d⟩ in a ball,
max_{‖d‖≤ε} Σ_t u_t^{1−α}/(1−α) (log u_t at α = 1). Its optimality condition gives d = Σ_t w_t g_t with w > 0 and

    (G Gᵀ w)_t = w_t^{−1/α}   for every task t                 (so u_t = w_t^{−1/α}, w_t = u_t^{−α}).

α = 1 is proportional fairness (Nash-MTL's equation), α → ∞ max-min fairness; α = 0 is linear scalarisation (use
``ew``) and is refused here. The equation is the stationarity condition of the strictly convex
½wᵀMw − Σ_t φ(w_t), φ'(w) = w^{−1/α} (M = GGᵀ), solved by damped Newton in float64 on T×T after scaling M to unit
mean diagonal (w scales back as s^{−α/(α+1)}, exact), stopping when max_t |w_t^{1/α}(Mw)_t − 1| < 1e-10. The
authors' code and LibMTL solve the same equation with ``scipy.optimize.least_squares`` from w = 1/T (tolerance
1e-8 on the cost; within it the results agree). A task with a zero gradient gets w_t = 0 (its equation has no
finite solution; it does not move d). Logged weights are w (their scale follows the gradients').
``rep_grad`` does not apply (the paper and its code work on the shared parameters).

Options: ``alpha`` = 1.0 (LibMTL's default; the paper tunes α per benchmark), ``max_iter`` = 100.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mtkd.errors import MtkdError
from mtkd.weighting.base import WEIGHTINGS, GramWeighting


def alpha_fair_weights(M: Tensor, alpha: float, max_iter: int = 100, rtol: float = 1e-10) -> Tensor:
    """w ≥ 0 with (Mw)_t = w_t^{−1/α} for every task with a nonzero gradient; w_t = 0 where M_tt = 0."""
    M = M.double()
    live = M.diagonal() > 0
    w = torch.zeros(M.shape[0], dtype=M.dtype)
    if not bool(live.any()):
        return w
    A = M[live][:, live]
    s = float(A.diagonal().mean())
    A = A / s
    p = 1.0 / alpha
    for ridge in (0.0, 1e-10):
        B = A + ridge * torch.eye(len(A), dtype=A.dtype)
        v, ok = _newton(B, p, max_iter, rtol)
        if ok:
            break
    w[live] = v * s ** (-alpha / (alpha + 1))
    return w


def _newton(A: Tensor, p: float, max_iter: int, rtol: float) -> tuple[Tensor, bool]:
    v = torch.ones(A.shape[0], dtype=A.dtype)

    def phi(x):
        return torch.log(x).sum() if p == 1.0 else (x ** (1 - p)).sum() / (1 - p)

    def f(x):
        return 0.5 * float(x @ A @ x) - float(phi(x))

    def residual(x):
        return float((x**p * (A @ x) - 1).abs().max())

    for _ in range(max_iter):
        if residual(v) < rtol:
            return v, True
        grad = A @ v - v ** (-p)
        H = A + torch.diag(p * v ** (-p - 1))
        step = torch.linalg.solve(H, grad)
        t, f0, slope = 1.0, f(v), float(grad @ step)
        while True:
            cand = v - t * step
            if bool((cand > 0).all()) and f(cand) <= f0 - 1e-4 * t * slope:
                break
            t *= 0.5
            if t < 1e-14:
                return v, residual(v) < rtol
        v = cand
    return v, residual(v) < rtol


@WEIGHTINGS.register("fairgrad")
class FairGrad(GramWeighting):
    name = "fairgrad"
    defaults = {"alpha": 1.0, "max_iter": 100}

    def __init__(self, tasks=(), **options):
        super().__init__(tasks, **options)
        a = self.opts["alpha"]
        if not isinstance(a, (int, float)) or not math.isfinite(a) or a <= 0:
            raise MtkdError(f"fairgrad: option alpha must be a finite number > 0 (alpha = 0 is linear "
                            f"scalarisation: weighting ew), got {a!r}")

    def alpha(self, gram: Tensor, losses: Tensor | None) -> Tensor:
        return alpha_fair_weights(gram, float(self.opts["alpha"]), int(self.opts["max_iter"]))
