"""Frozen teachers: mtkd checkpoints loaded once, run in eval mode under ``no_grad`` (bf16 autocast on GPUs, outputs
returned in float32 so the distillation losses stay fp32; ``channels_last`` optional).

``no_grad`` rather than ``inference_mode``: KD losses keep teacher tensors in the student's graph as constants,
which inference tensors cannot be. Teachers are held outside the LightningModule's submodules, so they are never
in the student's checkpoint nor in DDP's gradient sync.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtkd.checkpoints import load_checkpoint, load_model, state_dict_mismatch
from mtkd.errors import MtkdError
from mtkd.models import MultiTaskModel, Output, build_model_from_config


def resolve_checkpoint(ref: str | Path) -> Path:
    """A checkpoint file, or a run folder (its ``checkpoints/best.ckpt``)."""
    path = Path(ref)
    if path.is_dir():
        path = path / "checkpoints" / "best.ckpt"
    if not path.is_file():
        raise MtkdError(f"teacher checkpoint {path} does not exist (give a .ckpt file or a finished run folder)")
    return path


def model_from_weights(spec: Mapping[str, Any]) -> MultiTaskModel:
    """A teacher from a bare weights file plus its model config (e.g. trained outside mtkd's engine):
    ``{weights: file (.safetensors or a torch state dict), tasks: {task: channels}, model: {...}}`` (``model`` is a
    run's ``model`` section; absent keys take mtkd's defaults)."""
    missing = {"weights", "tasks"} - set(spec)
    if missing:
        raise MtkdError(f"a teacher given as a mapping needs {sorted(missing)} (and optionally model: {{...}})")
    path = Path(spec["weights"])
    if not path.is_file():
        raise MtkdError(f"teacher weights {path} do not exist")
    model = build_model_from_config({**dict(spec.get("model") or {}), "pretrained": False}, spec["tasks"])
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = load_checkpoint(path)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise MtkdError(f"teacher weights {path} do not fit the given model config: {state_dict_mismatch(err)}") from None
    return model


def source_id(ref: str | Path | Mapping[str, Any]) -> str:
    """The file a teacher reference loads (tasks naming the same file share one teacher)."""
    if isinstance(ref, Mapping):
        return str(Path(ref.get("weights", "")))
    return str(resolve_checkpoint(ref))


class TeacherSet(nn.Module):
    """The teachers of a run: ``{task: checkpoint | run folder | {weights, tasks, model}}``; tasks naming the same
    source share one model (one multi-task teacher)."""

    def __init__(self, sources: dict[str, Any], bn_mode: str = "eval", bf16: bool | None = None,
                 channels_last: bool = False):
        super().__init__()
        self.bf16 = bf16  # None: bf16 autocast on GPUs that support it; outputs are returned in float32 either way
        self.channels_last = channels_last
        if bn_mode not in ("eval", "train"):
            raise MtkdError(f"distill.teacher_bn must be 'eval' or 'train', got {bn_mode!r}")
        self.bn_mode = bn_mode
        paths = {task: source_id(ref) for task, ref in sources.items()}
        self.task_to_teacher: dict[str, str] = {}
        self.models = nn.ModuleDict()
        for task, path in paths.items():
            key = f"t{list(dict.fromkeys(paths.values())).index(path)}"
            if key not in self.models:
                ref = sources[task]
                model = model_from_weights(ref) if isinstance(ref, Mapping) else load_model(path)[0]
                self.models[key] = model.requires_grad_(False)
            if task not in self.models[key].tasks:
                raise MtkdError(f"teacher {path} does not predict task {task!r} (it predicts {', '.join(self.models[key].tasks)})")
            self.task_to_teacher[task] = key
        self.sources = {task: str(p) for task, p in paths.items()}
        if channels_last:
            self.models.to(memory_format=torch.channels_last)
        self.train()  # eval mode from the start (BN-train only when asked), not only once fitting begins

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
        use_bf16 = (image.is_cuda and torch.cuda.is_bf16_supported()) if self.bf16 is None else self.bf16
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        outs: dict[str, Any] = {}
        with torch.autocast(device_type=image.device.type, dtype=torch.bfloat16, enabled=use_bf16):
            for key, model in self.models.items():
                outs[key] = model(image)
        if use_bf16:  # the distillation losses run in float32
            outs = {k: _to_float32(o) for k, o in outs.items()}
        return {task: outs[key] for task, key in self.task_to_teacher.items()}


def _to_float32(out: Output) -> Output:
    def f(t):
        return t.float() if torch.is_tensor(t) and t.is_floating_point() else t

    return Output({k: f(v) for k, v in out.preds.items()}, {k: f(v) for k, v in out.features.items()},
                  {k: tuple(f(x) for x in v) for k, v in out.aux.items()})
