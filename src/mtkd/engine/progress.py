"""The training progress bar: Lightning's rich bar with epochs counted from 1 of the budget ("Epoch 1/6", never
"Epoch 0/0"), "step s/N" under a step budget, and without the logger's version number ("v_num")."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import RichProgressBar


class ProgressBar(RichProgressBar):
    def get_metrics(self, trainer: Any, pl_module: Any) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items

    def _get_train_description(self, current_epoch: int) -> str:
        trainer = self.trainer
        if trainer.max_epochs is not None and trainer.max_epochs > 0:
            text = f"Epoch {current_epoch + 1}/{trainer.max_epochs}"
        elif trainer.max_steps and trainer.max_steps > 0:
            text = f"Epoch {current_epoch + 1} (step {trainer.global_step}/{trainer.max_steps})"
        else:
            text = f"Epoch {current_epoch + 1}"
        return f"{text:{len(self.validation_description)}}"
