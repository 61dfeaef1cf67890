"""The distiller interface: ``distiller(student_out, teacher_outs, batch) -> {name: loss}``.

``task_losses`` (the student's unweighted task losses of this step) is passed too, for methods that weigh
tasks from them (OKD-MTL's OTW). A distiller owns its trainable parts (adaptors, regressors, learnable weights) as submodules, so they are saved
with the run and get their own optimizer parameter group (``distill.lr``). ``teacher_outs`` maps each task to the
``Output`` of the teacher that provides it. Per-task weights λ are checked here once for every distiller.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from mtkd.errors import MtkdError
from mtkd.models import Output
from mtkd.registry import Registry

DISTILLERS = Registry("distillation method")


def check_weights(weights: Mapping[str, Any] | None, tasks: list[str], default: float = 1.0) -> dict[str, float]:
    """λ per task (default 1); a negative, NaN or infinite weight, or a weight for an unknown task, is refused."""
    weights = dict(weights or {})
    for task, w in weights.items():
        if task not in tasks:
            raise MtkdError(f"distillation weight given for task {task!r}, which has no teacher; tasks: {tasks}")
        if not isinstance(w, (int, float)) or math.isnan(w) or math.isinf(w) or w < 0:
            raise MtkdError(f"distillation weight of {task!r} must be a finite number ≥ 0, got {w!r}")
    return {t: float(weights.get(t, default)) for t in tasks}


def check_tap(tap: str, taps: Mapping[str, Any], whose: str) -> None:
    if tap not in taps:
        raise MtkdError(f"{whose} has no feature tap {tap!r}; valid taps: {', '.join(taps)}")


class Distiller(nn.Module):
    """Base class. ``student_taps`` / ``teacher_taps[task]``: ``{tap: (channels, reduction)}`` from ``model.taps()``."""

    def __init__(self, tasks: list[str], student_taps: dict[str, tuple[int, int]],
                 teacher_taps: dict[str, dict[str, tuple[int, int]]], weights: Mapping[str, float] | None = None):
        super().__init__()
        self.tasks = list(tasks)
        self.weights = check_weights(weights, self.tasks)

    needs_teachers: bool = True  # False for online methods that train their own teachers
    #: whether the student's lr schedule also scales the distiller's parameter group (KD4MTL's adaptors: no)
    lr_scheduled: bool = True

    @property
    def active_tasks(self) -> list[str]:
        """The tasks distilled this run: a weight λ = 0 switches a task's distillation off without computing it."""
        return [t for t in self.tasks if self.weights[t] != 0]

    def forward(self, student: Output, teachers: dict[str, Output], batch: dict[str, Tensor],
                task_losses: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        raise NotImplementedError

    def student_frozen(self) -> bool:
        """True while the method trains only its own networks (OKD-MTL's warm-up): the engine then clears the
        student's gradients before the step, so its optimiser skips it (no Adam step count, no weight decay)."""
        return False

    def logged_values(self) -> dict[str, float]:
        """Values of the last step worth plotting besides the losses (task weights a method chose); none by default."""
        return {}

    def callbacks(self) -> list[Any]:
        """Lightning callbacks the method needs (validation feedback, periodic state); none by default."""
        return []
