"""Edge F-measure at a fixed threshold, pooled over the split: a cheap *training-time proxy* for boundary quality,
named ``F@0.5`` (``F@<threshold>``) so that it is never mistaken for the benchmark's odsF.

F = 2 TP / (2 TP + FP + FN) (in %) with ``sigmoid(pred) >= 0.5`` against ``target > 0.5`` on the valid pixels
(target -1 = invalid) of every image, TP/FP/FN summed over the split (not averaged per batch). F is 0 when there is
neither a predicted nor a ground-truth edge pixel.

This is not the boundary-detection protocol the papers report (odsF / oisF with thinning, distance-tolerant
matching and 99 thresholds): that is :class:`mtkd.metrics.boundary.BoundaryF`, which the engine runs on the test
split (``mtkd eval``, the end of training). This one is logged on the validation split during training. On a
480 x 640 prediction the two differ by tens of points (F@0.5 44.1 vs odsF 97.1 on one case), so they are not
interchangeable in tables or Delta_m.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

__all__ = ["EdgeMetrics"]


class EdgeMetrics(Metric):
    """``update(pred_logits, target)`` with B x 1 x H x W maps; ``compute()`` -> ``{"F@0.5": %}``."""

    full_state_update = False
    #: ``compute()``'s keys in table order → higher is better (torchmetrics' ``higher_is_better``, per key)
    higher_is_better_by_key = {"F@0.5": True}  # the default threshold's key
    higher_is_better = True

    def __init__(self, threshold: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.threshold = float(threshold)
        for name in ("tp", "fp", "fn"):
            self.add_state(name, default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        if pred.shape != target.shape:
            raise ValueError(f"EdgeMetrics: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
        t = target.detach()
        valid = t >= 0
        b = torch.sigmoid(pred.detach().double()[valid]) >= self.threshold
        g = t[valid].double() > 0.5
        self.tp += (b & g).sum().double()
        self.fp += (b & ~g).sum().double()
        self.fn += (~b & g).sum().double()

    def compute(self) -> dict[str, torch.Tensor]:
        den = 2 * self.tp + self.fp + self.fn
        f = 2 * self.tp / den if den > 0 else torch.zeros((), dtype=torch.float64)
        return {f"F@{self.threshold:g}": (100 * f).float()}
