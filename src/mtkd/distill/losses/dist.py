"""DIST, dense form (Huang, You, Wang, Qian & Xu, "Knowledge distillation from a stronger teacher", NeurIPS 2022),
as its authors run it on semantic segmentation; the "DIST KD" baseline of KDAM (seed 003, Table 4).

Let Y = softmax(Z / τ) over the C classes, with every pixel of the batch a row: Y is an ``(N·H·W) × C`` matrix.
With ``ρ(a, b)`` the Pearson correlation = cosine similarity of the mean-centred vectors (``eps = 1e-8`` added to
the product of norms, as in the authors' code)::

    inter = 1 − mean over the N·H·W rows  ρ(Y_s[i, :], Y_t[i, :])     (relation across classes, per pixel)
    intra = 1 − mean over the C columns   ρ(Y_s[:, j], Y_t[:, j])     (relation across ALL pixels of the batch, per class)
    loss  = τ² · (β · inter + γ · intra)                                β = γ = 1, τ = 1 by default

Default τ = 1 ("no temperature"), which is how the authors run DIST on segmentation; a temperature τ ≠ 1 multiplies
the loss by τ² as in their classification code.

Why the dense form matters: generic DIST implementations assume 2-D ``N×C`` logits. Fed a 4-D ``N×C×H×W`` map, their
``intra`` (``transpose(0, 1)`` then correlation along dim 1) correlates each class at each *pixel position* across the
*N images of the batch* — a different and much noisier quantity (with batch size 2 every such correlation is ±1). Here
the intra term correlates each class over all N·H·W pixels, as the authors' segmentation code does.

``mask`` (optional, ``B×1×H×W``/``B×H×W``): rows (pixels) where it is False are dropped from both terms.
"""

from __future__ import annotations

import torch

from mtkd.distill.losses._common import (
    as_float,
    check_same_shape,
    norm_mask,
    pixels_as_rows,
    teacher_const,
    zero_like_graph,
)
from mtkd.errors import MtkdError


def pearson_rows(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of matching rows of two 2-D tensors: cosine of the row-mean-centred vectors."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def dist_terms(
    student: torch.Tensor,
    teacher: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two DIST terms ``(inter, intra)`` on dense logits, each ``τ²``-scaled; see the module docstring."""
    check_same_shape(student, teacher, "dist_loss", "DIST compares class probabilities: same classes needed")
    if temperature <= 0:
        raise MtkdError(f"dist_loss: temperature must be > 0, got {temperature}")
    m = norm_mask(mask, student, "dist_loss")
    ys = torch.softmax(pixels_as_rows(as_float(student), m) / temperature, dim=1)
    yt = torch.softmax(pixels_as_rows(teacher_const(teacher), m) / temperature, dim=1)
    if ys.shape[0] == 0:
        z = zero_like_graph(student)
        return z, z
    scale = temperature**2
    inter = scale * (1.0 - pearson_rows(ys, yt).mean())
    intra = scale * (1.0 - pearson_rows(ys.t(), yt.t()).mean())
    return inter, intra


def dist_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    beta: float = 1.0,
    gamma: float = 1.0,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Dense DIST: ``τ² (β · inter + γ · intra)`` on ``B×C×H×W`` logits (rows = all N·H·W pixels, columns = classes)."""
    inter, intra = dist_terms(student, teacher, mask, temperature=temperature)
    return beta * inter + gamma * intra
