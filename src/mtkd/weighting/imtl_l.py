"""IMTL-L, the loss half of impartial multi-task learning (Liu, Li, Kuang, Xue, Chen, Yang, Liao & Zhang, ICLR 2021,
"Towards impartial multi-task learning", the loss-balance half of Algorithm 1).

Each task has a learnable scale parameter s_t (an ``nn.Parameter`` of this module, init ``init`` = 0, trained by the
engine's optimizer) and the network is trained on the scaled losses

    Σ_t ( e^{s_t} L_t − s_t ),

whose gradient w.r.t. s_t, e^{s_t} L_t − 1, vanishes when e^{s_t} L_t = 1: the scaled losses are driven to be equal
(to 1) whatever the raw scales of the tasks, which is the paper's "impartial" loss balance. The gradient reaching the
network from task t is e^{s_t} ∇L_t; the logged weights are e^{s_t}.

The paper's full IMTL combines this with IMTL-G (``imtl``) applied to the gradients of the scaled losses; LibMTL's
``IMTL`` does both at once. mtkd keeps the two halves as separate methods (``imtl_l`` here: loss family, works with
any architecture and costs one backward); the hybrid is not offered. ``rep_grad`` does not apply (loss family).
Under DDP the gradients of s are averaged over processes after the backward (see base), so every process keeps the
same scales.

Options: ``init`` = 0.0 (initial s_t; the paper and LibMTL start at 0, i.e. scale 1).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtkd.weighting.base import WEIGHTINGS, LossWeighting


@WEIGHTINGS.register("imtl_l")
class IMTLL(LossWeighting):
    name = "imtl_l"
    needs_tasks = True
    defaults = {"init": 0.0}

    def __init__(self, tasks=(), **options):
        super().__init__(tasks, **options)
        self.log_scales = nn.Parameter(torch.full((len(self.tasks),), float(self.opts["init"])))

    def weights(self, losses: Tensor, shared_params) -> Tensor:
        return torch.exp(self.log_scales).to(losses.dtype)

    def objective(self, losses: Tensor, weights: Tensor) -> Tensor:
        return (weights * losses).sum() - self.log_scales.sum()
