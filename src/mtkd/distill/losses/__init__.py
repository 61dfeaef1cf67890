"""Distillation losses as pure PyTorch functions (and small modules where a loss owns parameters or state).

Contract shared by every loss (see ``_common``): dense ``B×C×H×W`` maps, student first and teacher second, fp32
computation, the teacher detached inside, an optional ``B×1×H×W``/``B×H×W`` bool mask for pixel-wise losses, an fp32
scalar returned.

``LOSSES`` names the scalar-valued loss *functions* so recipes can pick one by string::

    from mtkd.distill.losses import get_loss
    loss = get_loss("cwd")(student_logits, teacher_logits, temperature=4.0)

Modules with parameters or state (``AdaptiveFeatureDistillation``, ``FitNetRegressor``, ``TrajectoryBuffer``) are
built by the distillers, not looked up here. ``cs_distill_terms`` (KDAM's inter and intra kept apart) is exported but
not in the table, whose entries all return one scalar; ``"cs"`` is the weighted sum.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mtkd.distill.losses._common import match_spatial
from mtkd.distill.losses.afd import AdaptiveFeatureDistillation
from mtkd.distill.losses.cauchy_schwarz import (
    CSTerms,
    cs_distill_loss,
    cs_distill_terms,
    cs_divergence,
    cs_divergence_log,
)
from mtkd.distill.losses.cwd import cwd_loss
from mtkd.distill.losses.dist import dist_loss, dist_terms, pearson_rows
from mtkd.distill.losses.feature import FitNetRegressor, fitnet_loss, kd4mtl_feature_loss, normalize_feature
from mtkd.distill.losses.kd import kd_loss
from mtkd.distill.losses.prediction import prediction_loss
from mtkd.distill.losses.trajectory import TrajectoryBuffer, attention_map, topk_points, trajectory_loss
from mtkd.registry import suggest

LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "kd": kd_loss,
    "prediction": prediction_loss,
    "dist": dist_loss,
    "cwd": cwd_loss,
    "kd4mtl": kd4mtl_feature_loss,
    "fitnet": fitnet_loss,
    "cs": cs_distill_loss,
}


def get_loss(name: str) -> Callable[..., torch.Tensor]:
    """The loss function called ``name``; an unknown name raises ``MtkdError`` listing the closest valid names."""
    if name not in LOSSES:
        raise suggest(name, LOSSES, "distillation loss")
    return LOSSES[name]


__all__ = [
    "LOSSES",
    "AdaptiveFeatureDistillation",
    "CSTerms",
    "FitNetRegressor",
    "TrajectoryBuffer",
    "attention_map",
    "cs_distill_loss",
    "cs_distill_terms",
    "cs_divergence",
    "cs_divergence_log",
    "cwd_loss",
    "dist_loss",
    "dist_terms",
    "fitnet_loss",
    "get_loss",
    "kd4mtl_feature_loss",
    "kd_loss",
    "match_spatial",
    "normalize_feature",
    "pearson_rows",
    "prediction_loss",
    "topk_points",
    "trajectory_loss",
]
