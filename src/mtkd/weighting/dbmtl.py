"""DB-MTL, dual-balancing multi-task learning (Lin, Ye, Xu, Shi & Zhang, 2023, arXiv 2308.12029, §3).

Gradient family (it needs the per-task gradients):

* loss-scale balancing: every task loss is replaced by log(L_t + 1e-8) — the plumbing back-propagates
  Σ_t log L_t (+ extra), so task-specific parameters get ∇ log L_t = ∇L_t / L_t, and G holds ∇ log L_t;
* gradient-magnitude balancing: an EMA ĝ_t of those gradients, ĝ_t ← β_k ĝ_t + (1 − β_k) g_t with
  β_k = β / k^σ (k = step), starting from ĝ = 0 without bias correction as the authors' code (LibMTL's DB_MTL:
  ``grad_buffer`` zeros, so ĝ = (1 − β_1) g_1 at k = 1), then d = Σ_t (max_i ‖ĝ_i‖ / ‖ĝ_t‖) ĝ_t: every task
  contributes with the magnitude of the largest one.

σ: the authors' library (LibMTL, by the DB-MTL authors) defaults ``DB_beta_sigma`` to 0, i.e. a constant β = 0.9 —
the plain EMA of the method's description; σ > 0 gives the decaying β_k that LibMTL offers as an option (MoCo's
form). mtkd follows the library: σ = 0. (The paper's own text was not available to check beyond that description.)

The logged weights are the balancing factors max_i ‖ĝ_i‖ / ‖ĝ_t‖ (applied to the EMA gradients, so they are not
exact effective weights on the current g_t).

State: the T×D EMA ĝ and the step k (``extra_state``), so ``combine`` is not pure. rep_grad is refused: the EMA of
per-sample representation gradients across different batches is meaningless.

Options: ``beta`` β = 0.9, ``beta_sigma`` σ = 0 (LibMTL's defaults).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mtkd.weighting.base import WEIGHTINGS, GradientWeighting


@WEIGHTINGS.register("dbmtl")
class DBMTL(GradientWeighting):
    name = "dbmtl"
    log_losses = True
    defaults = {"beta": 0.9, "beta_sigma": 0.0}

    def __init__(self, tasks=(), **options):
        super().__init__(tasks, **options)
        self.ema: Tensor | None = None
        self.step = 0

    def combine(self, grads: Tensor, *, losses: Tensor | None = None) -> Tensor:
        g = grads.detach()
        if self.ema is None or self.ema.shape != g.shape:
            self.ema = torch.zeros_like(g)
            self.step = 0
        self.step += 1
        b = float(self.opts["beta"]) / self.step ** float(self.opts["beta_sigma"])
        self.ema = b * self.ema.to(g) + (1 - b) * g
        norms = self.ema.norm(dim=1)
        factors = norms.max() / (norms + 1e-8)
        self.last_weights = factors.float()
        return factors.to(g.dtype) @ self.ema

    def get_extra_state(self) -> Any:
        return {"ema": None if self.ema is None else self.ema.clone(), "step": self.step}

    def set_extra_state(self, state: Any) -> None:
        self.ema, self.step = state["ema"], int(state["step"])
