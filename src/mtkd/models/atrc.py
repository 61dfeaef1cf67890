"""ATRC (Brüggemann, Kanakis, Obukhov, Georgoulis, Van Gool 2021, "Exploring Relational Context for Multi-Task Dense
Prediction", ICCV; Fig. 2–3, Sec. 3) on the HRNet-V2 concatenation (seed 003 Table 1: 5.06 M on NYUD-v2), following
the structure of the authors' code (brdav/atrc, RelationalContextHead).

    x       = HRNet-V2 concatenation at 1/4 (270 channels on HRNet-18)                       "shared"
    f_t     = conv3×3-BN-ReLU(x → C)                task features, C = ``decoder_channels`` (67 = 270/4)  "initial.<t>"
    a_t     = conv1×1(conv1×1-BN-ReLU(detach(x)))   "aux.<t>" = the inner map; auxiliary prediction (only tasks a label context needs; no
                                                    gradient into the backbone, as the reference)  → Output.aux
    c_t←s   = CP_{type(t,s)}(f_t, f_s, a)           one context-pooling block per source s, type ∈ {none, global, local,
                                                    t-label, s-label} (Sec. 3.1–3.2), C/2 channels each
    d_t     = Dropout(conv1×1-BN-ReLU([f_t, BN(conv1×1([c_t←s]_s))]))     (BN zero-initialised: d_t starts as f_t) "head.<t>"
    p_t     = conv1×1(d_t)

Context types (queries from the target f_t, keys/values from the source; conv1×1-BN-ReLU projections):
- global (1): linear attention over all positions with softplus feature maps (Sec. 3.1, "global context");
- local (2): dot-product softmax attention in a 9×9 window around each position (the reference uses a CUDA kernel;
  here ``F.unfold``: positions outside the map are masked out of the softmax — memory B·C/2·81·h·w per block);
- t-label (3) / s-label (4): the source features pooled into one vector per class of the target's (t) or the source's
  (s) auxiliary prediction (spatial softmax per class), then softmax attention over those class vectors.

``preset`` (``model.arch_options.preset``) picks the per-pair types: ``nyud`` and ``pascal_context`` are the
configurations the authors' search found on HRNet18-S (their genotypes/atrc_{nyud,pascal}_hrnet18.json, under
mtkd's task names), ``global`` puts a global context on every pair (any task set; the authors' "global" baseline
head). ``contexts`` ({target: {source: type name}}) gives a configuration by hand. A preset must name every model
task (a subset of its tasks is kept as is); otherwise one line names the tasks and the presets.

Choices / deviations: the reference trains the auxiliary heads on discretised depth (40 bins) and normal clusters with
cross-entropy; here an auxiliary prediction has the task's own channels and loss (deep supervision in the one data
flow), so a regression task's "classes" in a label context are its output channels (1 for depth, 3 for normals).
The reference excludes image-padding positions from the spatial softmax; mtkd inputs carry no padding marker.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from mtkd.errors import MtkdError
from mtkd.models.backbones import conv_bn_relu
from mtkd.models.decoder_base import DecoderModel

TYPES = {"none": 0, "global": 1, "local": 2, "tlabel": 3, "slabel": 4}
_NAMES = {v: k for k, v in TYPES.items()}


def _preset(order: list[str], rows: list[list[int]]) -> dict[str, dict[str, str]]:
    return {t: {s: _NAMES[c] for s, c in zip(order, row)} for t, row in zip(order, rows)}


# The searched configurations published with ATRC (HRNet18-S), target rows × source columns.
PRESETS: dict[str, dict[str, dict[str, str]]] = {
    "nyud": _preset(["semseg", "depth", "normal", "edge"],
                    [[3, 3, 4, 4], [4, 3, 4, 4], [4, 3, 3, 4], [3, 3, 1, 3]]),
    "pascal_context": _preset(["semseg", "parts", "sal", "normal", "edge"],
                              [[3, 3, 4, 0, 4], [3, 3, 4, 3, 4], [3, 3, 3, 4, 3], [3, 3, 3, 3, 4], [3, 3, 3, 1, 3]]),
}


def resolve_contexts(tasks: list[str], preset: str | None, contexts: Mapping | None) -> dict[str, dict[str, str]]:
    """{target: {source: type}} for ``tasks`` from a preset name or a hand-written mapping; bad input is one line."""
    names = ", ".join([*PRESETS, "global"])
    if contexts is not None:
        if preset not in (None, "custom"):
            raise MtkdError("atrc: give model.arch_options.preset or .contexts, not both")
        out = {}
        for t in tasks:
            row = contexts.get(t) if isinstance(contexts, Mapping) else None
            if not isinstance(row, Mapping) or any(s not in row for s in tasks):
                raise MtkdError(f"atrc contexts must map every target task to every source task ({', '.join(tasks)}); "
                                f"target {t!r} has {sorted(row) if isinstance(row, Mapping) else row!r}")
            for s in tasks:
                if row[s] not in TYPES:
                    raise MtkdError(f"atrc contexts[{t}][{s}] = {row[s]!r}; types: {', '.join(TYPES)}")
            out[t] = {s: row[s] for s in tasks}
        return out
    preset = "global" if preset is None else preset
    if preset == "global":
        return {t: dict.fromkeys(tasks, "global") for t in tasks}
    if preset not in PRESETS:
        raise MtkdError(f"atrc preset {preset!r} unknown; presets: {names} (or arch_options.contexts)")
    missing = [t for t in tasks if t not in PRESETS[preset]]
    if missing:
        covers = "; ".join(f"{p}: {', '.join(PRESETS[p])}" for p in PRESETS)
        raise MtkdError(f"atrc preset {preset!r} does not cover task(s) {', '.join(missing)} of the model "
                        f"({', '.join(tasks)}); presets cover {covers}; 'global' covers any task set")
    return {t: {s: PRESETS[preset][t][s] for s in tasks} for t in tasks}


def _proj(cin: int, cout: int, last_relu: bool = True, softplus: bool = False) -> nn.Sequential:
    """Two conv1×1-BN(-ReLU) layers (query/key projections of the reference)."""
    layers = [conv_bn_relu(cin, cout, k=1), nn.Conv2d(cout, cout, 1, bias=False), nn.BatchNorm2d(cout)]
    if last_relu:
        layers.append(nn.ReLU(inplace=True))
    if softplus:
        layers.append(nn.Softplus())
    return nn.Sequential(*layers)


class ContextBlock(nn.Module):
    """One CP block t ← s of type ``kind`` (global / local / tlabel / slabel); output C_att channels at f_t's size."""

    def __init__(self, kind: str, cin: int, cout: int, window: int = 9):
        super().__init__()
        self.kind, self.window = kind, window
        self.query = _proj(cin, cout, last_relu=kind != "global", softplus=kind == "global")
        self.key = _proj(cin, cout, last_relu=kind != "global", softplus=kind == "global")
        self.value = conv_bn_relu(cin, cout, k=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)

    def forward(self, target, source, target_prob=None, source_prob=None):
        B, _, H, W = target.shape
        q = self.query(target)
        if self.kind == "global":  # linear attention: V(q) = (Σ_j v_j k_jᵀ) q / (Σ_j k_j)ᵀ q
            k, v = self.key(source).flatten(2), self.value(source).flatten(2)
            q = q.flatten(2)
            num = torch.bmm(torch.bmm(v, k.transpose(1, 2)), q)
            den = torch.bmm(k.sum(2, keepdim=True).transpose(1, 2), q).clamp_min(1e-12)
            return (num / den).view(B, -1, H, W)
        if self.kind == "local":
            k, v = self.key(source), self.value(source)
            r, d = self.window, k.shape[1]
            pad = r // 2
            kk = F.unfold(k, r, padding=pad).view(B, d, r * r, H * W)
            vv = F.unfold(v, r, padding=pad).view(B, v.shape[1], r * r, H * W)
            inside = F.unfold(torch.ones(1, 1, H, W, device=k.device, dtype=k.dtype), r, padding=pad).view(1, r * r, H * W)
            sim = (q.flatten(2).unsqueeze(2) * kk).sum(1) / math.sqrt(d)
            w = sim.masked_fill(inside == 0, float("-inf")).softmax(1)
            return (vv * w.unsqueeze(1)).sum(2).view(B, -1, H, W)
        prob = target_prob if self.kind == "tlabel" else source_prob  # B × K × HW, a spatial softmax per class
        ctx = torch.bmm(prob, source.flatten(2).transpose(1, 2)).transpose(1, 2).unsqueeze(3)  # B × C × K × 1
        k, v = self.key(ctx).flatten(2), self.value(ctx).flatten(2)  # B × c × K
        att = torch.bmm(q.flatten(2).transpose(1, 2), k).div(q.shape[1] ** 0.5).softmax(-1)  # B × HW × K
        return torch.bmm(att, v.transpose(1, 2)).transpose(1, 2).reshape(B, -1, H, W)


class ATRC(DecoderModel):
    arch = "atrc"

    def __init__(self, backbone, tasks, preset: str | None = None, contexts: Mapping | None = None,
                 dropout: float = 0.05, **kw):
        super().__init__(backbone, tasks, **kw)
        names = list(self.tasks)
        self.contexts = resolve_contexts(names, preset, contexts)
        self.preset = preset if contexts is None else "custom"
        cin, C = self.neck.channels, self.channels
        att = max(1, C // 2)
        self.features_ = nn.ModuleDict({t: conv_bn_relu(cin, C) for t in names})
        self.aux_tasks = [t for t in names
                          if any(self.contexts[t][s] == "tlabel" for s in names)
                          or any(self.contexts[u][t] == "slabel" for u in names)]
        self.aux_conv = nn.ModuleDict({t: conv_bn_relu(cin, cin, k=1) for t in self.aux_tasks})
        self.aux_logits = nn.ModuleDict({t: nn.Conv2d(cin, self.tasks[t], 1) for t in self.aux_tasks})
        self.blocks = nn.ModuleDict()
        self.out_proj = nn.ModuleDict()
        self.bottleneck = nn.ModuleDict()
        for t in names:
            srcs = [s for s in names if self.contexts[t][s] != "none"]
            blocks = nn.ModuleDict({s: ContextBlock(self.contexts[t][s], C, att) for s in srcs})
            blocks.keyed_by_task = False  # keyed by source: every block belongs to its target t
            self.blocks[t] = blocks
            if srcs:
                proj = nn.Sequential(nn.Conv2d(att * len(srcs), C, 1, bias=False), nn.BatchNorm2d(C))
                nn.init.zeros_(proj[1].weight)  # zero-init (reference): d_t starts from f_t alone
                self.out_proj[t] = proj
            self.bottleneck[t] = nn.Sequential(conv_bn_relu(C * (2 if srcs else 1), C, k=1), nn.Dropout2d(dropout))
        self.final_logits = nn.ModuleDict({t: nn.Conv2d(C, c, 1) for t, c in self.tasks.items()})

    def decode(self, stages, shared, features):
        feats = {t: self.features_[t](shared) for t in self.tasks}
        detached = shared.detach()
        aux = {}
        for t in self.aux_tasks:
            features[f"aux.{t}"] = a = self.aux_conv[t](detached)
            aux[t] = self.aux_logits[t](a)
        size = next(iter(feats.values())).shape[-2:]
        prob = {t: F.interpolate(a, size=size, mode="bilinear", align_corners=False).flatten(2).softmax(-1)
                if a.shape[-2:] != size else a.flatten(2).softmax(-1) for t, a in aux.items()}
        preds = {}
        for t in self.tasks:
            features[f"initial.{t}"] = feats[t]
            outs = [blk(feats[t], feats[s], prob.get(t), prob.get(s)) for s, blk in self.blocks[t].items()]
            d = torch.cat([feats[t], self.out_proj[t](torch.cat(outs, 1))], 1) if outs else feats[t]
            d = self.bottleneck[t](d)
            features[f"head.{t}"] = d
            preds[t] = self.final_logits[t](d)
        return preds, {t: (a,) for t, a in aux.items()}

    def decoder_taps(self):
        r = self.neck.reduction
        return {**{f"initial.{t}": (self.channels, r) for t in self.tasks},
                **{f"aux.{t}": (self.neck.channels, r) for t in self.aux_tasks},
                **{f"head.{t}": (self.channels, r) for t in self.tasks}}


__all__ = ["ATRC", "ContextBlock", "PRESETS", "TYPES", "resolve_contexts"]
