"""JointDistill (Cheng et al., arXiv 2505.10057, seed 001 — only a summary is available; every detail it does not
give is a choice, said as such): a connector fusing frozen single-task teachers, feedback-adapted teacher weights,
and knowledge trajectories.

Connector (the distiller's own parameters, in the ``distill.lr`` group). For every task t with teacher feature
``f_t`` at tap ``tap`` (default ``shared``)::

    x     = concat_t resize(f_t)                       all resized (bilinear) to the largest teacher map
    z     = CBR(CBR(x))                                CBR = Conv3×3(no bias)-BN-ReLU, ``channels`` wide
    c_t   = upsample(Conv1×1_t(z)) to H×W              the connector's prediction for task t

Training the connector (the summary does not say how): by the tasks' own supervised losses on the labels,
``connector/<t> = TASKS[t].loss(c_t, y_t)``, returned with the other losses (so summed into the objective; only the
connector receives their gradients, the teachers' features being constants). The student's KD terms see ``c_t``
detached (the loss contract), so the student never pulls the connector towards itself.

Distillation (seed 001's "logit-based distillation")::

    kd/<t> = λ_t · w_t · KL_T(c_t ‖ s_t) · T²     segmentation-like tasks (per-pixel KL over classes)
    kd/<t> = λ_t · w_t · L1(s_t, c_t)            regression tasks (cosine distance for normals)

``w_t`` is the adaptive teacher weight (buffer ``teacher_weights``, updated by
:class:`mtkd.distill.feedback.FeedbackWeights`). ``weight_on="loss"`` (default) multiplies the task's KD term by
``w_t`` — the "amount of knowledge taken from teacher t"; ``weight_on="output"`` is the literal reading "each
connector head's output is scaled by w_t" (the target becomes ``w_t · c_t``; for segmentation that is a change of
temperature, for regression a change of units, which is why it is not the default).

Data (seed 001 holds out 15 % of train "for periodic feedback"): the feedback metrics are measured on the
datamodule's **feedback split** (``data.feedback_fraction``, 0.15 in the recipes), held out of training and disjoint
from the model-selection split; it is only evaluated, so none of its images reaches a gradient. ``check_data``
refuses a run without one and ``data.select_on=test`` (no held-out split may steer training). The probe images of
the trajectories are *training* images: the trajectory term is a training loss on them (its gradient reaches the
student), so they must come from the split the student trains on — probes from a held-out split would make it a
training split.

Trajectories (``trajectory_weight`` > 0): the feedback callback keeps ``num_probes`` fixed probe images (the first
images of the training split in file order, un-augmented, stored in the buffer ``probe_images``) and at every
timeframe records the top-k
(k = 10) points of the connector's attention (``attention_map`` of the fused ``z``, on a ``grid`` of fixed size) in
a :class:`TrajectoryBuffer` (one trajectory set, key ``"connector"``, slot = probe). Each training step the student
is run on the probe images too (one extra forward of ``num_probes`` images; its BatchNorm sees them, as any batch)
and ``trajectory = trajectory_weight · trajectory_loss(attention_map(student_tap), buffer)`` (L1 at the recorded
points over the last ``trajectory_length`` timeframes); zero until the first timeframe is recorded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtkd.distill.base import DISTILLERS, Distiller, check_tap
from mtkd.distill.losses import TrajectoryBuffer, attention_map, kd_loss, prediction_loss, trajectory_loss
from mtkd.distill.losses.cauchy_schwarz import SEGMENTATION_TASKS
from mtkd.errors import MtkdError
from mtkd.metrics import METRIC_DIRECTIONS
from mtkd.models import Output
from mtkd.tasks import get_task


def _cbr(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _number(name: str, value: Any, low: float = 0.0, strict: bool = False) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if not ok or value < low or (strict and value == low):
        raise MtkdError(f"jointdistill option {name} must be a finite number {'>' if strict else '≥'} {low}, got {value!r}")
    return float(value)


class Connector(nn.Module):
    """Teachers' features → concat → CBR ×2 → one 1×1 head per task (outputs upsampled to the image size)."""

    def __init__(self, in_channels: int, channels: int, task_channels: Mapping[str, int]):
        super().__init__()
        self.fuse = nn.Sequential(_cbr(in_channels, channels), _cbr(channels, channels))
        self.heads = nn.ModuleDict({t: nn.Conv2d(channels, c, 1) for t, c in task_channels.items()})

    def fused(self, feats: list[Tensor]) -> Tensor:
        h = max(f.shape[-2] for f in feats)
        w = max(f.shape[-1] for f in feats)
        x = [f.float() if f.shape[-2:] == (h, w) else
             F.interpolate(f.float(), size=(h, w), mode="bilinear", align_corners=False) for f in feats]
        return self.fuse(torch.cat(x, dim=1))

    def forward(self, feats: list[Tensor], size: tuple[int, int]) -> tuple[dict[str, Tensor], Tensor]:
        z = self.fused(feats)
        preds = {t: F.interpolate(head(z), size=size, mode="bilinear", align_corners=False)
                 for t, head in self.heads.items()}
        return preds, z


class JointDistiller(Distiller):
    def __init__(self, tasks, student_taps, teacher_taps, weights=None, *, task_channels: dict[str, int],
                 tap: str = "shared", channels: int = 64, temperature: float = 1.0, weight_on: str = "loss",
                 alpha: float = 1.5, w_init: float = 1.0, w_min: float = 0.1, w_max: float = 2.0,
                 timeframe: int = 1, center: bool = True, metrics: Mapping[str, str] | None = None,
                 trajectory_weight: float = 1.0, k: int = 10, trajectory_length: int = 5, num_probes: int = 4,
                 grid: tuple[int, int] | list[int] = (24, 32), student_tap: str = "shared",
                 edge_pos_weight: float = 0.95):
        super().__init__(tasks, student_taps, teacher_taps, weights)
        if not task_channels:
            raise MtkdError("jointdistill needs the run's task channels (it builds a connector head per task)")
        for t in self.tasks:
            check_tap(tap, teacher_taps[t], f"the {t} teacher")
        check_tap(student_tap, student_taps, "the student")
        if weight_on not in ("loss", "output"):
            raise MtkdError(f"jointdistill option weight_on must be 'loss' or 'output', got {weight_on!r}")
        if isinstance(timeframe, bool) or not isinstance(timeframe, int) or timeframe < 1:
            raise MtkdError(f"jointdistill option timeframe must be a whole number of epochs ≥ 1, got {timeframe!r}")
        self.tap, self.student_tap, self.weight_on, self.timeframe, self.center = tap, student_tap, weight_on, timeframe, bool(center)
        self.temperature = _number("temperature", temperature, strict=True)
        self.alpha = _number("alpha", alpha)
        self.w_min = _number("w_min", w_min)
        self.w_max = _number("w_max", w_max, strict=True)
        w_init = _number("w_init", w_init)
        if not self.w_min <= w_init <= self.w_max:
            raise MtkdError(f"jointdistill: need w_min ≤ w_init ≤ w_max, got {self.w_min}, {w_init}, {self.w_max}")
        self.trajectory_weight = _number("trajectory_weight", trajectory_weight)
        self.metrics = {t: get_task(t).monitor for t in self.tasks}
        for t, m in dict(metrics or {}).items():
            if t not in self.tasks:
                raise MtkdError(f"jointdistill metrics: task {t!r} has no teacher; tasks: {self.tasks}")
            self.metrics[t] = m
        for t, m in self.metrics.items():
            if m not in METRIC_DIRECTIONS.get(t, {}):
                raise MtkdError(f"jointdistill metrics: {t!r} has no metric {m!r}; valid: {', '.join(METRIC_DIRECTIONS.get(t, {}))}")
        self.connector = Connector(sum(teacher_taps[t][tap][0] for t in self.tasks), int(channels),
                                   {t: task_channels[t] for t in self.tasks})
        self.specs = {t: get_task(t, edge_pos_weight=edge_pos_weight) for t in self.tasks}
        self.task_channels = {t: int(task_channels[t]) for t in self.tasks}  # each metric with its own channels
        n = len(self.tasks)
        # feedback state (all persistent: a resumed run continues exactly)
        self.register_buffer("teacher_weights", torch.full((n,), w_init))
        self.register_buffer("teacher_metric", torch.full((n,), float("nan")))  # the teachers' own val metric
        self.register_buffer("last_update_epoch", torch.tensor(-1, dtype=torch.long))
        self.trajectories: TrajectoryBuffer | None = None
        if self.trajectory_weight > 0:
            if isinstance(num_probes, bool) or not isinstance(num_probes, int) or num_probes < 1:
                raise MtkdError(f"jointdistill option num_probes must be an int ≥ 1, got {num_probes!r}")
            self.num_probes = num_probes
            self.trajectories = TrajectoryBuffer(["connector"], num_probes, tuple(grid), k=k, t=trajectory_length)
            self.register_buffer("probe_images", torch.zeros(0, 3, 1, 1))  # filled from the training split
        self._student: list[nn.Module] = []  # the student model, attached by the callback (not a submodule)

    # -- state ------------------------------------------------------------------------------------------------------
    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "probe_images"
        if key in state_dict and hasattr(self, "probe_images"):
            self.probe_images = torch.empty_like(state_dict[key], device=self.probe_images.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def weight_of(self, task: str) -> float:
        return float(self.teacher_weights[self.tasks.index(task)])

    def logged_values(self) -> dict[str, float]:
        """The adaptive teacher weights ``w_t``, logged as ``train/distill/teacher_weight/<task>``."""
        return {f"teacher_weight/{t}": self.weight_of(t) for t in self.tasks}

    def attach_student(self, model: nn.Module) -> None:
        self._student = [model]

    def callbacks(self) -> list[Any]:
        from mtkd.distill.feedback import FeedbackWeights

        return [FeedbackWeights(self)]

    # -- connector --------------------------------------------------------------------------------------------------
    def connector_outputs(self, teachers: dict[str, Output], size: tuple[int, int]) -> tuple[dict[str, Tensor], Tensor]:
        return self.connector([teachers[t].features[self.tap] for t in self.tasks], size)

    @torch.no_grad()
    def record_trajectories(self, teacher_set) -> None:
        """One timeframe: the connector's attention top-k points on the probe images (connector in eval mode)."""
        if self.trajectories is None or self.probe_images.shape[0] != self.num_probes:
            return
        was = self.connector.training
        self.connector.eval()
        try:
            outs = teacher_set(self.probe_images)
            z = self.connector.fused([outs[t].features[self.tap] for t in self.tasks])
            self.trajectories.record("connector", attention_map(z, size=self.trajectories.size))
        finally:
            self.connector.train(was)

    def update_weights(self, student_metric: dict[str, float], epoch: int) -> Tensor:
        """Feedback step: ``w_t ← clamp(w_t − α · score_t, w_min, w_max)``; returns the scores.

        ``score_t = ±(M_T − M_S) / |M_T|`` (+ when higher is better): the student's relative gap to its teacher,
        positive when the student is behind. With ``center`` the mean score over tasks is removed first, so the
        weights move between teachers (less where the student struggles most, more where it does best, as the
        summary describes) instead of all shrinking while the student is behind every teacher.
        """
        scores = []
        for i, t in enumerate(self.tasks):
            m_t, m_s = float(self.teacher_metric[i]), float(student_metric[t])
            sign = 1.0 if METRIC_DIRECTIONS[t][self.metrics[t]] else -1.0
            scores.append(sign * (m_t - m_s) / max(abs(m_t), 1e-8) if math.isfinite(m_t) and math.isfinite(m_s) else 0.0)
        score = torch.tensor(scores, dtype=self.teacher_weights.dtype, device=self.teacher_weights.device)
        if self.center and len(scores) > 1:
            score = score - score.mean()
        self.teacher_weights.copy_((self.teacher_weights - self.alpha * score).clamp(self.w_min, self.w_max))
        self.last_update_epoch.fill_(int(epoch))
        return score

    # -- loss -------------------------------------------------------------------------------------------------------
    def forward(self, student: Output, teachers: dict[str, Output], batch: dict[str, Tensor],
                task_losses: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        size = tuple(batch["image"].shape[-2:])
        conn, _ = self.connector_outputs(teachers, size)
        out: dict[str, Tensor] = {}
        for t in self.tasks:
            if t in batch:
                out[f"connector/{t}"] = self.specs[t].loss(conn[t], batch[t])
            w = self.weight_of(t)
            scale = self.weights[t] * (w if self.weight_on == "loss" else 1.0)
            if scale == 0:
                continue
            target = conn[t] * w if self.weight_on == "output" else conn[t]
            if t in SEGMENTATION_TASKS:
                loss = kd_loss(student.preds[t], target, temperature=self.temperature)
            else:
                loss = prediction_loss(student.preds[t], target, metric="cosine" if t == "normal" else "l1")
            out[f"kd/{t}"] = scale * loss
        if self.trajectories is not None and self._student and self.probe_images.shape[0] == self.num_probes \
                and bool(self.trajectories.length.any()):
            feat = self._student[0](self.probe_images).features[self.student_tap]
            att = attention_map(feat, size=self.trajectories.size)
            out["trajectory"] = self.trajectory_weight * trajectory_loss(att, self.trajectories, "connector")
        return out


def check_data(data: Mapping[str, Any]) -> None:
    """Refuse, before anything is built, a data section that would let a held-out image steer training."""
    if data.get("select_on") == "test":
        raise MtkdError("jointdistill with data.select_on=test: its feedback steers training, and no held-out split "
                        "(selection, feedback, test) may reach training; use data.select_on=val")
    if not data.get("feedback_fraction"):
        raise MtkdError("jointdistill needs a feedback split held out of training and of model selection: set "
                        "data.feedback_fraction (seed 001 holds out 15 %: 0.15)")


@DISTILLERS.register("jointdistill")
def jointdistill(tasks, student_taps, teacher_taps, weights=None, *, task_channels=None, tap="shared", channels=64,
                 temperature=1.0, weight_on="loss", alpha=1.5, w_init=1.0, w_min=0.1, w_max=2.0, timeframe=1,
                 center=True, metrics=None, trajectory_weight=1.0, k=10, trajectory_length=5, num_probes=4,
                 grid=(24, 32), student_tap="shared", edge_pos_weight=0.95):
    """JointDistill (seed 001): connector over single-task teachers, feedback teacher weights, trajectories."""
    return JointDistiller(tasks, student_taps, teacher_taps, weights, task_channels=task_channels, tap=tap,
                          channels=channels, temperature=temperature, weight_on=weight_on, alpha=alpha,
                          w_init=w_init, w_min=w_min, w_max=w_max, timeframe=timeframe, center=center,
                          metrics=metrics, trajectory_weight=trajectory_weight, k=k,
                          trajectory_length=trajectory_length, num_probes=num_probes, grid=grid,
                          student_tap=student_tap, edge_pos_weight=edge_pos_weight)


jointdistill.check_data = check_data  # the registry holds the factory: ``mtkd.distill.check_data`` reads it
