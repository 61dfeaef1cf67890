"""EW, equal weighting: back-propagate Σ_t L_t (+ extra). The baseline every other method is compared with.

Weights: 1 for every task (they sum to T, the convention DWA and GradNorm keep). No options.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mtkd.weighting.base import WEIGHTINGS, LossWeighting


@WEIGHTINGS.register("ew")
class EW(LossWeighting):
    name = "ew"
    defaults = {}

    def weights(self, losses: Tensor, shared_params) -> Tensor:
        return torch.ones_like(losses)
