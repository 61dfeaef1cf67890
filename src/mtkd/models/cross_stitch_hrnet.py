"""Cross-Stitch in the form the HRNet-18 comparisons use (seed 003 Table 1: "Cross-Stitch, HRNet18, 4.52 M / 17.59
GFLOPs" — exactly the multi-task baseline's cost, so the units sit on the task branches of one shared backbone, not
on per-task backbone copies): Misra et al. 2016, "Cross-stitch Networks for Multi-task Learning", Eq. 1.

    x      = HRNet-V2 concatenation at 1/4                                  "shared"
    f_t    = conv3×3-BN-ReLU(x → C)          the baseline's task branch                      "initial.<t>"
    f̃_t    = Σ_s α[c, t, s] · f_s            cross-stitch unit, channel-wise (cross_stitch.CrossStitchUnit)  "head.<t>"
    p_t    = conv1×1(f̃_t)

The unit and its initialisation (α_same = 0.9, the others (1 − 0.9)/(T − 1)) are ``cross_stitch.py``'s; the
per-stage form with one backbone copy per task is ``arch: cross_stitch`` (built-in CNNs and timm CNNs whose
``features_only`` net is a module list; HRNet's parallel branches are not, which is why this form exists).
The α are shared parameters (every task's gradient reaches them). No initial predictions (no deep supervision).
"""

from __future__ import annotations

from torch import nn

from mtkd.errors import MtkdError
from mtkd.models.backbones import conv_bn_relu
from mtkd.models.cross_stitch import CrossStitchUnit
from mtkd.models.decoder_base import DecoderModel


class CrossStitchHRNet(DecoderModel):
    arch = "cross_stitch_hrnet"

    def __init__(self, backbone, tasks, alpha_same: float = 0.9, **kw):
        super().__init__(backbone, tasks, **kw)
        if not 0.0 <= float(alpha_same) <= 1.0:
            raise MtkdError(f"cross_stitch_hrnet alpha_same must be in [0, 1], got {alpha_same!r}")
        C = self.channels
        self.branch = nn.ModuleDict({t: conv_bn_relu(self.neck.channels, C) for t in self.tasks})
        self.stitch = CrossStitchUnit(len(self.tasks), C, float(alpha_same))
        self.final_logits = nn.ModuleDict({t: nn.Conv2d(C, c, 1) for t, c in self.tasks.items()})

    def shared_modules(self):
        return [self.stitch]

    def decode(self, stages, shared, features):
        feats = [self.branch[t](shared) for t in self.tasks]
        stitched = self.stitch(feats)
        preds = {}
        for t, f, g in zip(self.tasks, feats, stitched):
            features[f"initial.{t}"] = f
            features[f"head.{t}"] = g
            preds[t] = self.final_logits[t](g)
        return preds, {}


__all__ = ["CrossStitchHRNet"]
