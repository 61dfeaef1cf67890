"""DWA, dynamic weight average (Liu, Johns & Davison, CVPR 2019, "End-to-end multi-task learning with attention",
§3.3, eq. 7).

    w_t(e) = T · exp(r_t(e−1)/τ) / Σ_i exp(r_i(e−1)/τ),   r_t(e−1) = L̄_t(e−1) / L̄_t(e−2)

where L̄_t(e) is the mean *unweighted* training loss of task t over epoch e, handed over by the engine through
``on_train_epoch_end``. The weights sum to T; for the first two epochs (fewer than two recorded epochs) they are all 1.

State: the mean losses of the last two recorded epochs (in ``state_dict`` as ``extra_state``, so a resumed run
continues the same schedule). Under DDP the engine must pass losses averaged over processes (Lightning's
``sync_dist`` epoch means) so that all processes agree.

Options: ``temperature`` τ = 2.0.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from mtkd.errors import MtkdError
from mtkd.weighting.base import WEIGHTINGS, LossWeighting


@WEIGHTINGS.register("dwa")
class DWA(LossWeighting):
    name = "dwa"
    defaults = {"temperature": 2.0}

    def __init__(self, tasks=(), **options):
        super().__init__(tasks, **options)
        self.history: dict[int, dict[str, float]] = {}

    def on_train_epoch_end(self, epoch: int, mean_losses: dict[str, float]) -> None:
        tasks = self.tasks or tuple(mean_losses)
        missing = [t for t in tasks if t not in mean_losses]
        if missing:
            raise MtkdError(f"dwa: the epoch-{epoch} mean losses lack tasks {missing}")
        for t in tasks:
            if not math.isfinite(float(mean_losses[t])):
                raise MtkdError(f"dwa: the epoch-{epoch} mean loss of task {t!r} is {mean_losses[t]}")
        self.history[int(epoch)] = {t: float(mean_losses[t]) for t in tasks}
        for e in sorted(self.history)[:-2]:
            del self.history[e]

    def weights(self, losses: Tensor, shared_params) -> Tensor:
        if len(self.history) < 2:
            return torch.ones_like(losses)
        prev2, prev1 = (self.history[e] for e in sorted(self.history)[-2:])
        keys = self.current_tasks
        if any(t not in prev1 or t not in prev2 for t in keys):
            raise MtkdError(f"dwa: recorded epoch losses for {list(prev1)} but got losses for {list(keys)}")
        r = torch.tensor([prev1[t] / max(prev2[t], 1e-12) for t in keys], dtype=losses.dtype, device=losses.device)
        return len(keys) * torch.softmax(r / float(self.opts["temperature"]), dim=0)

    def get_extra_state(self) -> Any:
        return {"history": {e: dict(v) for e, v in self.history.items()}}

    def set_extra_state(self, state: Any) -> None:
        self.history = {int(e): dict(v) for e, v in state["history"].items()}
