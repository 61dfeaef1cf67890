"""Cross-Stitch Networks (Misra et al. 2016, "Cross-stitch Networks for Multi-task Learning", Eq. 1) on any
backbone of the registry that can run stage by stage (the built-in CNNs and timm ``features_only`` CNNs).

    x_t^1   = stage_1^(t)(image)                      one backbone copy per task t = 1..T
    x̃_t^i   = Σ_s α_i[c, t, s] · x_s^i                cross-stitch unit after every stage i (per channel c, T×T)
    x_t^i+1 = stage_i+1^(t)(x̃_t^i)
    n_t     = neck_t(x̃_t^1..N)                        each task has its own neck (FPN or deepest stage: task_heads.py)
    shared  = cat_t(n_t)  (B × T·C × h × w, task order)      "shared" tap
    logits_t, feat_t = head_t(shared[:, slice t])     "head.<task>" tap = feat_t

Choices (documented deviations / definitions):

- Init: α_same = 0.9, α_other = 0.1/(T−1) — the paper's (α_S, α_D) = (0.9, 0.1) choice for two tasks (Sec. 5.1,
  Table 2), spread over T−1 others so each row sums to 1 (a single task gets α = 1). The paper's α is one value
  per (channel, t, s) in its "channel-wise" variant; that is the one used here. All copies start from the same
  weights (the paper initialises every copy from the same network); ``pretrained`` is loaded once and copied.
- Stage taps ``"stage<i>"``: the MEAN over tasks of the stitched maps x̃_t^i, so they keep the backbone's channel
  count (``feature_info``) and a distiller sizes them exactly as for ``MultiTaskModel``.
- ``"shared"``: the channel concatenation of the task streams' neck outputs, and each head reads its own slice OF
  THAT TENSOR, so every task loss flows through it — representation-gradient weightings (MGDA-UB) need a ``rep`` that
  all losses reach. Its channels are T·``decoder_channels`` (``taps()`` says so).
- ``shared_parameters()`` = every backbone copy + every cross-stitch unit: strictly a copy belongs to a task, but
  through the stitches (α_other > 0) every copy receives every task's gradient, which is what gradient methods
  (PCGrad, MGDA, ...) need "shared" to mean. ``task_parameters(t)`` = neck_t + head_t. In representation mode
  (MGDA-UB) neck_t sits upstream of "shared", so it receives task t's gradient scaled by that task's MGDA weight.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mtkd.errors import MtkdError
from mtkd.models.backbones import Backbone, ConvNet, make_backbone
from mtkd.models.multitask import Output, check_args, check_image
from mtkd.models.task_heads import head_name, make_neck_and_heads


# --- helpers shared with mtan.py ---------------------------------------------------------------------------------

def per_task_neck_taps(feature_info, necks: nn.ModuleDict, heads: nn.ModuleDict) -> dict[str, tuple[int, int]]:
    """Taps of a model with one neck per task: backbone stages, ``shared`` = the necks' outputs concatenated."""
    out = {fi["name"]: (fi["num_chs"], fi["reduction"]) for fi in feature_info}
    neck = next(iter(necks.values()))
    out["shared"] = (neck.channels * len(necks), neck.reduction)
    for t, head in heads.items():
        out[f"head.{t}"] = (head.channels, neck.reduction)
    return out


def run_heads(heads: nn.ModuleDict, shared: torch.Tensor, size, features: dict) -> dict[str, torch.Tensor]:
    """Head t reads the t-th channel slice of the concatenated ``shared`` map; preds upsampled to ``size``."""
    c = shared.shape[1] // len(heads)
    preds = {}
    for i, (t, head) in enumerate(heads.items()):
        logits, feat = head(shared[:, i * c:(i + 1) * c])
        features[f"head.{t}"] = feat
        preds[t] = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    return preds


def _nhwc(f: torch.Tensor, channels: int) -> bool:
    return f.ndim == 4 and f.shape[1] != channels and f.shape[-1] == channels


def stage_segments(backbone: Backbone) -> list[nn.Module]:
    """The backbone cut into one module per stage (stage i's output = ``feature_info[i]``), for interleaving."""
    if isinstance(backbone, ConvNet):
        return list(backbone.stages)
    body = getattr(backbone, "body", None)
    ret = getattr(body, "return_layers", None)
    if isinstance(body, nn.ModuleDict) and isinstance(ret, dict) and len(ret) == len(backbone.feature_info):
        segments, current = [], []
        for name, module in body.items():
            current.append(module)
            if name in ret:
                segments.append(nn.Sequential(*current))
                current = []
        return segments
    raise MtkdError(f"backbone {getattr(backbone, 'name', type(backbone).__name__)!r} cannot run stage by stage "
                    "(cross_stitch needs a built-in CNN or a timm CNN whose features_only net is a module list; "
                    "on HRNet use arch cross_stitch_hrnet, the units on the task branches)")


# --- the model ---------------------------------------------------------------------------------------------------

class CrossStitchUnit(nn.Module):
    """x̃_t = Σ_s α[c, t, s] x_s, one T×T matrix per channel c (Misra et al. 2016, Eq. 1, channel-wise)."""

    def __init__(self, num_tasks: int, channels: int, alpha_same: float = 0.9):
        super().__init__()
        T = num_tasks
        other = (1.0 - alpha_same) / (T - 1) if T > 1 else 0.0
        init = torch.full((T, T), other) + torch.eye(T) * ((alpha_same if T > 1 else 1.0) - other)
        self.alpha = nn.Parameter(init.expand(channels, T, T).clone())

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        nhwc = _nhwc(xs[0], self.alpha.shape[0])
        view = (1, 1, 1, -1) if nhwc else (1, -1, 1, 1)
        return [sum(self.alpha[:, t, s].view(view).to(x.dtype) * x for s, x in enumerate(xs))
                for t in range(len(xs))]


class CrossStitchModel(nn.Module):
    def __init__(self, backbone: str | Backbone, tasks: dict[str, int], head: str | Mapping[str, str] = "fpn",
                 decoder_channels: int = 64, pretrained: bool | str = False, alpha_same: float = 0.9,
                 head_options: Mapping[str, Mapping[str, Any]] | None = None,
                 backbone_options: Mapping[str, Any] | None = None):
        super().__init__()
        check_args(tasks, decoder_channels)
        if not 0.0 <= float(alpha_same) <= 1.0:
            raise MtkdError(f"cross_stitch alpha_same must be in [0, 1], got {alpha_same!r}")
        self.tasks = dict(tasks)
        self.backbone_name, first = make_backbone(backbone, pretrained, backbone_options)
        stage_segments(first)  # refuse early a backbone that cannot be interleaved
        self.backbones = nn.ModuleDict({t: first if i == 0 else copy.deepcopy(first) for i, t in enumerate(tasks)})
        self.feature_info = [dict(fi) for fi in first.feature_info]
        self.stitches = nn.ModuleList(CrossStitchUnit(len(tasks), fi["num_chs"], alpha_same) for fi in self.feature_info)
        self.head_names, necks, self.heads = make_neck_and_heads(self.feature_info, self.tasks, head,
                                                                 decoder_channels, head_options, len(tasks))
        self.head_name = head_name(self.head_names)
        self.necks = nn.ModuleDict(dict(zip(tasks, necks)))

    def forward(self, image: torch.Tensor) -> Output:
        check_image(image)
        size = image.shape[-2:]
        segs = {t: stage_segments(bb) for t, bb in self.backbones.items()}
        xs = [image] * len(self.tasks)
        per_task: list[list[torch.Tensor]] = [[] for _ in self.tasks]
        features = {}
        for i, (fi, stitch) in enumerate(zip(self.feature_info, self.stitches)):
            xs = stitch([segs[t][i](x) for t, x in zip(self.tasks, xs)])
            for lst, x in zip(per_task, xs):
                lst.append(x.permute(0, 3, 1, 2) if _nhwc(x, fi["num_chs"]) else x)
            features[fi["name"]] = torch.stack([lst[-1] for lst in per_task]).mean(0)
        shared = torch.cat([self.necks[t](lst) for t, lst in zip(self.tasks, per_task)], 1)
        features["shared"] = shared
        preds = run_heads(self.heads, shared, size, features)
        return Output(preds, features)

    def taps(self) -> dict[str, tuple[int, int]]:
        return per_task_neck_taps(self.feature_info, self.necks, self.heads)

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.backbones.parameters()) + list(self.stitches.parameters())

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        if task not in self.heads:
            raise MtkdError(f"unknown task {task!r}; model tasks: {', '.join(self.tasks)}")
        return list(self.necks[task].parameters()) + list(self.heads[task].parameters())


__all__ = ["CrossStitchModel", "CrossStitchUnit"]
