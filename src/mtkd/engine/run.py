"""One training run: the run folder, the Lightning trainer, model selection on validation, one test at the end.

``runs/<name>/`` holds ``.mtkd-run.json`` (the manifest, written first), ``.mtkd.lock`` while a process
trains in it, ``config.yaml`` (resolved), ``checkpoints/{best,last}.ckpt``, ``logs/`` (CSV, and
TensorBoard when installed) and ``results.json`` (test metrics, config, versions, seed, wall time, parameters).
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig, OmegaConf

import mtkd
from mtkd.atomic import write_json, write_text
from mtkd.config import to_dict
from mtkd.data.datamodule import MultiTaskDataModule
from mtkd.checkpoints import AtomicCheckpointIO, load_checkpoint
from mtkd.engine.module import MultiTaskModule
from mtkd.engine.progress import ProgressBar
from mtkd.errors import MtkdError
from mtkd.lock import LOCK, FolderLock
from mtkd.paths import inside, output_folder


def build_datamodule(cfg: dict[str, Any]) -> MultiTaskDataModule:
    return MultiTaskDataModule(**cfg["data"])


MANIFEST = ".mtkd-run.json"  # written first into every run folder mtkd creates: the mark that it may write there
MTKD_FILES = {"config.yaml", "checkpoints", "logs", "tensorboard", "results.json", "export", "cost.json", MANIFEST,
              LOCK}


def run_folder(cfg: DictConfig | dict[str, Any]) -> Path:
    """``out_dir/name``, the name checked to stay inside ``out_dir``."""
    return inside(cfg["out_dir"], str(cfg["name"]), "run name")


def run_state(run_dir: Path) -> str:
    """What ``run_dir`` holds: ``new`` (absent or empty), ``finished`` (results.json), ``resumable`` (a last
    checkpoint), ``unstarted`` (an mtkd run that stopped before its first checkpoint: nothing to keep); a folder
    mtkd did not make is refused. A run folder from before manifests (only mtkd's own files) counts as mtkd's."""
    if not run_dir.exists():
        return "new"
    if not run_dir.is_dir():
        raise MtkdError(f"run folder {run_dir} is an existing file: choose another name= or out_dir=")
    entries = {p.name for p in run_dir.iterdir()} - {LOCK}
    if not entries:
        return "new"
    if MANIFEST not in entries and not ("config.yaml" in entries and entries <= MTKD_FILES):
        raise MtkdError(f"{run_dir} exists and is not an mtkd run folder (no {MANIFEST}); mtkd never writes into "
                        "it: choose another name= or out_dir=")
    if "results.json" in entries:
        return "finished"
    return "resumable" if (run_dir / "checkpoints" / "last.ckpt").is_file() else "unstarted"


def _check_state(run_dir: Path, state: str, resume: bool) -> None:
    if state == "finished":
        raise MtkdError(f"run {run_dir} is already finished (results.json exists): choose another name=")
    if state == "resumable" and not resume:
        raise MtkdError(f"run folder {run_dir} already exists: pass resume=true to continue it, or another name=")


def _rank_zero() -> bool:
    """Whether this is the process that owns the run folder (a DDP child re-running the command is not)."""
    return all(int(os.environ.get(k, 0) or 0) == 0 for k in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def prepare_run_dir(cfg: DictConfig, run_dir: Path) -> Path | None:
    """Check ``run_dir`` again (under its lock), mark it as a run folder, write ``config.yaml``; returns the
    checkpoint to resume from. Nothing is ever deleted: an unstarted run (no checkpoint) starts over in place."""
    state = run_state(run_dir)
    _check_state(run_dir, state, bool(cfg.resume))
    if not (run_dir / MANIFEST).is_file():
        write_json(run_dir / MANIFEST, {"mtkd": mtkd.__version__, "kind": "run", "name": str(cfg.name),
                                        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg))
    return run_dir / "checkpoints" / "last.ckpt" if state == "resumable" else None


def _interruptible(trainer: L.Trainer, call: Callable[[], Any]) -> Any:
    """``call()``; Lightning turns Ctrl-C into ``SystemExit(1)`` after its graceful shutdown: raise
    ``KeyboardInterrupt`` again, so the CLI says how to resume and exits 130."""
    try:
        return call()
    except SystemExit:
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise


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
    bar = [ProgressBar(leave=False)] if t["progress_bar"] else []
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
    """Refuse unknown task, backbone, head, weighting or distiller names (and their options) before anything is
    written;
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
    if dist["name"] != "none":
        from mtkd.distill import check_data, check_options

        check_options(dist["name"], dist["options"])
        check_data(dist["name"], cfg["data"])  # e.g. JointDistill: a feedback split, never select_on=test


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train, select the best epoch on validation, test it once, write ``results.json``; returns the results."""
    plain = to_dict(cfg)
    check_names(plain)
    run_dir = run_folder(cfg)
    if not _rank_zero():  # rank 0 checked, marked and locked the folder
        last = run_dir / "checkpoints" / "last.ckpt"
        return _train(cfg, plain, run_dir, last if cfg.resume and last.is_file() else None)
    _check_state(run_dir, run_state(run_dir), bool(cfg.resume))  # refused before anything is written
    output_folder(run_dir, "run folder")
    with FolderLock(run_dir, "run folder"):
        return _train(cfg, plain, run_dir, prepare_run_dir(cfg, run_dir))


def _train(cfg: DictConfig, plain: dict[str, Any], run_dir: Path, resume_from: Path | None) -> dict[str, Any]:
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = build_datamodule(plain)
    dm.prepare_data()
    dm.setup("fit")
    module = MultiTaskModule(plain, dm.task_channels)
    trainer = make_trainer(plain, run_dir, module.distiller.callbacks() if module.distiller is not None else [])
    start = time.time()
    _interruptible(trainer, lambda: trainer.fit(module, datamodule=dm,
                                                ckpt_path=str(resume_from) if resume_from else None))
    wall = time.time() - start
    best = Path(trainer.checkpoint_callback.best_model_path or run_dir / "checkpoints" / "last.ckpt")
    tested = _interruptible(trainer, lambda: trainer.test(module, datamodule=dm, ckpt_path=str(best),
                                                          verbose=False))[0]
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
