"""MGDA (Sener & Koltun, NeurIPS 2018, "Multi-task learning as multi-objective optimization", §3.1–3.3).

The update is the min-norm point of the convex hull of the task gradients,

    α* = argmin_{α ∈ Δ_T} ‖Σ_t α_t g_t‖²      (paper eq. 3),   d = Σ_t α*_t g_t,

found with the paper's Frank–Wolfe solver (Algorithm 2: start at the best pair's closed-form solution —
Algorithm 1 — then move toward the vertex with the smallest ⟨g_t, d⟩ with exact line search) on the T×T Gram matrix,
followed by an exact polish: the equality-constrained solution on the support Frank–Wolfe found is taken when it is
feasible and lowers the objective (Frank–Wolfe alone converges only sublinearly).

``rep_grad=True`` is MGDA-UB (§3.3): the gradients are taken w.r.t. the shared representation instead.

``normalization`` (as in the authors' code, ``gradient_normalizers``), used to compute α only:
``none`` (default), ``l2``: g_t/‖g_t‖, ``loss``: g_t/L_t, ``loss+``: g_t/(L_t‖g_t‖). As in the authors' code the
direction is then Σ_t α_t g_t with the *unnormalised* gradients (they back-propagate Σ α_t L_t). The logged weights
are α (sum to 1).

Options: ``normalization`` = "none", ``max_iter`` = 250, ``tol`` = 1e-5 (the authors' MAX_ITER / STOP_CRIT).
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from mtkd.errors import MtkdError
from mtkd.weighting.base import WEIGHTINGS, GramWeighting


def _line(a: float, b: float, c: float) -> float:
    """argmin_{γ∈[0,1]} ‖γx + (1−γ)y‖² given a = x·x, b = x·y, c = y·y (Algorithm 1)."""
    den = a - 2 * b + c
    if den <= 1e-30:
        return 1.0
    return min(1.0, max(0.0, (c - b) / den))


def min_norm_weights(M: Tensor, max_iter: int = 250, tol: float = 1e-5) -> Tensor:
    """α ∈ Δ minimising αᵀMα for a PSD Gram matrix M (float64)."""
    T = M.shape[0]
    if T == 1:
        return torch.ones(1, dtype=M.dtype)
    best, alpha = float("inf"), None
    for i, j in itertools.combinations(range(T), 2):
        g = _line(float(M[i, i]), float(M[i, j]), float(M[j, j]))
        a = torch.zeros(T, dtype=M.dtype)
        a[i], a[j] = g, 1 - g
        cost = float(a @ M @ a)
        if cost < best:
            best, alpha = cost, a
    for _ in range(max_iter):
        Ma = M @ alpha
        t = int(torch.argmin(Ma))
        g = _line(float(alpha @ Ma), float(Ma[t]), float(M[t, t]))
        new = g * alpha
        new[t] += 1 - g
        change = float((new - alpha).abs().sum())
        alpha = new
        if change < tol:
            break
    return _polish(M, alpha)


def _polish(M: Tensor, alpha: Tensor) -> Tensor:
    """Solve min αᵀMα s.t. Σα = 1 on the support of α exactly; keep it if feasible and better."""
    S = torch.nonzero(alpha > 1e-6).flatten()
    if len(S) < 2:
        return alpha
    A = M[S][:, S]
    n = len(S)
    K = torch.zeros(n + 1, n + 1, dtype=M.dtype)
    K[:n, :n] = 2 * A
    K[:n, n] = 1
    K[n, :n] = 1
    rhs = torch.zeros(n + 1, dtype=M.dtype)
    rhs[n] = 1
    try:
        sol = torch.linalg.solve(K, rhs)[:n]
    except RuntimeError:
        return alpha
    if not bool(torch.isfinite(sol).all()) or bool((sol < 0).any()):
        return alpha
    cand = torch.zeros_like(alpha)
    cand[S] = sol
    if float(cand @ M @ cand) <= float(alpha @ M @ alpha):
        return cand
    return alpha


@WEIGHTINGS.register("mgda")
class MGDA(GramWeighting):
    name = "mgda"
    supports_rep_grad = True
    defaults = {"normalization": "none", "max_iter": 250, "tol": 1e-5}

    def __init__(self, tasks=(), **options):
        super().__init__(tasks, **options)
        self._choice("normalization", ("none", "l2", "loss", "loss+"))

    def alpha(self, gram: Tensor, losses: Tensor | None) -> Tensor:
        mode = self.opts["normalization"]
        norms = gram.diagonal().clamp_min(0).sqrt()
        if mode == "none":
            s = torch.ones_like(norms)
        elif losses is None:
            raise MtkdError(f"mgda normalization={mode!r} needs the task losses: combine(grads, losses=...)")
        elif mode == "l2":
            s = norms
        elif mode == "loss":
            s = losses.clone()
        else:
            s = losses * norms
        s = torch.where(s > 1e-12, s, torch.ones_like(s))
        Mn = gram / (s[:, None] * s[None, :])
        a = min_norm_weights(Mn, int(self.opts["max_iter"]), float(self.opts["tol"]))
        return a
