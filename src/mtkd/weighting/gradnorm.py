"""GradNorm (Chen, Badrinarayanan, Lee & Rabinovich, ICML 2018, "GradNorm: gradient normalization for adaptive loss
balancing in deep multitask networks", §3, eq. 1–2).

Learnable task weights w_t (an ``nn.Parameter`` of this module, initialised to 1, trained by the engine's optimizer).
With W the last shared layer — the last of ``shared_params`` whose ``dim() >= 2`` (a weight, not a bias) — each step:

    G_t   = ‖∇_W (w_t L_t)‖₂ = w_t ‖∇_W L_t‖₂          (the norms ‖∇_W L_t‖ are taken without graph)
    L̃_t   = L_t / L_t(0),   r_t = L̃_t / mean_i L̃_i     (L_t(0): the losses of the first step seen, kept in a buffer)
    L_grad = Σ_t | G_t − stopgrad(mean_i G_i · r_t^α) |   (eq. 2; the target is a constant, as in the paper)

and the network is trained on Σ_t stopgrad(w_t) L_t (+ extra) while w gets only ∂L_grad/∂w — both from ONE
``backward_fn`` call on ``Σ_t stopgrad(w_t) L_t + L_grad + extra`` (L_grad reaches nothing but w).

Renormalisation (paper: "renormalize so that Σ_t w_t = T after every update step"): the optimizer step happens in the
engine, so it is done at the start of the next ``backward``: w is clamped to ≥ ``min_weight`` and rescaled in place
to sum to T before it is used (the optimizer's state for w is left as is). The logged weights are these
renormalised w_t, which sum to T.

Options: ``alpha`` α = 1.5 (the paper's NYUv2 value), ``min_weight`` = 1e-4.
Under DDP the norms and L_t(0) are per process; the gradient of w is averaged over processes (see base).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from mtkd.errors import MtkdError
from mtkd.weighting.base import WEIGHTINGS, LossWeighting


def last_shared_weight(shared_params: Sequence[nn.Parameter]) -> nn.Parameter:
    ws = [p for p in shared_params if p.requires_grad and p.dim() >= 2]
    if not ws:
        raise MtkdError("gradnorm needs shared_params containing at least one weight (a parameter with dim >= 2)")
    return ws[-1]


@WEIGHTINGS.register("gradnorm")
class GradNorm(LossWeighting):
    name = "gradnorm"
    needs_tasks = True
    defaults = {"alpha": 1.5, "min_weight": 1e-4}

    def __init__(self, tasks=(), **options):
        super().__init__(tasks, **options)
        T = len(self.tasks)
        self.loss_weights = nn.Parameter(torch.ones(T))
        self.register_buffer("initial_losses", torch.zeros(T))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def renormalise(self) -> None:
        w = self.loss_weights
        w.clamp_(min=float(self.opts["min_weight"]))
        w.mul_(w.numel() / w.sum())

    def weights(self, losses: Tensor, shared_params) -> Tensor:
        self.renormalise()
        W = last_shared_weight(shared_params)
        norms = []
        for loss in losses.unbind():
            g = torch.autograd.grad(loss, W, retain_graph=True, allow_unused=True)[0] if loss.requires_grad else None
            norms.append(torch.zeros((), device=W.device) if g is None else g.detach().float().norm())
        norms = torch.stack(norms).to(losses.device)
        if not bool(self.initialised):
            self.initial_losses.copy_(losses.detach())
            self.initialised.fill_(True)
        ratio = losses.detach() / self.initial_losses.clamp_min(1e-12)
        r = ratio / ratio.mean()
        w = self.loss_weights.to(losses.device)
        G = w * norms
        target = (G.mean() * r ** float(self.opts["alpha"])).detach()
        self._gradnorm_loss = (G - target).abs().sum()
        return w

    def objective(self, losses: Tensor, weights: Tensor) -> Tensor:
        return (weights.detach() * losses).sum() + self._gradnorm_loss
