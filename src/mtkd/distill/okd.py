"""OKD-MTL: online knowledge distillation for multi-task learning (Jacob, Agarwal & Stenger, WACV 2023, seed 002).

One single-task network per task (a ``MultiTaskModel`` with that one task, the run's ``model`` section unless
``stl_backbone`` is given) is trained *in the same run* as the multi-task student. Eq. 1::

    L = L_AFD + Σ_i ( L_STL^i + λ_i L_MTL^i )

The engine already back-propagates the weighted MTL task losses (``Σ_i w_i L_MTL^i``, w_i = 1 for ``ew``) plus the
sum of what this distiller returns, which is:

- ``stl/<task>``: the single-task network's own task loss on the batch (``mtkd.tasks.get_task(t).loss``) — the only
  gradient the single-task networks ever get.
- ``afd``: ``AdaptiveFeatureDistillation`` (``losses/afd.py``, Eq. 2) between the student's backbone stage taps and
  each single-task network's same taps; the single-task maps are detached inside, so AFD never reaches them.
- ``otw``: ``Σ_i (λ_i − 1) · L_MTL^i`` with λ detached (Eq. 3, ``otw.py``). With the engine's equal weighting
  (w_i = 1) the total MTL term becomes ``Σ_i λ_i L_MTL^i``, i.e. Eq. 1. **Use OTW only with ``weighting.name: ew``**:
  with another weighting the MTL term is ``Σ_i (w_i + λ_i − 1) L_MTL^i``, which is neither method. The distiller
  cannot see the engine's weighting, so this is not checked.

OTW forms: ``otw_form="paper"`` (default) — λ from the current iteration's detached losses; ``"code"`` — the authors'
public code: λ from the *previous epoch's* mean ratios (all ratios 1, i.e. λ = 1, until one MTL-training epoch has
finished), each exponential clamped at ``otw_clamp`` (default 10 for the code form, none for the paper form). Epoch
means are accumulated here and rolled over by the callback from ``callbacks()`` (summed across processes);
the previous epoch's ratios are a buffer, so they survive a resume.

Warm-up (``warmup_epochs``; the paper warms the single-task nets up for 5 epochs): during warm-up λ_i = 0 and AFD is
not computed (returned as 0), so ``otw = −Σ_i L_MTL^i`` cancels the engine's EW term exactly and only the single-task
networks learn. ``student_frozen()`` is true then: the engine clears the student's gradients (``None``) before the
step, so its optimiser skips it entirely — no Adam step count, no weight decay (tested bit for bit); the LR schedule
still advances with the epochs, and the student's BatchNorm running statistics still update in its training-mode
forward. AFD's ω/adaptors get no gradient (``None``). ``edge_pos_weight`` is the run's ``loss.edge_pos_weight``
(passed by the engine, not a method option), so the single-task nets score edges like the student.

The current epoch reaches the distiller through the callback (``self.epoch``, set at each training epoch start).
The λ of the last step are stashed as ``self.last_weights`` (``{task: 0-d tensor}``, zeros during warm-up, ones
when OTW is off) for the engine to log; they are not returned (returned values are losses).

Offline variant (Table 4 "MTL-pretrained-AFD"): ``stl_checkpoints: {task: ckpt or run folder}`` loads every
single-task net from an mtkd checkpoint and freezes it (no gradient, always eval mode, forward under ``no_grad``);
``stl/<task>`` is then not returned. The single-task networks (trained or frozen) are submodules: they are in the
run's checkpoint and in the distiller's optimizer group (``distill.lr`` / ``distill.weight_decay``; the authors' code
trains them with their own Adam 1e-4, weight decay 1e-5).

The paper's model (ViT-tiny, ``mask_seg`` on segmentation, ``mask_reg`` on depth/normals) is a ``model`` section
(``configs/nyuv2/okd_vit.yaml``); the single-task nets take every key of it, their task's head included.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from mtkd.distill.base import DISTILLERS, Distiller
from mtkd.distill.losses.afd import AdaptiveFeatureDistillation
from mtkd.distill.otw import otw_weights, otw_weights_from_ratios
from mtkd.errors import MtkdError
from mtkd.models import MultiTaskModel, Output, build_model_from_config
from mtkd.tasks import get_task

AFD_LAYERS = ("all", "last")
OTW_FORMS = ("paper", "code")


class OKDDistiller(Distiller):
    needs_teachers = False

    def __init__(self, tasks, student_taps, teacher_taps, *, model_config: Mapping[str, Any],
                 task_channels: Mapping[str, int], afd: bool = True, otw: bool = True,
                 afd_mode: str = "learned", afd_form: str = "code", afd_layers: str = "all",
                 afd_task_sum: str = "inside", otw_form: str = "paper", temperature: float = 0.1,
                 otw_clamp: float | None = None, warmup_epochs: int = 0, stl_backbone: str | None = None,
                 stl_checkpoints: Mapping[str, str] | None = None, edge_pos_weight: float = 0.95):
        super().__init__(tasks, student_taps, teacher_taps)
        if model_config is None or task_channels is None:
            raise MtkdError("distillation method 'okd' needs the run's model config and task channels")
        if afd_layers not in AFD_LAYERS:
            raise MtkdError(f"okd option afd_layers must be one of {', '.join(AFD_LAYERS)}, got {afd_layers!r}")
        if otw_form not in OTW_FORMS:
            raise MtkdError(f"okd option otw_form must be one of {', '.join(OTW_FORMS)}, got {otw_form!r}")
        if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int) or warmup_epochs < 0:
            raise MtkdError(f"okd option warmup_epochs must be an int ≥ 0, got {warmup_epochs!r}")
        if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
            raise MtkdError(f"okd option temperature must be a finite number > 0, got {temperature!r}")
        missing = [t for t in self.tasks if t not in task_channels]
        if missing:
            raise MtkdError(f"okd: no output channels for task(s) {missing}")
        self.use_afd, self.use_otw = bool(afd), bool(otw)
        self.otw_form, self.temperature, self.warmup_epochs = otw_form, float(temperature), warmup_epochs
        self.otw_clamp = otw_clamp if otw_clamp is not None else (10.0 if otw_form == "code" else None)
        self.specs = {t: get_task(t, edge_pos_weight=edge_pos_weight) for t in self.tasks}
        self.frozen = stl_checkpoints is not None
        self.stl = nn.ModuleDict(self._build_stl(model_config, task_channels, stl_backbone, stl_checkpoints))

        stages = [name for name in student_taps if name.startswith("stage")]
        self.taps = stages[-1:] if afd_layers == "last" else stages
        self.afd = None
        if self.use_afd:
            if not self.taps:
                raise MtkdError(f"okd: the student has no backbone stage taps for AFD; taps: {', '.join(student_taps)}")
            for t, net in self.stl.items():
                theirs = net.taps()
                for tap in self.taps:
                    if tap not in theirs or theirs[tap][0] != student_taps[tap][0]:
                        got = theirs[tap][0] if tap in theirs else "no such tap"
                        raise MtkdError(f"okd: AFD needs the {t} single-task net's tap {tap!r} to have the student's "
                                        f"{student_taps[tap][0]} channels, got {got}; use the same backbone "
                                        f"(stl_backbone) or afd: false")
            self.afd = AdaptiveFeatureDistillation(len(self.taps), self.tasks, mode=afd_mode, form=afd_form,
                                                   channels=[student_taps[tap][0] for tap in self.taps],
                                                   task_sum=afd_task_sum)
        n = len(self.tasks)
        self.register_buffer("prev_ratio", torch.ones(n))  # code-form OTW: last finished epoch's mean ratios
        self.register_buffer("_sum_mtl", torch.zeros(n), persistent=False)
        self.register_buffer("_sum_stl", torch.zeros(n), persistent=False)
        self.register_buffer("_count", torch.zeros(()), persistent=False)
        self.epoch = 0
        self.last_weights: dict[str, Tensor] = {}

    def _build_stl(self, model_config, task_channels, stl_backbone, stl_checkpoints) -> dict[str, MultiTaskModel]:
        if stl_checkpoints is None:
            # plain shared-encoder nets: the student's architecture options (ATRC's preset, ...) do not apply
            m = {**model_config, "arch": "shared", "arch_options": {},
                 "backbone": stl_backbone or model_config["backbone"]}
            return {t: build_model_from_config(m, {t: task_channels[t]}) for t in self.tasks}
        from mtkd.distill.teachers import resolve_checkpoint
        from mtkd.checkpoints import load_model

        sources = dict(stl_checkpoints)
        if stl_backbone is not None:
            raise MtkdError("okd: stl_backbone and stl_checkpoints exclude each other (a checkpoint has its own)")
        missing = [t for t in self.tasks if t not in sources]
        extra = [t for t in sources if t not in self.tasks]
        if missing or extra:
            raise MtkdError(f"okd option stl_checkpoints must name exactly the tasks {self.tasks}; "
                            f"missing {missing}, unknown {extra}")
        nets = {}
        for t in self.tasks:
            path = resolve_checkpoint(sources[t])
            model, _ = load_model(path)
            if model.tasks.get(t) != int(task_channels[t]):
                raise MtkdError(f"okd: stl_checkpoints.{t} = {path} predicts {model.tasks.get(t, 'no')} channels for "
                                f"{t!r}, this run {task_channels[t]}")
            nets[t] = model.requires_grad_(False).eval()
        return nets

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            self.stl.eval()
        return self

    def in_warmup(self) -> bool:
        return self.epoch < self.warmup_epochs

    def forward(self, student: Output, teachers: dict[str, Output], batch: dict[str, Tensor],
                task_losses: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        image = batch["image"]
        if task_losses is None:
            task_losses = {t: self.specs[t].loss(student.preds[t], batch[t]) for t in self.tasks}
        out: dict[str, Tensor] = {}
        stl_losses, stl_feats = {}, {}
        for t in self.tasks:
            with torch.no_grad() if self.frozen else torch.enable_grad():
                s = self.stl[t](image)
                stl_losses[t] = self.specs[t].loss(s.preds[t], batch[t])
            stl_feats[t] = [s.features[tap] for tap in self.taps]
            if not self.frozen:
                out[f"stl/{t}"] = stl_losses[t]
        warm = self.in_warmup()
        if self.afd is not None:
            if warm:
                out["afd"] = torch.zeros((), device=image.device)
            else:
                out["afd"] = self.afd([student.features[tap] for tap in self.taps], stl_feats)
        mtl = torch.stack([task_losses[t].detach().float().reshape(()) for t in self.tasks])
        stl = torch.stack([stl_losses[t].detach().float().reshape(()) for t in self.tasks])
        if warm:
            lam = torch.zeros_like(mtl)
        else:
            if self.otw_form == "code" and self.training:
                self._sum_mtl += mtl
                self._sum_stl += stl
                self._count += 1
            if not self.use_otw:
                lam = torch.ones_like(mtl)
            elif self.otw_form == "paper":
                lam = otw_weights(mtl, stl, T=self.temperature, clamp=self.otw_clamp)
            else:
                lam = otw_weights_from_ratios(self.prev_ratio, T=self.temperature, clamp=self.otw_clamp)
        self.last_weights = {t: lam[i] for i, t in enumerate(self.tasks)}
        if self.use_otw or self.warmup_epochs > 0:
            out["otw"] = sum((lam[i] - 1.0) * task_losses[t].float().reshape(()) for i, t in enumerate(self.tasks))
        return out

    def end_epoch(self, reduce: Callable[[Tensor], Tensor] = lambda x: x) -> None:
        """Code-form OTW: the finished epoch's mean MTL/STL ratios become next epoch's (``reduce`` sums across
        processes). Epochs without MTL training (warm-up) leave the previous ratios (initially 1) in place."""
        if self.otw_form != "code":
            return
        sums = reduce(torch.cat([self._sum_mtl, self._sum_stl, self._count.reshape(1)]))
        n = len(self.tasks)
        if float(sums[-1]) > 0:
            mean_mtl, mean_stl = sums[:n], sums[n:2 * n]
            self.prev_ratio.copy_(torch.where(mean_mtl == 0, torch.zeros_like(mean_mtl),
                                              mean_mtl / mean_stl.clamp_min(1e-8)))
        self._sum_mtl.zero_()
        self._sum_stl.zero_()
        self._count.zero_()

    def student_frozen(self) -> bool:
        return self.in_warmup()

    def logged_values(self) -> dict[str, float]:
        """The OTW weights λ of the last step, logged as ``train/distill/otw/<task>``."""
        return {f"otw/{t}": float(w) for t, w in self.last_weights.items()}

    def callbacks(self) -> list[Any]:
        return [OKDEpochCallback(self)]


class OKDEpochCallback(L.Callback):
    """Tells the distiller the current epoch (warm-up) and rolls the code-form OTW ratios over at epoch end."""

    def __init__(self, distiller: OKDDistiller):
        self.distiller = distiller

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.distiller.epoch = trainer.current_epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.distiller.end_epoch(lambda x: trainer.strategy.reduce(x, reduce_op="sum"))


@DISTILLERS.register("okd")
def okd(tasks, student_taps, teacher_taps, model_config=None, task_channels=None, *, afd=True, otw=True,
        afd_mode="learned", afd_form="code", afd_layers="all", afd_task_sum="inside", otw_form="paper",
        temperature=0.1, otw_clamp=None, warmup_epochs=0, stl_backbone=None, stl_checkpoints=None,
        edge_pos_weight=0.95):
    """OKD-MTL (seed 002): online single-task nets, AFD on the backbone stages, OTW task weights (Eq. 1–3)."""
    return OKDDistiller(tasks, student_taps, teacher_taps, model_config=model_config, task_channels=task_channels,
                        afd=afd, otw=otw, afd_mode=afd_mode, afd_form=afd_form, afd_layers=afd_layers,
                        afd_task_sum=afd_task_sum, otw_form=otw_form, temperature=temperature, otw_clamp=otw_clamp,
                        warmup_epochs=warmup_epochs, stl_backbone=stl_backbone, stl_checkpoints=stl_checkpoints,
                        edge_pos_weight=edge_pos_weight)


okd.needs_teachers = False  # the registry holds the factory: ``needs_teachers("okd")`` reads it here
