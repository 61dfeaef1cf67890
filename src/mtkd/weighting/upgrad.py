"""UPGrad, unconflicting projection of gradients (Quinton & Rey, 2024, "Jacobian descent for multi-objective
optimization", arXiv 2406.16232: the aggregator A_UPGrad, with π_J of eq. 3 computed by Proposition 1's dual).

Each task gradient g_t = Jᵀe_t is projected onto the dual cone {x : Jx ≥ 0} of all task gradients (eq. 3), and
the projections are averaged with the preference weights p (the paper: p = 1/T):

    d = Σ_t p_t π_J(g_t),     π_J(Jᵀe_t) = Jᵀ v_t,   v_t = argmin_{v ≥ p_t e_t} vᵀ(JJᵀ)v,

so d = Jᵀ(Σ_t v_t) with the T small QPs solved on the T×T Gram matrix (:mod:`mtkd.weighting.dualcone`). The
result never conflicts with a task: ⟨g_t, d⟩ ≥ 0 for every t; with no conflict at all it is the mean gradient.

Logged weights: the effective α = Σ_t v_t (d = Σ_t α_t g_t, α_t ≥ p_t), on the mean scale (like MGDA/CAGrad, not
the sum scale of EW/PCGrad). ``rep_grad=True`` applies the same aggregation to the gradients w.r.t. the shared
representation (not in the paper; non-conflict then holds for the representation gradients).

Peers: TorchJD (the authors' library) and LibMTL solve the same QP with quadprog on the trace-normalised Gram
matrix plus 1e-4·I (``reg_eps`` = 1e-4 reproduces them); mtkd's default is the exact projection (0).

Options: ``pref`` = None (uniform 1/T; else T non-negative numbers), ``reg_eps`` = 0.0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mtkd.weighting.base import WEIGHTINGS, GramWeighting
from mtkd.weighting.dualcone import check_reg_eps, preference, project_weights


@WEIGHTINGS.register("upgrad")
class UPGrad(GramWeighting):
    name = "upgrad"
    supports_rep_grad = True
    defaults = {"pref": None, "reg_eps": 0.0}

    def __init__(self, tasks=(), **options):
        super().__init__(tasks, **options)
        check_reg_eps(self)

    def alpha(self, gram: Tensor, losses: Tensor | None) -> Tensor:
        p = preference(self, gram.shape[0])
        return project_weights(gram, torch.diag(p), float(self.opts["reg_eps"])).sum(0)
