"""The shared neck: a light FPN (Lin et al. 2017, "Feature Pyramid Networks") that fuses the backbone stages into
one ``decoder_channels`` map at 1/4 resolution — the "shared" representation every FPN head reads (and the ``rep``
that gradient-weighting methods such as MGDA-UB differentiate through).

    lateral_i = 1×1 conv(stage_i)          for the stages with reduction ≥ 4 (1/2 would be slow and adds little)
    p_top     = lateral_top;  p_i = lateral_i + upsample(p_{i+1})        (top-down pathway, bilinear)
    shared    = 3×3 conv-BN-ReLU(p_finest)

Sizes are taken from the actual maps (``size=``), so inputs whose sides are not divisible by 16/32 work.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mtkd.models.backbones import conv_bn_relu


class FPNNeck(nn.Module):
    def __init__(self, feature_info: list[dict], channels: int = 64, min_reduction: int = 4):
        super().__init__()
        used = [i for i, f in enumerate(feature_info) if f["reduction"] >= min_reduction] or [len(feature_info) - 1]
        self.used = used
        self.reduction = feature_info[used[0]]["reduction"]
        self.channels = channels
        self.lateral = nn.ModuleList(nn.Conv2d(feature_info[i]["num_chs"], channels, 1) for i in used)
        self.out = conv_bn_relu(channels, channels)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        maps = [feats[i] for i in self.used]
        p = self.lateral[-1](maps[-1])
        for lat, f in zip(reversed(self.lateral[:-1]), reversed(maps[:-1])):
            p = lat(f) + F.interpolate(p, size=f.shape[-2:], mode="bilinear", align_corners=False)
        return self.out(p)


class ConcatNeck(nn.Module):
    """HRNet-V2 representation (Wang et al. 2020, "Deep High-Resolution Representation Learning", Sec. 3, Fig. 4b):
    the stages with reduction ≥ ``min_reduction`` upsampled bilinearly to the finest of them and concatenated
    (HRNet-18: 18+36+72+144 = 270 channels at 1/4). No parameters; what the dense-MTL HRNet heads read."""

    def __init__(self, feature_info: list[dict], min_reduction: int = 4):
        super().__init__()
        used = [i for i, f in enumerate(feature_info) if f["reduction"] >= min_reduction] or [len(feature_info) - 1]
        self.used = used
        self.reduction = feature_info[used[0]]["reduction"]
        self.channels = sum(feature_info[i]["num_chs"] for i in used)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        maps = [feats[i] for i in self.used]
        size = maps[0].shape[-2:]
        return torch.cat([maps[0]] + [F.interpolate(f, size=size, mode="bilinear", align_corners=False)
                                      for f in maps[1:]], 1)


class DeepestStage(nn.Module):
    """No neck: the shared representation is the deepest backbone stage (what an ASPP head reads)."""

    def __init__(self, feature_info: list[dict]):
        super().__init__()
        self.channels = feature_info[-1]["num_chs"]
        self.reduction = feature_info[-1]["reduction"]

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return feats[-1]
