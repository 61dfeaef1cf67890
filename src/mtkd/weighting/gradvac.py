"""GradVac, gradient vaccine (Wang, Tsvetkov, Firat & Cao, ICLR 2021, "Gradient vaccine", §3.2–3.3, Algorithm 1).

Keeps an EMA target similarity φ̂_ij for every ordered task pair (init 0). For every task i, g_i' ← g_i, then for
every j ≠ i in a random order, with φ_ij = cos(g_i', g_j):

    if φ_ij < φ̂_ij:  g_i' ← g_i' + ‖g_i'‖ (φ̂_ij √(1−φ_ij²) − φ_ij √(1−φ̂_ij²)) / (‖g_j‖ √(1−φ̂_ij²)) · g_j
    φ̂_ij ← (1−β) φ̂_ij + β φ_ij        (always, as LibMTL; φ_ij measured before the update)

and d = Σ_i g_i'. Done on the whole shared gradient as one group (the paper also has per-layer groups; not here),
on coefficients with the Gram matrix only (exact). The logged weights are the effective α (d = Σ_t α_t g_t).

State: φ̂ (T×T, created on first use, in ``state_dict`` via ``extra_state``) — so ``combine`` is not pure: a second
call on the same matrix can differ. Orders come from this module's generator (``seed``), identical on every DDP
process, and φ̂ evolves identically there because G is averaged first.

Options: ``beta`` β = 0.5, ``seed`` = 0.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from mtkd.weighting.base import WEIGHTINGS, GeneratorMixin, GramWeighting


@WEIGHTINGS.register("gradvac")
class GradVac(GeneratorMixin, GramWeighting):
    name = "gradvac"
    defaults = {"beta": 0.5, "seed": 0}

    def __init__(self, tasks=(), **options):
        super().__init__(tasks, **options)
        self.targets: Tensor | None = None  # φ̂

    def task_orders(self, T: int) -> list[list[int]]:
        g = self._generator("cpu")
        return [torch.randperm(T, generator=g).tolist() for _ in range(T)]

    def alpha(self, gram: Tensor, losses: Tensor | None) -> Tensor:
        T = gram.shape[0]
        if self.targets is None or self.targets.shape != (T, T):
            self.targets = torch.zeros(T, T, dtype=torch.float64)
        beta = float(self.opts["beta"])
        C = torch.eye(T, dtype=gram.dtype)
        for i, order in enumerate(self.task_orders(T)):
            for j in order:
                if j == i:
                    continue
                nj = math.sqrt(max(float(gram[j, j]), 0.0))
                ni = math.sqrt(max(float(C[i] @ gram @ C[i]), 0.0))
                if ni <= 1e-30 or nj <= 1e-30:
                    continue
                phi = float(C[i] @ gram[:, j]) / (ni * nj)
                phi = min(1.0, max(-1.0, phi))
                target = float(self.targets[i, j])
                if phi < target:
                    w = ni * (target * math.sqrt(1 - phi**2) - phi * math.sqrt(1 - target**2)) / (
                        nj * math.sqrt(max(1 - target**2, 1e-30)))
                    C[i, j] += w
                self.targets[i, j] = (1 - beta) * target + beta * phi
        return C.sum(0)

    def _more_state(self) -> dict[str, Any]:
        return {"targets": None if self.targets is None else self.targets.clone()}

    def _load_more_state(self, state: dict[str, Any]) -> None:
        t = state.get("targets")
        self.targets = None if t is None else t.clone().double()
