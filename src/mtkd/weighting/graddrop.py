"""GradDrop, gradient sign dropout (Chen et al., NeurIPS 2020, "Just pick a sign", §3, Algorithm 1).

Per coordinate k: purity P_k = ½(1 + Σ_t g_tk / Σ_t |g_tk|) (eq. 1); draw U_k ~ Uniform(0, 1); keep g_tk iff
(P_k > U_k and g_tk > 0) or (P_k < U_k and g_tk < 0); d_k = Σ_t kept g_tk. ``leak`` ℓ ∈ [0, 1] (paper §3.2) keeps a
fraction of every gradient: mask ← ℓ + (1−ℓ)·mask. Default leak 0 (all tasks sign-dropped).

``purity`` — where the sign statistics come from:

* ``"element"`` (default): per element of whatever is given (per parameter with ``rep_grad=False``; per sample and
  position with ``rep_grad=True``). A simplification of the paper, which works on activations only.
* ``"batch"`` (the paper's form, as LibMTL implements it; needs ``rep_grad=True``): at the shared activation A
  (B×F), the per-task signal is summed over the batch after multiplying by the input's sign,
  S_t = Σ_b sgn(A_b) ⊙ ∇_{A_b} L_t (F,); purity, U and the keep test use S_t per feature, and the one F-mask is applied
  to every sample's gradient ∇_{A_b} L_t. Under DDP the representation is all-gathered with the gradients, so the
  sums run over the union batch.

U comes from this module's generator (``seed``) on the gradients' device, so all DDP processes draw the same mask.

Logged weights: d is not a linear combination of the task gradients, so the least-squares coefficients
argmin_α ‖Gᵀα − d‖ are logged (a summary, not exact).

Options: ``leak`` = 0.0, ``seed`` = 0, ``purity`` = "element".
"""

from __future__ import annotations

import torch
from torch import Tensor

from mtkd.errors import MtkdError
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
    defaults = {"leak": 0.0, "seed": 0, "purity": "element"}

    def __init__(self, tasks=(), **options):
        super().__init__(tasks, **options)
        self.needs_rep_values = self._choice("purity", ("element", "batch")) == "batch"
        if self.needs_rep_values and not self.opts.get("rep_grad"):
            raise MtkdError("graddrop purity=batch is the paper's activation-layer form: it needs rep_grad=true")

    def combine(self, grads: Tensor, *, losses: Tensor | None = None) -> Tensor:
        if self.needs_rep_values:
            rep = self.rep_values
            if rep is None:
                raise MtkdError("graddrop purity=batch needs the shared representation (rep_grad=true through the engine)")
            T, B = grads.shape[0], rep.shape[0]
            per_sample = grads.reshape(T, B, -1)
            signal = (per_sample * rep.reshape(1, B, -1).sign().to(grads.dtype)).sum(1)  # T×F
        else:
            per_sample, signal = grads[:, None], grads
        P = 0.5 * (1 + signal.sum(0) / (signal.abs().sum(0) + 1e-7))
        U = torch.rand(P.shape, generator=self._generator(grads.device), device=grads.device, dtype=P.dtype)
        keep = ((P > U) & (signal > 0)) | ((P < U) & (signal < 0))
        leak = float(self.opts["leak"])
        mask = keep.to(grads.dtype) if leak == 0 else leak + (1 - leak) * keep.to(grads.dtype)
        d = (mask[:, None] * per_sample).sum(0).reshape(-1)
        self.last_weights = least_squares_weights(grads, d).float()
        return d
