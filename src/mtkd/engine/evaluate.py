"""``mtkd eval CHECKPOINT``: rebuild the model from the config stored in the checkpoint and test it."""

from __future__ import annotations

from typing import Any

import lightning as L
from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

from mtkd.config import DEFAULTS, _check_keys
from mtkd.engine.checkpoint_io import read_training_checkpoint
from mtkd.engine.module import MultiTaskModule
from mtkd.engine.run import build_datamodule, nest
from mtkd.errors import MtkdError


def module_from_checkpoint(path: str, overrides: list[str] = ()) -> tuple[MultiTaskModule, dict[str, Any]]:
    """The trained module and its (overridden) config; a checkpoint that is not an mtkd run is refused."""
    ckpt, hparams = read_training_checkpoint(path)
    dots = OmegaConf.to_container(OmegaConf.from_dotlist(list(overrides)))
    _check_keys(dots, DEFAULTS)
    config = OmegaConf.to_container(OmegaConf.merge(hparams["config"], dots))
    config["distill"]["name"] = "none"  # evaluation needs the student alone, not its teachers
    module = MultiTaskModule(config, hparams["task_channels"])
    student = {k: v for k, v in ckpt["state_dict"].items() if not k.startswith("distiller.")}
    try:
        module.load_state_dict(student)
    except RuntimeError as err:
        raise MtkdError(f"{path} does not match its own model config: {str(err).splitlines()[0]}") from None
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
