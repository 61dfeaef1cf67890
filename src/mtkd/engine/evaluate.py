"""``mtkd eval CHECKPOINT``: rebuild the model from the config stored in the checkpoint and test it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from rich.console import Console
from rich.table import Table

from mtkd.config import apply_overrides
from mtkd.checkpoints import read_training_checkpoint, state_dict_mismatch
from mtkd.engine.module import MultiTaskModule
from mtkd.engine.run import build_datamodule, nest
from mtkd.errors import MtkdError


def module_from_checkpoint(path: str, overrides: list[str] = ()) -> tuple[MultiTaskModule, dict[str, Any]]:
    """The trained module and its (overridden) config; a checkpoint that is not an mtkd run is refused.

    ``path`` is a ``.ckpt`` file or a run folder (its ``checkpoints/best.ckpt``), as teachers are given."""
    if Path(path).is_dir():
        best = Path(path) / "checkpoints" / "best.ckpt"
        if not best.is_file():
            raise MtkdError(f"{path} is a folder without checkpoints/best.ckpt (give a .ckpt file or a run folder)")
        path = str(best)
    ckpt, hparams = read_training_checkpoint(path)
    config = apply_overrides(hparams["config"], overrides)
    config["distill"]["name"] = "none"  # evaluation needs the student alone, not its teachers
    module = MultiTaskModule(config, hparams["task_channels"])
    student = {k: v for k, v in ckpt["state_dict"].items() if not k.startswith("distiller.")}
    try:
        module.load_state_dict(student)
    except RuntimeError as err:
        raise MtkdError(f"{path} does not match its own model config: {state_dict_mismatch(err)}") from None
    return module, config


def evaluate(path: str, split: str = "test", overrides: list[str] = ()) -> dict[str, dict[str, float]]:
    module, config = module_from_checkpoint(path, overrides)
    dm = build_datamodule(config)
    dm.prepare_data()
    dm.setup("test" if split == "test" else "validate")
    trainer = L.Trainer(accelerator=config["trainer"]["accelerator"], devices=1, logger=False,
                        enable_progress_bar=True, enable_model_summary=False)
    if dm.task_channels != module.model.tasks:
        raise MtkdError(f"checkpoint tasks {module.model.tasks} differ from the data's {dm.task_channels}")
    if split == "test":
        flat = trainer.test(module, datamodule=dm, verbose=False)[0]
        metrics = nest(flat, "test")
    else:
        flat = trainer.validate(module, datamodule=dm, verbose=False)[0]
        metrics = nest(flat, "val")
    table = Table(title=f"{path} — {split} split")
    for col in ("task", "metric", "value"):
        table.add_column(col)
    for task, values in metrics.items():
        for name, value in values.items():
            table.add_row(task, name, f"{value:.4f}")
    Console().print(table)
    return metrics
