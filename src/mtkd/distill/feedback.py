"""JointDistill's feedback (seed 001): every ``timeframe`` epochs, adapt the teacher weights ``w_t`` from the
student's and the teachers' metrics on the held-out feedback split, then record one timeframe of knowledge
trajectories.

Data. The feedback set is the datamodule's feedback split (``data.feedback_fraction``; the JointDistill recipes set
0.15 = the summary's 15 %): held out of ``train``, disjoint from the model-selection split and from the test split,
evaluated here in eval mode under ``no_grad`` — none of its images reaches a gradient. The probe images of the
trajectories are the first ``num_probes`` *training* images (file order, un-augmented), captured once into the
buffer ``probe_images`` (the trajectory term trains on them; see :mod:`mtkd.distill.jointdistill`).

- Student metric: the student's predictions on the feedback split, accumulated with each task's metric
  (``metrics[task]``, by default the task's monitor: mIoU, abs_err, mean), measured at this timeframe.
- Teacher metric: the frozen teachers' predictions on the same split, measured once at the first timeframe and kept
  in the distiller's buffer ``teacher_metric`` (they are frozen, so it never changes; a resumed run does not
  recompute it). Each metric is built with its task's own channel count.
- Update (at ``on_validation_end``, so the cadence follows validation, before ``ModelCheckpoint``, which Lightning
  runs last, saves): only when ``(epoch + 1) % timeframe == 0`` and not already done this epoch (buffer
  ``last_update_epoch``); see :meth:`JointDistiller.update_weights`. Epochs without validation
  (``check_val_every_n_epoch`` > 1) make no update. Under DDP every process evaluates the whole feedback split (it
  is not sharded), so all processes take the same step.

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

    @staticmethod
    def _teacher_set(pl_module):
        teachers = getattr(pl_module, "teachers", None)
        if teachers is None:
            raise MtkdError("jointdistill feedback needs the run's frozen teachers (distill.teachers)")
        return teachers

    @staticmethod
    def _datamodule(trainer):
        dm = getattr(trainer, "datamodule", None)
        if dm is None or not hasattr(dm, "feedback_dataloader"):
            raise MtkdError("jointdistill feedback needs mtkd's datamodule with a feedback split "
                            "(data.feedback_fraction > 0)")
        return dm

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        d = self.distiller
        d.attach_student(pl_module.model)
        if d.trajectories is not None and d.probe_images.shape[0] != d.num_probes:
            probes = self._datamodule(trainer).train_probe_images(d.num_probes)
            if probes.shape[0] != d.num_probes:
                raise MtkdError(f"jointdistill: num_probes={d.num_probes} but the training split has "
                                f"{probes.shape[0]} image(s)")
            d.probe_images = probes.to(d.probe_images.device, d.probe_images.dtype)

    @torch.no_grad()
    def measure(self, trainer: L.Trainer, pl_module: L.LightningModule, teachers: bool) -> dict[str, dict[str, float]]:
        """The student's (and, if ``teachers``, the teachers') metrics on the feedback split: ``{who: {task: v}}``."""
        d = self.distiller
        who = ["student"] + (["teacher"] if teachers else [])
        acc = {w: {t: d.specs[t].metrics(d.task_channels[t]).to(pl_module.device) for t in d.tasks} for w in who}
        model = pl_module.model
        was = model.training
        model.eval()
        try:
            for batch in self._datamodule(trainer).feedback_dataloader():
                image = batch["image"].to(pl_module.device)
                preds = {"student": model(image).preds}
                if teachers:
                    outs = self._teacher_set(pl_module)(image)
                    preds["teacher"] = {t: outs[t].preds[t] for t in d.tasks}
                for w in who:
                    for t in d.tasks:
                        acc[w][t].update(preds[w][t].float(), batch[t].to(pl_module.device))
        finally:
            model.train(was)
        return {w: {t: float(acc[w][t].compute()[d.metrics[t]]) for t in d.tasks} for w in who}

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        d = self.distiller
        epoch = trainer.current_epoch
        if (epoch + 1) % d.timeframe != 0 or int(d.last_update_epoch) >= epoch:
            return
        first = bool(torch.isnan(d.teacher_metric).any())
        values = self.measure(trainer, pl_module, teachers=first)
        if first:
            d.teacher_metric.copy_(torch.tensor([values["teacher"][t] for t in d.tasks], dtype=d.teacher_metric.dtype))
        d.update_weights(values["student"], epoch)
        d.record_trajectories(self._teacher_set(pl_module))
        if trainer.logger is not None:  # self.log is not allowed in on_validation_end
            logged = {f"feedback/weight/{t}": float(d.teacher_weights[i]) for i, t in enumerate(d.tasks)}
            logged.update({f"feedback/student/{t}/{d.metrics[t]}": v for t, v in values["student"].items()})
            trainer.logger.log_metrics(logged, step=trainer.global_step)
