"""Prediction distillation for regression maps (depth, surface normals, saliency, edge probabilities): the student's
prediction is pulled towards the teacher's prediction, pixel by pixel.

Meant for the multi-teacher baselines (a single-task teacher's depth/normal output as a pseudo-label) and for
JointDistill's depth head (seed 001 distils the "logits" of both tasks; a depth map has no softmax, so its output
distillation is read as this L1 — a reading, not something the summary states).

Two distances:

- ``metric="l1"`` (default): ``|s − t|``, averaged over the valid pixels and the C channels (``F.l1_loss`` restricted
  to the valid pixels); the usual depth-distillation loss and the MTAN depth loss;
- ``metric="cosine"`` (for normals): ``1 − cos(s, t)`` per pixel over the channels, averaged over valid pixels;
  the MTAN/KD4MTL normal loss applied to the teacher's normals instead of the label.

Which pixels count (``region``): ``"all"`` (default: everywhere the optional ``mask`` allows) or ``"gt_invalid"``
(only where the ground truth is missing, given ``gt_valid``, so the teacher fills the holes of the label and never
competes with it) or ``"gt_valid"``. No paper in the seed set fixes this; "everywhere" is the common choice and the
default.
"""

from __future__ import annotations

import torch

from mtkd.distill.losses._common import as_float, check_same_shape, masked_pixel_mean, norm_mask, teacher_const
from mtkd.errors import MtkdError

_REGIONS = ("all", "gt_invalid", "gt_valid")
_METRICS = ("l1", "cosine")


def prediction_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    gt_valid: torch.Tensor | None = None,
    region: str = "all",
    metric: str = "l1",
    eps: float = 1e-8,
) -> torch.Tensor:
    """Distance of the student's regression map to the teacher's, averaged over the counted pixels.

    ``student``/``teacher``: ``B×C×H×W`` predictions (C = 1 depth, 3 normals). ``mask``: pixels allowed at all.
    ``gt_valid``: ``B×1×H×W``/``B×H×W`` validity of the ground truth (needed for ``region != "all"``).
    ``metric``: ``"l1"`` (mean over valid pixels × channels) or ``"cosine"`` (``1 − cos`` over channels, mean over
    valid pixels; ``eps`` guards zero vectors). Returns an fp32 scalar; the teacher is detached.
    """
    check_same_shape(student, teacher, "prediction_loss")
    if region not in _REGIONS:
        raise MtkdError(f"prediction_loss: unknown region {region!r}; valid: {', '.join(_REGIONS)}")
    if metric not in _METRICS:
        raise MtkdError(f"prediction_loss: unknown metric {metric!r}; valid: {', '.join(_METRICS)}")
    m = norm_mask(mask, student, "prediction_loss")
    if region != "all":
        if gt_valid is None:
            raise MtkdError(f"prediction_loss: region={region!r} needs gt_valid (the ground truth's validity mask)")
        g = norm_mask(gt_valid, student, "prediction_loss gt_valid")
        g = ~g if region == "gt_invalid" else g
        m = g if m is None else (m & g)
    s = as_float(student)
    t = teacher_const(teacher)
    if metric == "l1":
        per_pixel = (s - t).abs().mean(dim=1)
    else:
        dot = (s * t).sum(dim=1)
        norms = ((s * s).sum(dim=1) * (t * t).sum(dim=1)).clamp_min(eps * eps).sqrt()
        per_pixel = 1.0 - dot / norms
    return masked_pixel_mean(per_pixel, m)
