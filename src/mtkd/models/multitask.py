"""The multi-task dense-prediction model: backbone → shared representation → one head per task.

    feats  = backbone(image)                          "stage1".."stageN" taps
    shared = neck(feats)   (FPN at 1/4; when every head reads the deepest stage: that stage)     "shared" tap
    logits_t, feat_t = head_t(shared)                 "head.<task>" tap = feat_t
    preds[t] = bilinear upsample of logits_t to H×W   raw outputs (normals not normalised: the loss does it)

``head`` is one head name or ``{task: head name}``, ``head_options`` ``{head name: {option: value}}`` (task_heads.py);
``backbone_options`` are keyword arguments of the backbone (``build_backbone``; for timm, of ``timm.create_model``).
A single-task model is the same class with one task. ``shared_parameters`` (backbone + neck) and
``task_parameters(t)`` partition the parameters, as gradient-weighting methods (MGDA, PCGrad, ...) need.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from mtkd.errors import MtkdError
from mtkd.models.backbones import Backbone, make_backbone
from mtkd.models.task_heads import head_name, make_neck_and_heads


def check_args(tasks, decoder_channels) -> None:
    """Refuse a malformed task dict or decoder width with one clear line."""
    if not isinstance(tasks, dict) or not tasks:
        raise MtkdError(f"tasks must be a non-empty dict task -> output channels, got {tasks!r}")
    for t, c in tasks.items():
        if not isinstance(t, str) or not t or "." in t:
            raise MtkdError(f"task name {t!r} must be a non-empty string without '.'")
        if isinstance(c, bool) or not isinstance(c, int) or c < 1:
            raise MtkdError(f"task {t!r}: output channels must be a positive int, got {c!r}")
    if isinstance(decoder_channels, bool) or not isinstance(decoder_channels, int) or decoder_channels < 1:
        raise MtkdError(f"decoder_channels must be a positive int, got {decoder_channels!r}")


def check_image(image) -> None:
    """Refuse anything but a B×3×H×W tensor with one clear line."""
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[1] != 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise MtkdError(f"model input must be B×3×H×W, got {shape}")


class Output(NamedTuple):
    """What every model returns.

    ``preds``: the final prediction per task at the input's H×W (metrics and distillers read these).
    ``features``: named taps (``stage1``.., ``shared``, ``head.<task>``, ...) for feature distillers.
    ``aux``: deep supervision — per task, the auxiliary predictions of models that predict twice or more (PAD-Net,
    MTI-Net, ATRC, InvPT: initial predictions, per scale); any resolution, scored by the task's own loss after an
    upsampling to the target (``mtkd.tasks.supervised_loss``). Empty for models without deep supervision.
    """

    preds: dict[str, torch.Tensor]
    features: dict[str, torch.Tensor]
    aux: Mapping[str, tuple[torch.Tensor, ...]] = MappingProxyType({})


class MultiTaskModel(nn.Module):
    def __init__(
        self,
        backbone: str | Backbone,
        tasks: dict[str, int],
        head: str | Mapping[str, str] = "fpn",
        decoder_channels: int = 64,
        pretrained: bool | str = False,
        head_options: Mapping[str, Mapping[str, Any]] | None = None,
        backbone_options: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        check_args(tasks, decoder_channels)
        self.tasks = dict(tasks)
        self.backbone_name, self.backbone = make_backbone(backbone, pretrained, backbone_options)
        self.head_names, necks, heads = make_neck_and_heads(self.backbone.feature_info, self.tasks, head,
                                                            decoder_channels, head_options, 1)
        self.head_name = head_name(self.head_names)
        self.neck, self.heads = necks[0], heads  # registration order (backbone, neck, heads) = optimizer order

    def forward(self, image: torch.Tensor) -> Output:
        check_image(image)
        size = image.shape[-2:]
        stages = self.backbone(image)
        features = {fi["name"]: f for fi, f in zip(self.backbone.feature_info, stages)}
        shared = self.neck(stages)
        features["shared"] = shared
        preds = {}
        for t, head in self.heads.items():
            logits, feat = head(shared)
            features[f"head.{t}"] = feat
            preds[t] = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return Output(preds, features)

    def taps(self) -> dict[str, tuple[int, int]]:
        """Tap name -> (channels, nominal reduction), without a forward.

        A map's side is side / reduction when divisible; otherwise ceil (stride-2 convs) or floor (patchify stems).
        """
        out = {fi["name"]: (fi["num_chs"], fi["reduction"]) for fi in self.backbone.feature_info}
        out["shared"] = (self.neck.channels, self.neck.reduction)
        for t, head in self.heads.items():
            out[f"head.{t}"] = (head.channels, self.neck.reduction)
        return out

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.backbone.parameters()) + list(self.neck.parameters())

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        if task not in self.heads:
            raise MtkdError(f"unknown task {task!r}; model tasks: {', '.join(self.tasks)}")
        return list(self.heads[task].parameters())
