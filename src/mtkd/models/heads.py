"""Per-task heads, by name (``HEADS``). A head maps the shared representation to one task's raw outputs at the
shared map's resolution; ``MultiTaskModel`` upsamples to the input size. ``forward`` returns ``(logits, feat)``,
``feat`` being the map before the final 1×1 classifier — the ``head.<task>`` distillation tap.

- ``"fpn"`` (default): two 3×3 conv-BN-ReLU on the 1/4 FPN map, then a 1×1 conv to the task's channels.
- ``"hrnet"``: the FCN head of the HRNet dense-MTL codebases (ATRC's multi-task baseline): on the HRNet-V2
  concatenation of all stages at 1/4 (``ConcatNeck``), one 3×3 conv-BN-ReLU to ``channels`` (the reference uses
  in/4 = 67 for HRNet-18: set ``decoder_channels: 67``), then a 1×1 classifier.
- ``"aspp"``: DeepLabV3 (Chen et al. 2017, "Rethinking atrous convolution", Sec. 3.3) on the deepest stage:
  1×1 branch + three 3×3 atrous branches + image pooling, concat → 1×1 projection, 3×3 conv-BN-ReLU (the tap),
  1×1 classifier. The paper's rates 6/12/18 suit a 33×33 map at output stride 16; at 96×128 the deepest map is
  6×8, so the default rates are scaled down to 2/4/6 (a rate above the map size only sees padding).

Each head class declares ``reads``: ``"neck"`` (FPN map at 1/4) or ``"deepest"`` (last backbone stage); the model's
one "shared" map is the FPN map when any of its heads reads the neck, else the deepest stage (task_heads.py).
"""

from __future__ import annotations

import torch
from torch import nn

from mtkd.models.backbones import conv_bn_relu
from mtkd.registry import Registry

HEADS = Registry("head")


@HEADS.register("fpn")
class FPNHead(nn.Module):
    reads = "neck"

    def __init__(self, in_channels: int, out_channels: int, channels: int | None = None):
        super().__init__()
        self.channels = channels or in_channels
        self.body = nn.Sequential(conv_bn_relu(in_channels, self.channels), conv_bn_relu(self.channels, self.channels))
        self.classifier = nn.Conv2d(self.channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.body(x)
        return self.classifier(feat), feat


@HEADS.register("hrnet")
class HRNetHead(nn.Module):
    reads = "concat"

    def __init__(self, in_channels: int, out_channels: int, channels: int | None = None):
        super().__init__()
        self.channels = channels or in_channels // 4
        self.body = conv_bn_relu(in_channels, self.channels)
        self.classifier = nn.Conv2d(self.channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.body(x)
        return self.classifier(feat), feat


@HEADS.register("aspp")
class ASPPHead(nn.Module):
    reads = "deepest"

    def __init__(self, in_channels: int, out_channels: int, channels: int = 64, rates: tuple[int, ...] = (2, 4, 6)):
        super().__init__()
        self.channels = channels
        self.branches = nn.ModuleList(
            [conv_bn_relu(in_channels, channels, k=1)]
            + [conv_bn_relu(in_channels, channels, dilation=r) for r in rates]
        )
        # image-pooling branch: no BN (a 1×1 map with batch size 1 has a single value per channel)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, channels, 1), nn.ReLU(inplace=True))
        self.project = conv_bn_relu(channels * (len(rates) + 2), channels, k=1)
        self.body = conv_bn_relu(channels, channels)
        self.classifier = nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ys = [b(x) for b in self.branches]
        ys.append(self.pool(x).expand(-1, -1, *x.shape[-2:]))
        feat = self.body(self.project(torch.cat(ys, 1)))
        return self.classifier(feat), feat


__all__ = ["HEADS", "FPNHead", "HRNetHead", "ASPPHead"]
