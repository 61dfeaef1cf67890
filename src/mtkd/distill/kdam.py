"""KDAM (Xu, Yang & Zhang, ICCV 2023, seed 003): Cauchy-Schwarz distillation from one multi-task teacher.

Per task t, on the output maps (logits for segmentation, raw predictions for regression tasks), with
``P = softmax(F / T)`` (see ``mtkd.distill.losses.cauchy_schwarz`` for the rows/columns of a dense map)::

    L_inter^t = mean_rows D_CS(P_S[i, :], P_T[i, :])          (Eq. 5)
    L_intra^t = mean_cols D_CS(P_S[:, j], P_T[:, j])          (Eq. 6)
    L_CSKD    = Σ_t λ_t (w_inter · L_inter^t + w_intra · L_intra^t)      (Eq. 7, with per-task λ)
    L_total   = α · L_mt + β · L_CSKD                          (Eq. 9; α is the engine's weighting, β here)

Returned as separate named losses ``cs_inter/<task>`` = β·λ_t·w_inter·L_inter^t and ``cs_intra/<task>`` =
β·λ_t·w_intra·L_intra^t (the engine sums them into the objective and logs each), so inter and intra are visible
apart. A term whose weight is 0 (Table 6's "w/ inter" = ``w_intra: 0``, "w/ intra" = ``w_inter: 0``) is not
computed nor returned. Every pixel is distilled, labelled or not (the teacher is informative where labels are
missing), as the other output distillers do. Teachers: all tasks of ``distill.teachers`` name the same multi-task
checkpoint.

Per task (Eq. 3's T and the rows/columns of Eq. 5–6 are per output map, so each task gets its own):

- ``temperature``: one number for every task, or ``{task: T}`` (tasks not named take 1). Default 1 for every task:
  the paper searches T per teacher–student pair (§4.1, its set 0.1–16 for plain KD) and gives no CS value. For a
  ``spatial`` distribution T is in the map's units (softmax over positions of depth in metres: T = 1 m), so tune it
  per task; for class logits it is the usual KD temperature.
- ``distribution``: one of ``auto`` / ``channel`` / ``spatial`` for every task, or ``{task: mode}`` (tasks not named
  take ``auto``). ``auto`` = ``channel`` (softmax over classes) for class tasks (``kind == "classes"`` in
  :mod:`mtkd.tasks`: semseg, parts) and ``spatial`` (softmax over positions) for the others (depth, normal, edge,
  sal).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from torch import Tensor

from mtkd.distill.base import DISTILLERS, Distiller
from mtkd.distill.losses import cs_distill_terms
from mtkd.errors import MtkdError
from mtkd.models import Output

_MODES = ("auto", "channel", "spatial")


def _non_negative(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or math.isinf(value) or value < 0:
        raise MtkdError(f"kdam option {name} must be a finite number ≥ 0, got {value!r}")
    return float(value)


def _per_task(name: str, value, tasks: list[str], default):
    """``value`` for every task, or a ``{task: value}`` mapping (unnamed tasks take ``default``)."""
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(tasks))
        if unknown:
            raise MtkdError(f"kdam option {name} names task(s) {unknown} without a teacher; tasks: {tasks}")
        return {t: value.get(t, default) for t in tasks}
    return {t: value for t in tasks}


class KDAMDistiller(Distiller):
    def __init__(self, tasks, student_taps, teacher_taps, weights=None, *,
                 temperature: float | Mapping[str, float] = 1.0, w_inter: float = 1.0, w_intra: float = 1.0,
                 beta: float = 1.0, distribution: str | Mapping[str, str] = "auto"):
        super().__init__(tasks, student_taps, teacher_taps, weights)
        self.temperature = {t: _non_negative(f"temperature ({t})", v)
                            for t, v in _per_task("temperature", temperature, self.tasks, 1.0).items()}
        for t, v in self.temperature.items():
            if v == 0:
                raise MtkdError(f"kdam option temperature must be > 0, got 0 for {t!r}")
        self.w_inter = _non_negative("w_inter", w_inter)
        self.w_intra = _non_negative("w_intra", w_intra)
        self.beta = _non_negative("beta", beta)
        self.distribution = _per_task("distribution", distribution, self.tasks, "auto")
        for t, v in self.distribution.items():
            if v not in _MODES:
                raise MtkdError(f"kdam option distribution must be auto, channel or spatial, got {v!r} for {t!r}")

    def forward(self, student: Output, teachers: dict[str, Output], batch: dict[str, Tensor],
                task_losses: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for t in self.tasks:
            scale = self.beta * self.weights[t]
            if scale == 0 or (self.w_inter == 0 and self.w_intra == 0):
                continue
            terms = cs_distill_terms(student.preds[t], teachers[t].preds[t].float(),
                                     distribution=self.distribution[t], task=t, temperature=self.temperature[t])
            if self.w_inter:
                out[f"cs_inter/{t}"] = scale * self.w_inter * terms.inter
            if self.w_intra:
                out[f"cs_intra/{t}"] = scale * self.w_intra * terms.intra
        return out


@DISTILLERS.register("kdam")
def kdam(tasks, student_taps, teacher_taps, weights=None, *, temperature=1.0, w_inter=1.0, w_intra=1.0, beta=1.0,
         distribution="auto"):
    """KDAM (seed 003): Cauchy-Schwarz inter + intra distillation of every task's output from one MTL teacher."""
    return KDAMDistiller(tasks, student_taps, teacher_taps, weights, temperature=temperature, w_inter=w_inter,
                         w_intra=w_intra, beta=beta, distribution=distribution)
