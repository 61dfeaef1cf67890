"""NDDR-CNN (Gao, Ma, Zhao, Liu, Yuille 2019, "NDDR-CNN: Layerwise Feature Fusing in Multi-Task CNNs by Neural
Discriminative Dimensionality Reduction", CVPR; Sec. 3, Eq. 1–2) in the form the HRNet-18 comparisons use (seed 003
Table 1: 4.59 M = the 4.52 M multi-task baseline + one NDDR layer on the task features; ATRC's table).

    x     = HRNet-V2 concatenation at 1/4                               "shared"
    f_t   = conv3×3-BN-ReLU(x → C)         per-task branch (the multi-task baseline's head body)   "initial.<t>"
    g_t   = ReLU(BN(W_t * [f_1, .., f_T]))  NDDR layer (Eq. 1–2): a 1×1 conv T·C → C per task       "head.<t>"
    p_t   = conv1×1(g_t)

Init (Sec. 3.3, "diagonal" initialisation): W_t = [β·I, .., α·I (block t), .., β·I] with α = ``alpha`` = 0.9 and
β = (1 − α)/(T − 1) (the paper's (α, β) = (0.9, 0.1) for two tasks, spread so each row sums to 1), so g_t starts as
(mostly) the task's own features. The BN after the fusion uses the paper's default; weight decay on W (the paper's
λ scaling of the NDDR layer's learning rate and decay) is left to the optimiser.

Not done here: the paper's layerwise form, one backbone per task joined after every stage. On HRNet the parallel
branches of a stage are several maps, and the published HRNet-18 count (4.59 M, one backbone) shows the comparison
fuses the task branches of the decoder; that is the form built here. No initial predictions (no deep supervision).
"""

from __future__ import annotations

import torch
from torch import nn

from mtkd.errors import MtkdError
from mtkd.models.backbones import conv_bn_relu
from mtkd.models.decoder_base import DecoderModel


class NDDRLayer(nn.Module):
    """Per task t: ReLU(BN(conv1×1([f_1..f_T] → C))), diagonally initialised (Eq. 1–2, Sec. 3.3)."""

    def __init__(self, tasks, channels: int, alpha: float = 0.9):
        super().__init__()
        self.tasks = list(tasks)
        T, C = len(self.tasks), channels
        beta = (1.0 - alpha) / (T - 1) if T > 1 else 0.0
        self.fuse = nn.ModuleDict()
        for i, t in enumerate(self.tasks):
            conv = nn.Conv2d(T * C, C, 1, bias=False)
            with torch.no_grad():
                w = torch.zeros(C, T * C)
                for j in range(T):
                    w[:, j * C:(j + 1) * C] = torch.eye(C) * (alpha if j == i or T == 1 else beta)
                conv.weight.copy_(w[:, :, None, None])
            self.fuse[t] = nn.Sequential(conv, nn.BatchNorm2d(C), nn.ReLU(inplace=True))

    def forward(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cat = torch.cat([feats[t] for t in self.tasks], 1)
        return {t: self.fuse[t](cat) for t in self.tasks}


class NDDRCNN(DecoderModel):
    arch = "nddr_cnn"

    def __init__(self, backbone, tasks, alpha: float = 0.9, **kw):
        super().__init__(backbone, tasks, **kw)
        if not 0.0 <= float(alpha) <= 1.0:
            raise MtkdError(f"nddr_cnn alpha must be in [0, 1], got {alpha!r}")
        C = self.channels
        self.branch = nn.ModuleDict({t: conv_bn_relu(self.neck.channels, C) for t in self.tasks})
        self.nddr = NDDRLayer(self.tasks, C, float(alpha))
        self.final_logits = nn.ModuleDict({t: nn.Conv2d(C, c, 1) for t, c in self.tasks.items()})

    def decode(self, stages, shared, features):
        feats = {t: b(shared) for t, b in self.branch.items()}
        fused = self.nddr(feats)
        preds = {}
        for t in self.tasks:
            features[f"initial.{t}"] = feats[t]
            features[f"head.{t}"] = fused[t]
            preds[t] = self.final_logits[t](fused[t])
        return preds, {}


__all__ = ["NDDRCNN", "NDDRLayer"]
