"""Depth metrics pooled over every valid pixel of the split: abs, rel, RMSE, log-RMSE and delta1.

With e = p - t over the valid pixels V of *all* images (not a mean of per-batch or per-image means):

- abs_err  = sum |e| / |V|                         (MTAN / LibMTL "abs", lower is better)
- rel_err  = sum |e| / t / |V|                     (MTAN "rel", lower is better)
- rmse     = sqrt(sum e^2 / |V|)                   (lower is better)
- log_rmse = sqrt(sum (ln max(p, 1e-6) - ln t)^2 / |V|)   (natural log, lower is better)
- delta1   = 100 * #{max(p'/t, t/p') < 1.25} / |V| with p' = max(p, 1e-6)   (%, higher is better; the clamp keeps a
  non-positive prediction from passing the test through a negative ratio)

Valid pixels: finite target with t > 0 (0 is the datasets' "invalid" marker; a negative or non-finite target is not a
depth either). States are float64 sums and a count with ``dist_reduce_fx="sum"``, so DDP sync is exact pooling.

Evaluation range (``min_depth``, ``max_depth``; default none): the depth-benchmark protocol (Eigen et al. 2014, the
KITTI split's 1e-3–80 m): only targets in [min_depth, max_depth] count, and predictions are clamped into the same
range before the errors. The run-level equivalent is ``data.depth_range`` (a validity mask on the targets for
training and every split, without clamping predictions).
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

__all__ = ["DepthMetrics"]

_EPS = 1e-6
_SUMS = ("sum_abs", "sum_rel", "sum_sq", "sum_log_sq", "n_delta1", "n_valid")


class DepthMetrics(Metric):
    """``update(pred, target)`` with B x 1 x H x W maps; ``compute()`` -> ``{"abs_err", "rel_err", "rmse",
    "log_rmse", "delta1"}`` (NaN when no valid pixel was seen)."""

    full_state_update = False
    #: ``compute()``'s keys in table order → higher is better (torchmetrics' ``higher_is_better``, per key)
    higher_is_better_by_key = {"abs_err": False, "rel_err": False, "rmse": False, "log_rmse": False,
                               "delta1": True}

    def __init__(self, min_depth: float = 0.0, max_depth: float | None = None, **kwargs):
        super().__init__(**kwargs)
        hi = float("inf") if max_depth is None else float(max_depth)
        if not 0 <= float(min_depth) < hi:
            raise ValueError(f"DepthMetrics: need 0 ≤ min_depth < max_depth, got {min_depth}, {max_depth}")
        self.min_depth, self.max_depth = float(min_depth), hi
        for name in _SUMS:
            self.add_state(name, default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        if pred.shape != target.shape:
            raise ValueError(f"DepthMetrics: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
        t = target.detach().double()
        valid = torch.isfinite(t) & (t > 0) & (t >= self.min_depth) & (t <= self.max_depth)
        t = t[valid]
        p = pred.detach().double()[valid]
        if self.min_depth > 0 or self.max_depth < float("inf"):
            p = p.clamp(min=self.min_depth, max=self.max_depth)
        e = p - t
        pc = p.clamp(min=_EPS)
        self.sum_abs += e.abs().sum()
        self.sum_rel += (e.abs() / t).sum()
        self.sum_sq += (e * e).sum()
        self.sum_log_sq += ((pc.log() - t.log()) ** 2).sum()
        self.n_delta1 += (torch.maximum(pc / t, t / pc) < 1.25).sum().double()
        self.n_valid += float(t.numel())

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.n_valid
        if n == 0:
            return {k: torch.tensor(float("nan")) for k in ("abs_err", "rel_err", "rmse", "log_rmse", "delta1")}
        return {"abs_err": (self.sum_abs / n).float(), "rel_err": (self.sum_rel / n).float(),
                "rmse": (self.sum_sq / n).sqrt().float(), "log_rmse": (self.sum_log_sq / n).sqrt().float(),
                "delta1": (100 * self.n_delta1 / n).float()}
