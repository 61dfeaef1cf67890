"""Fixed, hand-chosen task weights: Σ_t λ_t L_t (+ extra).

The dense-MTL codebases train PASCAL-Context with semseg 1, parts 2, sal 5, edge 50, normals 10 (the
``configs/pascal_context`` recipe); an unlisted task weighs 1. Option ``weights: {task: λ}`` (finite, ≥ 0).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mtkd.errors import MtkdError
from mtkd.weighting.base import WEIGHTINGS, LossWeighting


@WEIGHTINGS.register("fixed")
class Fixed(LossWeighting):
    name = "fixed"
    defaults = {"weights": {}}

    def __init__(self, tasks=(), **options):
        super().__init__(tasks, **options)
        given = dict(self.opts["weights"] or {})
        for task, w in given.items():
            if self.tasks and task not in self.tasks:
                raise MtkdError(f"fixed weighting: weight given for {task!r}, not a task of this run {list(self.tasks)}")
            if not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
                raise MtkdError(f"fixed weighting: weight of {task!r} must be a finite number ≥ 0, got {w!r}")
        self.fixed = {t: float(w) for t, w in given.items()}

    def weights(self, losses: Tensor, shared_params) -> Tensor:
        order = self.current_tasks
        return torch.tensor([self.fixed.get(t, 1.0) for t in order], dtype=losses.dtype, device=losses.device)
