"""Hinton knowledge distillation applied per pixel (Hinton, Vinyals & Dean 2015, "Distilling the knowledge in a
neural network"; the "plain KD" baseline of KDAM, seed 003 Eq. 2 and Table 4; the logit KD of JointDistill, seed 001).

For every pixel of a ``B×C×H×W`` logit map (C = classes)::

    p_t = softmax(z_t / T),  p_s = softmax(z_s / T)           over the C classes
    KL(p_t ‖ p_s) = Σ_c p_t · (log p_t − log p_s)
    loss = T² · mean over valid pixels of KL(p_t ‖ p_s)

Reduction: KL summed over classes, averaged over the valid pixels of the whole batch (not per image then per batch),
times T² (Hinton's gradient-scale correction, so the loss weight need not change with T).

Default T = 1. The papers do not agree on one value: KDAM's plain-KD baseline uses T = 3 (and its Table 5b finds
larger T slightly better), JointDistill does not state one. T = 1 is the plain definition (T² = 1, the loss is the
per-pixel KL); recipes that reproduce KDAM's plain-KD comparison pass ``temperature=3`` explicitly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mtkd.distill.losses._common import as_float, check_same_shape, masked_pixel_mean, norm_mask, teacher_const
from mtkd.errors import MtkdError


def kd_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Per-pixel Hinton KD: ``T² · mean_valid_pixels KL(softmax(t/T) ‖ softmax(s/T))`` over classes (dim 1).

    ``student``/``teacher``: ``B×C×H×W`` logits (same shape); ``mask``: ``B×1×H×W`` or ``B×H×W`` bool, True = counts.
    Returns an fp32 scalar; the teacher is detached.
    """
    check_same_shape(student, teacher, "kd_loss", "KD compares class logits: the student head must have the teacher's classes")
    if temperature <= 0:
        raise MtkdError(f"kd_loss: temperature must be > 0, got {temperature}")
    m = norm_mask(mask, student, "kd_loss")
    s = as_float(student) / temperature
    t = teacher_const(teacher) / temperature
    log_ps = F.log_softmax(s, dim=1)
    log_pt = F.log_softmax(t, dim=1)
    kl = (log_pt.exp() * (log_pt - log_ps)).sum(dim=1)  # B×H×W
    return masked_pixel_mean(kl, m) * temperature**2
