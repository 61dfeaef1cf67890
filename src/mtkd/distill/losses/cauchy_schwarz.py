"""KDAM's Cauchy-Schwarz distillation (Xu, Yang & Zhang, "Multi-task learning with knowledge distillation for dense
prediction", ICCV 2023, seed 003, Eq. 4–7).

Cauchy-Schwarz divergence, standard form::

    D_CS(p, q) = −ln( Σ p·q / sqrt(Σ p² · Σ q²) )

It is ≥ 0 (Cauchy-Schwarz inequality), = 0 iff p ∝ q, symmetric, and invariant to rescaling either argument. The
paper's Eq. 4 as printed has ``sqrt(∫p · ∫q)`` in the denominator, i.e. it drops the squares; for normalised p and q
that is ``−ln Σ p q``, which is not zero at p = q, so the printed form is a typo and the standard form is used.
Implementation: in the log domain, ``D = −[LSE(a + b) − ½ LSE(2a) − ½ LSE(2b)]`` with ``a = log p``, ``b = log q``
(LSE = log-sum-exp). This is exactly scale-invariant and needs no eps even when Σp² is tiny (a softmax over 10⁵
pixels); rounding can make it −1e-7 at p = q, so it is clamped at 0. :func:`cs_divergence` is the same on
probabilities (zeros allowed; ``eps`` only guards the logarithms).

KDAM's terms, for a probability matrix P (rows = instances, columns = channels), P = softmax(F / T):

- ``L_inter`` (Eq. 5) = mean over rows i of ``D_CS(P_S[i, :], P_T[i, :])``;
- ``L_intra`` (Eq. 6) = mean over columns j of ``D_CS(P_S[:, j], P_T[:, j])``;
- Eq. 7 sums ``L_inter + L_intra`` over tasks; Table 6 ablates the two terms, so both are returned separately
  (:class:`CSTerms`) and :func:`cs_distill_loss` weights them (1, 1 by default).

The paper describes B×C matrices ("B denotes batch size") without saying how a dense B×C×H×W map becomes one. Choices
made here (``distribution=``):

- ``"channel"`` (default for segmentation-like tasks): P = softmax over the C classes at every pixel; the instances
  are all N·H·W pixels of the batch (as DIST's dense form), so rows are per-pixel class distributions and a column is
  one class's probability over every pixel of the batch. Needs C > 1.
- ``"spatial"`` (default for regression maps: depth with 1 channel, normals, saliency, edge): each (sample, channel)
  map becomes a distribution over its H·W positions, P = softmax_hw(F / T), as in CWD. ``L_inter`` ("rows") = mean over
  the N·C (sample, channel) pairs of D_CS between the student's and teacher's spatial distributions. ``L_intra``
  ("columns", per channel across all instances) = mean over the C channels of D_CS between the channel's distribution
  over *all* N·H·W pixels of the batch, softmax over (N, H, W) jointly — the per-channel batch-wide view that the
  channel mode's columns have; it adds the between-image comparison that the per-image rows cannot see. (The literal
  columns of the (N·C)×(H·W) matrix — one position across images — compare unrelated images at a fixed pixel
  position and were rejected for the same reason as the naive DIST intra term.) Note that softmax(F / T) of a
  regression map depends on its units: tune T per task (default 1).
- ``"auto"`` (default): ``"channel"`` when ``task`` is a segmentation-like task (``kind == "classes"`` in :mod:`mtkd.tasks`: semseg, parts), ``"spatial"``
  for any other named task; with no task, ``"channel"`` when C > 1 and ``"spatial"`` when C = 1 (so pass ``task`` for
  normals, which have C = 3).

Masks: pixels where ``mask`` is False are removed from every distribution (rows dropped in channel mode; positions
removed from the softmax in spatial mode). No T² factor: D_CS is bounded and scale-free, and the paper does not use one.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from mtkd.distill.losses._common import (
    as_float,
    check_same_shape,
    norm_mask,
    pixels_as_rows,
    teacher_const,
    zero_like_graph,
)
from mtkd.errors import MtkdError
from mtkd.tasks import tasks_of_kind

SEGMENTATION_TASKS = frozenset(tasks_of_kind("classes"))  # softmax over classes: semseg, parts
_DISTRIBUTIONS = ("auto", "channel", "spatial")


class CSTerms(NamedTuple):
    """KDAM's two terms, kept apart so recipes (and the Table 6 ablation) can weight them."""

    inter: torch.Tensor
    intra: torch.Tensor

    def total(self, w_inter: float = 1.0, w_intra: float = 1.0) -> torch.Tensor:
        return w_inter * self.inter + w_intra * self.intra


def cs_divergence_log(log_p: torch.Tensor, log_q: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """D_CS between (unnormalised) distributions given by their logs, reduced along ``dim``; ``-inf`` = zero mass."""
    cross = torch.logsumexp(log_p + log_q, dim=dim)
    self_p = torch.logsumexp(2.0 * log_p, dim=dim)
    self_q = torch.logsumexp(2.0 * log_q, dim=dim)
    return (0.5 * self_p + 0.5 * self_q - cross).clamp_min(0.0)


def cs_divergence(p: torch.Tensor, q: torch.Tensor, dim: int = -1, eps: float = 1e-30) -> torch.Tensor:
    """D_CS(p, q) = −ln(Σ p q / sqrt(Σ p² Σ q²)) along ``dim`` for non-negative ``p``, ``q`` (any scale).

    Computed as ``½ ln Σp² + ½ ln Σq² − ln Σpq`` with each sum clamped at ``eps`` (so disjoint supports give a large
    finite value, not inf); exactly invariant to rescaling either argument while the sums stay above ``eps``.
    """
    p = p.float()
    q = q.float()
    cross = (p * q).sum(dim=dim).clamp_min(eps).log()
    pp = (p * p).sum(dim=dim).clamp_min(eps).log()
    qq = (q * q).sum(dim=dim).clamp_min(eps).log()
    return (0.5 * pp + 0.5 * qq - cross).clamp_min(0.0)


def resolve_distribution(distribution: str, task: str | None, channels: int) -> str:
    """The concrete distribution (``"channel"`` or ``"spatial"``) for ``distribution="auto"`` and a task name."""
    if distribution not in _DISTRIBUTIONS:
        raise MtkdError(f"cs_distill_loss: unknown distribution {distribution!r}; valid: {', '.join(_DISTRIBUTIONS)}")
    if distribution != "auto":
        return distribution
    if task is not None:
        return "channel" if task in SEGMENTATION_TASKS else "spatial"
    return "channel" if channels > 1 else "spatial"


def cs_distill_terms(
    student: torch.Tensor,
    teacher: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    distribution: str = "auto",
    task: str | None = None,
    temperature: float = 1.0,
) -> CSTerms:
    """KDAM's ``(L_inter, L_intra)`` (Eq. 5, 6) for one task's dense output; see the module docstring for the
    meaning of rows and columns in each ``distribution``."""
    check_same_shape(student, teacher, "cs_distill_loss", "KDAM compares the teacher's and student's outputs per task")
    if temperature <= 0:
        raise MtkdError(f"cs_distill_loss: temperature must be > 0, got {temperature}")
    n, c, h, w = student.shape
    mode = resolve_distribution(distribution, task, c)
    m = norm_mask(mask, student, "cs_distill_loss")
    s = as_float(student) / temperature
    t = teacher_const(teacher) / temperature
    if mode == "channel":
        if c < 2:
            raise MtkdError(
                f"cs_distill_loss: distribution='channel' needs more than one channel (got C={c}); "
                "use distribution='spatial' for a 1-channel map"
            )
        log_ps = F.log_softmax(pixels_as_rows(s, m), dim=1)  # R×C
        log_pt = F.log_softmax(pixels_as_rows(t, m), dim=1)
        if log_ps.shape[0] == 0:
            z = zero_like_graph(student)
            return CSTerms(z, z)
        inter = cs_divergence_log(log_ps, log_pt, dim=1).mean()
        intra = cs_divergence_log(log_ps, log_pt, dim=0).mean()
        return CSTerms(inter, intra)
    # spatial: the logits themselves are log-masses (D_CS is scale-invariant, so the softmax normaliser cancels)
    if m is not None:
        valid = m[:, None].expand(n, c, h, w)
        neg_inf = torch.tensor(float("-inf"), device=s.device)
        s = torch.where(valid, s, neg_inf)
        t = torch.where(valid, t, neg_inf)
        keep = m.reshape(n, -1).any(dim=1)
        if not bool(keep.any()):
            z = zero_like_graph(student)
            return CSTerms(z, z)
    else:
        keep = torch.ones(n, dtype=torch.bool, device=s.device)
    inter = cs_divergence_log(s[keep].reshape(-1, h * w), t[keep].reshape(-1, h * w), dim=1).mean()
    per_channel_s = s.transpose(0, 1).reshape(c, n * h * w)
    per_channel_t = t.transpose(0, 1).reshape(c, n * h * w)
    intra = cs_divergence_log(per_channel_s, per_channel_t, dim=1).mean()
    return CSTerms(inter, intra)


def cs_distill_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    distribution: str = "auto",
    task: str | None = None,
    temperature: float = 1.0,
    w_inter: float = 1.0,
    w_intra: float = 1.0,
) -> torch.Tensor:
    """KDAM's per-task loss ``w_inter · L_inter + w_intra · L_intra`` (Eq. 7's summand; 1, 1 by default)."""
    terms = cs_distill_terms(student, teacher, mask, distribution=distribution, task=task, temperature=temperature)
    return terms.total(w_inter, w_intra)
