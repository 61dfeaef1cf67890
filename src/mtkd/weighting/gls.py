"""GLS, the geometric loss strategy (Chennupati, Sistu, Yogamani & Rawashdeh, CVPR Workshops 2019, "MultiNet++:
multi-stream feature aggregation and geometric loss strategy for multi-task learning", arXiv 1904.08492, the
geometric loss strategy section).

The network is trained on the geometric mean of the task losses,

    L_GLS = (Π_t L_t)^{1/T} = exp((1/T) Σ_t log L_t),

computed in the log form for stability (ε = ``eps`` added inside the log so a zero loss gives a finite gradient).
Its gradient is Σ_t w_t ∇L_t with w_t = L_GLS / (T L_t): a task with a small loss gets a large weight, and the
objective is invariant to rescaling any one task's loss up to a constant factor. The network is trained on
Σ_t stopgrad(w_t) L_t, whose gradient is exactly ∇L_GLS; under DDP w is computed from the losses averaged over
processes (one tiny all_reduce), so the averaged gradient is the union batch's ∇L_GLS. The logged weights are w_t.
(LibMTL back-propagates the same objective but logs L_t/(T Π L) as the weights, which is not ∂L_GLS/∂L_t.)
No hyper-parameters in the paper. ``rep_grad`` does not apply (loss family).

Options: ``eps`` = 1e-12.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mtkd.weighting.base import WEIGHTINGS, LossWeighting, global_losses


@WEIGHTINGS.register("gls")
class GLS(LossWeighting):
    name = "gls"
    defaults = {"eps": 1e-12}

    def weights(self, losses: Tensor, shared_params) -> Tensor:
        L = global_losses(losses) + float(self.opts["eps"])
        return torch.exp(torch.log(L).mean()) / (len(L) * L)
