"""The one LightningModule: task losses → weighting (which owns the backward) → optimizer step.

A method is a choice of weighting (and, with distillation, teachers + distiller), never a new loop. Manual
optimisation lets gradient methods (PCGrad, MGDA, ...) see per-task gradients; loss weightings take the same
path through ``Weighting.backward``, which calls Lightning's ``manual_backward`` so precision and DDP plugins apply.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric

from mtkd import weighting as weighting_lib
from mtkd.config import DEFAULTS
from mtkd.distill import build_distiller, check_data, needs_teachers
from mtkd.distill.teachers import TeacherSet
from mtkd.errors import MtkdError
from mtkd.models import build_model_from_config
from mtkd.tasks import build_test_metric, get_task, supervised_loss


class MultiTaskModule(L.LightningModule):
    """Trains ``MultiTaskModel`` on ``task_channels`` with the configured weighting and optimiser.

    ``config`` is the resolved run config as a plain dict (saved in checkpoints; ``mtkd eval`` rebuilds the model
    from it). ``task_channels`` maps each task to its output channels (class counts for semseg and parts).
    """

    def __init__(self, config: dict[str, Any], task_channels: dict[str, int]):
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.config = config
        self.tasks = list(task_channels)
        self.model = build_model_from_config(config["model"], task_channels)
        self.specs = {t: get_task(t, edge_pos_weight=config["loss"]["edge_pos_weight"]) for t in self.tasks}
        wcfg = config["weighting"]
        self.weighting = weighting_lib.get(wcfg["name"], tasks=self.tasks, **dict(wcfg.get("options") or {}))
        self.distiller, self._teachers = self._build_distillation(config["distill"], task_channels)
        self.val_metrics = nn.ModuleDict({t: self.specs[t].metrics(task_channels[t]) for t in self.tasks})
        evals = config.get("eval") or DEFAULTS["eval"]  # checkpoints older than the eval section: the defaults
        self.test_metrics = nn.ModuleDict({t: build_test_metric(self.specs[t], task_channels[t], evals.get(t))
                                           for t in self.tasks})
        self.val_loss = MeanMetric()
        self._epoch_loss_sum: Tensor | None = None  # unweighted task losses summed over the epoch's steps (DWA)
        self._epoch_steps = 0

    def _build_distillation(self, dcfg: dict[str, Any], task_channels: dict[str, int]):
        """The distiller (a submodule: saved, optimised) and the teachers (a plain list: never saved, never synced)."""
        if dcfg["name"] == "none":
            return None, []
        check_data(dcfg["name"], self.config["data"])
        frozen = needs_teachers(dcfg["name"])
        if frozen and not dcfg["teachers"]:
            raise MtkdError(f"distillation method {dcfg['name']!r} needs distill.teachers: {{task: checkpoint}}")
        teachers = [TeacherSet(dict(dcfg["teachers"]), bn_mode=dcfg["teacher_bn"])] if frozen else []
        for t in teachers:
            t.check_compatible(task_channels)
        teacher_taps = {task: t.model_for(task).taps() for t in teachers for task in t.task_to_teacher}
        distiller = build_distiller(dcfg["name"], list(teacher_taps) or list(task_channels), self.model.taps(),
                                    teacher_taps, dict(dcfg["options"] or {}), model_config=dict(self.config["model"]),
                                    task_channels=dict(task_channels),
                                    edge_pos_weight=self.config["loss"]["edge_pos_weight"])
        return distiller, teachers

    @property
    def teachers(self) -> TeacherSet | None:
        """The frozen teachers (not a submodule: never saved, never synced), or None."""
        return self._teachers[0] if self._teachers else None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the global torch RNG (augmentation, RLW's weights, ...) so a resumed run continues the same stream;
        with the datamodule's shuffle state, a killed run resumes to the weights it would have reached."""
        checkpoint["torch_rng_state"] = torch.get_rng_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "torch_rng_state" in checkpoint:
            torch.set_rng_state(checkpoint["torch_rng_state"])

    def on_fit_start(self) -> None:
        for teachers in self._teachers:
            teachers.to(self.device).train()

    def forward(self, image: Tensor):
        return self.model(image)

    def task_losses(self, out, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One loss per task, deep-supervision terms (``out.aux``) folded in (``mtkd.tasks.supervised_loss``)."""
        w = self.config["loss"].get("aux_weight", 1.0)
        return {t: supervised_loss(self.specs[t], out.preds[t], batch[t], out.aux.get(t, ()), w) for t in self.tasks}

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        optimizer = self.optimizers()
        optimizer.zero_grad(set_to_none=True)
        out = self.model(batch["image"])
        losses = self.task_losses(out, batch)
        kd_losses = {}
        if self.distiller is not None:
            teacher_outs = self.teachers(batch["image"]) if self.teachers is not None else {}
            kd_losses = self.distiller(out, teacher_outs, batch, task_losses=losses)
        try:
            weights = self.weighting.backward(
                losses, extra=sum(kd_losses.values()) if kd_losses else None,
                shared_params=self.model.shared_parameters(), rep=out.features["shared"],
                backward_fn=self.manual_backward,
            )
        except MtkdError as err:
            raise MtkdError(f"step {self.global_step}: {err}; the last good checkpoint is kept") from None
        if self.distiller is not None and self.distiller.student_frozen():
            for p in self.model.parameters():  # a None grad makes the optimiser skip the parameter entirely
                p.grad = None
        clip = self.config["optim"]["grad_clip"]
        if clip:
            self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm")
        optimizer.step()
        if self.weighting.wants_post_step_losses():  # e.g. FAMO's same-batch update: the batch after the step
            with torch.no_grad():
                self.weighting.after_step(self.task_losses(self.model(batch["image"]), batch))
        detached = torch.stack([loss.detach() for loss in losses.values()])
        self._epoch_loss_sum = detached if self._epoch_loss_sum is None else self._epoch_loss_sum + detached
        self._epoch_steps += 1
        if self.trainer._logger_connector.should_update_logs:  # logging costs ~1 ms a call: only on steps Lightning keeps
            self._log_step(dict(zip(losses, detached)), weights, kd_losses, batch["image"].shape[0])

    def _log_step(self, losses: dict[str, Tensor], weights: dict[str, float], kd_losses: dict[str, Tensor],
                  bs: int) -> None:
        values = {f"train/loss/{t}": v for t, v in losses.items()}
        values.update({f"train/weight/{t}": float(w) for t, w in weights.items()})
        values.update({f"train/kd/{name}": v.detach() for name, v in kd_losses.items()})
        if self.distiller is not None:
            values.update({f"train/distill/{k}": v for k, v in self.distiller.logged_values().items()})
        self.log_dict(values, batch_size=bs)
        self.log("train/loss", sum(losses.values()), prog_bar=True, batch_size=bs)

    def on_train_epoch_end(self) -> None:
        if self._epoch_steps:
            mean = self.trainer.strategy.reduce(self._epoch_loss_sum / self._epoch_steps, reduce_op="mean")
            self.weighting.on_train_epoch_end(self.current_epoch, dict(zip(self.tasks, mean.tolist())))
        self._epoch_loss_sum, self._epoch_steps = None, 0
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()

    def _evaluate(self, batch: dict[str, Tensor], metrics: nn.ModuleDict) -> dict[str, Tensor]:
        out = self.model(batch["image"])
        for t in self.tasks:
            metrics[t].update(out.preds[t].float(), batch[t])
        return self.task_losses(out, batch)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        losses = self._evaluate(batch, self.val_metrics)
        self.val_loss.update(sum(losses.values()), weight=batch["image"].shape[0])

    def on_validation_epoch_end(self) -> None:
        self.log("val/loss", self.val_loss.compute(), prog_bar=True)
        self.val_loss.reset()
        self._log_metrics(self.val_metrics, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.test_metrics)

    def on_test_epoch_end(self) -> None:
        self._log_metrics(self.test_metrics, "test")

    def _log_metrics(self, metrics: nn.ModuleDict, stage: str) -> None:
        for t, metric in metrics.items():
            for name, value in metric.compute().items():
                shown = (stage == "test" and self.specs[t].test_monitor) or self.specs[t].monitor
                self.log(f"{stage}/{t}/{name}", float(value), prog_bar=(name == shown))
            metric.reset()

    def _schedule_epochs(self) -> int:
        """The epochs the schedule spans: ``max_epochs``, or the epochs ``max_steps`` takes (a budget in steps)."""
        t = self.config["trainer"]
        if not t["max_steps"] or t["max_steps"] < 0:
            return max(1, int(t["max_epochs"]))
        steps = self.trainer.estimated_stepping_batches  # sets up the train loader, so its length is known
        return max(1, math.ceil(steps / max(1, self.trainer.num_training_batches)))

    def configure_optimizers(self) -> dict[str, Any]:
        o = self.config["optim"]
        params: list[Any] = [{"params": list(self.model.parameters()) + list(self.weighting.parameters())}]
        if self.distiller is not None and any(True for _ in self.distiller.parameters()):
            d = self.config["distill"]
            params.append({"params": list(self.distiller.parameters()), "lr": d["lr"] or o["lr"],
                           "weight_decay": d["weight_decay"]})
        if o["optimizer"] == "adam":
            opt = torch.optim.Adam(params, lr=o["lr"], weight_decay=o["weight_decay"])
        elif o["optimizer"] == "adamw":
            opt = torch.optim.AdamW(params, lr=o["lr"], weight_decay=o["weight_decay"])
        elif o["optimizer"] == "sgd":
            opt = torch.optim.SGD(params, lr=o["lr"], momentum=o["momentum"], weight_decay=o["weight_decay"])
        else:
            raise MtkdError(f"unknown optim.optimizer {o['optimizer']!r}; valid: adam, adamw, sgd")
        epochs = self._schedule_epochs()
        if len(params) == 2 and not self.distiller.lr_scheduled and o["scheduler"] in ("cosine", "step"):
            # the distiller's group keeps its lr (KD4MTL's adaptors, as the public code); the student's group
            # follows the closed form of the same schedule
            if o["scheduler"] == "cosine":
                def factor(e, T=epochs):
                    return 0.5 * (1 + math.cos(math.pi * e / T))
            else:
                def factor(e, k=o["step_size"], g=o["gamma"]):
                    return g ** (e // k)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, [factor, lambda e: 1.0])
            return {"optimizer": opt, "lr_scheduler": sched}
        if o["scheduler"] == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        elif o["scheduler"] == "step":
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=o["step_size"], gamma=o["gamma"])
        elif o["scheduler"] == "none":
            return {"optimizer": opt}
        else:
            raise MtkdError(f"unknown optim.scheduler {o['scheduler']!r}; valid: cosine, step, none")
        return {"optimizer": opt, "lr_scheduler": sched}
