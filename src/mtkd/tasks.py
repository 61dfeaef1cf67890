"""The task vocabulary: each dense task is a small spec — head channels, a masked loss, its metric accumulator.

Every loss averages over the valid pixels of the whole batch, so a sample without a label for a task (a fully
invalid target) contributes nothing, and a batch with no valid pixel gives a zero loss that still back-propagates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from mtkd.functional import unit_vectors
from mtkd.metrics import BoundaryF, DepthMetrics, EdgeMetrics, NormalMetrics, SaliencyMetrics, SemsegMetrics
from mtkd.registry import suggest


def _masked_mean(values: Tensor, valid: Tensor, anchor: Tensor) -> Tensor:
    """Mean of ``values`` over ``valid``; an all-invalid batch gives 0 connected to ``anchor``'s graph."""
    count = valid.sum()
    if count == 0:
        return anchor.sum() * 0.0
    return (values * valid).sum() / count


def semseg_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy over labelled pixels (target -1 = ignore)."""
    valid = target >= 0
    ce = F.cross_entropy(pred.float(), target.clamp(min=0), reduction="none")
    return _masked_mean(ce, valid, pred)


def depth_loss(pred: Tensor, target: Tensor) -> Tensor:
    """L1 over pixels with valid depth (target 0 or non-finite = invalid)."""
    valid = (target > 0) & torch.isfinite(target)
    err = (pred.float() - torch.where(valid, target, torch.zeros_like(target))).abs()
    return _masked_mean(err, valid, pred)


def normal_loss(pred: Tensor, target: Tensor) -> Tensor:
    """1 − cosine between the L2-normalised prediction and the target over valid pixels (all-zero target = invalid)."""
    valid = target.abs().sum(dim=1) > 0
    cos = (unit_vectors(pred.float()) * target).sum(dim=1)
    return _masked_mean(1.0 - cos, valid, pred)


def edge_loss(pred: Tensor, target: Tensor, pos_weight: float = 0.95) -> Tensor:
    """Weighted binary cross-entropy on boundary logits: positives weigh ``pos_weight``, negatives ``1 − pos_weight``.

    Boundaries cover a few percent of pixels, so an unweighted BCE learns "no edge anywhere"; 0.95 is the
    positive weight of the dense-MTL codebases (ATRC, Multi-Task-Learning-PyTorch). Target −1 = invalid.
    """
    valid = target >= 0
    y = target.clamp(min=0).float()
    weight = torch.where(y > 0.5, pos_weight, 1.0 - pos_weight)
    bce = F.binary_cross_entropy_with_logits(pred.float(), y, weight=weight, reduction="none")
    return _masked_mean(bce, valid, pred)


def saliency_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Binary cross-entropy on saliency logits against the (soft) saliency map; target −1 = invalid."""
    valid = target >= 0
    bce = F.binary_cross_entropy_with_logits(pred.float(), target.clamp(min=0).float(), reduction="none")
    return _masked_mean(bce, valid, pred)


class SigmoidInput:
    """Mixin for a metric that expects probabilities and is fed logits: the sigmoid is applied here."""

    def update(self, pred: Tensor, target: Tensor) -> None:
        super().update(torch.sigmoid(pred), target)


class SaliencyFromLogits(SigmoidInput, SaliencyMetrics):
    """``SaliencyMetrics`` (maxF, IoU) fed with logits."""


class BoundaryFromLogits(SigmoidInput, BoundaryF):
    """``BoundaryF`` (odsF, oisF) fed with logits."""


@dataclass(frozen=True)
class TaskSpec:
    """What the engine needs to know about one task (the output channels come from the data)."""

    name: str
    loss: Callable[[Tensor, Tensor], Tensor]
    metrics: Callable[[int], Metric]  # split-level accumulator given the task's output channels
    monitor: str  # the metric shown first in tables
    #: "classes" (softmax over C classes, cross-entropy: semseg, parts), "binary" (one sigmoid logit, binary
    #: cross-entropy: edge, sal) or "regression" (depth, normal): what losses, UW and distillers derive from
    kind: str = "regression"
    #: the test split's accumulator where the protocol is too costly for every validation (edge: odsF / oisF),
    #: called with the channels and the run's ``eval.<task>`` options; None: the same as ``metrics``
    test_metrics: Callable[..., Metric] | None = None
    test_monitor: str | None = None  # the test split's metric shown first (None: ``monitor``)
    #: output channels when fixed by the task (depth 1, normal 3, edge / sal 1); None: the class count from the data
    channels: int | None = None
    #: the metric classes whose ``higher_is_better_by_key`` give this task's metric directions, in table order
    #: (the test split's first: edge's odsF / oisF before the validation proxy F@0.5)
    metric_classes: tuple[type, ...] = ()
    #: how a picture shows it (``mtkd.visualize``): "classes" (palette), "depth" (colormap), "normal" (RGB of the
    #: unit vector) or "gray" (probabilities)
    picture: str = "gray"
    #: label channels whose sign a horizontal flip negates (normal: x, as normals are x right / y up / z to camera)
    flip_negates: tuple[int, ...] = ()
    #: the label is a distance: a zoom by s divides it by s (multiplies it when the depth is disparity)
    zoom_scales: bool = False

    @property
    def directions(self) -> dict[str, bool]:
        """``{metric: higher_is_better}`` in table order, from the metric classes' declarations."""
        out: dict[str, bool] = {}
        for cls in self.metric_classes:
            out.update(cls.higher_is_better_by_key)
        return out


def _semseg_metrics(channels: int) -> Metric:
    return SemsegMetrics(channels)


def _depth_metrics(channels: int) -> Metric:
    return DepthMetrics()


def _normal_metrics(channels: int) -> Metric:
    return NormalMetrics()


def _edge_metrics(channels: int) -> Metric:
    return EdgeMetrics()


def _edge_test_metrics(channels: int, **options) -> Metric:
    return BoundaryFromLogits(**options)


def _saliency_metrics(channels: int) -> Metric:
    return SaliencyFromLogits()


# Module-level functions only (no lambdas or closures): specs are pickled when DDP spawns processes.
TASKS: dict[str, TaskSpec] = {
    "semseg": TaskSpec("semseg", semseg_loss, _semseg_metrics, "mIoU", "classes",
                       metric_classes=(SemsegMetrics,), picture="classes"),
    "depth": TaskSpec("depth", depth_loss, _depth_metrics, "abs_err", channels=1,
                      metric_classes=(DepthMetrics,), picture="depth", zoom_scales=True),
    "normal": TaskSpec("normal", normal_loss, _normal_metrics, "mean", channels=3,
                       metric_classes=(NormalMetrics,), picture="normal", flip_negates=(0,)),
    "edge": TaskSpec("edge", edge_loss, _edge_metrics, "F@0.5", "binary", _edge_test_metrics, "odsF", channels=1,
                     metric_classes=(BoundaryFromLogits, EdgeMetrics)),
    "sal": TaskSpec("sal", saliency_loss, _saliency_metrics, "maxF", "binary", channels=1,
                    metric_classes=(SaliencyFromLogits,)),
    "parts": TaskSpec("parts", semseg_loss, _semseg_metrics, "mIoU", "classes",  # human parts: CE, mIoU
                      metric_classes=(SemsegMetrics,), picture="classes"),
}

#: task → metric → higher is better, derived from the metric classes (``mtkd.metrics.METRIC_DIRECTIONS``)
METRIC_DIRECTIONS: dict[str, dict[str, bool]] = {name: spec.directions for name, spec in TASKS.items()}


def supervised_loss(spec: TaskSpec, pred: Tensor, target: Tensor, aux: Sequence[Tensor] = (),
                    aux_weight: float = 1.0) -> Tensor:
    """One task's training loss with deep supervision folded in: ``L(pred) + aux_weight · Σ_k L(up(aux_k))``.

    Each auxiliary prediction (a model's initial or per-scale predictions, ``Output.aux``) is upsampled bilinearly
    to the target's H×W and scored with the task's own masked loss — as the reference codebases (MTI-Net's and
    ATRC's) upsample their intermediate predictions to the label size rather than downsampling labels. The weighting
    sees this one loss per task, so every weighting and distiller works unchanged; metrics read ``pred`` only.
    ``aux_weight`` (``loss.aux_weight``, default 1: the reference codebases sum the terms unweighted).
    """
    loss = spec.loss(pred, target)
    size = target.shape[-2:]
    for a in aux:
        if a.shape[-2:] != size:
            a = F.interpolate(a, size=size, mode="bilinear", align_corners=False)
        loss = loss + aux_weight * spec.loss(a, target)
    return loss


def get_task(name: str, edge_pos_weight: float = 0.95) -> TaskSpec:
    """The spec of task ``name``; unknown names are refused with the closest valid ones."""
    if name not in TASKS:
        raise suggest(name, TASKS, "task")
    spec = TASKS[name]
    if name == "edge" and edge_pos_weight != 0.95:
        spec = replace(spec, loss=partial(edge_loss, pos_weight=edge_pos_weight))
    return spec


def build_test_metric(spec: TaskSpec, channels: int, options: dict | None = None) -> Metric:
    """The test split's accumulator of ``spec``: its ``test_metrics`` with the run's ``eval.<task>`` ``options``
    (the edge task: odsF / oisF), else the validation one."""
    if spec.test_metrics is None:
        return spec.metrics(channels)
    return spec.test_metrics(channels, **dict(options or {}))


def tasks_of_kind(*kinds: str) -> tuple[str, ...]:
    """The task names whose ``kind`` is one of ``kinds`` (e.g. ``tasks_of_kind("classes")`` = semseg, parts)."""
    return tuple(name for name, spec in TASKS.items() if spec.kind in kinds)
