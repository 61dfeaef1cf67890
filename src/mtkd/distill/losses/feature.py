"""Feature distillation: KD4MTL's normalised feature distance, the FitNet hint loss and its regressor, and the
spatial-resize helper shared by every feature loss.

KD4MTL (Li & Bilen, ECCV-W 2020, seed 004, Eq. 3–5). The student's shared feature, mapped by a task-specific adaptor
``A_τ`` (a 1×1 conv, C→C, built by the distiller, not here), is compared with the frozen single-task teacher's
feature through the squared Euclidean distance of L2-normalised maps, Eq. 4: ``ℓ_d(a, b) = ‖a/‖a‖₂ − b/‖b‖₂‖²₂``.
The paper leaves "the norm of a feature map" open; the public code (the default here, ``normalize="pixel"``)
normalises each pixel's C-vector, ``f / sqrt(Σ_c f² + 1e-6)``, sums the squared difference over channels and
averages over the N·H·W pixels. ``normalize="map"`` is the literal reading of Eq. 4: the whole C×H×W map of each
sample is one vector, ``f / sqrt(Σ_{c,h,w} f² + 1e-6)``, the squared difference is summed over C·H·W and averaged
over the N samples (each sample's term lies in [0, 4]).

FitNet (Romero et al., ICLR 2015, "FitNets: hints for thin deep nets"): a regressor ``r`` (conv, C_s→C_t) maps the
student's guided layer to the teacher's hint layer, and the hint loss is the mean squared error. The paper writes
``½‖u − r(v)‖²``; here (as in the common implementations) it is the plain element mean, ``F.mse_loss`` over the
valid pixels × channels, without the ½.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from mtkd.distill.losses._common import (
    as_float,
    check_4d,
    match_spatial,
    masked_pixel_mean,
    norm_mask,
    teacher_const,
    zero_like_graph,
)
from mtkd.errors import MtkdError

__all__ = ["FitNetRegressor", "fitnet_loss", "kd4mtl_feature_loss", "match_spatial", "normalize_feature"]

_NORMALIZE = ("pixel", "map")


def _check_feature_pair(student: torch.Tensor, teacher: torch.Tensor, what: str) -> None:
    check_4d(student, f"{what} student")
    check_4d(teacher, f"{what} teacher")
    if student.shape[0] != teacher.shape[0]:
        raise MtkdError(f"{what}: student batch {student.shape[0]} != teacher batch {teacher.shape[0]}")
    if student.shape[1] != teacher.shape[1]:
        raise MtkdError(
            f"{what}: student has {student.shape[1]} channels, teacher {teacher.shape[1]}; map the student's channels "
            "with an adaptor (KD4MTL: 1×1 conv per task; FitNetRegressor) before the loss"
        )


def normalize_feature(f: torch.Tensor, normalize: str = "pixel", eps: float = 1e-6) -> torch.Tensor:
    """KD4MTL normalisation: ``f / sqrt(Σ f² + eps)`` over channels per pixel (``"pixel"``) or over the whole
    C×H×W map per sample (``"map"``)."""
    if normalize == "pixel":
        return f / torch.sqrt((f * f).sum(dim=1, keepdim=True) + eps)
    if normalize == "map":
        return f / torch.sqrt((f * f).sum(dim=(1, 2, 3), keepdim=True) + eps)
    raise MtkdError(f"unknown feature normalisation {normalize!r}; valid: {', '.join(_NORMALIZE)}")


def kd4mtl_feature_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    normalize: str = "pixel",
    eps: float = 1e-6,
) -> torch.Tensor:
    """KD4MTL Eq. 4: squared distance of L2-normalised feature maps (student already through its adaptor).

    ``"pixel"`` (default, public code): per-pixel normalisation over channels, squared difference summed over channels,
    mean over the valid N·H·W pixels. ``"map"`` (Eq. 4 read literally): per-sample normalisation of the C×H×W map,
    squared difference summed over C·H·W, mean over the samples; masked-out pixels are zeroed in both maps before the
    normalisation, so they do not count. The student is resized to the teacher's H×W when they differ.
    """
    if normalize not in _NORMALIZE:
        raise MtkdError(f"kd4mtl_feature_loss: unknown normalize {normalize!r}; valid: {', '.join(_NORMALIZE)}")
    _check_feature_pair(student, teacher, "kd4mtl_feature_loss")
    t = teacher_const(teacher)
    s = match_spatial(as_float(student), t)
    m = norm_mask(mask, t, "kd4mtl_feature_loss")
    if normalize == "pixel":
        d = normalize_feature(s, "pixel", eps) - normalize_feature(t, "pixel", eps)
        return masked_pixel_mean((d * d).sum(dim=1), m)
    if m is not None:
        keep = m[:, None]
        s = torch.where(keep, s, torch.zeros_like(s))
        t = torch.where(keep, t, torch.zeros_like(t))
        has_pixels = m.reshape(m.shape[0], -1).any(dim=1)
        if not bool(has_pixels.any()):
            return zero_like_graph(student)
        s, t = s[has_pixels], t[has_pixels]
    d = normalize_feature(s, "map", eps) - normalize_feature(t, "map", eps)
    return (d * d).sum(dim=(1, 2, 3)).mean()


def fitnet_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """FitNet hint loss: mean squared error between the regressed student feature and the teacher feature, over the
    valid pixels × channels (student resized to the teacher's H×W when needed)."""
    _check_feature_pair(student, teacher, "fitnet_loss")
    t = teacher_const(teacher)
    s = match_spatial(as_float(student), t)
    m = norm_mask(mask, t, "fitnet_loss")
    return masked_pixel_mean(((s - t) ** 2).mean(dim=1), m)


class FitNetRegressor(nn.Module):
    """FitNet's regressor: a conv mapping the student's C_s channels to the teacher's C_t (1×1 or 3×3, 'same'
    padding), optionally followed by BatchNorm; trained with the student, discarded after training.

    Romero et al. use a convolutional regressor whose kernel makes the spatial sizes match; here the sizes are matched
    by resizing (:func:`match_spatial`) and the conv only maps channels. Default: 1×1, no BN, no bias when BN is used.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, bn: bool = False):
        super().__init__()
        if kernel_size not in (1, 3):
            raise MtkdError(f"FitNetRegressor: kernel_size must be 1 or 3, got {kernel_size}")
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=not bn)
        self.bn = nn.BatchNorm2d(out_channels) if bn else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))
