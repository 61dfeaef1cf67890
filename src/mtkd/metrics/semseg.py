"""Semantic segmentation metrics, mIoU and pixel accuracy, from one confusion matrix pooled over the whole split.

One C x C confusion matrix (rows ground truth, columns prediction) is accumulated with ``bincount`` over the valid
pixels of every image; ``compute()`` derives from it

- IoU_c = CM[c, c] / (sum_j CM[c, j] + sum_i CM[i, c] - CM[c, c]) and mIoU = mean over the classes whose union is
  non-zero, i.e. a class absent from both prediction and ground truth over the *whole split* is left out of the mean
  (it is not counted as 0 nor as 1);
- pAcc = trace(CM) / sum(CM).

This is the MTAN / LibMTL / Multi-Task-Learning-PyTorch convention (one matrix for the split). Averaging per batch or
per image (as the KD4MTL public code does for mIoU) is a known bias and is not done here. The state is a summed
integer matrix (``dist_reduce_fx="sum"``), so DDP sync and ``merge_state`` give the same matrix as one process that
saw all the data.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

from mtkd.errors import MtkdError

__all__ = ["SemsegMetrics"]


class SemsegMetrics(Metric):
    """``update(pred, target)``; ``compute()`` -> ``{"mIoU": %, "pAcc": %}`` (NaN when no valid pixel was seen).

    ``pred``: logits B x C x H x W (argmax over C) or class labels B x H x W (integer dtype); ``target``: B x H x W
    long, ``ignore_index`` (default -1) = not evaluated. A target or predicted label outside [0, C) that is not the
    ignore index raises :class:`MtkdError`.
    """

    full_state_update = False
    #: ``compute()``'s keys in table order → higher is better (torchmetrics' ``higher_is_better``, per key)
    higher_is_better_by_key = {"mIoU": True, "pAcc": True}
    higher_is_better = True

    def __init__(self, num_classes: int, ignore_index: int = -1, **kwargs):
        super().__init__(**kwargs)
        if int(num_classes) < 1:
            raise MtkdError(f"SemsegMetrics: num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        c = self.num_classes
        self.add_state("confmat", default=torch.zeros(c, c, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        c = self.num_classes
        pred = pred.detach()
        target = target.detach()
        if target.dim() == 4 and target.shape[1] == 1:
            target = target[:, 0]
        if pred.dim() == 4:
            if pred.shape[1] != c:
                raise ValueError(f"SemsegMetrics: pred has {pred.shape[1]} channels, num_classes is {c}")
            pred = pred.argmax(dim=1)
        if pred.shape != target.shape:
            raise ValueError(f"SemsegMetrics: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
        if pred.is_floating_point() or target.is_floating_point():
            raise ValueError("SemsegMetrics: label maps must have an integer dtype (pass logits as B x C x H x W)")
        target = target.long()
        pred = pred.long()
        valid = target != self.ignore_index
        t = target[valid]
        p = pred[valid]
        bad = (t < 0) | (t >= c)
        if bad.any():
            raise MtkdError(f"SemsegMetrics: target value {int(t[bad][0])} is outside [0, {c}) "
                            f"and is not ignore_index={self.ignore_index}")
        bad = (p < 0) | (p >= c)
        if bad.any():
            raise MtkdError(f"SemsegMetrics: predicted label {int(p[bad][0])} is outside [0, {c})")
        self.confmat += torch.bincount(t * c + p, minlength=c * c).reshape(c, c).to(self.confmat.device)

    def compute(self) -> dict[str, torch.Tensor]:
        cm = self.confmat.double()
        total = cm.sum()
        if total == 0:
            nan = torch.tensor(float("nan"))
            return {"mIoU": nan, "pAcc": nan.clone()}
        inter = cm.diagonal()
        union = cm.sum(dim=0) + cm.sum(dim=1) - inter
        present = union > 0
        miou = (inter[present] / union[present]).mean()
        pacc = inter.sum() / total
        return {"mIoU": (100 * miou).float(), "pAcc": (100 * pacc).float()}
