"""The shared plumbing of the gradient family: per-task gradients → (DDP sync) → ``combine`` → ``.grad``.

Parameter mode (``rep_grad=False``, default)::

    G[t] = ∂φ(L_t)/∂θ_shared        torch.autograd.grad(..., retain_graph=True): fires no DDP reducer hook
    G, L  ← all_reduce(mean)        ONE collective on the T×(D+1) matrix [G | L] (losses ride along for
                                    the methods that normalise by them), only under torch.distributed
    d     = method.combine(G, losses=L)
    c     = stopgrad(d − G.sum(0))
    backward_fn(Σ_t φ(L_t) + extra + ⟨θ_shared, c⟩)
                                    ONE ordinary (DDP-synced) backward: task-specific params get their plain
                                    gradients; shared params get avg(Σ_t g_t) + avg(∇extra) + c = d + avg(∇extra)
                                    (exact by linearity: avg(Σ_t g_t) = G.sum(0), and c is the same everywhere)

(φ is the identity, or log for DB-MTL.) This is the brief's "overwrite .grad with grad_synced − G.sum(0) + d",
done inside the backward instead of after it: the linear term's gradient is exactly c, and because it goes through
``backward_fn`` it is scaled by Lightning's fp16 GradScaler like the rest (a post-hoc ``.grad`` edit would add an
unscaled vector to scaled gradients). Gradients accumulate into ``.grad`` as usual (micro-batch accumulation works). Every process ends with the same shared gradient because ``combine`` sees the same averaged G and
its random draws come from a generator seeded identically on every process.

Representation mode (``rep_grad=True``, e.g. MGDA-UB): G[t] = ∂φ(L_t)/∂rep (rep flattened, T×N). The combined
direction d is injected with the surrogate term ⟨rep, stopgrad(d − Σ_t G[t])⟩ added to the loss of the ONE
``backward_fn`` call: its gradient reaches only the shared part (through rep), so shared parameters get
J_repᵀ d (+ ∇extra) while task-specific parameters get their plain gradients.

Under DDP in representation mode the per-process rep gradients belong to different samples, so averaging them would
be wrong; instead the T×N matrices are ``all_gather``-ed (one collective) into the T×(P·N) matrix of the union batch
(scaled by 1/P because each process's loss is a mean over its own half), ``combine`` runs on that, each process
takes its own slice d_p and injects P·d_p (DDP then averages over the P processes: Σ_p J_pᵀ d_p = J_unionᵀ d). This
is exact when every process has the same batch size (DistributedSampler pads to that); unequal shapes are refused.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn

from mtkd.errors import MtkdError
from mtkd.weighting.base import GradientWeighting, check_finite, distributed

_LOG_EPS = 1e-8


def _task_losses(method: GradientWeighting, losses: dict[str, Tensor], order: Sequence[str]) -> list[Tensor]:
    out = [losses[t].reshape(()) for t in order]
    if method.log_losses:
        out = [torch.log(loss + _LOG_EPS) for loss in out]
    return out


#: how :func:`per_task_grads` takes the T vector-Jacobian products: ``"loop"`` (T ``autograd.grad`` calls) or
#: ``"batched"`` (one ``autograd.grad(..., is_grads_batched=True)``, vmap over the backward); same G. The one switch
#: (environment variable MTKD_PER_TASK_GRADS); ``benchmarks/weighting_cost.py --grads`` measures both side by side.
PER_TASK_GRADS = os.environ.get("MTKD_PER_TASK_GRADS", "loop")


def per_task_grads(task_losses: Sequence[Tensor], inputs: Sequence[Tensor], mode: str | None = None) -> Tensor:
    """T×D matrix of ∂L_t/∂inputs (flattened, concatenated); zeros where a loss does not reach an input."""
    mode = mode or PER_TASK_GRADS
    if mode not in ("loop", "batched"):
        raise MtkdError(f"MTKD_PER_TASK_GRADS={mode!r} must be 'loop' or 'batched'")
    sizes = [x.numel() for x in inputs]
    D = sum(sizes)
    ref = inputs[0]
    G = torch.zeros(len(task_losses), D, dtype=torch.float32 if ref.dtype in (torch.float16, torch.bfloat16)
                    else ref.dtype, device=ref.device)
    live = [i for i, loss in enumerate(task_losses) if loss.requires_grad]
    if mode == "batched" and len(live) > 1:
        Ls = torch.stack([task_losses[i] for i in live])
        eye = torch.eye(len(live), dtype=Ls.dtype, device=Ls.device)
        gs = torch.autograd.grad(Ls, list(inputs), grad_outputs=eye, retain_graph=True, allow_unused=True,
                                 is_grads_batched=True)
        j = 0
        for g, n in zip(gs, sizes):
            if g is not None:
                G[live, j : j + n] = g.reshape(len(live), -1).to(G.dtype)
            j += n
        return G
    for i, loss in enumerate(task_losses):
        if not loss.requires_grad:
            continue
        gs = torch.autograd.grad(loss, list(inputs), retain_graph=True, allow_unused=True)
        j = 0
        for g, n in zip(gs, sizes):
            if g is not None:
                G[i, j : j + n] = g.reshape(-1)
            j += n
    return G


def gradient_backward(
    method: GradientWeighting,
    losses: dict[str, Tensor],
    *,
    extra: Tensor | None,
    shared_params: Sequence[nn.Parameter],
    rep: Tensor | None,
    backward_fn: Callable[[Tensor], None],
) -> dict[str, float]:
    order = method._order(losses)
    check_finite(losses, order, extra)
    L = _task_losses(method, losses, order)
    raw = torch.stack([losses[t].detach().reshape(()).double() for t in order])
    held = method.held_weights()
    if held is not None:  # update_every: a plain weighted backward with the last α
        a = held.to(L[0].device, L[0].dtype)
        total = sum(a[i] * L[i] for i in range(len(L)))
        backward_fn(total if extra is None else total + extra)
        return _weights(method, order)
    if method.opts.get("rep_grad"):
        return _rep_backward(method, order, L, raw, extra, rep, backward_fn)

    params = [p for p in shared_params if p.requires_grad]
    if not params:
        raise MtkdError(
            f"gradient weighting {method.name!r} needs shared_params (the shared encoder's trainable parameters)"
        )
    G = per_task_grads(L, params)
    if distributed():
        buf = torch.cat([G, raw.to(G)[:, None]], dim=1)
        dist.all_reduce(buf)
        buf /= dist.get_world_size()
        G, raw = buf[:, :-1], buf[:, -1]
    method.blocks = tuple(p.numel() for p in params)
    d = method.combine(G, losses=raw)
    offset = (d - G.sum(0)).detach()
    # the correction enters the ONE backward as the linear term ⟨θ, offset⟩ (its gradient is exactly offset), so
    # Lightning's loss scaling (fp16 GradScaler) and DDP's averaging apply to it like to every other gradient
    total = sum(L)
    if extra is not None:
        total = total + extra
    j = 0
    for p in params:
        n = p.numel()
        total = total + (p * offset[j : j + n].view_as(p).to(p.dtype)).sum()
        j += n
    backward_fn(total)
    return _weights(method, order)


def _rep_backward(method, order, L, raw, extra, rep, backward_fn) -> dict[str, float]:
    if rep is None:
        raise MtkdError(f"weighting {method.name!r} has rep_grad=True but the engine passed no shared representation (rep)")
    if not rep.requires_grad:
        raise MtkdError(f"weighting {method.name!r} has rep_grad=True but the shared representation has no graph")
    G_local = per_task_grads(L, [rep])  # T×N
    N = G_local.shape[1]
    if distributed():
        P, rank = dist.get_world_size(), dist.get_rank()
        buf = torch.cat([G_local, raw.to(G_local)[:, None]], dim=1).contiguous()
        parts = [torch.empty_like(buf) for _ in range(P)]
        try:
            dist.all_gather(parts, buf)
        except RuntimeError as e:  # pragma: no cover - backend-specific message
            raise MtkdError(f"rep_grad under DDP needs the same batch size on every process: {e}") from e
        G = torch.cat([q[:, :-1] for q in parts], dim=1) / P
        raw = torch.stack([q[:, -1] for q in parts]).mean(0)
        if method.needs_rep_values:  # the union batch's representation, in the same (process, sample) order as G
            reps = [torch.empty_like(rep.detach()) for _ in range(P)]
            dist.all_gather(reps, rep.detach().contiguous())
            method.rep_values = torch.cat(reps)
        d = method.combine(G, losses=raw)
        d_local = P * d[rank * N : (rank + 1) * N]
    else:
        if method.needs_rep_values:
            method.rep_values = rep.detach()
        d_local = method.combine(G_local, losses=raw)
    method.rep_values = None
    coef = (d_local - G_local.sum(0)).detach().view_as(rep).to(rep.dtype)
    total = sum(L) + (rep * coef).sum()
    if extra is not None:
        total = total + extra
    backward_fn(total)
    return _weights(method, order)


def _weights(method: GradientWeighting, order: Sequence[str]) -> dict[str, float]:
    w = method.last_weights
    if w is None:
        return {t: float("nan") for t in order}
    return dict(zip(order, w.detach().float().cpu().tolist()))
