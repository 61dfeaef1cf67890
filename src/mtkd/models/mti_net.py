"""MTI-Net (Vandenhende, Georgoulis, Van Gool 2020, "MTI-Net: Multi-Scale Task Interaction Networks for Multi-Task
Learning", ECCV; Fig. 3, Sec. 3.2–3.4) on the HRNet-V2 scales (seed 003 Table 1 / ATRC's Table: 12.56 M on NYUD-v2),
following the structure of the authors' code (Multi-Task-Learning-PyTorch, models/mti_net.py).

Scales s = 1..S are the backbone stages with reduction ≥ 4 (HRNet-18: 18/36/72/144 channels at 1/4–1/32), C_s their
widths. From the coarsest scale S to the finest:

    x_S,t     = stage_S                                   (s = S)
    x_s,t     = [stage_s, up(g_{s+1},t)]                  (s < S: the propagated task features of the coarser scale)
    f_s,t     = 2 × BasicBlock(x_s,t → C_s)               per-scale, per-task refinement        "initial<s>.<t>"
    p0_s,t    = conv1×1(f_s,t)                            initial prediction at scale s (deep supervision: Output.aux)
    g_s,t     = FPM_s(f_s,·)_t                            feature propagation module (Sec. 3.3), s > 1
    d_s,t     = multi-modal distillation of f_s,· (per scale; PAD-Net's, ``decoder_base.MultiModalDistillation``)
    h_t       = conv1×1-BN-ReLU([d_1,t, up(d_2,t), .., up(d_S,t)] → ΣC_s)   feature aggregation (Sec. 3.4)  "head.<t>"
    p_t       = conv1×1(h_t)

FPM (Sec. 3.3): the concatenation of all tasks' f_s (T·C_s channels) → non-linearity (BasicBlock to T·C_s/4,
BasicBlock, conv1×1 back to T·C_s) → a per-channel softmax over the T tasks that weighs the task features →
BasicBlock to C_s ("dimensionality reduction") → per task an SE block, added to f_s,t (residual).

Choices: initial predictions at every scale are scored with the task's own loss after upsampling to the label
(``loss.aux_weight``, 1 as the reference); the coarser scale's features are upsampled to the finer map's size (any
input whose sides are multiples of the backbone's largest reduction). ``shared_parameters()`` includes the FPMs
(they mix all tasks); every other module is keyed by its task. ``features["initial<s>.<t>"]`` are the per-scale
initial features, ``initial.<t>`` the finest scale's (the tap name every decoder architecture shares).
"""

from __future__ import annotations

import torch
from torch import nn

from mtkd.models.backbones import conv_bn_relu
from mtkd.models.decoder_base import BasicBlock, DecoderModel, MultiModalDistillation, SEBlock, up


class FeaturePropagation(nn.Module):
    """MTI-Net's FPM at one scale (Sec. 3.3, Fig. 4)."""

    def __init__(self, tasks, channels: int):
        super().__init__()
        self.tasks = list(tasks)
        T = len(self.tasks)
        wide = T * channels
        self.non_linear = nn.Sequential(BasicBlock(wide, max(1, wide // 4)), BasicBlock(max(1, wide // 4), max(1, wide // 4)),
                                        nn.Conv2d(max(1, wide // 4), wide, 1))
        self.reduce = BasicBlock(wide, channels)
        self.se = nn.ModuleDict({t: SEBlock(channels) for t in self.tasks})
        self.se.keyed_by_task = False  # part of the shared FPM

    def forward(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        concat = torch.cat([feats[t] for t in self.tasks], 1)
        B, TC, H, W = concat.shape
        T = len(self.tasks)
        mask = self.non_linear(concat).view(B, TC // T, T, H, W).softmax(2)  # channel-major grouping, as the reference
        shared = self.reduce((mask * concat.view(B, TC // T, T, H, W)).view(B, TC, H, W))
        return {t: self.se[t](shared) + feats[t] for t in self.tasks}


class MTINet(DecoderModel):
    arch = "mti_net"

    def __init__(self, backbone, tasks, **kw):
        super().__init__(backbone, tasks, **kw)
        info = self.backbone.feature_info
        self.scales = list(self.neck.used)
        chs = [info[i]["num_chs"] for i in self.scales]
        self.scale_channels = chs
        S = len(chs)
        self.refine = nn.ModuleList()
        self.initial_logits = nn.ModuleList()
        for k in range(S):
            cin = chs[k] + (chs[k + 1] if k + 1 < S else 0)
            self.refine.append(nn.ModuleDict({t: nn.Sequential(BasicBlock(cin, chs[k]), BasicBlock(chs[k], chs[k]))
                                              for t in self.tasks}))
            self.initial_logits.append(nn.ModuleDict({t: nn.Conv2d(chs[k], c, 1) for t, c in self.tasks.items()}))
        self.fpm = nn.ModuleList(FeaturePropagation(self.tasks, chs[k]) for k in range(1, S))  # fpm[k-1]: scale k
        self.distill = nn.ModuleList(MultiModalDistillation(self.tasks, c) for c in chs)
        total = sum(chs)
        self.aggregate = nn.ModuleDict({t: conv_bn_relu(total, total, k=1) for t in self.tasks})
        self.final_logits = nn.ModuleDict({t: nn.Conv2d(total, c, 1) for t, c in self.tasks.items()})

    def shared_modules(self):
        return list(self.fpm)

    def decode(self, stages, shared, features):
        S = len(self.scales)
        feats: list[dict] = [None] * S
        initial: list[dict] = [None] * S
        propagated = None
        for k in reversed(range(S)):
            x = stages[self.scales[k]]
            f = {}
            for t in self.tasks:
                xt = x if propagated is None else torch.cat([x, up(propagated[t], x.shape[-2:])], 1)
                f[t] = self.refine[k][t](xt)
            feats[k] = f
            initial[k] = {t: self.initial_logits[k][t](f[t]) for t in self.tasks}
            propagated = self.fpm[k - 1](f) if k > 0 else None
        size = feats[0][next(iter(self.tasks))].shape[-2:]
        distilled = [self.distill[k](feats[k]) for k in range(S)]
        preds = {}
        for t in self.tasks:
            for k in range(S):
                features[f"initial{k + 1}.{t}"] = feats[k][t]
            features[f"initial.{t}"] = feats[0][t]
            h = self.aggregate[t](torch.cat([up(distilled[k][t], size) for k in range(S)], 1))
            features[f"head.{t}"] = h
            preds[t] = self.final_logits[t](h)
        return preds, {t: tuple(initial[k][t] for k in range(S)) for t in self.tasks}

    def decoder_taps(self):
        info = self.backbone.feature_info
        out = {}
        for t in self.tasks:
            for k, i in enumerate(self.scales):
                out[f"initial{k + 1}.{t}"] = (self.scale_channels[k], info[i]["reduction"])
            out[f"initial.{t}"] = (self.scale_channels[0], self.neck.reduction)
            out[f"head.{t}"] = (sum(self.scale_channels), self.neck.reduction)
        return out


__all__ = ["MTINet", "FeaturePropagation"]
