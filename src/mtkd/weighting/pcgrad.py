"""PCGrad, projecting conflicting gradients (Yu et al., NeurIPS 2020, "Gradient surgery for multi-task learning",
Algorithm 1).

For every task i: g_i' ← g_i, then for every j in a random order: if g_i'·g_j < 0, g_i' ← g_i' − (g_i'·g_j/‖g_j‖²) g_j.
The direction is Σ_i g_i' (the sum, as in the paper and LibMTL).

Every g_i' is a linear combination of the original g's, so the projections are done on the coefficient matrix with
the Gram matrix only (exact, O(T³) on top of O(T²D)); the logged weights are the resulting effective weights α
(d = Σ_t α_t g_t; all 1 when nothing conflicts). The order for task i is ``torch.randperm(T)`` from this module's
generator (``seed``), drawn for i = 0..T−1 in turn; all DDP processes draw the same orders.

Options: ``seed`` = 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mtkd.weighting.base import WEIGHTINGS, GeneratorMixin, GramWeighting


@WEIGHTINGS.register("pcgrad")
class PCGrad(GeneratorMixin, GramWeighting):
    name = "pcgrad"
    defaults = {"seed": 0}

    def task_orders(self, T: int) -> list[list[int]]:
        g = self._generator("cpu")
        return [torch.randperm(T, generator=g).tolist() for _ in range(T)]

    def alpha(self, gram: Tensor, losses: Tensor | None) -> Tensor:
        T = gram.shape[0]
        C = torch.eye(T, dtype=gram.dtype)
        for i, order in enumerate(self.task_orders(T)):
            for j in order:
                if j == i or gram[j, j] <= 0:
                    continue
                dot = C[i] @ gram[:, j]
                if dot < 0:
                    C[i, j] -= dot / gram[j, j]
        return C.sum(0)
