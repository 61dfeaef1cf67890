"""UW, uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018, "Multi-task learning using uncertainty to weigh
losses for scene geometry and semantics").

Each task has a learnable s_t = log σ_t² (an ``nn.Parameter`` of this module, initialised to ``init``, so the engine's
optimizer trains it). With s = log σ² the paper's objectives become

* regression task (Gaussian likelihood, paper eq. 7):        ½·exp(−s_t)·L_t + ½·s_t
* classification task (softmax scaled by 1/σ², eq. 10 with the paper's approximation of the
  scaled softmax's normaliser):                                exp(−s_t)·L_t + ½·s_t

Which tasks are classification is the option ``classification`` (default: the cross-entropy tasks of
:mod:`mtkd.tasks`, ``kind`` "classes" or "binary": semseg, parts, edge, sal); every other task uses the regression
form. ``classification=()`` gives the form LibMTL uses for
every task. The logged weight is the coefficient of L_t: ½exp(−s_t) or exp(−s_t).

Options: ``init`` = 0.0 (initial s_t), ``classification`` = ("semseg", "edge", "sal", "parts").
Under DDP the gradients of s are averaged over processes after the backward (see base).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtkd.tasks import tasks_of_kind
from mtkd.weighting.base import WEIGHTINGS, LossWeighting


@WEIGHTINGS.register("uw")
class UW(LossWeighting):
    name = "uw"
    needs_tasks = True
    defaults = {"init": 0.0, "classification": tasks_of_kind("classes", "binary")}

    def __init__(self, tasks=(), **options):
        super().__init__(tasks, **options)
        self.log_vars = nn.Parameter(torch.full((len(self.tasks),), float(self.opts["init"])))
        cls = set(self.opts["classification"])
        self.register_buffer("scale", torch.tensor([1.0 if t in cls else 0.5 for t in self.tasks]), persistent=False)

    def weights(self, losses: Tensor, shared_params) -> Tensor:
        return self.scale.to(self.log_vars) * torch.exp(-self.log_vars)

    def objective(self, losses: Tensor, weights: Tensor) -> Tensor:
        return (weights * losses).sum() + 0.5 * self.log_vars.sum()
