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
missing), as the other output distillers do. ``distribution`` (``auto`` by default: classes for segmentation,
the spatial distribution for regression maps) and ``temperature`` (1; the paper searches T per pair and does not
give the CS value) are options. Teachers: all tasks of ``distill.teachers`` name the same multi-task checkpoint.
"""

from __future__ import annotations

import math

from torch import Tensor

from mtkd.distill.base import DISTILLERS, Distiller
from mtkd.distill.losses import cs_distill_terms
from mtkd.errors import MtkdError
from mtkd.models import Output


def _non_negative(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or math.isinf(value) or value < 0:
        raise MtkdError(f"kdam option {name} must be a finite number ≥ 0, got {value!r}")
    return float(value)


class KDAMDistiller(Distiller):
    def __init__(self, tasks, student_taps, teacher_taps, weights=None, *, temperature: float = 1.0,
                 w_inter: float = 1.0, w_intra: float = 1.0, beta: float = 1.0, distribution: str = "auto"):
        super().__init__(tasks, student_taps, teacher_taps, weights)
        self.temperature = _non_negative("temperature", temperature)
        if self.temperature == 0:
            raise MtkdError("kdam option temperature must be > 0, got 0")
        self.w_inter = _non_negative("w_inter", w_inter)
        self.w_intra = _non_negative("w_intra", w_intra)
        self.beta = _non_negative("beta", beta)
        if distribution not in ("auto", "channel", "spatial"):
            raise MtkdError(f"kdam option distribution must be auto, channel or spatial, got {distribution!r}")
        self.distribution = distribution

    def forward(self, student: Output, teachers: dict[str, Output], batch: dict[str, Tensor],
                task_losses: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for t in self.tasks:
            scale = self.beta * self.weights[t]
            if scale == 0 or (self.w_inter == 0 and self.w_intra == 0):
                continue
            terms = cs_distill_terms(student.preds[t], teachers[t].preds[t].float(), distribution=self.distribution,
                                     task=t, temperature=self.temperature)
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
