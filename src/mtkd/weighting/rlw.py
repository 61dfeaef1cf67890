"""RLW, random loss weighting (Lin et al., TMLR 2022, "Reasonable effectiveness of random weighting: a litmus test
for multi-task learning", arXiv 2111.10603, §3).

Each step draws λ ~ N(0, I_T) and uses w = softmax(λ) (a point of the simplex; the weights sum to 1, so the loss
scale is 1/T of EW's). Draws come from this module's own generator seeded by ``seed`` (default 0): every DDP process
draws the same weights, and the generator state is saved in ``state_dict``.

Options: ``seed`` = 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mtkd.weighting.base import WEIGHTINGS, GeneratorMixin, LossWeighting


@WEIGHTINGS.register("rlw")
class RLW(GeneratorMixin, LossWeighting):
    name = "rlw"
    defaults = {"seed": 0}

    def weights(self, losses: Tensor, shared_params) -> Tensor:
        lam = torch.randn(losses.numel(), generator=self._generator("cpu"), dtype=torch.float64)
        return torch.softmax(lam, dim=0).to(losses)
