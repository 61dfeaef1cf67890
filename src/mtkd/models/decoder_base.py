"""What the decoder-focused multi-task architectures (PAD-Net, MTI-Net, ATRC, NDDR-CNN, PAP, PSD) share, and their
common building blocks — each architecture's own file holds only its own idea.

    stages = backbone(image)                       "stage1".."stageN" taps (HRNet-18: the four branches)
    shared = ConcatNeck(stages)                     HRNet-V2 concatenation at 1/4 (270 channels on HRNet-18): "shared"
    preds, aux = decode(stages, shared, features)   the architecture's own decoder; it adds its taps to ``features``:
                                                    "initial.<task>" (features of the initial prediction) and
                                                    "head.<task>" (the final task features before the 1×1 classifier)
    preds[t] upsampled bilinearly to H×W;  aux[t] = initial predictions at their own resolution (Output.aux)

As in the reference codebases (brdav/atrc, SimonVandenhende/Multi-Task-Learning-PyTorch) the heads are sized from
the concatenation's width: task features have ``decoder_channels`` channels (the reference's in/4 = 67 on HRNet-18; the
protocol recipes set ``decoder_channels: 67``). Every task loss flows through "shared", so representation-gradient
weightings get a ``rep`` all losses reach. ``shared_parameters()`` = backbone + the architecture's cross-task modules
that belong to no single task (MTI-Net's feature propagation); ``task_parameters(t)`` = the modules keyed by ``t``
(a cross-task message s → t belongs to its target t). The two partition the parameters (tested).

``head``: these models have their own task heads; ``model.head`` may stay at its default (``fpn``) or say ``hrnet``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mtkd.errors import MtkdError
from mtkd.models.backbones import Backbone, conv_bn_relu, make_backbone
from mtkd.models.hrnet import check_multiple
from mtkd.models.multitask import Output, check_args, check_image
from mtkd.models.neck import ConcatNeck


def up(x: torch.Tensor, size) -> torch.Tensor:
    return x if x.shape[-2:] == tuple(size) else F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class BasicBlock(nn.Module):
    """ResNet basic block (He et al. 2016): two 3×3 conv-BN, identity or 1×1 conv-BN shortcut, ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.body = nn.Sequential(conv_bn_relu(cin, cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(cout))
        self.short = (nn.Identity() if cin == cout
                      else nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.short(x))


class SEBlock(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018): channel gates σ(W2 ReLU(W1 mean_hw(x))), reduction r."""

    def __init__(self, channels: int, r: int = 16):
        super().__init__()
        hidden = max(1, channels // r)
        self.gate = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels),
                                  nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x.mean((2, 3)))[:, :, None, None]


class MultiModalDistillation(nn.Module):
    """PAD-Net's multi-modal distillation (Xu et al. 2018, Sec. 3.3, "attention-guided message passing"), as the
    authors of MTI-Net implement it for both PAD-Net and MTI-Net:

        d_t = f_t + Σ_{s≠t} σ(W^a_{t←s} * f_s) ⊙ (W^m_{t←s} * f_s)        3×3 convs, no bias

    (the PAD-Net paper computes the gate from the target's features; the reference code from the source's — used
    here). The message modules t←s belong to the target task t (``per_target``).
    """

    def __init__(self, tasks, channels: int):
        super().__init__()
        self.tasks = list(tasks)
        self.per_target = nn.ModuleDict({
            t: nn.ModuleDict({s: nn.ModuleDict({"gate": nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
                                                "message": nn.Conv2d(channels, channels, 3, 1, 1, bias=False)})
                              for s in self.tasks if s != t})
            for t in self.tasks})
        for inner in self.per_target.values():
            inner.keyed_by_task = False  # keyed by SOURCE task: these modules belong to their target t

    def forward(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for t in self.tasks:
            d = feats[t]
            for s, m in self.per_target[t].items():
                d = d + torch.sigmoid(m["gate"](feats[s])) * m["message"](feats[s])
            out[t] = d
        return out


class InitialPredictions(nn.Module):
    """Per task: features f_t = conv3×3-BN-ReLU(x → C) and an initial prediction conv1×1(f_t) (deep supervision)."""

    def __init__(self, tasks: Mapping[str, int], cin: int, channels: int):
        super().__init__()
        self.features = nn.ModuleDict({t: conv_bn_relu(cin, channels) for t in tasks})
        self.logits = nn.ModuleDict({t: nn.Conv2d(channels, c, 1) for t, c in tasks.items()})

    def forward(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        feats = {t: f(x) for t, f in self.features.items()}
        return feats, {t: self.logits[t](f) for t, f in feats.items()}


def task_modules(module: nn.Module, task: str) -> list[nn.Module]:
    """Every ``ModuleDict`` entry keyed by ``task`` in ``module``'s tree (the per-task parts of a decoder)."""
    out = []
    for m in module.modules():
        if isinstance(m, nn.ModuleDict) and task in m and getattr(m, "keyed_by_task", True):
            out.append(m[task])
    return out


class DecoderModel(nn.Module):
    """Base of the decoder-focused architectures: backbone + HRNet-V2 concatenation + ``decode`` (subclasses).

    Subclasses build their modules after ``super().__init__`` (``self.neck.channels``, ``self.channels``) and implement
    ``decode(stages, shared, features) -> (preds at any resolution, aux)`` and ``decoder_taps() -> {tap: (c, r)}``.
    Per-task modules sit in ``nn.ModuleDict``s keyed by task name (found by ``task_parameters``); cross-task modules
    owned by no task are listed by ``shared_modules()``.
    """

    arch = "decoder"

    def __init__(self, backbone: str | Backbone, tasks: dict[str, int], head: str | Mapping[str, str] = "hrnet",
                 decoder_channels: int = 64, pretrained: bool | str = False,
                 head_options: Mapping[str, Mapping[str, Any]] | None = None,
                 backbone_options: Mapping[str, Any] | None = None):
        super().__init__()
        check_args(tasks, decoder_channels)
        heads = set(head.values()) if isinstance(head, Mapping) else {head}
        if not heads <= {"fpn", "hrnet"} or head_options:
            raise MtkdError(f"{self.arch} has its own task heads: leave model.head unset (or 'hrnet') and "
                            f"model.head_options empty, got head={head!r}, head_options={dict(head_options or {})!r}")
        self.tasks = dict(tasks)
        self.head_names = dict.fromkeys(self.tasks, "hrnet")
        self.head_name = "hrnet"
        self.channels = decoder_channels
        self.backbone_name, self.backbone = make_backbone(backbone, pretrained, backbone_options)
        info = self.backbone.feature_info
        self.neck = ConcatNeck(info)
        self.multiple = max(fi["reduction"] for fi in info)

    # --- subclasses --------------------------------------------------------------------------------------------
    def decode(self, stages, shared, features) -> tuple[dict[str, torch.Tensor], dict[str, tuple[torch.Tensor, ...]]]:
        raise NotImplementedError

    def decoder_taps(self) -> dict[str, tuple[int, int]]:
        """The decoder's own taps; by default the HRNet decoders' ``initial.<t>`` and ``head.<t>`` (``self.channels``
        wide, at the neck's reduction). Models with other taps override it."""
        r = self.neck.reduction
        return {**{f"initial.{t}": (self.channels, r) for t in self.tasks},
                **{f"head.{t}": (self.channels, r) for t in self.tasks}}

    def shared_modules(self) -> list[nn.Module]:
        return []

    # --- the MultiTaskModel interface -------------------------------------------------------------------------
    def forward(self, image: torch.Tensor) -> Output:
        check_image(image)
        check_multiple(image, self.multiple, f"{self.arch} on {self.backbone_name}")
        size = image.shape[-2:]
        stages = self.backbone(image)
        features = {fi["name"]: f for fi, f in zip(self.backbone.feature_info, stages)}
        shared = self.neck(stages)
        features["shared"] = shared
        preds, aux = self.decode(stages, shared, features)
        return Output({t: up(p, size) for t, p in preds.items()}, features,
                      {t: tuple(a) for t, a in aux.items() if a})

    def taps(self) -> dict[str, tuple[int, int]]:
        out = {fi["name"]: (fi["num_chs"], fi["reduction"]) for fi in self.backbone.feature_info}
        out["shared"] = (self.neck.channels, self.neck.reduction)
        out.update(self.decoder_taps())
        return out

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.backbone.parameters()) + [p for m in self.shared_modules() for p in m.parameters()]

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        if task not in self.tasks:
            raise MtkdError(f"unknown task {task!r}; model tasks: {', '.join(self.tasks)}")
        return [p for m in task_modules(self, task) for p in m.parameters()]


__all__ = ["DecoderModel", "BasicBlock", "SEBlock", "MultiModalDistillation", "InitialPredictions", "up",
           "task_modules"]
