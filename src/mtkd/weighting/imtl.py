"""IMTL-G, the gradient half of impartial multi-task learning (Liu et al., ICLR 2021, "Towards impartial multi-task
learning", §3.2, closed form of Algorithm 1).

Find d = Σ_t α_t g_t with Σ_t α_t = 1 whose projections on every unit gradient u_t = g_t/‖g_t‖ are equal:
dᵀu_1 = dᵀu_t for all t. With D = [g_1 − g_2, …, g_1 − g_T]ᵀ and U = [u_1 − u_2, …, u_1 − u_T]ᵀ,

    α_{2:T} = g_1 Uᵀ (D Uᵀ)⁻¹,   α_1 = 1 − Σ_{t≥2} α_t,

computed here from the Gram matrix (every product above is a Gram entry divided by norms). The logged weights are α
(sum to 1). ``rep_grad=True`` applies it to the gradients w.r.t. the shared representation (the paper's choice for
efficiency). IMTL-L (the learnable loss scales of the full IMTL) is the separate loss weighting ``imtl_l``; the
hybrid of both halves is not offered.

Options: none besides ``rep_grad``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mtkd.weighting.base import WEIGHTINGS, GramWeighting


@WEIGHTINGS.register("imtl")
class IMTL(GramWeighting):
    name = "imtl"
    supports_rep_grad = True
    defaults = {}

    def alpha(self, gram: Tensor, losses: Tensor | None) -> Tensor:
        T = gram.shape[0]
        if T == 1:
            return torch.ones(1, dtype=gram.dtype)
        n = gram.diagonal().clamp_min(1e-30).sqrt()
        P = gram / n[None, :]  # P[a, b] = g_a · u_b
        # D Uᵀ [i, j] = (g_1 − g_i)·(u_1 − u_j), g_1 Uᵀ [j] = g_1·(u_1 − u_j), for i, j = 2..T
        gu = P[0, 0] - P[0, 1:]
        DU = (P[0, 0] - P[0, 1:])[None, :] - (P[1:, 0][:, None] - P[1:, 1:])
        rest = torch.linalg.lstsq(DU.T, gu[:, None]).solution.flatten()  # solves rest · DU = gu
        return torch.cat([(1 - rest.sum()).reshape(1), rest])
