"""Shared plumbing of the distillation losses: shape checks, masks, fp32 casting, teacher detaching.

Every loss in this subpackage follows the same contract:

- inputs are dense maps ``B×C×H×W``, student first, teacher second;
- both are cast to fp32 (``.float()``) before any arithmetic, so the losses behave the same under bf16 autocast
  and always return an fp32 scalar;
- the teacher is detached inside the loss: no gradient ever reaches a teacher tensor;
- an optional ``mask`` (``B×1×H×W`` or ``B×H×W``, bool, True = the pixel counts) restricts pixel-wise losses;
  a mask with no True pixel gives a zero that is still connected to the student's graph (``backward`` works).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mtkd.errors import MtkdError


def as_float(x: torch.Tensor) -> torch.Tensor:
    """``x`` in fp32 (a no-op for fp32 input)."""
    return x.float()


def teacher_const(x: torch.Tensor) -> torch.Tensor:
    """The teacher tensor in fp32, detached: a constant for the student's loss."""
    return x.detach().float()


def check_4d(x: torch.Tensor, what: str) -> None:
    if x.dim() != 4:
        raise MtkdError(f"{what}: expected a B×C×H×W map, got shape {tuple(x.shape)}")


def check_same_shape(s: torch.Tensor, t: torch.Tensor, what: str, hint: str = "") -> None:
    check_4d(s, f"{what} student")
    check_4d(t, f"{what} teacher")
    if s.shape != t.shape:
        extra = f" ({hint})" if hint else ""
        raise MtkdError(f"{what}: student shape {tuple(s.shape)} != teacher shape {tuple(t.shape)}{extra}")


def norm_mask(mask: torch.Tensor | None, ref: torch.Tensor, what: str) -> torch.Tensor | None:
    """``mask`` as a ``B×H×W`` bool tensor on ``ref``'s device, checked against ``ref`` (``B×C×H×W``); None stays None."""
    if mask is None:
        return None
    if mask.dim() == 4:
        if mask.shape[1] != 1:
            raise MtkdError(f"{what}: a 4-D mask must be B×1×H×W, got shape {tuple(mask.shape)}")
        mask = mask[:, 0]
    b, _, h, w = ref.shape
    if tuple(mask.shape) != (b, h, w):
        raise MtkdError(f"{what}: mask shape {tuple(mask.shape)} does not match the maps' B×H×W = {(b, h, w)}")
    return mask.to(device=ref.device, dtype=torch.bool)


def zero_like_graph(x: torch.Tensor) -> torch.Tensor:
    """An fp32 scalar zero that is connected to ``x``'s graph (so ``backward`` works when nothing counts)."""
    return x.float().sum() * 0.0


def masked_pixel_mean(per_pixel: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of a ``B×H×W`` per-pixel value over the pixels where ``mask`` is True (all pixels when None)."""
    if mask is None:
        return per_pixel.mean()
    n = mask.sum()
    if n == 0:
        return zero_like_graph(per_pixel)
    return torch.where(mask, per_pixel, torch.zeros_like(per_pixel)).sum() / n


def pixels_as_rows(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``B×C×H×W`` → ``(N·H·W)×C`` (one row per pixel of the batch, N-major), keeping only the masked-in rows."""
    c = x.shape[1]
    rows = x.permute(0, 2, 3, 1).reshape(-1, c)
    if mask is not None:
        rows = rows[mask.reshape(-1)]
    return rows


def match_spatial(student: torch.Tensor, teacher: torch.Tensor | tuple[int, int]) -> torch.Tensor:
    """Resize a student map to the teacher's spatial size (bilinear, ``align_corners=False``); a no-op when equal.

    ``teacher`` is either the teacher map (``…×H×W``) or the target ``(H, W)``. Used by every feature loss when the
    student's and the teacher's strides differ. Only the spatial size is adapted: a channel mismatch needs an adaptor
    (see :class:`mtkd.distill.losses.feature.FitNetRegressor`).
    """
    size = tuple(teacher.shape[-2:]) if isinstance(teacher, torch.Tensor) else tuple(teacher)
    if tuple(student.shape[-2:]) == size:
        return student
    check_4d(student, "match_spatial student")
    return F.interpolate(student.float(), size=size, mode="bilinear", align_corners=False)
