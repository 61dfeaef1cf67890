"""MTAN: Multi-Task Attention Network (Liu, Johns & Davison 2019, "End-to-End Multi-Task Learning with
Attention", Sec. 3.2, Fig. 2) on any backbone of the registry.

    f^1..N  = backbone(image)                                  shared stages, taps "stage1".."stageN"
    a_t^1   = σ(conv1×1-BN-ReLU-conv1×1-BN(f^1))               task t's soft attention mask at stage 1
    a_t^i   = σ(conv1×1-BN-ReLU-conv1×1-BN([f^i, p_t^i−1]))    i > 1 (paper: [u^j, p^(j−1)] inside block j)
    â_t^i   = a_t^i ⊙ f^i                                       attended shared features
    p_t^i   = maxpool_to(f^i+1)(conv3×3-BN-ReLU(â_t^i → C_i+1))  the "f" block: to the next stage's width and size
    n_t     = neck_t(â_t^1..N)      task FPN over the attended stages (or â_t^N: task_heads.py)
    shared  = cat_t(n_t)  (B × T·C × h × w, task order)         "shared" tap; head t reads its own slice of it
    logits_t, feat_t = head_t(...)                              "head.<task>" tap = feat_t

Deviations from the paper: attention sits on the N stages of any registry backbone instead of the 5 SegNet
blocks; the mask's input is the stage OUTPUT f^i (the paper uses an intermediate layer u^j of block j, which a
generic backbone does not expose) and the mask is multiplied with that same f^i (the paper multiplies with the
block's output p^j; here they coincide); the decoder is the task's own FPN neck + head instead of the mirrored
SegNet decoder with its own attention modules; the attention convs have bias-free convs followed by BN.

``"shared"`` is the channel concatenation of the task necks' outputs so that every task loss flows through it (what
representation-gradient weightings such as MGDA-UB need from ``rep``); channels are T·``decoder_channels``.
``shared_parameters()`` = the backbone (the paper's shared network); ``task_parameters(t)`` = task t's attention
modules + neck + head. In representation mode (MGDA-UB) the task modules sit upstream of "shared" and so receive
task t's gradient scaled by its MGDA weight.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mtkd.errors import MtkdError
from mtkd.models.backbones import Backbone, conv_bn_relu, make_backbone
from mtkd.models.cross_stitch import per_task_neck_taps, run_heads
from mtkd.models.multitask import Output, check_args, check_image
from mtkd.models.task_heads import head_name, make_neck_and_heads


class AttentionMask(nn.Module):
    """a = σ(BN(conv1×1(ReLU(BN(conv1×1(x)))))) with C_out = the attended stage's channels (paper Fig. 2, "g")."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.body = nn.Sequential(conv_bn_relu(cin, cout, k=1), nn.Conv2d(cout, cout, 1, bias=False),
                                  nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.body(x))


class TaskAttention(nn.Module):
    """One task's attention modules over all stages: masks g_i and the shared-width blocks f_i (paper Fig. 2)."""

    def __init__(self, feature_info: list[dict]):
        super().__init__()
        chs = [fi["num_chs"] for fi in feature_info]
        self.masks = nn.ModuleList(AttentionMask(c if i == 0 else 2 * c, c) for i, c in enumerate(chs))
        self.to_next = nn.ModuleList(conv_bn_relu(chs[i], chs[i + 1]) for i in range(len(chs) - 1))

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        attended, prev = [], None
        for i, f in enumerate(feats):
            x = f if prev is None else torch.cat([f, prev], 1)
            a = self.masks[i](x) * f
            attended.append(a)
            if i < len(self.to_next):
                prev = F.adaptive_max_pool2d(self.to_next[i](a), feats[i + 1].shape[-2:])
        return attended


class MTANModel(nn.Module):
    def __init__(self, backbone: str | Backbone, tasks: dict[str, int], head: str | Mapping[str, str] = "fpn",
                 decoder_channels: int = 64, pretrained: bool | str = False,
                 head_options: Mapping[str, Mapping[str, Any]] | None = None,
                 backbone_options: Mapping[str, Any] | None = None):
        super().__init__()
        check_args(tasks, decoder_channels)
        self.tasks = dict(tasks)
        self.backbone_name, self.backbone = make_backbone(backbone, pretrained, backbone_options)
        info = self.backbone.feature_info
        self.attention = nn.ModuleDict({t: TaskAttention(info) for t in tasks})
        self.head_names, necks, self.heads = make_neck_and_heads(info, self.tasks, head, decoder_channels,
                                                                 head_options, len(tasks))
        self.head_name = head_name(self.head_names)
        self.necks = nn.ModuleDict(dict(zip(tasks, necks)))

    def forward(self, image: torch.Tensor) -> Output:
        check_image(image)
        size = image.shape[-2:]
        stages = self.backbone(image)
        features = {fi["name"]: f for fi, f in zip(self.backbone.feature_info, stages)}
        shared = torch.cat([self.necks[t](self.attention[t](stages)) for t in self.tasks], 1)
        features["shared"] = shared
        preds = run_heads(self.heads, shared, size, features)
        return Output(preds, features)

    def taps(self) -> dict[str, tuple[int, int]]:
        return per_task_neck_taps(self.backbone.feature_info, self.necks, self.heads)

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.backbone.parameters())

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        if task not in self.heads:
            raise MtkdError(f"unknown task {task!r}; model tasks: {', '.join(self.tasks)}")
        return (list(self.attention[task].parameters()) + list(self.necks[task].parameters())
                + list(self.heads[task].parameters()))


__all__ = ["MTANModel", "AttentionMask", "TaskAttention"]
