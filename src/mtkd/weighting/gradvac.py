"""GradVac, gradient vaccine (Wang, Tsvetkov, Firat & Cao, ICLR 2021, "Gradient vaccine", §3.2–3.3, Algorithm 1).

Keeps an EMA target similarity φ̂_ij for every ordered task pair (init 0). For every task i, g_i' ← g_i, then for
every j ≠ i in a random order, with φ_ij = cos(g_i', g_j):

    if φ_ij < φ̂_ij:  g_i' ← g_i' + ‖g_i'‖ (φ̂_ij √(1−φ_ij²) − φ_ij √(1−φ̂_ij²)) / (‖g_j‖ √(1−φ̂_ij²)) · g_j
    φ̂_ij ← (1−β) φ̂_ij + β φ_ij        (always, as LibMTL; φ_ij measured before the update)

and d = Σ_i g_i'. Computed on coefficients with the Gram matrix only (exact). ``groups``:

* ``whole`` (default): the whole shared gradient is one group. The logged weights are the effective α
  (d = Σ_t α_t g_t).
* ``tensor``: the paper's finer granularity (§3.3 applies the vaccine per layer / parameter group; LibMTL's
  ``GradVac_group_type=2``, one group per parameter matrix): every shared parameter tensor is its own group with its
  own targets φ̂ᵏ and its own Gram matrix, with the same random orders for all groups at a step (LibMTL loops the
  groups innermost). The plumbing sets the tensor sizes (``blocks``); a bare ``combine(G)`` needs ``blocks`` set.
  The logged weights are the groups' α averaged with their sizes as weights.

State: φ̂ (T×T, or K×T×T with K groups; created on first use, in ``state_dict`` via ``extra_state``) — so
``combine`` is not pure: a second call on the same matrix can differ. Orders come from this module's generator
(``seed``), identical on every DDP process, and φ̂ evolves identically there because G is averaged first.

Options: ``beta`` β = 0.5, ``seed`` = 0, ``groups`` = "whole".
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from mtkd.errors import MtkdError
from mtkd.weighting.base import WEIGHTINGS, GeneratorMixin, GramWeighting, _gram


def vaccinate(gram: Tensor, targets: Tensor, orders: list[list[int]], beta: float) -> Tensor:
    """One GradVac pass on one group: the T×T coefficients C (g_i' = Σ_j C[i, j] g_j); updates ``targets`` in place."""
    T = gram.shape[0]
    C = torch.eye(T, dtype=gram.dtype)
    for i, order in enumerate(orders):
        for j in order:
            if j == i:
                continue
            nj = math.sqrt(max(float(gram[j, j]), 0.0))
            ni = math.sqrt(max(float(C[i] @ gram @ C[i]), 0.0))
            if ni <= 1e-30 or nj <= 1e-30:
                continue
            phi = float(C[i] @ gram[:, j]) / (ni * nj)
            phi = min(1.0, max(-1.0, phi))
            target = float(targets[i, j])
            if phi < target:
                w = ni * (target * math.sqrt(1 - phi**2) - phi * math.sqrt(1 - target**2)) / (
                    nj * math.sqrt(max(1 - target**2, 1e-30)))
                C[i, j] += w
            targets[i, j] = (1 - beta) * target + beta * phi
    return C


@WEIGHTINGS.register("gradvac")
class GradVac(GeneratorMixin, GramWeighting):
    name = "gradvac"
    defaults = {"beta": 0.5, "seed": 0, "groups": "whole"}

    def __init__(self, tasks=(), **options):
        super().__init__(tasks, **options)
        self._choice("groups", ("whole", "tensor"))
        if self.opts["groups"] == "tensor" and self.opts["update_every"] != 1:
            raise MtkdError("gradvac groups='tensor' weighs each tensor differently, so update_every must be 1")
        self.targets: Tensor | None = None  # φ̂

    def task_orders(self, T: int) -> list[list[int]]:
        g = self._generator("cpu")
        return [torch.randperm(T, generator=g).tolist() for _ in range(T)]

    def alpha(self, gram: Tensor, losses: Tensor | None) -> Tensor:
        T = gram.shape[0]
        if self.targets is None or self.targets.shape != (T, T):
            self.targets = torch.zeros(T, T, dtype=torch.float64)
        return vaccinate(gram, self.targets, self.task_orders(T), float(self.opts["beta"])).sum(0)

    def combine(self, grads: Tensor, *, losses: Tensor | None = None) -> Tensor:
        if self.opts["groups"] == "whole":
            return super().combine(grads, losses=losses)
        if grads.dim() != 2:
            raise MtkdError(f"gradvac.combine expects a T×D matrix of task gradients, got shape {tuple(grads.shape)}")
        blocks = self.blocks
        if blocks is None or sum(blocks) != grads.shape[1]:
            raise MtkdError(
                f"gradvac groups='tensor' needs the shared parameter sizes summing to D={grads.shape[1]} in "
                f"method.blocks (the plumbing sets them), got {blocks}"
            )
        T, K = grads.shape[0], len(blocks)
        if self.targets is None or self.targets.shape != (K, T, T):
            self.targets = torch.zeros(K, T, T, dtype=torch.float64)
        orders = self.task_orders(T)
        beta = float(self.opts["beta"])
        d = torch.empty(grads.shape[1], dtype=grads.dtype, device=grads.device)
        alpha = torch.zeros(T, dtype=torch.float64)
        j = 0
        for k, n in enumerate(blocks):
            g = grads[:, j : j + n]
            a = vaccinate(_gram(g), self.targets[k], orders, beta).sum(0)
            d[j : j + n] = a.to(grads.dtype).to(grads.device) @ g
            alpha += a * (n / grads.shape[1])
            j += n
        self.last_weights = alpha
        return d

    def _more_state(self) -> dict[str, Any]:
        return {"targets": None if self.targets is None else self.targets.clone()}

    def _load_more_state(self, state: dict[str, Any]) -> None:
        t = state.get("targets")
        self.targets = None if t is None else t.clone().double()
