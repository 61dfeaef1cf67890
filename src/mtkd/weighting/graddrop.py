"""GradDrop, gradient sign dropout (Chen et al., NeurIPS 2020, "Just pick a sign", §3, Algorithm 1).

Per coordinate k: purity P_k = ½(1 + Σ_t g_tk / Σ_t |g_tk|) (eq. 1); draw U_k ~ Uniform(0, 1); keep g_tk iff
(P_k > U_k and g_tk > 0) or (P_k < U_k and g_tk < 0); d_k = Σ_t kept g_tk. ``leak`` ℓ ∈ [0, 1] (paper §3.2) keeps a
fraction of every gradient: mask ← ℓ + (1−ℓ)·mask. Default leak 0 (all tasks sign-dropped).

The paper applies it to the gradients at an activation layer (``rep_grad=True``), where it first sums over the
batch; here the purity is computed per element of whatever is given (per sample and position with
``rep_grad=True``, per parameter otherwise) — a documented simplification. U comes from this module's generator
(``seed``) on the gradients' device, so all DDP processes draw the same mask.

Logged weights: d is not a linear combination of the task gradients, so the least-squares coefficients
argmin_α ‖Gᵀα − d‖ are logged (a summary, not exact).

Options: ``leak`` = 0.0, ``seed`` = 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mtkd.weighting.base import WEIGHTINGS, GeneratorMixin, GradientWeighting


def least_squares_weights(grads: Tensor, d: Tensor) -> Tensor:
    """argmin_α ‖Gᵀα − d‖ via the normal equations in float64 (T×T)."""
    G = grads.detach()
    M = (G @ G.T).double().cpu()
    b = (G @ d.detach()).double().cpu()
    return torch.linalg.lstsq(M, b[:, None]).solution.flatten()


@WEIGHTINGS.register("graddrop")
class GradDrop(GeneratorMixin, GradientWeighting):
    name = "graddrop"
    supports_rep_grad = True
    defaults = {"leak": 0.0, "seed": 0}

    def combine(self, grads: Tensor, *, losses: Tensor | None = None) -> Tensor:
        P = 0.5 * (1 + grads.sum(0) / (grads.abs().sum(0) + 1e-7))
        U = torch.rand(P.shape, generator=self._generator(grads.device), device=grads.device, dtype=P.dtype)
        keep = ((P > U) & (grads > 0)) | ((P < U) & (grads < 0))
        leak = float(self.opts["leak"])
        mask = keep.to(grads.dtype) if leak == 0 else leak + (1 - leak) * keep.to(grads.dtype)
        d = (mask * grads).sum(0)
        self.last_weights = least_squares_weights(grads, d).float()
        return d
