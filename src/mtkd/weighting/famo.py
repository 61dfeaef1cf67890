"""FAMO, fast adaptive multitask optimization (Liu, Liu, Stone & Liu, NeurIPS 2023, arXiv 2306.03792, §3,
Algorithm 1).

Weights z = softmax(ξ) from logits ξ (T,). The network is trained on

    Σ_t (z_t / c) · log(L_t + ε),   c = stopgrad(Σ_t z_t / (L_t + ε))

i.e. task t's gradient is scaled by z_t / (c (L_t + ε)); these scales sum to 1 and are the logged weights.
The logits are updated from the decrease of the log-losses, δ_t = log(L_t^before + ε) − log(L_t^after + ε), by one
step of Adam (lr ``lr``, L2 weight decay ``gamma``) with gradient ∂(z·δ)/∂ξ = z ⊙ (δ − z·δ) (the authors'
``autograd.grad(softmax(w), w, grad_outputs=δ)``): tasks whose loss went down less get more weight.

``update`` chooses what "after" is:

* ``"same_batch"`` — the authors' protocol (their ``famo.py``: after ``opt.step()``, ``update(new_loss)`` with the
  same batch's losses recomputed under ``no_grad``; LibMTL's ``FAMO.update_w(curr_losses)`` takes δ against the
  losses its ``backward`` saw in the same way). The engine re-runs the model on the batch after the optimiser step
  (one extra forward per step, the model in training mode as theirs: BatchNorm statistics see the batch twice).
* ``"next_batch"`` (default) — L^after is the next step's loss on the *next* batch, so no extra forward; δ then
  also carries the difference between the two batches. mtkd's cheaper approximation, not a peer's protocol.

State (buffers, in ``state_dict``): ``logits`` ξ (init 0), the Adam moments and step count of ξ, and the previous
step's log-losses. ξ is a buffer, not a parameter: it is updated by this module's own Adam, never by the engine's
optimizer. Under DDP the loss values used for the update are averaged over processes (one tiny all_reduce) so all
processes keep the same ξ. The authors also clip the gradient norm to 1 (their trainer option); that is left to
the engine's gradient clipping.

Options: ``lr`` = 0.025, ``gamma`` = 0.01 (weight decay of ξ; the authors' ``famo.py`` default), ``eps`` = 1e-8
(the authors' min-loss offset is 0), ``update`` = "next_batch" (or "same_batch").
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from mtkd.weighting.base import WEIGHTINGS, LossWeighting, distributed

_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8


@WEIGHTINGS.register("famo")
class FAMO(LossWeighting):
    name = "famo"
    needs_tasks = True
    defaults = {"lr": 0.025, "gamma": 0.01, "eps": 1e-8, "update": "next_batch"}

    def __init__(self, tasks=(), **options):
        super().__init__(tasks, **options)
        T = len(self.tasks)
        self.register_buffer("logits", torch.zeros(T, dtype=torch.float64))
        self.register_buffer("adam_m", torch.zeros(T, dtype=torch.float64))
        self.register_buffer("adam_v", torch.zeros(T, dtype=torch.float64))
        self.register_buffer("adam_step", torch.zeros((), dtype=torch.int64))
        self.register_buffer("prev_log_losses", torch.zeros(T, dtype=torch.float64))
        self.register_buffer("has_prev", torch.zeros((), dtype=torch.bool))

    def wants_post_step_losses(self) -> bool:
        return self._choice("update", ("next_batch", "same_batch")) == "same_batch"

    def _log_values(self, losses: Tensor) -> Tensor:
        """log(L + ε) of the detached losses, averaged over processes first under DDP (every process keeps one ξ)."""
        values = losses.detach().double().reshape(-1)
        if distributed():
            values = values.clone()
            dist.all_reduce(values)
            values /= dist.get_world_size()
        return torch.log(values + float(self.opts["eps"])).to(self.logits.device)

    def after_step(self, losses: dict[str, Tensor]) -> None:
        """``same_batch``: the same batch's losses after the optimiser step; one Adam step on ξ from their decrease."""
        self.update(self._log_values(torch.stack([losses[t].reshape(()) for t in self.current_tasks])))
        self.has_prev.fill_(False)

    @torch.no_grad()
    def update(self, log_losses: Tensor) -> None:
        """One Adam step on the logits from the log-loss decrease since the losses of the previous call."""
        if bool(self.has_prev):
            delta = self.prev_log_losses - log_losses
            z = torch.softmax(self.logits, 0)
            g = z * (delta - (z * delta).sum()) + float(self.opts["gamma"]) * self.logits
            self.adam_step += 1
            k = int(self.adam_step)
            b1, b2 = _BETAS
            self.adam_m.mul_(b1).add_(g, alpha=1 - b1)
            self.adam_v.mul_(b2).addcmul_(g, g, value=1 - b2)
            m_hat = self.adam_m / (1 - b1**k)
            v_hat = self.adam_v / (1 - b2**k)
            self.logits -= float(self.opts["lr"]) * m_hat / (v_hat.sqrt() + _ADAM_EPS)
        self.prev_log_losses.copy_(log_losses)
        self.has_prev.fill_(True)

    def weights(self, losses: Tensor, shared_params) -> Tensor:
        eps = float(self.opts["eps"])
        log_values = self._log_values(losses)
        if self.wants_post_step_losses():  # ξ moves in after_step; remember the losses the step starts from
            self.prev_log_losses.copy_(log_values)
            self.has_prev.fill_(True)
        else:
            self.update(log_values)
        z = torch.softmax(self.logits, 0).to(losses)
        d = losses.detach() + eps
        c = (z / d).sum()
        return z / (c * d)  # the coefficient of L_t in the gradient: ∂/∂L_t of Σ z_t log(L_t+ε) / c

    def objective(self, losses: Tensor, weights: Tensor) -> Tensor:
        eps = float(self.opts["eps"])
        coef = weights.detach() * (losses.detach() + eps)  # = z_t / c
        return (coef * torch.log(losses + eps)).sum()
