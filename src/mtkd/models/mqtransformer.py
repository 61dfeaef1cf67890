"""MQTransformer: multi-task learning with multiple task queries (Xu, Li, Lu, Yang & Zhang, "Multi-Task Learning
with Multi-Query Transformer for Dense Prediction", IEEE TCSVT 2023 / arXiv 2205.14354; Fig. 2, Sec. 3), after the
paper and the authors' code (yangyangxu0/MQTransformer, src/model/heads/mqformer_head.py: read, not copied). Seed 003
Table 3 lists it on PASCAL-Context.

    x     = concatenation of every backbone stage at the finest one's grid (1/4 on Swin)                     "shared"
    x_t   = Linear_t(x → d)                      task-specific projection, d = ``dim`` 256                "task.<t>"
    Q_t   = learnable task queries (``n_queries`` 64 × d) with query / key position embeddings (per head)
    shared query encoder (per task, one module): Q_t ← Q_t + DropPath(Attn(q = Q_t + qpos_t, k = v = x_t));
          Q_t ← Q_t + Linear(LN Q_t) (the code's "reasoning");  Q_t ← Q_t + DropPath(MLP(Q_t))
    shared feature interaction across tasks (Sec. 3.3): Q = [Q_1; …; Q_T];  Q ← Q + DropPath(MHSA(Q));
          Q ← Q + DropPath(MLP(LN Q))
    shared query decoder (per task): o = x_t + DropPath(Attn(q = x_t, k = Q_t + kpos_t, v = Q_t));
          o ← o + DropPath(MLP₃(o));  u = x_t + DropPath(MHSA(o));  u ← u + DropPath(MLP₃(u));  y_t = GELU(u)
    h_t   = conv3×3-BN-ReLU(y_t → d/4)                                                                  "head.<t>"
    pred_t = conv1×1(h_t), upsampled to the input

"Attn" is the code's ``AnyAttention``: positions added per head, LayerNorm on q, k and v, bias-free projections,
scale (d/heads)^-½; the MLPs are pre-normed (LayerNorm → Linear → GELU → Linear; hidden d, or 3d for MLP₃).
Choices the paper leaves open or that differ from the code (stated):
- The decoder's pixel self-attention (``MHSA(o)``) is, in the code, a sequence-first ``nn.MultiheadAttention`` fed
  batch-first tensors (it attends across the batch); mtkd attends across pixels with keys / values average-pooled by
  ``kv_stride`` (default 8), as full self-attention at 1/4 of the protocol's inputs does not fit a GPU.
- Unused modules of the code (a patch embedding whose output is never read, a second attention and a relative
  position table in the decoder) are left out; one encoder–decoder pass (the code's ``enc_dec_times = 1``).
- Drop-path rates as the code: 0.1 in the encoder and decoder, 0.5 around the cross-task interaction; attention
  dropout 0.1 in the interaction. ``dim``, ``heads``, ``n_queries``, ``kv_stride``, ``head_channels`` (d/4) and
  ``grad_checkpointing`` are ``model.arch_options``.
- ``shared_parameters()``: backbone + encoder, interaction and decoder (shared by all tasks, as in the code);
  ``task_parameters(t)``: t's projection, queries and position embeddings, head.
"""

from __future__ import annotations

import torch
from torch import nn

from mtkd.errors import MtkdError
from mtkd.models.transformer_blocks import DropPath, Mlp, TaskHeads, TokenAttention, TransformerDecoderModel, \
    pool_tokens, positive_int, to_map, tokens


class AnyAttention(nn.Module):
    """Attention with per-head position embeddings added to q / k, LayerNorm on q, k, v, bias-free projections."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise MtkdError(f"mqtransformer: dim {dim} is not divisible by heads={heads}")
        self.heads, self.scale = heads, (dim / heads) ** -0.5
        self.norm_q, self.norm_k, self.norm_v = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.to_q, self.to_k, self.to_v = (nn.Linear(dim, dim, bias=False) for _ in range(3))
        self.proj = nn.Linear(dim, dim)

    def _pos(self, x: torch.Tensor, pos: torch.Tensor | None) -> torch.Tensor:
        if pos is None:
            return x
        b, n, d = x.shape
        return (x.reshape(b, n, self.heads, d // self.heads) + pos).reshape(b, n, d)

    def forward(self, q, k, v, qpos=None, kpos=None) -> torch.Tensor:
        b, n, d = q.shape
        split = lambda x: x.reshape(b, x.shape[1], self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        q = split(self.to_q(self.norm_q(self._pos(q, qpos))))
        k = split(self.to_k(self.norm_k(self._pos(k, kpos))))
        v = split(self.to_v(self.norm_v(v)))
        attn = (q @ k.transpose(-2, -1) * self.scale).softmax(-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, d))


class TaskQueries(nn.Module):
    """One task's queries (N×d) and its per-head query / key position embeddings (N×1×d/heads)."""

    def __init__(self, n: int, dim: int, heads: int):
        super().__init__()
        self.tokens = nn.Parameter(torch.randn(1, n, dim) * 0.02)
        self.qpos = nn.Parameter(torch.randn(1, n, 1, dim // heads) * 0.02)
        self.kpos = nn.Parameter(torch.randn(1, n, 1, dim // heads) * 0.02)


class QueryEncoder(nn.Module):
    def __init__(self, dim: int, heads: int, drop_path: float = 0.1):
        super().__init__()
        self.attn = AnyAttention(dim, heads)
        self.reason_norm, self.reason = nn.LayerNorm(dim), nn.Linear(dim, dim, bias=False)
        self.mlp = Mlp(dim, dim, norm=True)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, feats: torch.Tensor, q: TaskQueries) -> torch.Tensor:
        parts = q.tokens.repeat(feats.shape[0], 1, 1)  # not expand: a no_grad view of a parameter breaks FLOP hooks
        parts = parts + self.drop_path(self.attn(parts, feats, feats, qpos=q.qpos))
        parts = parts + self.reason(self.reason_norm(parts))
        return parts + self.drop_path(self.mlp(parts))


class QueryInteraction(nn.Module):
    """Cross-task interaction of all tasks' queries: self-attention + pre-normed MLP, both residual."""

    def __init__(self, dim: int, heads: int, drop_path: float = 0.5):
        super().__init__()
        self.attn = TokenAttention(dim, heads, dropout=0.1)
        self.norm, self.mlp = nn.LayerNorm(dim), Mlp(dim, dim, norm=True)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        q = q + self.drop_path(self.attn(q, q))
        return q + self.drop_path(self.mlp(self.norm(q)))


class QueryDecoder(nn.Module):
    def __init__(self, dim: int, heads: int, kv_stride: int, drop_path: float = 0.1):
        super().__init__()
        self.kv_stride = kv_stride
        self.cross = AnyAttention(dim, heads)
        self.mlp1, self.mlp2 = Mlp(dim, 3 * dim, norm=True), Mlp(dim, 3 * dim, norm=True)
        self.self_attn = TokenAttention(dim, heads)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.act = nn.GELU()

    def forward(self, x_map: torch.Tensor, parts: torch.Tensor, q: TaskQueries) -> torch.Tensor:
        grid = x_map.shape[-2:]
        x = tokens(x_map)
        o = x + self.drop_path(self.cross(x, parts, parts, kpos=q.kpos))
        o = o + self.drop_path(self.mlp1(o))
        u = x + self.drop_path(self.self_attn(o, pool_tokens([to_map(o, grid)], self.kv_stride)))
        u = u + self.drop_path(self.mlp2(u))
        return to_map(self.act(u), grid)


class MQTransformer(TransformerDecoderModel):
    arch = "mqtransformer"

    def __init__(self, backbone, tasks, dim: int = 256, heads: int = 4, n_queries: int = 64, kv_stride: int = 8,
                 head_channels: int | None = None, grad_checkpointing: bool = False,
                 **kwargs):
        super().__init__(backbone, tasks, grad_checkpointing=grad_checkpointing, **kwargs)
        positive_int("mqtransformer", dim=dim, heads=heads, n_queries=n_queries, kv_stride=kv_stride)
        head_channels = head_channels if head_channels is not None else max(1, dim // 4)
        positive_int("mqtransformer", head_channels=head_channels)
        self.dim = dim
        self.embed = nn.ModuleDict({t: nn.Linear(self.neck.channels, dim) for t in self.tasks})
        self.queries = nn.ModuleDict({t: TaskQueries(n_queries, dim, heads) for t in self.tasks})
        self.encoder = QueryEncoder(dim, heads)
        self.interaction = QueryInteraction(dim, heads)
        self.decoder = QueryDecoder(dim, heads, kv_stride)
        self.task_heads = TaskHeads(self.tasks, dim, head_channels)

    def _decode(self, *maps: torch.Tensor) -> tuple[torch.Tensor, ...]:
        qs = list(self.queries.values())
        parts = [self.encoder(tokens(m), q) for m, q in zip(maps, qs)]
        parts = self.interaction(torch.cat(parts, 1)).split(parts[0].shape[1], 1)
        return tuple(self.decoder(m, p, q) for m, p, q in zip(maps, parts, qs))

    def decode(self, stages, shared, features):
        x = shared.permute(0, 2, 3, 1)
        maps = []
        for t, lin in self.embed.items():
            maps.append(lin(x).permute(0, 3, 1, 2))
            features[f"task.{t}"] = maps[-1]
        decoded = self.ckpt(self._decode, *maps)
        return self.task_heads(dict(zip(self.tasks, decoded)), features), {}

    def decoder_taps(self) -> dict[str, tuple[int, int]]:
        r = self.neck.reduction
        return {**{f"task.{t}": (self.dim, r) for t in self.tasks},
                **{f"head.{t}": (self.task_heads.channels, r) for t in self.tasks}}


__all__ = ["MQTransformer"]
