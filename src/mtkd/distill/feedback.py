"""JointDistill's validation feedback (seed 001): every ``timeframe`` epochs, adapt the teacher weights ``w_t`` from
the student's and the teachers' validation metrics, then record one timeframe of knowledge trajectories.

The feedback set is the engine's validation split (held out of ``train``; the JointDistill recipes set
``data.val_fraction: 0.15`` = the summary's 15 %), so the feedback never sees the test split.

- Student metric: the value the module logged this validation, ``trainer.callback_metrics["val/<task>/<metric>"]``
  (``<metric>`` = the distiller's ``metrics[task]``, by default the task's monitor: mIoU, abs_err, mean).
- Teacher metric: the frozen single-task teachers' own predictions, evaluated once on the validation split during
  the first (non-sanity) validation with the tasks' metric accumulators, and kept in the distiller's buffer
  ``teacher_metric`` (they are frozen, so it never changes; a resumed run does not recompute it).
- Update (at ``on_validation_end``, after the module has logged its metrics and before ``ModelCheckpoint``, which
  Lightning runs last, saves): only when ``(epoch + 1) % timeframe == 0`` and not already done this epoch
  (buffer ``last_update_epoch``); see :meth:`JointDistiller.update_weights`. Epochs without validation
  (``check_val_every_n_epoch`` > 1) make no update.
- Probe images for the trajectories: the first ``num_probes`` images of the validation split (it is not shuffled
  and not augmented), captured once into the buffer ``probe_images``.

The teachers are read from the module's ``teachers`` (the engine keeps them outside its submodules).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from mtkd.errors import MtkdError


class FeedbackWeights(L.Callback):
    def __init__(self, distiller):
        super().__init__()
        self.distiller = distiller
        self._teacher_metrics = None  # accumulators while the teachers' metric is being measured

    @staticmethod
    def _teacher_set(pl_module):
        teachers = getattr(pl_module, "teachers", None)
        if teachers is None:
            raise MtkdError("jointdistill feedback needs the run's frozen teachers (distill.teachers)")
        return teachers

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.distiller.attach_student(pl_module.model)

    def _measuring(self) -> bool:
        return bool(torch.isnan(self.distiller.teacher_metric).any())

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not self._measuring():
            return
        d = self.distiller
        self._teacher_metrics = {t: d.specs[t].metrics(d.num_classes).to(pl_module.device) for t in d.tasks}

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                                batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        if trainer.sanity_checking:
            return
        d = self.distiller
        if self._teacher_metrics is not None:
            outs = self._teacher_set(pl_module)(batch["image"])
            for t in d.tasks:
                self._teacher_metrics[t].update(outs[t].preds[t].float(), batch[t])
        if d.trajectories is not None and d.probe_images.shape[0] < d.num_probes:
            need = d.num_probes - d.probe_images.shape[0]
            new = batch["image"][:need].detach().to(d.probe_images.device, d.probe_images.dtype)
            d.probe_images = new if d.probe_images.shape[0] == 0 else torch.cat([d.probe_images, new])

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        d = self.distiller
        if self._teacher_metrics is not None:
            values = [float(self._teacher_metrics[t].compute()[d.metrics[t]]) for t in d.tasks]
            d.teacher_metric.copy_(torch.tensor(values, dtype=d.teacher_metric.dtype))
            self._teacher_metrics = None
        epoch = trainer.current_epoch
        if (epoch + 1) % d.timeframe != 0 or int(d.last_update_epoch) >= epoch:
            return
        student = {}
        for t in d.tasks:
            key = f"val/{t}/{d.metrics[t]}"
            if key not in trainer.callback_metrics:
                raise MtkdError(f"jointdistill feedback: the student's validation metric {key} was not logged")
            student[t] = float(trainer.callback_metrics[key])
        d.update_weights(student, epoch)
        d.record_trajectories(self._teacher_set(pl_module))
        if trainer.logger is not None:  # self.log is not allowed in on_validation_end
            trainer.logger.log_metrics({f"feedback/weight/{t}": float(d.teacher_weights[i]) for i, t in enumerate(d.tasks)},
                                       step=trainer.global_step)
