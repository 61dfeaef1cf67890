"""Saliency metrics: maxF (beta^2 = 0.3) and IoU, pooled over the whole split, as ATRC / InvPT report saliency.

maxF (Achanta et al. 2009's F_beta with beta^2 = 0.3, the salient-object-detection convention; the ``MaxF``
metric of ATRC, Bruggemann et al. ICCV 2021, ``src/data/metrics.py``, reused by InvPT and successors):
for each of the 19 thresholds t = 0.05, 0.10, ..., 0.95 binarise ``pred >= t``; over the valid pixels of *every*
image of the split sum TP, predicted positives and actual positives; P = TP/PP, R = TP/AP,
F = (1 + beta^2) P R / (beta^2 P + R) (0 where undefined); report max over t.

mIoU: the foreground IoU at threshold 0.5 with the counts pooled over the split, TP / (TP + FP + FN) on valid
pixels (``pred >= 0.5``). This is what ATRC's ``MeanIoU(num_classes=1, threshold=0.5)`` computes on a saliency map
(a single class, macro mean over one class). Peers differ, and their numbers are *not* comparable with this one:

- Multi-Task-Learning-PyTorch / ASTMT ``eval_sal``: per image Jaccard at 15 thresholds 0.2..0.9 (``pred > t``;
  an image where both maps are empty scores 1), averaged over images, max over thresholds ("mIoU"); their "maxF"
  there is beta = 1 on per-image averaged precision and recall.
- Some InvPT-era ``SaliencyMeter`` copies average per-image IoUs at each of the 19 thresholds and take the max;
  some apply a sigmoid to maps already in [0, 1] (a bug that shifts every threshold).

Inputs: ``preds`` B x 1 x H x W (or B x H x W) probabilities in [0, 1] (ATRC applies a sigmoid to logits first:
pass ``torch.sigmoid(logits)``); ``target`` the same size, 1 salient / 0 not / -1 invalid (the PASCAL-Context
release's distilled maps are binarised at 0.5 by the converter; a non-binary target in [0, 1] is binarised here
at 0.5 as ATRC's loader does, ``> 0.5``).
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

__all__ = ["SaliencyMetrics"]


class SaliencyMetrics(Metric):
    """``compute()`` -> ``{"maxF": %, "mIoU": %}``; states are summed counts (``dist_reduce_fx="sum"``)."""

    full_state_update = False
    #: ``compute()``'s keys in table order → higher is better (torchmetrics' ``higher_is_better``, per key)
    higher_is_better_by_key = {"maxF": True, "mIoU": True}
    higher_is_better = True

    def __init__(self, beta_squared: float = 0.3, thresholds: torch.Tensor | None = None, iou_threshold: float = 0.5,
                 **kwargs):
        super().__init__(**kwargs)
        if thresholds is None:
            thresholds = torch.arange(1, 20, dtype=torch.float64) * 0.05  # 0.05 .. 0.95, 19 values
        self.register_buffer("thresholds", torch.as_tensor(thresholds, dtype=torch.float64).flatten(),
                             persistent=False)
        self.beta_squared = float(beta_squared)
        self.iou_threshold = float(iou_threshold)
        t = self.thresholds.numel()
        self.add_state("tp", default=torch.zeros(t, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("pred_pos", default=torch.zeros(t, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("actual_pos", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("iou_inter", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("iou_union", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        if preds.dim() == 4:
            preds = preds[:, 0]
        if target.dim() == 4:
            target = target[:, 0]
        if preds.shape != target.shape:
            raise ValueError(f"SaliencyMetrics: preds {tuple(preds.shape)} and target {tuple(target.shape)} differ")
        target = target.detach()
        valid = target >= 0
        p = preds.detach().double()[valid]
        g = target.double()[valid] > 0.5
        th = self.thresholds.to(p.device)
        binar = p[None, :] >= th[:, None]  # T x N
        self.tp += (binar & g[None, :]).sum(dim=1).double()
        self.pred_pos += binar.sum(dim=1).double()
        self.actual_pos += g.sum().double()
        b = p >= self.iou_threshold
        self.iou_inter += (b & g).sum().double()
        self.iou_union += (b | g).sum().double()

    def compute(self) -> dict[str, torch.Tensor]:
        prec = torch.where(self.pred_pos > 0, self.tp / self.pred_pos.clamp(min=1), torch.zeros_like(self.tp))
        rec = self.tp / self.actual_pos if self.actual_pos > 0 else torch.zeros_like(self.tp)
        num = (1 + self.beta_squared) * prec * rec
        den = self.beta_squared * prec + rec
        f = torch.where(den > 0, num / den.clamp(min=1e-300), torch.zeros_like(num))
        iou = self.iou_inter / self.iou_union if self.iou_union > 0 else torch.zeros((), dtype=torch.float64)
        return {"maxF": (100 * f.max()).float(), "mIoU": (100 * iou).float()}
