"""MoCo, stochastic multi-objective gradient with tracked gradients (Fernando, Shen, Liu, Chaudhury, Murugesan &
Chen, ICLR 2023, "Mitigating gradient bias in multi-objective learning: a provably convergent approach",
OpenReview dLAYGdKTi2, Algorithm 1).

MGDA's min-norm weights are biased when computed from stochastic gradients; MoCo tracks every task's gradient with
a running estimate Y (T×D) and moves the weights λ by one projected-gradient step per iteration:

    y_t ← y_t − β_k (y_t − h_t)                         (h_t: this step's gradient of task t)
    λ   ← Π_Δ(λ − γ_k (Y Yᵀ + ρI) λ)                    (Π_Δ: Euclidean projection onto the simplex)
    d   = Yᵀ λ

with β_k = β / k^{σ_β}, γ_k = γ / k^{σ_γ} at step k = 1, 2, … and λ = 1/T, Y = 0 at the start. The paper's
bounded-set projection of y is omitted (as in every released implementation).

Two departures of the authors' shared code (used by LibMTL) are options, off by default (the paper):
``normalize_grads=True`` feeds h_t = L_t g_t/‖g_t‖ (needs the losses, which the plumbing passes), and
``simplex="softmax"`` replaces Π_Δ by a softmax of the updated vector.

State (``extra_state``): Y (T×D, gradients' dtype/device), λ and k, so ``combine`` is not pure. Under DDP G (and
the losses) are averaged first, so every process keeps the same state. The logged weights are λ (sum 1, MGDA's
scale). ``rep_grad`` does not apply (Y tracks gradients across steps; representation coordinates are per sample).

Options: ``beta`` = 0.5, ``beta_sigma`` = 0.5, ``gamma`` = 0.1, ``gamma_sigma`` = 0.5, ``rho`` = 0.0 (LibMTL's
defaults), ``normalize_grads`` = False, ``simplex`` = "projection".
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mtkd.errors import MtkdError
from mtkd.weighting.base import WEIGHTINGS, GradientWeighting


def simplex_projection(v: Tensor) -> Tensor:
    """Euclidean projection of v (T,) onto {x ≥ 0, Σx = 1} (sort-based, Held–Wolfe–Crowder / Duchi et al. 2008)."""
    u, _ = torch.sort(v, descending=True)
    css = torch.cumsum(u, 0) - 1
    k = torch.arange(1, len(v) + 1, dtype=v.dtype)
    rho = int(torch.nonzero(u - css / k > 0).max())
    return torch.clamp(v - css[rho] / (rho + 1), min=0)


@WEIGHTINGS.register("moco")
class MoCo(GradientWeighting):
    name = "moco"
    defaults = {"beta": 0.5, "beta_sigma": 0.5, "gamma": 0.1, "gamma_sigma": 0.5, "rho": 0.0,
                "normalize_grads": False, "simplex": "projection"}

    def __init__(self, tasks=(), **options):
        super().__init__(tasks, **options)
        self._choice("simplex", ("projection", "softmax"))
        self._choice("normalize_grads", (False, True))
        self.y: Tensor | None = None
        self.lam: Tensor | None = None
        self.k = 0

    def combine(self, grads: Tensor, *, losses: Tensor | None = None) -> Tensor:
        if grads.dim() != 2:
            raise MtkdError(f"moco.combine expects a T×D matrix of task gradients, got shape {tuple(grads.shape)}")
        T = grads.shape[0]
        h = grads.detach()
        if self.opts["normalize_grads"]:
            if losses is None:
                raise MtkdError("moco normalize_grads=True needs the task losses: combine(grads, losses=...)")
            n = h.norm(dim=1, keepdim=True)
            h = h / (n + 1e-8) * losses.reshape(-1, 1).to(h)
        if self.y is None or self.y.shape != h.shape:
            self.y, self.lam, self.k = torch.zeros_like(h), torch.full((T,), 1.0 / T, dtype=torch.float64), 0
        self.y = self.y.to(h)
        self.k += 1
        beta = float(self.opts["beta"]) / self.k ** float(self.opts["beta_sigma"])
        gamma = float(self.opts["gamma"]) / self.k ** float(self.opts["gamma_sigma"])
        self.y = self.y - beta * (self.y - h)
        M = (self.y @ self.y.T).double().cpu() + float(self.opts["rho"]) * torch.eye(T, dtype=torch.float64)
        v = self.lam - gamma * (M @ self.lam)
        self.lam = simplex_projection(v) if self.opts["simplex"] == "projection" else torch.softmax(v, 0)
        self.last_weights = self.lam.clone()
        return self.lam.to(grads.dtype).to(grads.device) @ self.y.to(grads.dtype)

    def get_extra_state(self) -> Any:
        return {"y": self.y, "lam": self.lam, "k": self.k}

    def set_extra_state(self, state: Any) -> None:
        self.y, self.lam = (None if v is None else v.clone() for v in (state["y"], state["lam"]))
        self.k = int(state["k"])
