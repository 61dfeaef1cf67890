"""One training run: the run folder, the Lightning trainer, model selection on validation, one test at the end.

``runs/<name>/`` holds ``config.yaml`` (resolved), ``checkpoints/{best,last}.ckpt``, ``logs/`` (CSV, and
TensorBoard when installed) and ``results.json`` (test metrics, config, versions, seed, wall time, parameters).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig, OmegaConf

import mtkd
from mtkd.config import to_dict
from mtkd.data.datamodule import MultiTaskDataModule
from mtkd.engine.checkpoint_io import AtomicCheckpointIO, load_checkpoint
from mtkd.engine.module import MultiTaskModule
from mtkd.errors import MtkdError


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
    os.replace(tmp, path)


def build_datamodule(cfg: dict[str, Any]) -> MultiTaskDataModule:
    return MultiTaskDataModule(**cfg["data"])


def prepare_run_dir(cfg: DictConfig) -> tuple[Path, Path | None]:
    """Create ``out_dir/name``; an existing run is refused unless ``resume=true`` (then its last checkpoint)."""
    run_dir = Path(cfg.out_dir) / str(cfg.name)
    last = run_dir / "checkpoints" / "last.ckpt"
    if run_dir.exists() and any(run_dir.iterdir()):
        if not cfg.resume:
            raise MtkdError(f"run folder {run_dir} already exists: pass resume=true to continue it, or another name=")
        if (run_dir / "results.json").exists():
            raise MtkdError(f"run {run_dir} is already finished (results.json exists)")
        if not last.exists():
            shutil.rmtree(run_dir)  # nothing to resume from: start clean
            last = None
    else:
        last = None
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    return run_dir, last


def make_trainer(cfg: dict[str, Any], run_dir: Path, callbacks: list[Any] = ()) -> L.Trainer:
    t = cfg["trainer"]
    best = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor="val/loss", mode="min",
                           auto_insert_metric_name=False, enable_version_counter=False)
    # A monitored callback's save_last only writes when it saves a new best: a separate, unmonitored one writes
    # last.ckpt every epoch, so a killed run resumes from its latest epoch.
    last = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", enable_version_counter=False)
    loggers: list[Any] = [CSVLogger(run_dir, name="logs")]  # a new version_N per (resumed) attempt
    try:
        from lightning.pytorch.loggers import TensorBoardLogger
        import tensorboard  # noqa: F401

        loggers.append(TensorBoardLogger(run_dir, name="tensorboard"))
    except ImportError:
        pass
    bar = [RichProgressBar(leave=False)] if t["progress_bar"] else []
    return L.Trainer(
        default_root_dir=run_dir, max_epochs=t["max_epochs"], max_steps=t["max_steps"],
        accelerator=t["accelerator"], devices=t["devices"], num_nodes=t["num_nodes"], strategy=t["strategy"],
        precision=t["precision"], deterministic=t["deterministic"], log_every_n_steps=t["log_every_n_steps"],
        check_val_every_n_epoch=t["check_val_every_n_epoch"], callbacks=[best, last, *bar, *callbacks],
        logger=loggers, enable_progress_bar=t["progress_bar"], enable_model_summary=False,
        plugins=[AtomicCheckpointIO()],
    )


def versions() -> dict[str, str]:
    import timm
    import torchmetrics

    return {"mtkd": mtkd.__version__, "torch": torch.__version__, "lightning": L.__version__,
            "torchmetrics": torchmetrics.__version__, "timm": timm.__version__, "python": platform.python_version()}


def nest(flat: dict[str, float], stage: str) -> dict[str, dict[str, float]]:
    """``{"test/depth/abs_err": v}`` → ``{"depth": {"abs_err": v}}``."""
    out: dict[str, dict[str, float]] = {}
    for key, value in flat.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == stage:
            out.setdefault(parts[1], {})[parts[2]] = float(value)
    return out


def check_names(cfg: dict[str, Any]) -> None:
    """Refuse unknown task, backbone, head or weighting names (and weighting options) before anything is written;
    ``model.head`` as a mapping must name a head for every task."""
    from mtkd import weighting
    from mtkd.models import ARCHITECTURES, BACKBONES
    from mtkd.models.task_heads import check_head_options, head_per_task
    from mtkd.tasks import get_task

    for task in cfg["data"]["tasks"]:
        get_task(task)
    backbone = cfg["model"]["backbone"]
    if not backbone.startswith("timm:"):
        BACKBONES.get(backbone)
    ARCHITECTURES.get(cfg["model"]["arch"])
    head_per_task(cfg["model"]["head"], cfg["data"]["tasks"])
    check_head_options(cfg["model"]["head_options"])
    tasks, name = cfg["data"]["tasks"], cfg["weighting"]["name"]
    if len(tasks) == 1 and name != "ew":
        raise MtkdError(f"weighting {name!r} balances several tasks; this run trains only {tasks[0]!r} (use ew)")
    dist = cfg["distill"]
    if dist["name"] == "okd" and (dist["options"] or {}).get("otw", True) and name != "ew":
        raise MtkdError(f"OKD-MTL's online task weighting replaces the weighting: use weighting.name=ew, not {name!r}, "
                        "or distill.options.otw=false")
    weighting.get(cfg["weighting"]["name"], tasks=cfg["data"]["tasks"], **dict(cfg["weighting"]["options"] or {}))


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train, select the best epoch on validation, test it once, write ``results.json``; returns the results."""
    plain = to_dict(cfg)
    check_names(plain)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    run_dir, resume_from = prepare_run_dir(cfg)
    dm = build_datamodule(plain)
    dm.prepare_data()
    dm.setup("fit")
    module = MultiTaskModule(plain, dm.task_channels)
    trainer = make_trainer(plain, run_dir, module.distiller.callbacks() if module.distiller is not None else [])
    start = time.time()
    trainer.fit(module, datamodule=dm, ckpt_path=str(resume_from) if resume_from else None)
    wall = time.time() - start
    best = Path(trainer.checkpoint_callback.best_model_path or run_dir / "checkpoints" / "last.ckpt")
    tested = trainer.test(module, datamodule=dm, ckpt_path=str(best), verbose=False)[0]
    last = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")  # the trainer's own counters are not sent back
    # from spawned processes (ddp_spawn), the checkpoint's are
    results = {
        "name": cfg.name, "dataset": dm.dataset_name, "tasks": module.tasks, "method": cfg.weighting.name,
        "test": nest(tested, "test"), "best_checkpoint": str(best),
        "best_val_loss": float(trainer.checkpoint_callback.best_model_score or float("nan")),
        "epochs": last["epoch"] + 1, "steps": last["global_step"], "wall_time_s": round(wall, 1),
        "parameters": sum(p.numel() for p in module.model.parameters()), "seed": cfg.seed,
        "config": plain, "versions": versions(),
    }
    write_json(run_dir / "results.json", results)
    return results
