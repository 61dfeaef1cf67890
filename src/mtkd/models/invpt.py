"""InvPT: Inverted Pyramid multi-task Transformer (Ye & Xu, ECCV 2022, "Inverted Pyramid Multi-task Transformer for
Dense Scene Understanding"; Fig. 2–4, Sec. 3), after the paper and the authors' code (prismformore/Multi-Task-Transformer,
InvPT/models/transformers/{transformer_decoder,invpt}.py: read, not copied). Seed 003 Table 2 distils "InvPT-T"
(InvPT on Swin-T) from a Swin-L multi-task teacher.

    x      = deepest backbone stage, resized to the decoder's start grid (1/32: Swin as is; ViT's 1/16 halved)  "shared"
    f_t    = conv3×3-BN-ReLU ×2 (C_last → C_last → E)(x)          task-specific preliminary decoder   "initial.<t>"
    p0_t   = conv1×1(f_t)                                            initial prediction (Output.aux: deep supervision)
    z_t^0  = conv1×1([f_t, p0_t] → D0),  D0 = E + 64
    for stage s = 0, 1, 2 (UP-Transformer blocks at 1/32, 1/16, 1/8; widths D0, D0/2, D0/4):
      s > 0: z_t^s = UpEmbed_t(z_t^{s-1}) + skip_s(backbone stage at that scale)   (×2 bilinear, 2× dilated 3×3
             conv-BN-ReLU; skip = 3×3 conv, or 3×3 stride-2 transposed conv from a 2× coarser map, as ViT's)
      Z = [z_1; …; z_T] as one token sequence (all tasks, all positions): cross-task self-attention
          q_t = dw-conv3×3-BN, stride 2 (per task);  k_t, v_t = average pool of z_t to the stage-0 key grid
          A_s = (Wq q)(Wk k)ᵀ · D_s^-½;  s > 0: A_s = conv1×1([A_s, up(A_{s-1})]) over heads  (attention message
          passing, Sec. 3.4: the previous stage's scores, upsampled on the query grid, fused with the current ones)
          Z ← Z + DropPath(Wo softmax(A_s) Wv v  upsampled back to the stage's grid);  Z ← Z + DropPath(MLP(LN Z))
      m_t^s = slice_t(LN_s([Z over tasks, channel-wise]))   (s > 0: conv1×1 → D0), upsampled to 1/4
    g_t    = conv3×3-BN-ReLU(Σ_s m_t^s)                                                             "head.<t>"
    pred_t = conv1×1(g_t), upsampled to the input

Defaults are the authors' NYUD/PASCAL configuration: E = ``embed_dim`` 512, 64 prediction channels
(``pred_channels``), 2 heads, MLP ratio 4, drop path 0.15, query stride 2, key/value strides 2/4/8 (one key grid
for every stage: the stage-0 grid halved). Choices the paper leaves open or that differ from the code (stated):
- Grids are computed for any input the backbone takes: stage s is 2^s × the start grid (ceil), queries use
  ``ceil(side/2)``, keys an adaptive average pool to the stage-0 key grid (equal to the code's stride-2/4/8 pooling
  when the sides divide), the message scores are resized to the current query grid (the code's ×2 when divisible).
- The code builds a message-fusion conv in stage 0 and a skip projection from the third backbone map that no path
  uses (parameters that never get a gradient); they are left out.
- Skips (``skip_stages``): on a pyramid backbone (Swin, HRNet, the built-in CNNs) the stage whose reduction equals the
  decoder stage's (Swin: stage 3 at 1/16, stage 2 at 1/8); on a uniform one (ViT, all 1/16) the code's choice, the
  second and first selected maps (ViT-L: blocks 12 and 6). The start grid is the deepest map halved on a uniform
  backbone (the code's ``mtt_resolution_downsample_rate: 2``) and the deepest map itself on a pyramid.
- The attention scale is D_s^-½ (the whole width, as in the code), not the per-head width.
- ``shared_parameters()``: backbone + every module acting on all tasks' tokens at once (skip projections, block
  norms, q/k/v/out projections, message fusion, MLPs, stage norms); ``task_parameters(t)``: modules keyed by t
  (preliminary decoder, initial head, mixing conv, UpEmbeds, query convs, reductions, final conv and head). Through
  cross-task attention a task's loss reaches the other tasks' modules too (by design of the model).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mtkd.errors import MtkdError
from mtkd.models.backbones import conv_bn_relu
from mtkd.models.decoder_base import up
from mtkd.models.neck import DeepestStage
from mtkd.models.transformer_blocks import DropPath, Mlp, TransformerDecoderModel, positive_int, to_map, tokens

STAGES = 3


class UpEmbed(nn.Module):
    """×2 upsampling (to the stage's grid) then two 3×3 dilation-2 conv-BN-ReLU (the code's ``UpEmbed``)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=2, dilation=2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=2, dilation=2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor, size) -> torch.Tensor:
        return self.body(up(x, size))


class CrossTaskAttention(nn.Module):
    """Self-attention over every task's tokens at once, strided queries, pooled keys, optional message fusion."""

    def __init__(self, tasks, dim: int, heads: int, fuse_messages: bool, q_stride: int = 2):
        super().__init__()
        if dim % heads:
            raise MtkdError(f"invpt: stage width {dim} is not divisible by heads={heads}")
        self.heads, self.scale = heads, dim ** -0.5
        self.q_conv = nn.ModuleDict({t: nn.Sequential(nn.Conv2d(dim, dim, 3, q_stride, 1, groups=dim, bias=False),
                                                      nn.BatchNorm2d(dim)) for t in tasks})
        self.proj_q, self.proj_k, self.proj_v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.fuse = nn.Conv2d(2 * heads, heads, 1) if fuse_messages else None

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        return x.reshape(b, n, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, maps: dict[str, torch.Tensor], kv_grid, message: torch.Tensor | None):
        qmaps = [self.q_conv[t](m) for t, m in maps.items()]
        qgrid = qmaps[0].shape[-2:]
        q = self._heads(self.proj_q(torch.cat([tokens(m) for m in qmaps], 1)))
        kv = torch.cat([tokens(F.adaptive_avg_pool2d(m, kv_grid)) for m in maps.values()], 1)
        k, v = self._heads(self.proj_k(kv)), self._heads(self.proj_v(kv))
        scores = q @ k.transpose(-2, -1) * self.scale  # B×H×(T·q)×(T·kv)
        if self.fuse is not None:
            if message is None:
                raise MtkdError("invpt: a stage with message fusion needs the previous stage's attention")
            scores = self.fuse(torch.cat([scores, self._resize_queries(message, qgrid, len(maps))], 1))
        attn = scores.softmax(-1)
        out = self.proj((attn @ v).transpose(1, 2).flatten(2))  # B×(T·q)×D
        n = qgrid[0] * qgrid[1]
        grid = next(iter(maps.values())).shape[-2:]
        return [up(to_map(out[:, i * n:(i + 1) * n], qgrid), grid) for i in range(len(maps))], scores

    @staticmethod
    def _resize_queries(scores: torch.Tensor, qgrid, n_tasks: int) -> torch.Tensor:
        """Previous scores B×H×(T·hp·wp)×K → B×H×(T·h·w)×K, each task's query grid resized bilinearly."""
        b, h, nq, k = scores.shape
        n = nq // n_tasks
        hp, wp = _grid_of(n, qgrid)
        out = []
        for chunk in scores.split(n, dim=2):
            m = chunk.permute(0, 1, 3, 2).reshape(b * h, k, hp, wp)
            m = F.interpolate(m, size=qgrid, mode="bilinear", align_corners=False)
            out.append(m.reshape(b, h, k, -1).permute(0, 1, 3, 2))
        return torch.cat(out, 2)


def _grid_of(n: int, qgrid) -> tuple[int, int]:
    """The previous query grid (hp, wp) with hp·wp = n and the aspect ratio of the current grid (ceil halving)."""
    hp, wp = math.ceil(qgrid[0] / 2), math.ceil(qgrid[1] / 2)
    if hp * wp == n:
        return hp, wp
    raise MtkdError(f"invpt: previous query grid of {n} tokens does not fit the current {tuple(qgrid)} grid")


class InvPTBlock(nn.Module):
    """One UP-Transformer block: x + DropPath(attn(LN x)), then x + DropPath(MLP(LN x)), on all tasks' tokens."""

    def __init__(self, tasks, dim: int, heads: int, mlp_ratio: float, drop_path: float, fuse_messages: bool):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = CrossTaskAttention(tasks, dim, heads, fuse_messages)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, maps: dict[str, torch.Tensor], kv_grid, message):
        grid = next(iter(maps.values())).shape[-2:]
        x = torch.cat([tokens(m) for m in maps.values()], 1)
        normed = self.norm1(x).split(grid[0] * grid[1], 1)
        outs, scores = self.attn({t: to_map(n, grid) for t, n in zip(maps, normed)}, kv_grid, message)
        x = x + self.drop_path(torch.cat([tokens(o) for o in outs], 1))
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return {t: to_map(n, grid) for t, n in zip(maps, x.split(grid[0] * grid[1], 1))}, scores


class InvPT(TransformerDecoderModel):
    arch = "invpt"

    def __init__(self, backbone, tasks, embed_dim: int = 512, pred_channels: int = 64, heads: int = 2,
                 mlp_ratio: float = 4.0, drop_path: float = 0.15, kv_stride: int = 2,
                 start_downsample: int | None = None, skip_stages: list[int] | None = None, grad_checkpointing: bool = False,
                 **kwargs):
        super().__init__(backbone, tasks, grad_checkpointing=grad_checkpointing, **kwargs)
        positive_int("invpt", embed_dim=embed_dim, pred_channels=pred_channels, heads=heads, kv_stride=kv_stride)
        info = self.backbone.feature_info
        self.neck = DeepestStage(info)  # "shared" = the decoder's input, which every task loss reaches
        uniform = len({fi["reduction"] for fi in info}) == 1
        self.start_downsample = start_downsample if start_downsample is not None else (2 if uniform else 1)
        positive_int("invpt", start_downsample=self.start_downsample)
        self.kv_stride = kv_stride
        r0 = info[-1]["reduction"] * self.start_downsample
        if r0 % 2 ** STAGES:
            raise MtkdError(f"invpt: the decoder starts at 1/{r0} and upsamples ×{2 ** STAGES}; it needs a start "
                            f"reduction that is a multiple of {2 ** STAGES} (raise arch_options.start_downsample)")
        self.reductions = [r0 // 2 ** s for s in range(STAGES + 1)]  # stages 0..2, then the output grid
        self.skip_stages = self._skips(info, uniform, skip_stages)
        c_last, T = info[-1]["num_chs"], list(self.tasks)
        D0 = embed_dim + pred_channels
        dims = [D0 // 2 ** s for s in range(STAGES)]
        self.embed_dim, self.dims = embed_dim, dims
        self.preliminary = nn.ModuleDict({t: nn.Sequential(conv_bn_relu(c_last, c_last), conv_bn_relu(c_last, embed_dim))
                                          for t in T})
        self.initial_logits = nn.ModuleDict({t: nn.Conv2d(embed_dim, c, 1) for t, c in self.tasks.items()})
        self.mix = nn.ModuleDict({t: nn.Conv2d(embed_dim + c, D0, 1) for t, c in self.tasks.items()})
        self.skip_proj = nn.ModuleList(self._skip_proj(info[j], dims[s], self.reductions[s])
                                       for s, j in zip(range(1, STAGES), self.skip_stages))
        self.up_embed = nn.ModuleList(nn.ModuleDict({t: UpEmbed(dims[s - 1], dims[s]) for t in T})
                                      for s in range(1, STAGES))
        self.blocks = nn.ModuleList(InvPTBlock(T, dims[s], heads, mlp_ratio, drop_path, fuse_messages=s > 0)
                                    for s in range(STAGES))
        self.stage_norms = nn.ModuleList(nn.LayerNorm(len(T) * d) for d in dims)
        self.reduce = nn.ModuleList(nn.ModuleDict({t: nn.Conv2d(dims[s], D0, 1) for t in T}) for s in range(1, STAGES))
        self.fuse = nn.ModuleDict({t: nn.Sequential(nn.Conv2d(D0, D0, 3, padding=1), nn.BatchNorm2d(D0),
                                                    nn.ReLU(inplace=True)) for t in T})
        self.final_logits = nn.ModuleDict({t: nn.Conv2d(D0, c, 1) for t, c in self.tasks.items()})

    def _skips(self, info, uniform: bool, skip_stages) -> list[int]:
        n = len(info)
        if skip_stages is not None:
            skips = [int(j) for j in skip_stages]
            if len(skips) != STAGES - 1 or not all(0 <= j < n for j in skips):
                raise MtkdError(f"invpt: skip_stages must be {STAGES - 1} backbone stage indices in 0..{n - 1}, "
                                f"got {list(skip_stages)!r}")
            return skips
        if uniform:
            if n < STAGES:
                raise MtkdError(f"invpt: a uniform-stride backbone needs ≥ {STAGES} feature maps (out_indices), got {n}")
            return [n - 2 - s for s in range(1, STAGES)]
        skips = []
        for s in range(1, STAGES):
            match = [j for j, fi in enumerate(info) if fi["reduction"] == self.reductions[s]]
            if not match:
                raise MtkdError(f"invpt: no backbone stage at 1/{self.reductions[s]} for decoder stage {s}; set "
                                f"arch_options.skip_stages (backbone reductions {[fi['reduction'] for fi in info]})")
            skips.append(match[-1])
        return skips

    @staticmethod
    def _skip_proj(fi: dict, cout: int, reduction: int) -> nn.Module:
        if fi["reduction"] == 2 * reduction:  # a 2× coarser map (ViT at 1/16 for the 1/8 stage): transposed conv
            return nn.ConvTranspose2d(fi["num_chs"], cout, 3, stride=2, padding=1, output_padding=1)
        return nn.Conv2d(fi["num_chs"], cout, 3, padding=1)

    def decode(self, stages, shared, features):
        h, w = shared.shape[-2:]
        grid0 = (math.ceil(h / self.start_downsample), math.ceil(w / self.start_downsample))
        out_grid = (grid0[0] * 2 ** STAGES, grid0[1] * 2 ** STAGES)
        kv_grid = (math.ceil(grid0[0] / self.kv_stride), math.ceil(grid0[1] / self.kv_stride))
        x = up(shared, grid0)
        maps, initial = {}, {}
        for t in self.tasks:
            f = self.preliminary[t](x)
            features[f"initial.{t}"] = f
            initial[t] = self.initial_logits[t](f)
            maps[t] = self.mix[t](torch.cat([f, initial[t]], 1))
        acc, message = {}, None
        for s, block in enumerate(self.blocks):
            if s > 0:
                grid = (grid0[0] * 2 ** s, grid0[1] * 2 ** s)
                skip = up(self.skip_proj[s - 1](stages[self.skip_stages[s - 1]]), grid)
                maps = {t: self.up_embed[s - 1][t](m, grid) + skip for t, m in maps.items()}
            maps, message = self.ckpt(block, maps, kv_grid, message)
            normed = self.stage_norms[s](torch.cat(list(maps.values()), 1).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            for t, m in zip(self.tasks, normed.split(self.dims[s], 1)):
                m = self.reduce[s - 1][t](m) if s > 0 else m
                acc[t] = acc[t] + up(m, out_grid) if t in acc else up(m, out_grid)
        preds = {}
        for t in self.tasks:
            g = self.fuse[t](acc[t])
            features[f"head.{t}"] = g
            preds[t] = self.final_logits[t](g)
        return preds, {t: (initial[t],) for t in self.tasks}

    def decoder_taps(self) -> dict[str, tuple[int, int]]:
        D0 = self.dims[0]
        return {**{f"initial.{t}": (self.embed_dim, self.reductions[0]) for t in self.tasks},
                **{f"head.{t}": (D0, self.reductions[-1]) for t in self.tasks}}


__all__ = ["InvPT"]
