"""PAP-Net (Zhang, Cui, Xu, Yan, Sebe, Yang 2019, "Pattern-Affinitive Propagation across Depth, Surface Normal and
Semantic Segmentation", CVPR; Fig. 2, Sec. 3.2–3.4) on the HRNet-V2 concatenation (seed 003 Table 1: 4.54 M,
53.04 GFLOPs on NYUD-v2 — the affinity matrices make it the most expensive row).

    x      = HRNet-V2 concatenation at 1/4                                    "shared"
    f_t    = conv3×3-BN-ReLU(x → C);  p0_t = conv1×1(f_t)   initial prediction (deep supervision)   "initial.<t>"
    z_t    = avgpool_r(f_t)                                  reduced resolution (n = h·w/r² positions)
    A_t    = softmax_j(z_t,i · z_t,j / √C)                   task affinity, n × n (Sec. 3.2, Eq. 1, normalised)
    M_t    = Σ_s w_{t,s} A_s,  w_t = softmax_s(ω_t)          cross-task affinity combination (Sec. 3.3, Eq. 3–4)
    g^0    = z_t;  g^{k+1} = β_t M_t g^k + (1 − β_t) z_t     K diffusion steps (Sec. 3.4, Eq. 5), β_t = σ(b_t)
    d_t    = f_t + up(g^K)                                   "head.<t>"
    p_t    = conv1×1(d_t)

Choices the paper leaves open or that differ (stated): the paper learns the combination with a 1×1 conv over the
stacked affinity matrices; here one learned weight per (target, source) pair, softmax-normalised so M_t stays
row-stochastic, initialised to favour the target's own affinity (ω_tt = 2, others 0). Reduced resolution r = 2 on the
1/4 map (1/8 of the input: 60×80 = 4800 positions at 480×640; the paper also works at a reduced scale because the
matrices are n × n), K = ``steps`` = 3, β initialised at 0.5.

Memory: per sample and task, A_t and M_t are n² floats — at 480×640, 2 × 4800² × 4 B = 184 MB per task and sample,
plus the softmax's saved activations for the backward: about 2.5 GB a sample for four tasks in float32, ~20 GB at the
protocol's batch of 8 (halve with bf16-mixed). ``reduction`` trades resolution for memory (n shrinks as 1/r²).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mtkd.errors import MtkdError
from mtkd.models.decoder_base import DecoderModel, InitialPredictions, up


class PAPNet(DecoderModel):
    arch = "pap_net"

    def __init__(self, backbone, tasks, reduction: int = 2, steps: int = 3, **kw):
        super().__init__(backbone, tasks, **kw)
        if int(reduction) < 1 or int(steps) < 1:
            raise MtkdError(f"pap_net reduction and steps must be ≥ 1, got {reduction!r}, {steps!r}")
        self.reduction, self.steps = int(reduction), int(steps)
        C = self.channels
        self.initial = InitialPredictions(self.tasks, self.neck.channels, C)
        names = list(self.tasks)
        self.mix = nn.ParameterDict({t: nn.Parameter(torch.tensor([2.0 if s == t else 0.0 for s in names]))
                                     for t in names})
        self.beta = nn.ParameterDict({t: nn.Parameter(torch.zeros(1)) for t in names})
        self.final_logits = nn.ModuleDict({t: nn.Conv2d(C, c, 1) for t, c in self.tasks.items()})

    def task_parameters(self, task):
        return super().task_parameters(task) + [self.mix[task], self.beta[task]]

    def decode(self, stages, shared, features):
        feats, initial = self.initial(shared)
        z = {t: F.avg_pool2d(f, self.reduction, ceil_mode=True) if self.reduction > 1 else f for t, f in feats.items()}
        B, C, h, w = next(iter(z.values())).shape
        flat = {t: v.flatten(2) for t, v in z.items()}  # B × C × n
        aff = torch.stack([torch.bmm(v.transpose(1, 2), v).div(C ** 0.5).softmax(-1) for v in flat.values()], 1)
        preds = {}
        for t in self.tasks:
            M = torch.einsum("s,bsij->bij", self.mix[t].softmax(0), aff)  # B × n × n
            beta = torch.sigmoid(self.beta[t])
            g0 = flat[t].transpose(1, 2)  # B × n × C
            g = g0
            for _ in range(self.steps):
                g = beta * torch.bmm(M, g) + (1 - beta) * g0
            d = feats[t] + up(g.transpose(1, 2).reshape(B, C, h, w), feats[t].shape[-2:])
            features[f"initial.{t}"] = feats[t]
            features[f"head.{t}"] = d
            preds[t] = self.final_logits[t](d)
        return preds, {t: (initial[t],) for t in self.tasks}


__all__ = ["PAPNet"]
