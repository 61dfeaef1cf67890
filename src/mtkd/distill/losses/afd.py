"""OKD-MTL's adaptive feature distillation, AFD (Jacob, Agarwal & Stenger, "Online knowledge distillation for
multi-task learning", WACV 2023, seed 002, Eq. 2 and Table 5).

Paper form (``form="paper"``), Eq. 2::

    L_AFD = Σ_l ‖ f_MTL(l) − Σ_i ω_i^l f_STL^i(l) ‖²

with one learnable scalar ω_i^l per layer l and task i, randomly initialised and trained with the network's optimizer.
‖·‖² is reduced as the *mean* over the elements of the layer's map (``F.mse_loss``), then summed over layers as Eq. 2
writes; the plain sum over elements would scale with batch size and resolution and dwarf the task losses. Both maps
must have the same shape (OKD-MTL's single-task nets share the multi-task backbone's architecture).

Public-code form (``form="code"``, the default): per stage a 1×1 adaptor ``A_l`` (C_l→C_l, no bias, Xavier-uniform init)
on the MTL feature, KD4MTL's per-pixel normalisation ``n(f) = f / sqrt(Σ_c f² + 1e-6)`` on both sides, the learnable
per-task, per-stage scalar multiplying the *normalised* single-task feature, KD4MTL's distance (squared difference
summed over channels, averaged over N·H·W), summed over the stages and divided by their number::

    L_AFD = (1/L) Σ_l  mean_px Σ_c ( n(A_l f_MTL(l)) − Σ_i ω_i^l n(f_STL^i(l)) )²          (task_sum="inside")

The project notes on the code do not say whether the task sum sits inside the distance (as in Eq. 2, the default
here) or outside it (one distance per task, ``Σ_i ‖n(A_l f_MTL) − ω_i^l n(f_STL^i)‖²``); ``task_sum="outside"`` gives
the latter. The code form needs ``channels`` (one count per layer) to build the adaptors.

Why the code form is the default: the authors' released code (NYUv2) is the only runnable account of how their
numbers were obtained, its normalised distance makes stages with very different activation scales comparable (with raw
features the largest-magnitude stage dominates Eq. 2), and it matches the KD4MTL distance used elsewhere in mtkd. The
paper form is one argument away (``form="paper"``, which needs no ``channels``).

Weighting modes (Table 5): ``"learned"`` (default, "AFD-ours": ω free, initialised U(0, 1) — the paper says only
"randomly initialised"), ``"equal"`` (ω = 1, fixed), ``"softmax"`` (ω^l = softmax over tasks of learnable logits,
initialised U(0, 1)), ``"select"`` (ω^l = one-hot of the argmax of that softmax; the paper does not say how the
logits learn through the argmax: here a straight-through estimator, forward one-hot, backward the softmax's
gradient). "AFD-last layer" is ``num_layers=1`` fed only the last layer.

The single-task features are detached inside: AFD never reaches the single-task networks (the paper's stop-gradient).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from mtkd.distill.losses._common import as_float, check_4d, match_spatial, teacher_const
from mtkd.distill.losses.feature import normalize_feature
from mtkd.errors import MtkdError

_MODES = ("learned", "equal", "softmax", "select")
_FORMS = ("paper", "code")
_TASK_SUMS = ("inside", "outside")


class AdaptiveFeatureDistillation(nn.Module):
    """AFD loss module: ``forward(mtl_feats, stl_feats)`` → fp32 scalar.

    ``mtl_feats``: list (one per layer) of ``B×C_l×H_l×W_l`` maps of the multi-task backbone;
    ``stl_feats``: ``{task: list per layer}`` of the single-task networks' maps (detached inside).
    """

    def __init__(
        self,
        num_layers: int,
        tasks: Sequence[str],
        mode: str = "learned",
        form: str = "code",
        channels: Sequence[int] | None = None,
        *,
        task_sum: str = "inside",
        eps: float = 1e-6,
    ):
        super().__init__()
        if mode not in _MODES:
            raise MtkdError(f"AdaptiveFeatureDistillation: unknown mode {mode!r}; valid: {', '.join(_MODES)}")
        if form not in _FORMS:
            raise MtkdError(f"AdaptiveFeatureDistillation: unknown form {form!r}; valid: {', '.join(_FORMS)}")
        if task_sum not in _TASK_SUMS:
            raise MtkdError(f"AdaptiveFeatureDistillation: unknown task_sum {task_sum!r}; valid: {', '.join(_TASK_SUMS)}")
        if num_layers < 1 or not tasks:
            raise MtkdError(f"AdaptiveFeatureDistillation: needs ≥ 1 layer and ≥ 1 task, got {num_layers}, {list(tasks)}")
        self.num_layers = int(num_layers)
        self.tasks = list(tasks)
        self.mode = mode
        self.form = form
        self.task_sum = task_sum
        self.eps = eps
        shape = (self.num_layers, len(self.tasks))
        if mode == "equal":
            self.register_buffer("omega", torch.ones(shape))
        else:
            self.omega = nn.Parameter(torch.rand(shape))
        if form == "code":
            if channels is None or len(channels) != self.num_layers:
                raise MtkdError(
                    f"AdaptiveFeatureDistillation: form='code' needs channels= with one count per layer "
                    f"({self.num_layers}), got {channels!r}; or use form='paper'"
                )
            self.channels = [int(c) for c in channels]
            self.adaptors = nn.ModuleList(nn.Conv2d(c, c, 1, bias=False) for c in self.channels)
            for conv in self.adaptors:
                nn.init.xavier_uniform_(conv.weight)
        else:
            self.channels = None if channels is None else [int(c) for c in channels]
            self.adaptors = None

    def weights(self) -> torch.Tensor:
        """The effective ω, ``num_layers × num_tasks`` (rows = layers, columns = ``self.tasks``)."""
        if self.mode in ("learned", "equal"):
            return self.omega
        soft = torch.softmax(self.omega, dim=1)
        if self.mode == "softmax":
            return soft
        hard = F.one_hot(soft.argmax(dim=1), num_classes=soft.shape[1]).to(soft.dtype)
        return hard + (soft - soft.detach())  # straight-through: exactly one-hot forward, softmax gradient backward

    def forward(self, mtl_feats: Sequence[torch.Tensor], stl_feats: Mapping[str, Sequence[torch.Tensor]]) -> torch.Tensor:
        if len(mtl_feats) != self.num_layers:
            raise MtkdError(f"AFD: got {len(mtl_feats)} MTL feature maps, expected {self.num_layers}")
        missing = [t for t in self.tasks if t not in stl_feats]
        if missing:
            raise MtkdError(f"AFD: single-task features missing for task(s) {missing}; got {sorted(stl_feats)}")
        for t in self.tasks:
            if len(stl_feats[t]) != self.num_layers:
                raise MtkdError(f"AFD: task {t!r} has {len(stl_feats[t])} feature maps, expected {self.num_layers}")
        w = self.weights().float()
        total = None
        for l in range(self.num_layers):
            f = mtl_feats[l]
            check_4d(f, f"AFD layer {l} MTL feature")
            teachers = [teacher_const(stl_feats[t][l]) for t in self.tasks]
            ref = teachers[0]
            for t_name, tf in zip(self.tasks, teachers):
                if tf.shape != ref.shape:
                    raise MtkdError(f"AFD layer {l}: task {t_name!r} feature {tuple(tf.shape)} != {tuple(ref.shape)}")
            if f.shape[:2] != ref.shape[:2]:
                raise MtkdError(
                    f"AFD layer {l}: MTL feature B×C {tuple(f.shape[:2])} != single-task B×C {tuple(ref.shape[:2])}"
                )
            if self.form == "paper":
                s = match_spatial(as_float(f), ref)
                target = sum(w[l, i] * tf for i, tf in enumerate(teachers))
                term = F.mse_loss(s, target)
            else:
                if f.shape[1] != self.channels[l]:
                    raise MtkdError(f"AFD layer {l}: MTL feature has {f.shape[1]} channels, adaptor expects {self.channels[l]}")
                a = normalize_feature(as_float(match_spatial(self.adaptors[l](as_float(f)), ref)), "pixel", self.eps)
                normed = [normalize_feature(tf, "pixel", self.eps) for tf in teachers]
                if self.task_sum == "inside":
                    d = a - sum(w[l, i] * n for i, n in enumerate(normed))
                    term = (d * d).sum(dim=1).mean()
                else:
                    term = sum(((a - w[l, i] * n) ** 2).sum(dim=1).mean() for i, n in enumerate(normed))
            total = term if total is None else total + term
        if self.form == "code":
            total = total / self.num_layers
        return total
