"""Surface-normal metrics: angular error in degrees over every valid pixel of the split.

Per valid pixel, angle = degrees(arccos(clip(<p/|p|, t/|t|>, -1, 1))) (the prediction is L2-normalised here; the
target, a unit vector in the datasets, is normalised too so that a slightly denormalised label after resizing does
not bias the angle). A pixel is valid when its target is finite and not the all-zero vector. Reported, pooled over
*all* valid pixels of the split (MTAN / LibMTL convention; not a mean of per-batch statistics):

- ``mean``: the mean angle (lower is better);
- ``median``: the median angle (lower is better), from a histogram (see below);
- ``11.25``, ``22.5``, ``30``: % of pixels with angle strictly below 11.25, 22.5, 30 degrees (higher is better).

Median with bounded memory and DDP sync: the states hold a histogram of ``bins`` equal bins over [0, 180] degrees
(default 36,000, i.e. 0.005 degree), summed across processes. The value at rank r (0-based) is estimated by linear
interpolation inside the bin that holds rank r: lo + (r - below + 0.5) / count x width. The true value lies in that
bin, so the error is below one bin width; for an even number of pixels the two middle ranks are estimated separately
and averaged (as ``np.median``), so the error stays below one bin width even when the two middle values are far
apart.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric
from mtkd.functional import unit_vectors

__all__ = ["NormalMetrics"]

_THRESHOLDS = (11.25, 22.5, 30.0)
_KEYS = ("11.25", "22.5", "30")


class NormalMetrics(Metric):
    """``update(pred, target)`` with B x 3 x H x W maps; ``compute()`` -> ``{"mean", "median", "11.25", "22.5",
    "30"}`` (degrees, degrees, %, %, %; NaN when no valid pixel was seen)."""

    full_state_update = False
    #: ``compute()``'s keys in table order → higher is better (torchmetrics' ``higher_is_better``, per key)
    higher_is_better_by_key = {"mean": False, "median": False, "11.25": True, "22.5": True, "30": True}

    def __init__(self, bins: int = 36000, **kwargs):
        super().__init__(**kwargs)
        if int(bins) < 1:
            raise ValueError(f"NormalMetrics: bins must be >= 1, got {bins}")
        self.bins = int(bins)
        self.add_state("hist", default=torch.zeros(self.bins, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("sum_angle", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("n_valid", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("n_within", default=torch.zeros(len(_THRESHOLDS), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        if pred.shape != target.shape or pred.dim() != 4 or pred.shape[1] != 3:
            raise ValueError(f"NormalMetrics: expected B x 3 x H x W pred and target, got {tuple(pred.shape)} "
                             f"and {tuple(target.shape)}")
        t = target.detach().double()
        p = pred.detach().double()
        valid = torch.isfinite(t).all(dim=1) & (t != 0).any(dim=1)  # B x H x W
        t = t.permute(0, 2, 3, 1)[valid]  # N x 3
        p = p.permute(0, 2, 3, 1)[valid]
        p = unit_vectors(p)
        t = unit_vectors(t)
        ang = torch.rad2deg(torch.arccos((p * t).sum(dim=1).clamp(-1.0, 1.0)))
        self.sum_angle += ang.sum()
        self.n_valid += float(ang.numel())
        th = torch.tensor(_THRESHOLDS, dtype=torch.float64, device=ang.device)
        self.n_within += (ang[None, :] < th[:, None]).sum(dim=1).double()
        idx = (ang * (self.bins / 180.0)).floor().long().clamp(0, self.bins - 1)
        self.hist += torch.bincount(idx, minlength=self.bins).double()

    def _value_at_rank(self, cum: torch.Tensor, r: int) -> float:
        b = int(torch.searchsorted(cum, torch.tensor(float(r), dtype=cum.dtype), right=True))
        b = min(b, self.bins - 1)
        below = float(cum[b - 1]) if b > 0 else 0.0
        width = 180.0 / self.bins
        return (b + (r - below + 0.5) / float(self.hist[b])) * width

    def compute(self) -> dict[str, torch.Tensor]:
        n = int(round(float(self.n_valid)))
        if n == 0:
            return {k: torch.tensor(float("nan")) for k in ("mean", "median", *_KEYS)}
        cum = self.hist.cumsum(0)
        if n % 2:
            median = self._value_at_rank(cum, n // 2)
        else:
            median = 0.5 * (self._value_at_rank(cum, n // 2 - 1) + self._value_at_rank(cum, n // 2))
        out = {"mean": (self.sum_angle / n).float(), "median": torch.tensor(median, dtype=torch.float32)}
        for k, c in zip(_KEYS, self.n_within):
            out[k] = (100 * c / n).float()
        return out
