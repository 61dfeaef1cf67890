"""DeMT: Deformable Mixer Transformer for multi-task dense prediction (Xu, Yang & Zhang, AAAI 2023; Fig. 2, Sec. 3),
after the paper and the authors' code (yangyangxu0/DeMT, src/model/heads/demt_head.py: read, not copied). Seed 003
Table 2 distils DeMT-T and DeMT-S (DeMT on Swin-T / Swin-S) from a Swin-L multi-task teacher.

    x     = concatenation of every backbone stage at the finest one's grid (1/4 on Swin; 1440 ch on Swin-T)  "shared"
    x     = LN(Linear(x → d))                                        d = ``dim`` 256
    deformable mixer encoder (per task t, Sec. 3.2):
      y_t = BN(GELU(conv1×1(x)))                                    channel mixing
      f_t = y_t + BN(GELU(DeformConv1×1_t(y_t)))                    spatial mixing: each channel c is sampled at its
            own learned offset (deform_conv2d with one offset group per channel: "channel-split deformable conv")
    task-aware transformer decoder (Sec. 3.3):
      Z   = LN(Linear(MHSA([f_1; …; f_T])))                         task interaction over all tasks' tokens
      g_t = f_t + LN(Linear(MHA_t(q = f_t, k = v = Z)))              task query: each task reads what it needs
    h_t   = conv3×3-BN-ReLU(g_t → C/8)                                                               "head.<t>"
    pred_t = conv1×1(h_t), upsampled to the input

Choices the paper leaves open or that differ from the code (stated):
- The code feeds batch-first tensors to sequence-first ``nn.MultiheadAttention``: its "task interaction" and "task
  query" attend across the images of a batch. mtkd attends across tokens as the paper describes; keys and values
  are average-pooled per task map by ``kv_stride`` (default 8: 1/32 keys for 1/4 queries) because full attention
  over T·h·w tokens at 1/4 of 480×640 (76 800 tokens) does not fit any GPU. ``kv_stride: 1`` is full attention.
- The offsets follow the code: a zero-initialised 3×3 conv gives 2·9 offsets, added to the absolute sampling
  grid (1-based pixel coordinates + the 3×3 kernel grid), and a grouped 3×3 conv maps these 18 coordinates to the
  2·d per-channel offsets of the 1×1 deformable conv. The code's backward hook meant to scale the offset
  learning rate by 0.1 returns nothing (a no-op) and is not reproduced; its unused offset buffer is left out.
- Widths as the code: d = 256, 4 heads, head width C/8 (``head_channels`` overrides it). ``dim``, ``heads``,
  ``kv_stride``, ``head_channels`` and ``grad_checkpointing`` are ``model.arch_options``.
- The deformable conv runs in float32 (torchvision's kernel has no bf16), everything else follows autocast.
- ``shared_parameters()``: backbone, input projection, task interaction (attention + MLP); ``task_parameters(t)``:
  t's mixer, task-query attention + MLP, head.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import deform_conv2d

from mtkd.models.transformer_blocks import TaskHeads, TokenAttention, TransformerDecoderModel, pool_tokens, \
    positive_int, to_map, tokens


class ChannelSplitDeformConv(nn.Module):
    """1×1 deformable conv whose every input channel has its own (dy, dx) offset (the code's ``ChlSpl``)."""

    def __init__(self, dim: int, k: int = 3):
        super().__init__()
        self.k = k
        self.weight = nn.Parameter(torch.empty(dim, dim, 1, 1))
        self.bias = nn.Parameter(torch.empty(dim))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)
        nn.init.uniform_(self.bias, -dim ** -0.5, dim ** -0.5)
        self.p_conv = nn.Conv2d(dim, 2 * k * k, 3, padding=1)
        nn.init.zeros_(self.p_conv.weight)
        self.coords_to_offsets = nn.Conv2d(2 * k * k, 2 * dim, 3, padding=1, groups=2)

    def _grid(self, h: int, w: int, ref: torch.Tensor) -> torch.Tensor:
        """1×2k²×h×w: rows then columns of (1-based pixel position + k×k kernel displacement), as the code's p0+pn."""
        r = (self.k - 1) // 2
        kr, kc = torch.meshgrid(torch.arange(-r, r + 1), torch.arange(-r, r + 1), indexing="ij")
        rows = torch.arange(1, h + 1).view(1, h, 1) + kr.reshape(-1, 1, 1)
        cols = torch.arange(1, w + 1).view(1, 1, w) + kc.reshape(-1, 1, 1)
        g = torch.cat([rows.expand(-1, h, w), cols.expand(-1, h, w)], 0)
        return g.unsqueeze(0).to(ref)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        offsets = self.coords_to_offsets(self.p_conv(x) + self._grid(h, w, x))
        with torch.autocast(device_type=x.device.type, enabled=False):
            return deform_conv2d(x.float(), offsets.float(), self.weight.float(), self.bias.float()).to(x.dtype)


class DeformableMixer(nn.Module):
    """One DeMT mixer block: channel mixing (1×1 conv, GELU, BN), then residual spatial mixing (deformable)."""

    def __init__(self, dim: int):
        super().__init__()
        self.channel = nn.Sequential(nn.Conv2d(dim, dim, 1), nn.GELU(), nn.BatchNorm2d(dim))
        self.spatial = nn.Sequential(ChannelSplitDeformConv(dim), nn.GELU(), nn.BatchNorm2d(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.channel(x)
        return y + self.spatial(y)


class TaskQuery(nn.Module):
    """g_t = f_t + LN(Linear(MHA(q = f_t, k = v = Z)))."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.attn = TokenAttention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim))

    def forward(self, f: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return f + self.mlp(self.attn(f, z))


class DeMT(TransformerDecoderModel):
    arch = "demt"

    def __init__(self, backbone, tasks, dim: int = 256, heads: int = 4, kv_stride: int = 8,
                 head_channels: int | None = None, grad_checkpointing: bool = False,
                 **kwargs):
        super().__init__(backbone, tasks, grad_checkpointing=grad_checkpointing, **kwargs)
        positive_int("demt", dim=dim, heads=heads, kv_stride=kv_stride)
        head_channels = head_channels if head_channels is not None else max(1, self.neck.channels // 8)
        positive_int("demt", head_channels=head_channels)
        self.dim, self.kv_stride = dim, kv_stride
        self.embed = nn.Sequential(nn.Linear(self.neck.channels, dim), nn.LayerNorm(dim))
        self.mixers = nn.ModuleDict({t: DeformableMixer(dim) for t in self.tasks})
        self.interaction = TokenAttention(dim, heads)
        self.interaction_mlp = nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim))
        self.task_query = nn.ModuleDict({t: TaskQuery(dim, heads) for t in self.tasks})
        self.task_heads = TaskHeads(self.tasks, dim, head_channels)

    def _mix(self, shared: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.embed(shared.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return {t: m(x) for t, m in self.mixers.items()}

    def _decode_tokens(self, *maps: torch.Tensor) -> tuple[torch.Tensor, ...]:
        grid = maps[0].shape[-2:]
        f = [tokens(m) for m in maps]
        z = self.interaction_mlp(self.interaction(torch.cat(f, 1), pool_tokens(list(maps), self.kv_stride)))
        z = pool_tokens([to_map(c, grid) for c in z.split(f[0].shape[1], 1)], self.kv_stride)
        return tuple(to_map(q(ft, z), grid) for q, ft in zip(self.task_query.values(), f))

    def decode(self, stages, shared, features):
        mixed = self.ckpt(self._mix, shared)
        for t, m in mixed.items():
            features[f"mixer.{t}"] = m
        decoded = self.ckpt(self._decode_tokens, *mixed.values())
        preds = self.task_heads(dict(zip(self.tasks, decoded)), features)
        return preds, {}

    def decoder_taps(self) -> dict[str, tuple[int, int]]:
        r = self.neck.reduction
        return {**{f"mixer.{t}": (self.dim, r) for t in self.tasks},
                **{f"head.{t}": (self.task_heads.channels, r) for t in self.tasks}}


__all__ = ["DeMT"]
