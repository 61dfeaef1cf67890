"""Prediction-level distillation baselines: one loss per task between student and teacher outputs.

Presets (each a registered name):

- ``kd``: Hinton et al. 2015 — per-pixel softmax with temperature T, KL, × T² on segmentation logits, and
  L1 prediction distillation on regression tasks (the "BAM"-style rows of seed 004's tables).
- ``prediction``: L1 to the teacher's prediction on every task (KL with T = 1 on segmentation).
- ``dist``: DIST (Huang et al. 2022), inter + intra Pearson relations on segmentation; L1 on regression tasks.
- ``cwd``: channel-wise distillation (Shu et al. 2021), τ = 4, on segmentation; L1 on regression tasks.

``losses`` overrides the loss per task (``{task: name}`` from ``mtkd.distill.losses.LOSSES``) and
``loss_options`` its keyword options, e.g. ``{semseg: {temperature: 1}}``. Every pixel is distilled, labelled or
not: the teacher is informative where the ground truth is missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from mtkd.distill.base import DISTILLERS, Distiller
from mtkd.distill.losses import get_loss
from mtkd.errors import MtkdError
from mtkd.models import Output

SEGMENTATION_LOSS = {"kd": "kd", "prediction": "kd", "dist": "dist", "cwd": "cwd"}


class OutputDistiller(Distiller):
    def __init__(self, preset: str, tasks, student_taps, teacher_taps, weights=None,
                 losses: Mapping[str, str] | None = None, loss_options: Mapping[str, Mapping[str, Any]] | None = None):
        super().__init__(tasks, student_taps, teacher_taps, weights)
        chosen = {t: SEGMENTATION_LOSS[preset] if t in ("semseg", "parts") else "prediction" for t in self.tasks}
        for task, name in (losses or {}).items():
            if task not in self.tasks:
                raise MtkdError(f"distill loss given for task {task!r}, which has no teacher; tasks: {self.tasks}")
            chosen[task] = name
        self.loss_names = chosen
        self.loss_fns = {t: get_loss(name) for t, name in chosen.items()}
        self.loss_options = {t: dict((loss_options or {}).get(t, {})) for t in self.tasks}
        if preset == "kd":
            for t in self.tasks:
                if self.loss_names[t] == "kd":
                    self.loss_options[t].setdefault("temperature", 3.0)  # KDAM's plain-KD baseline uses T = 3
        if "normal" in self.tasks and self.loss_names["normal"] == "prediction":
            self.loss_options["normal"].setdefault("metric", "cosine")

    def forward(self, student: Output, teachers: dict[str, Output], batch: dict[str, Tensor],
                task_losses: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        out = {}
        for t in self.active_tasks:
            loss = self.loss_fns[t](student.preds[t], teachers[t].preds[t].float(), **self.loss_options[t])
            out[f"{self.loss_names[t]}/{t}"] = self.weights[t] * loss
        return out


def _preset(name: str):
    def build(*args, **kwargs) -> OutputDistiller:
        return OutputDistiller(name, *args, **kwargs)

    build.__doc__ = f"The ``{name}`` preset of :class:`OutputDistiller`."
    return build


for _name in SEGMENTATION_LOSS:
    DISTILLERS.register(_name)(_preset(_name))
