"""What the transformer multi-task decoders (InvPT, DeMT, MQTransformer) share, on top of ``decoder_base``.

- ``TransformerDecoderModel``: ``decoder_base.DecoderModel`` (backbone, "stage*" and "shared" taps, per-task
  ``ModuleDict``s as ``task_parameters``) plus what these three need: every parameter not keyed by a task is shared
  (their attention, MLP and norm weights act on all tasks' tokens at once), and ``grad_checkpointing``.
- ``TokenAttention``: multi-head attention with ``nn.MultiheadAttention``'s parameters (q/k/v in-projections with
  bias, out-projection), computed by ``F.scaled_dot_product_attention`` (flash / memory-efficient kernels on a GPU,
  bf16-safe), batch-first. DeMT's and MQTransformer's reference code passes batch-first tensors to a sequence-first
  ``nn.MultiheadAttention`` (so it attends across the batch, not across pixels); mtkd attends across tokens, as the
  papers describe, with keys/values average-pooled per task map by ``kv_stride`` (``pool_tokens``) so that the full
  1/4-resolution self-attention of the papers' equations stays tractable (76 800 queries at 480×640 with 4 tasks).
- ``Mlp`` (optionally pre-normed), ``DropPath`` (timm), ``TaskHeads`` (per task: 3×3 conv-BN-ReLU bottleneck, the
  ``head.<task>`` tap, then a 1×1 classifier — the DeMT / MQTransformer / ATRC-codebase head), ``maybe_checkpoint``.

Activation checkpointing (``grad_checkpointing: true`` in ``model.arch_options``): the backbone's own (timm:
``set_grad_checkpointing``; built-in CNNs have none and are left as they are) and each decoder block's, recomputed in
the backward (``torch.utils.checkpoint``, non-reentrant; RNG state of dropout / drop-path restored). BatchNorm layers
inside a checkpointed block update their running statistics twice per step (known PyTorch behaviour, momentum-sized).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn
from torch.utils.checkpoint import checkpoint

from mtkd.errors import MtkdError
from mtkd.models.backbones import conv_bn_relu
from mtkd.models.decoder_base import DecoderModel, task_modules


def maybe_checkpoint(enabled: bool, fn, *args):
    """``fn(*args)``, its activations recomputed in the backward when ``enabled`` and gradients are on."""
    if enabled and torch.is_grad_enabled():
        return checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


def tokens(x: torch.Tensor) -> torch.Tensor:
    """B×C×h×w → B×(h·w)×C."""
    return x.flatten(2).transpose(1, 2)


def to_map(t: torch.Tensor, hw) -> torch.Tensor:
    """B×(h·w)×C → B×C×h×w."""
    return t.transpose(1, 2).reshape(t.shape[0], t.shape[2], *hw)


def pool_tokens(maps: list[torch.Tensor], stride: int) -> torch.Tensor:
    """Per task map, average-pooled to ceil(h/stride)×ceil(w/stride), then all tasks' tokens concatenated."""
    out = []
    for m in maps:
        h, w = m.shape[-2:]
        grid = (math.ceil(h / stride), math.ceil(w / stride))
        out.append(tokens(m if grid == (h, w) else F.adaptive_avg_pool2d(m, grid)))
    return torch.cat(out, 1)


def positive_int(owner: str, **values) -> None:
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise MtkdError(f"{owner}: {name} must be a positive int, got {v!r}")


class TokenAttention(nn.Module):
    """softmax(q Wq (k Wk)ᵀ / √d_head) v Wv, then Wo: ``nn.MultiheadAttention``'s maths and parameter count."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise MtkdError(f"attention width {dim} is not divisible by its {heads} heads")
        self.heads, self.dropout = heads, dropout
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        b, n, d = q.shape
        split = lambda x: x.reshape(b, x.shape[1], self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        o = F.scaled_dot_product_attention(split(self.q(q)), split(self.k(kv)), split(self.v(kv)),
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(o.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    """[LayerNorm] → Linear → GELU → Linear (the transformer feed-forward; ``norm`` as MQTransformer's)."""

    def __init__(self, dim: int, hidden: int, norm: bool = False):
        super().__init__()
        self.body = nn.Sequential(*([nn.LayerNorm(dim)] if norm else []), nn.Linear(dim, hidden), nn.GELU(),
                                  nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class TaskHeads(nn.Module):
    """Per task: f_t = conv3×3-BN-ReLU(x_t → C) (the ``head.<task>`` tap) and logits conv1×1(f_t)."""

    def __init__(self, tasks: dict[str, int], cin: int, channels: int):
        super().__init__()
        self.channels = channels
        self.bottleneck = nn.ModuleDict({t: conv_bn_relu(cin, channels) for t in tasks})
        self.logits = nn.ModuleDict({t: nn.Conv2d(channels, c, 1) for t, c in tasks.items()})

    def forward(self, feats: dict[str, torch.Tensor], features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        preds = {}
        for t, x in feats.items():
            f = self.bottleneck[t](x)
            features[f"head.{t}"] = f
            preds[t] = self.logits[t](f)
        return preds


class TransformerDecoderModel(DecoderModel):
    """``DecoderModel`` whose modules keyed by no task are all shared; ``grad_checkpointing`` for backbone + blocks."""

    def __init__(self, backbone, tasks, grad_checkpointing: bool = False, **kw):
        super().__init__(backbone, tasks, **kw)
        self.grad_checkpointing = bool(grad_checkpointing)
        if self.grad_checkpointing and hasattr(self.backbone, "set_grad_checkpointing"):
            self.backbone.set_grad_checkpointing(True)

    def ckpt(self, fn, *args):
        return maybe_checkpoint(self.grad_checkpointing, fn, *args)

    def shared_parameters(self) -> list[nn.Parameter]:
        owned = {id(p) for t in self.tasks for m in task_modules(self, t) for p in m.parameters()}
        return [p for p in self.parameters() if id(p) not in owned]


__all__ = ["TransformerDecoderModel", "TokenAttention", "Mlp", "TaskHeads", "DropPath", "maybe_checkpoint", "tokens",
           "to_map", "pool_tokens", "positive_int"]
