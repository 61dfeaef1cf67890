"""Evaluation metrics, each pooled over the whole split with summed (DDP-syncable) states, and Delta_m."""

from mtkd.metrics.boundary import BoundaryF
from mtkd.metrics.delta import delta_m, per_task_delta
from mtkd.metrics.depth import DepthMetrics
from mtkd.metrics.edge import EdgeMetrics
from mtkd.metrics.normal import NormalMetrics
from mtkd.metrics.saliency import SaliencyMetrics
from mtkd.metrics.semseg import SemsegMetrics

__all__ = ["SemsegMetrics", "DepthMetrics", "NormalMetrics", "EdgeMetrics", "BoundaryF", "SaliencyMetrics",
           "delta_m", "per_task_delta", "METRIC_DIRECTIONS"]


def __getattr__(name: str):
    """``METRIC_DIRECTIONS`` lives in :mod:`mtkd.tasks` (derived from the classes above); read lazily, no cycle."""
    if name == "METRIC_DIRECTIONS":
        from mtkd.tasks import METRIC_DIRECTIONS
        return METRIC_DIRECTIONS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
