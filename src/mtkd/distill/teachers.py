"""Frozen teachers: mtkd checkpoints loaded once, run in eval mode under ``no_grad`` (bf16 autocast on GPUs).

``no_grad`` rather than ``inference_mode``: KD losses keep teacher tensors in the student's graph as constants,
which inference tensors cannot be. Teachers are held outside the LightningModule's submodules, so they are never
in the student's checkpoint nor in DDP's gradient sync.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtkd.engine.checkpoint_io import load_model
from mtkd.errors import MtkdError
from mtkd.models import MultiTaskModel, Output


def resolve_checkpoint(ref: str | Path) -> Path:
    """A checkpoint file, or a run folder (its ``checkpoints/best.ckpt``)."""
    path = Path(ref)
    if path.is_dir():
        path = path / "checkpoints" / "best.ckpt"
    if not path.is_file():
        raise MtkdError(f"teacher checkpoint {path} does not exist (give a .ckpt file or a finished run folder)")
    return path


class TeacherSet(nn.Module):
    """The teachers of a run: ``{task: checkpoint}``; tasks naming the same checkpoint share one model."""

    def __init__(self, sources: dict[str, str], bn_mode: str = "eval"):
        super().__init__()
        if bn_mode not in ("eval", "train"):
            raise MtkdError(f"distill.teacher_bn must be 'eval' or 'train', got {bn_mode!r}")
        self.bn_mode = bn_mode
        paths = {task: resolve_checkpoint(ref) for task, ref in sources.items()}
        self.task_to_teacher: dict[str, str] = {}
        self.models = nn.ModuleDict()
        for task, path in paths.items():
            key = f"t{list(dict.fromkeys(paths.values())).index(path)}"
            if key not in self.models:
                model, _ = load_model(path)
                self.models[key] = model.requires_grad_(False)
            if task not in self.models[key].tasks:
                raise MtkdError(f"teacher {path} does not predict task {task!r} (it predicts {', '.join(self.models[key].tasks)})")
            self.task_to_teacher[task] = key
        self.sources = {task: str(p) for task, p in paths.items()}

    def model_for(self, task: str) -> MultiTaskModel:
        return self.models[self.task_to_teacher[task]]

    def check_compatible(self, task_channels: dict[str, int]) -> None:
        """Refuse, before training, teachers whose outputs cannot be compared with the student's."""
        for task, key in self.task_to_teacher.items():
            if task not in task_channels:
                raise MtkdError(f"a teacher is given for task {task!r}, which this run does not train")
            theirs, ours = self.models[key].tasks[task], task_channels[task]
            if theirs != ours:
                raise MtkdError(f"teacher {self.sources[task]} predicts {theirs} channels for {task!r}; the data has {ours}")

    def train(self, mode: bool = True) -> TeacherSet:
        """Teachers stay in eval mode (or BN-train mode when asked) whatever the trainer does."""
        super().train(False)
        if self.bn_mode == "train" and mode:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.train(True)
        return self

    @torch.no_grad()
    def forward(self, image: torch.Tensor) -> dict[str, Output]:
        """``{task: Output}`` of the teacher providing each task (each teacher runs once)."""
        use_bf16 = image.is_cuda and torch.cuda.is_bf16_supported()
        outs: dict[str, Any] = {}
        with torch.autocast(device_type=image.device.type, dtype=torch.bfloat16, enabled=use_bf16):
            for key, model in self.models.items():
                outs[key] = model(image)
        return {task: outs[key] for task, key in self.task_to_teacher.items()}
