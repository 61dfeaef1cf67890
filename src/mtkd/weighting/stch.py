"""STCH, smooth Tchebycheff scalarisation (Lin et al., ICML 2024, PMLR 235, "Smooth Tchebycheff scalarization for
multi-objective optimization": the smooth Tchebycheff scalarisation g^(STCH)_μ, as defined there).

    g_μ(L | λ) = μ log Σ_t exp(λ_t (f_t − z_t) / μ)

is a smooth upper bound of the Tchebycheff max_t λ_t (f_t − z_t) (max ≤ g_μ ≤ max + μ log T, → max as μ → 0). The
network is trained on T·g_μ (the factor T, from the authors' multi-task code and LibMTL, puts the weights on the
sum scale of EW); its gradient is Σ_t w_t ∇L_t with w_t = T λ_t softmax_t(λ(f − z)/μ) · ∂f_t/∂L_t — the logged
weights.

``objective`` chooses f_t and z:

* ``log_nadir`` (default; the authors' multi-task experiments and LibMTL): f_t = log(L_t / n_t + 1e-20), z = 0, with
  n_t the mean training loss of task t over the last warm-up epoch. During the first ``warmup_epochs`` epochs the
  network is trained on Σ_t log(L_t + 1e-20) instead; the engine's ``on_train_epoch_end`` hands over the epoch's
  mean unweighted losses (averaged over processes under DDP, so every process holds the same n). With
  ``warmup_epochs`` = 0 there is no nadir: n = 1.
* ``raw``: f_t = L_t, z_t = ``ideal`` (default 0): the paper's function on the losses as they are.

Warm-up count: LibMTL's ``STCH_warmup_epoch`` = 4 trains epochs 0–4 on the log-sum and takes the nadir over epoch 4,
i.e. 5 epochs; mtkd counts epochs, so its default ``warmup_epochs`` = 5 is the same schedule.

The network is trained on Σ_t stopgrad(w_t) L_t (the same gradient); under DDP w comes from the losses averaged over
processes, so the averaged gradient is the union batch's. State (``extra_state``): the number of finished epochs
and the nadir. ``rep_grad`` does not apply (loss family).

Options: ``mu`` = 1.0 (LibMTL / the authors' MTL value), ``pref`` = None (λ = 1 for every task), ``objective`` =
"log_nadir", ``warmup_epochs`` = 5, ``ideal`` = None (z = 0; ``raw`` only).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from mtkd.errors import MtkdError
from mtkd.weighting.base import WEIGHTINGS, LossWeighting, global_losses

_TINY = 1e-20


@WEIGHTINGS.register("stch")
class STCH(LossWeighting):
    name = "stch"
    defaults = {"mu": 1.0, "pref": None, "objective": "log_nadir", "warmup_epochs": 5, "ideal": None}

    def __init__(self, tasks=(), **options):
        super().__init__(tasks, **options)
        self._choice("objective", ("log_nadir", "raw"))
        mu = self.opts["mu"]
        if not isinstance(mu, (int, float)) or not math.isfinite(mu) or mu <= 0:
            raise MtkdError(f"stch: option mu must be a finite number > 0, got {mu!r}")
        w = self.opts["warmup_epochs"]
        if not isinstance(w, int) or w < 0:
            raise MtkdError(f"stch: option warmup_epochs must be an integer ≥ 0, got {w!r}")
        if self.opts["ideal"] is not None and self.opts["objective"] != "raw":
            raise MtkdError("stch: option ideal applies to objective=raw only (log_nadir measures against the nadir)")
        self.epochs_done = 0
        self.nadir: dict[str, float] = {}

    def on_train_epoch_end(self, epoch: int, mean_losses: dict[str, float]) -> None:
        self.epochs_done += 1
        if self.opts["objective"] == "log_nadir" and self.epochs_done == int(self.opts["warmup_epochs"]):
            bad = {t: v for t, v in mean_losses.items() if not (math.isfinite(float(v)) and float(v) > 0)}
            if bad:
                raise MtkdError(f"stch: the warm-up epoch's mean losses must be finite and > 0 to set the nadir, got {bad}")
            self.nadir = {t: float(v) for t, v in mean_losses.items()}

    def _vector(self, option: str, default: float, like: Tensor) -> Tensor:
        v = self.opts[option]
        T = len(like)
        if v is None:
            return torch.full((T,), default, dtype=like.dtype, device=like.device)
        v = [float(x) for x in v]
        if len(v) != T or not all(math.isfinite(x) for x in v):
            raise MtkdError(f"stch: option {option} must hold {T} finite numbers (one per task), got {list(self.opts[option])}")
        return torch.tensor(v, dtype=like.dtype, device=like.device)

    def _warming_up(self) -> bool:
        return self.opts["objective"] == "log_nadir" and self.epochs_done < int(self.opts["warmup_epochs"])

    def _f(self, losses: Tensor) -> Tensor:
        """f_t and the smooth-max's argument, with graph; (f, None) during warm-up."""
        if self.opts["objective"] == "raw":
            return losses - self._vector("ideal", 0.0, losses)
        order = self.current_tasks
        if self.nadir and any(t not in self.nadir for t in order):
            raise MtkdError(f"stch: the nadir was recorded for tasks {list(self.nadir)} but got losses for {list(order)}")
        n = torch.tensor([self.nadir.get(t, 1.0) for t in order], dtype=losses.dtype, device=losses.device)
        return torch.log(losses / n + _TINY)

    def scalarised(self, losses: Tensor) -> Tensor:
        """The scalar objective (T·g_μ, or Σ log L during warm-up) of the loss values ``losses`` (T,)."""
        if self._warming_up():
            return torch.log(losses + _TINY).sum()
        lam = self._vector("pref", 1.0, losses)
        mu = float(self.opts["mu"])
        return len(losses) * mu * torch.logsumexp(lam * self._f(losses) / mu, 0)

    def weights(self, losses: Tensor, shared_params) -> Tensor:
        L = global_losses(losses).requires_grad_(True)
        with torch.enable_grad():
            (w,) = torch.autograd.grad(self.scalarised(L), L)
        return w  # ∂(objective)/∂L_t at the (process-averaged) losses: the coefficient of ∇L_t in the update

    def get_extra_state(self) -> Any:
        return {"epochs_done": self.epochs_done, "nadir": dict(self.nadir)}

    def set_extra_state(self, state: Any) -> None:
        self.epochs_done = int(state["epochs_done"])
        self.nadir = dict(state["nadir"])
