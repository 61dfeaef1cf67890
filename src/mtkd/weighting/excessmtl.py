"""ExcessMTL, robust multi-task learning with excess risks (He et al., ICML 2024, PMLR 235, "Robust multi-task learning
with excess risks": excess risk eq. 6–7, scale processing §3.2, exponentiated weight update eq. 9).

Task weights follow each task's estimated *excess* risk (distance to its own optimum) instead of its loss, so a
task with label noise (high irreducible loss) does not take over. Per step, with the task gradients g_t:

    H_t ← H_t + g_t ⊙ g_t,      Ê_t = g_tᵀ diag(√(H_t + 1e-7))⁻¹ g_t        (excess risk by a diagonal AdaGrad
                                                                           approximation of the Hessian)
    first step:  Ê⁰_t = Ê_t, w = 1            later:  w_t ← w_t · exp(η Ê_t / Ê⁰_t),   w ← T w / Σ w
    d = Σ_t w_t g_t

The division by the first step's Ê⁰ is the paper's scale processing (each task's excess risk relative to its start;
the paper's Appendix C.1 suggests averaging Ê⁰ over warm-up steps instead — not offered);
the weights sum to T (EW's scale) as in the authors' code (their LibMTL fork) and LibMTL. TorchJD's ``ExcessMTL``
differs: weights sum to 1, and its first call already moves the weights (it uses the raw Ê there) — mtkd follows the
authors' code. The exponentiated update is done in log space (no overflow for a large Ê/Ê⁰).

State (``extra_state``): H (T×D, the gradients' dtype and device — one extra copy of the task-gradient matrix), Ê⁰
and w, so ``combine`` is not pure. Under DDP, G is averaged first, so every process holds the same state (that of
the union batch). ``rep_grad`` does not apply (H accumulates per coordinate across steps, which the per-sample
coordinates of a representation do not share).

Options: ``step_size`` η = 0.01 (the authors' ``robust_step_size``, LibMTL's default).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from mtkd.errors import MtkdError
from mtkd.weighting.base import WEIGHTINGS, GradientWeighting

_H_EPS = 1e-7


@WEIGHTINGS.register("excessmtl")
class ExcessMTL(GradientWeighting):
    name = "excessmtl"
    defaults = {"step_size": 0.01}

    def __init__(self, tasks=(), **options):
        super().__init__(tasks, **options)
        eta = self.opts["step_size"]
        if not isinstance(eta, (int, float)) or not math.isfinite(eta) or eta <= 0:
            raise MtkdError(f"excessmtl: option step_size must be a finite number > 0, got {eta!r}")
        self.sq_sum: Tensor | None = None
        self.initial: Tensor | None = None
        self.log_w: Tensor | None = None

    def combine(self, grads: Tensor, *, losses: Tensor | None = None) -> Tensor:
        if grads.dim() != 2:
            raise MtkdError(f"excessmtl.combine expects a T×D matrix of task gradients, got shape {tuple(grads.shape)}")
        T = grads.shape[0]
        g = grads.detach()
        if self.sq_sum is None or self.sq_sum.shape != g.shape:
            self.sq_sum, self.initial, self.log_w = torch.zeros_like(g), None, torch.zeros(T, dtype=torch.float64)
        self.sq_sum = self.sq_sum.to(g) + g * g  # a new tensor: a loaded or saved state is never mutated
        excess = ((g * g) / torch.sqrt(self.sq_sum + _H_EPS)).sum(1).double().cpu()
        if self.initial is None:
            self.initial = excess.clone()
        else:
            ratio = excess / self.initial.clamp_min(1e-300)
            self.log_w = torch.log_softmax(self.log_w + float(self.opts["step_size"]) * ratio, 0)
        w = T * torch.softmax(self.log_w, 0)
        self.last_weights = w
        return w.to(grads.dtype).to(grads.device) @ grads

    def get_extra_state(self) -> Any:
        return {"sq_sum": self.sq_sum, "initial": self.initial, "log_w": self.log_w}

    def set_extra_state(self, state: Any) -> None:
        self.sq_sum, self.initial, self.log_w = (None if v is None else v.clone() for v in
                                                 (state["sq_sum"], state["initial"], state["log_w"]))
