"""Channel-wise distillation, CWD (Shu, Liu, Gao, Yan & Shen, "Channel-wise knowledge distillation for dense
prediction", ICCV 2021).

Every channel of a ``N×C×H×W`` map (logits or features) is turned into a distribution over its H·W positions, and
the student's channel distribution is pulled to the teacher's::

    p_t^{n,c} = softmax_{hw}(t_{n,c} / τ),  p_s^{n,c} = softmax_{hw}(s_{n,c} / τ)
    loss = τ² / (N·C) · Σ_{n,c} Σ_{hw} p_t^{n,c} (log p_t^{n,c} − log p_s^{n,c})

Reduction as the authors' code: KL summed over positions, divided by N·C, times τ². Default τ = 4 (the authors'
segmentation setting). Their recipe also multiplies the loss by a weight of 3; that weight belongs to the recipe
(the distiller's loss weight), not to this function.

``mask`` (optional): positions where it is False are removed from the softmax of both maps (each channel becomes a
distribution over the valid positions only); an image with no valid position is dropped from the N·C count. The
authors' code has no mask. A spatial-size mismatch is resolved by resizing the student bilinearly to the teacher's
size; a channel mismatch needs an adaptor first (e.g. a 1×1 conv, as feature-level CWD uses).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mtkd.distill.losses._common import (
    as_float,
    check_4d,
    match_spatial,
    norm_mask,
    teacher_const,
    zero_like_graph,
)
from mtkd.errors import MtkdError


def cwd_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    temperature: float = 4.0,
) -> torch.Tensor:
    """Channel-wise distillation: ``τ²/(N·C) Σ KL(softmax_hw(t/τ) ‖ softmax_hw(s/τ))`` per image and channel."""
    check_4d(student, "cwd_loss student")
    check_4d(teacher, "cwd_loss teacher")
    if student.shape[:2] != teacher.shape[:2]:
        raise MtkdError(
            f"cwd_loss: student N×C {tuple(student.shape[:2])} != teacher N×C {tuple(teacher.shape[:2])}; "
            "map the student's channels with an adaptor (e.g. FitNetRegressor) first"
        )
    if temperature <= 0:
        raise MtkdError(f"cwd_loss: temperature must be > 0, got {temperature}")
    t = teacher_const(teacher)
    s = match_spatial(as_float(student), t)
    m = norm_mask(mask, t, "cwd_loss")
    n, c, h, w = t.shape
    s = s.reshape(n, c, h * w) / temperature
    t = t.reshape(n, c, h * w) / temperature
    if m is None:
        log_ps = F.log_softmax(s, dim=2)
        log_pt = F.log_softmax(t, dim=2)
        kl = (log_pt.exp() * (log_pt - log_ps)).sum()
        return kl * temperature**2 / (n * c)
    valid = m.reshape(n, 1, h * w).expand(n, c, h * w)
    keep = m.reshape(n, -1).any(dim=1)  # images with at least one valid position
    if not bool(keep.any()):
        return zero_like_graph(student)
    neg_inf = torch.tensor(float("-inf"), device=s.device)
    log_ps = F.log_softmax(torch.where(valid, s, neg_inf), dim=2)[keep]
    log_pt = F.log_softmax(torch.where(valid, t, neg_inf), dim=2)[keep]
    v = valid[keep]
    diff = torch.where(v, log_pt - log_ps, torch.zeros_like(log_ps))
    kl = (torch.where(v, log_pt.exp(), torch.zeros_like(log_pt)) * diff).sum()
    return kl * temperature**2 / (int(keep.sum()) * c)
