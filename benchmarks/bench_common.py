"""Shared pieces of the benchmarks: a fixed batch, a step timer around Lightning's training step, tiny teachers."""

from __future__ import annotations

import logging
import resource
import time
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from mtkd.config import load_config, to_dict
from mtkd.models import build_model_from_config

TASKS = {"semseg": 8, "depth": 1, "normal": 3}
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)


class FixedBatches(Dataset):
    """One pre-built batch repeated: no data-loading cost on either side."""

    def __init__(self, batch: dict[str, torch.Tensor], steps: int):
        self.batch, self.steps = batch, steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.batch


class StepTimer(L.Callback):
    """Seconds between ``on_train_batch_start`` and ``on_train_batch_end`` (the whole training step)."""

    def __init__(self, device: str = "cpu") -> None:
        self.times: list[float] = []
        self.device = device

    def on_train_batch_start(self, *args) -> None:
        sync(self.device)
        self._t = time.perf_counter()

    def on_train_batch_end(self, *args) -> None:
        sync(self.device)
        self.times.append(time.perf_counter() - self._t)


def add_device_arg(ap) -> None:
    """``--device {cpu,cuda}`` (default cpu), the same on every benchmark."""
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the timed work runs")


def describe_device(device: str) -> str:
    """One line naming the device (refuses cuda without a GPU); every benchmark prints it first."""
    if device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA GPU is visible to torch")
        return f"device: cuda ({torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda})"
    return f"device: cpu ({torch.get_num_threads()} threads, torch {torch.__version__})"


def sync(device: str) -> None:
    """Wait for the device's queued work (timers around GPU work need it)."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def make_batch(b: int, h: int = 96, w: int = 128) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    normal = torch.nn.functional.normalize(torch.randn(b, 3, h, w, generator=g), dim=1)
    return {"image": torch.randn(b, 3, h, w, generator=g), "semseg": torch.randint(-1, 8, (b, h, w), generator=g),
            "depth": torch.rand(b, 1, h, w, generator=g) * 5, "normal": normal}


def config(*overrides: str) -> dict:
    return to_dict(load_config(None, ["optim.scheduler=none", *overrides]))


def lightning_step_times(module: L.LightningModule, batch: dict, steps: int, warmup: int = 3,
                         device: str = "cpu") -> list[float]:
    """Per-step seconds of ``module`` trained by a Lightning Trainer on ``batch`` repeated, after ``warmup`` steps."""
    timer = StepTimer(device)
    trainer = L.Trainer(max_steps=steps + warmup, accelerator="gpu" if device == "cuda" else "cpu", devices=1,
                        logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        callbacks=[timer])
    trainer.fit(module, train_dataloaders=DataLoader(FixedBatches(batch, steps + warmup), batch_size=None))
    return timer.times[warmup:]


def save_teacher(path: Path, tasks: list[str], backbone: str = "tiny") -> str:
    """A randomly initialised teacher for ``tasks`` written in mtkd's checkpoint format."""
    channels = {t: TASKS[t] for t in tasks}
    cfg = config(f"model.backbone={backbone}", f"data.tasks=[{','.join(tasks)}]")
    model = build_model_from_config(cfg["model"], channels)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"hyper_parameters": {"config": cfg, "task_channels": channels}, "state_dict": state}, path)
    return str(path)


def peak_rss_kib() -> int:
    """This process's peak resident set size in KiB: VmHWM from /proc (reset by exec), else ru_maxrss (which on
    Linux can carry the parent's peak over fork + exec)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
