"""PSD (Zhou, Cui, Xu, Zhang, Yang, Yan 2020, "Pattern-Structure Diffusion for Multi-Task Learning", CVPR; Fig. 2,
Sec. 3.2–3.4) on the HRNet-V2 concatenation (seed 003 Table 1: 4.71 M, 21.10 GFLOPs on NYUD-v2).

Pattern structures are local: each position's affinities to its k×k neighbours. They are diffused within a task and
transferred across tasks.

    x       = HRNet-V2 concatenation at 1/4                                  "shared"
    f_t     = conv3×3-BN-ReLU(x → C);  p0_t = conv1×1(f_t)  initial prediction (deep supervision)   "initial.<t>"
    z_t     = avgpool_r(f_t)                                 reduced resolution
    W_t(i,j)= softmax_{j∈N_k(i)}(z_t,i · z_t,j / √C)          task pattern structure (Sec. 3.2, Eq. 1–2)
    intra   : u_t = Σ_j W_t(i,j) z_t(j), iterated ``steps`` times (task-specific diffusion, Sec. 3.2, Eq. 3)
    across  : v_t = Σ_{s≠t} γ_{t←s}(i) Σ_j W_s(i,j) u_t(j),  γ_{t←s} = σ(conv3×3([z_t, z_s] → 1))
              (task-across transfer weighted by a learned structure-matching gate, Sec. 3.3, Eq. 5–6)
    d_t     = f_t + up(conv1×1-BN-ReLU([u_t, v_t] → C))                      "head.<t>"
    p_t     = conv1×1(d_t)

Choices the paper leaves open or that differ (stated): the paper samples pattern structures by random walks over a
local neighbourhood and matches them across tasks with a learned similarity; here the neighbourhood softmax is the
one-step transition matrix, ``steps`` = 2 diffusion steps, window k = ``window`` = 7, and the cross-task matching is a
per-pair, per-position sigmoid gate. Reduced resolution r = 2 on the 1/4 map (1/8 of the input).

Memory: the neighbourhood tensors are B × C × k² × n (n = h·w/r²): at 480×640 with C = 67, k = 7 that is
67 × 49 × 4800 × 4 B ≈ 63 MB per unfold, a few per task and step — about 1–2 GB a sample for four tasks in float32
with the saved activations, ~10 GB at the protocol's batch of 8.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mtkd.errors import MtkdError
from mtkd.models.backbones import conv_bn_relu
from mtkd.models.decoder_base import DecoderModel, InitialPredictions, up


def local_affinity(z: torch.Tensor, k: int) -> torch.Tensor:
    """W(i, j) = softmax over the k×k neighbours j of i of z_i·z_j/√C (outside the map masked): B × k² × n."""
    B, C, h, w = z.shape
    nb = F.unfold(z, k, padding=k // 2).view(B, C, k * k, h * w)
    sim = (z.flatten(2).unsqueeze(2) * nb).sum(1) / math.sqrt(C)
    inside = F.unfold(torch.ones(1, 1, h, w, device=z.device, dtype=z.dtype), k, padding=k // 2)
    return sim.masked_fill(inside == 0, float("-inf")).softmax(1)


def diffuse(x: torch.Tensor, W: torch.Tensor, k: int) -> torch.Tensor:
    """Σ_j W(i, j) x(j) over the k×k neighbourhood (one diffusion step)."""
    B, C, h, w = x.shape
    nb = F.unfold(x, k, padding=k // 2).view(B, C, k * k, h * w)
    return (nb * W.unsqueeze(1)).sum(2).view(B, C, h, w)


class PSD(DecoderModel):
    arch = "psd"

    def __init__(self, backbone, tasks, reduction: int = 2, window: int = 7, steps: int = 2, **kw):
        super().__init__(backbone, tasks, **kw)
        if int(reduction) < 1 or int(steps) < 1 or int(window) < 1 or int(window) % 2 == 0:
            raise MtkdError(f"psd: reduction and steps must be ≥ 1 and window odd, got {reduction!r}, {steps!r}, "
                            f"{window!r}")
        self.reduction, self.window, self.steps = int(reduction), int(window), int(steps)
        C = self.channels
        names = list(self.tasks)
        self.initial = InitialPredictions(self.tasks, self.neck.channels, C)
        self.gates = nn.ModuleDict()
        for t in names:
            g = nn.ModuleDict({s: nn.Conv2d(2 * C, 1, 3, 1, 1) for s in names if s != t})
            g.keyed_by_task = False  # keyed by source: belongs to the target t
            self.gates[t] = g
        self.fuse = nn.ModuleDict({t: conv_bn_relu(2 * C, C, k=1) for t in names})
        self.final_logits = nn.ModuleDict({t: nn.Conv2d(C, c, 1) for t, c in self.tasks.items()})

    def decode(self, stages, shared, features):
        feats, initial = self.initial(shared)
        r, k = self.reduction, self.window
        z = {t: F.avg_pool2d(f, r, ceil_mode=True) if r > 1 else f for t, f in feats.items()}
        W = {t: local_affinity(v, k) for t, v in z.items()}
        preds = {}
        for t in self.tasks:
            u = z[t]
            for _ in range(self.steps):
                u = diffuse(u, W[t], k)
            v = torch.zeros_like(u)
            for s, gate in self.gates[t].items():
                v = v + torch.sigmoid(gate(torch.cat([z[t], z[s]], 1))) * diffuse(u, W[s], k)
            d = feats[t] + up(self.fuse[t](torch.cat([u, v], 1)), feats[t].shape[-2:])
            features[f"initial.{t}"] = feats[t]
            features[f"head.{t}"] = d
            preds[t] = self.final_logits[t](d)
        return preds, {t: (initial[t],) for t in self.tasks}


__all__ = ["PSD", "local_affinity", "diffuse"]
