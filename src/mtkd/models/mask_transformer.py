"""Mask-Transformer heads (OKD-MTL, Fig. 2; Segmenter, Strudel et al. 2021): ``"mask_seg"`` and ``"mask_reg"``.

Both read the deepest backbone stage (``reads = "deepest"``, like ``"aspp"``; the FPN map when mixed with ``"fpn"``
heads, see task_heads.py), so they work with any backbone: the
B×Cin×h×w map is flattened to h·w patch tokens and linearly projected to ``d_model`` (Segmenter's ``proj_dec``).
No positional embedding is added in the head (as in Segmenter's decoder: position comes from the encoder).
Learnable queries are appended to the patch tokens and the joint sequence goes through ``layers`` pre-norm
``nn.TransformerEncoderLayer`` (batch_first, GELU, FFN 4·d_model, ``dropout`` default 0), then a final LayerNorm.

``"mask_seg"`` (classification, Fig. 2a; Segmenter's MaskTransformer):
    C class queries (C = out_channels). After the layers + norm: patches P (N×E), class embeddings K (C×E);
    P ← P·W_p, K ← K·W_c (E×E, no bias), both L2-normalised over E; masks = P·Kᵀ (N×C cosine similarities),
    then Segmenter's ``mask_norm`` (LayerNorm over the C classes; only when C > 1 — over one class it would be
    constant). Output C×h×w logits; the model upsamples. Tap (penultimate) = the normed patch tokens, E×h×w.

``"mask_reg"`` (regression, Fig. 2b). The paper only says "a scalar product of the output queries and patches
(N_patch × N_reg) is passed through an MLP"; what is implemented:
    N_reg = ``n_queries`` (128) queries Q. After the layers + norm: patches P (N×E), queries Q (N_reg×E);
    A = softmax_over_queries(P·Qᵀ / √E)            (N×N_reg, the scalar product)
    Z = A · (Q·W_v + b_v)                           (N×E, each patch a convex mix of per-query value vectors)
    out = Linear(E→out)(GELU(Linear(E→E)(Z)))       (the MLP, per patch)
    Output out×h×w; tap = the MLP hidden GELU(Linear(Z)), E×h×w (the map before the final linear layer).
    (Feeding the raw N×N_reg scores straight into the MLP, the literal reading, ties the MLP's first layer to a
    query order; the softmax-weighted values make it a soft-binning over learned query values instead.)

Options: ``d_model`` (192, ViT-tiny width), ``heads`` (3), ``layers`` (2), ``n_queries`` (128, mask_reg only),
``dropout`` (0.0), set per head name by ``model.head_options`` (``{mask_reg: {n_queries: 64}}``). ``channels`` is
accepted and ignored (every head is passed ``decoder_channels``); the tap width ``self.channels`` is ``d_model``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mtkd.errors import MtkdError
from mtkd.models.heads import HEADS


class _MaskTransformerBase(nn.Module):
    reads = "deepest"

    def __init__(self, in_channels: int, n_queries: int, d_model: int, heads: int, layers: int, dropout: float):
        super().__init__()
        for name, v in (("d_model", d_model), ("heads", heads), ("layers", layers), ("n_queries", n_queries)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise MtkdError(f"{type(self).__name__}: {name} must be a positive int, got {v!r}")
        if d_model % heads:
            raise MtkdError(f"{type(self).__name__}: d_model {d_model} not divisible by heads {heads}")
        self.channels = d_model
        self.d_model = d_model
        self.proj_in = nn.Linear(in_channels, d_model)
        self.queries = nn.Parameter(torch.empty(1, n_queries, d_model))
        nn.init.trunc_normal_(self.queries, std=0.02)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(d_model, heads, 4 * d_model, dropout, activation="gelu",
                                       batch_first=True, norm_first=True)
            for _ in range(layers)
        )
        self.norm = nn.LayerNorm(d_model)

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """B×Cin×h×w → patches B×N×E, queries B×Q×E (after the joint layers and the final norm)."""
        b = x.shape[0]
        tokens = self.proj_in(x.flatten(2).transpose(1, 2))
        n = tokens.shape[1]
        z = torch.cat([tokens, self.queries.expand(b, -1, -1)], 1)
        for blk in self.blocks:
            z = blk(z)
        z = self.norm(z)
        return z[:, :n], z[:, n:]

    @staticmethod
    def _to_map(t: torch.Tensor, h: int, w: int) -> torch.Tensor:
        return t.transpose(1, 2).reshape(t.shape[0], t.shape[2], h, w)


@HEADS.register("mask_seg")
class MaskSegHead(_MaskTransformerBase):
    def __init__(self, in_channels: int, out_channels: int, d_model: int = 192, heads: int = 3, layers: int = 2,
                 dropout: float = 0.0, channels: int | None = None):
        super().__init__(in_channels, out_channels, d_model, heads, layers, dropout)
        self.proj_patch = nn.Parameter(torch.randn(d_model, d_model) * d_model**-0.5)
        self.proj_classes = nn.Parameter(torch.randn(d_model, d_model) * d_model**-0.5)
        self.mask_norm = nn.LayerNorm(out_channels) if out_channels > 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = x.shape[-2:]
        patches, cls = self._encode(x)
        p = F.normalize(patches @ self.proj_patch, dim=-1)
        c = F.normalize(cls @ self.proj_classes, dim=-1)
        masks = self.mask_norm(p @ c.transpose(1, 2))  # B×N×C
        return self._to_map(masks, h, w), self._to_map(patches, h, w)


@HEADS.register("mask_reg")
class MaskRegHead(_MaskTransformerBase):
    def __init__(self, in_channels: int, out_channels: int, d_model: int = 192, heads: int = 3, layers: int = 2,
                 n_queries: int = 128, dropout: float = 0.0, channels: int | None = None):
        super().__init__(in_channels, n_queries, d_model, heads, layers, dropout)
        self.value = nn.Linear(d_model, d_model)
        self.hidden = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU())
        self.out = nn.Linear(d_model, out_channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = x.shape[-2:]
        patches, q = self._encode(x)
        attn = torch.softmax(patches @ q.transpose(1, 2) / math.sqrt(self.d_model), dim=-1)  # B×N×Q
        feat = self.hidden(attn @ self.value(q))  # B×N×E
        return self._to_map(self.out(feat), h, w), self._to_map(feat, h, w)


__all__ = ["MaskSegHead", "MaskRegHead"]
