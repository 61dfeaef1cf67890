"""The interface every multi-task weighting method implements, and what the two families share.

The engine calls ``weighting.backward(task_losses, extra=..., shared_params=..., rep=..., backward_fn=...)`` once per
step; afterwards every parameter's ``.grad`` holds this step's gradient and the returned dict holds the per-task
weights the method chose (for logging).

* Loss family (:class:`LossWeighting`): the method gives a weight vector ``w`` (possibly with graph, e.g. UW's
  learnable log-variances) and backward does ``backward_fn(Σ_t w_t L_t + extra)`` (plus the method's own
  regulariser where it has one).
* Gradient family (:class:`GradientWeighting`): the method implements ``combine(G) -> d`` mapping the T×D matrix of
  per-task gradients to one D vector; :mod:`mtkd.weighting.plumbing` does the rest (and DDP).

Methods with learnable parameters (UW, GradNorm) expose them as ``nn.Parameter`` of the weighting so the engine's
optimizer trains them; under ``torch.distributed`` their gradients are averaged over processes after the backward
(one small ``all_reduce``; idempotent if DDP already averaged them) so every process keeps the same weights.
Methods with random draws (RLW, PCGrad, GradDrop, GradVac) use their own ``torch.Generator`` seeded by the ``seed``
option, so all processes draw the same numbers; the generator state is in ``state_dict`` (``extra_state``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from mtkd.errors import MtkdError
from mtkd.registry import Registry

WEIGHTINGS = Registry("weighting method")


def _default_backward(t: Tensor) -> None:
    t.backward()


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def global_losses(losses: Tensor) -> Tensor:
    """The detached loss values (T,) averaged over processes (one tiny all_reduce; a copy when single-process):
    the union batch's losses when every process has the same batch size. Loss methods whose weights are a
    nonlinear function of the losses (GLS, STCH) compute them from these, so every process back-propagates
    Σ_t w_t L_t with the same w and DDP's average is the union batch's gradient."""
    values = losses.detach().clone()
    if distributed():
        dist.all_reduce(values)
        values /= dist.get_world_size()
    return values


def check_finite(losses: Mapping[str, Tensor], order: Sequence[str], extra: Tensor | None) -> None:
    """Refuse a NaN/inf loss before any gradient is written (one device sync in the normal case)."""
    for t in order:
        if losses[t].numel() != 1:
            raise MtkdError(f"loss of task {t!r} has shape {tuple(losses[t].shape)}; a weighting needs scalar losses")
    vals = [losses[t].detach().float().reshape(()) for t in order]
    if extra is not None:
        vals.append(extra.detach().float().reshape(()))
    if bool(torch.isfinite(torch.stack(vals)).all()):
        return
    for t in order:
        v = float(losses[t].detach())
        if not math.isfinite(v):
            raise MtkdError(
                f"loss of task {t!r} is {v}; no gradient was written (check that task's labels, lower the learning "
                "rate or enable gradient clipping)"
            )
    raise MtkdError(f"the distillation loss (extra) is {float(extra.detach())}; no gradient was written")


class Weighting(nn.Module):
    """Base of all weighting methods. ``defaults`` lists the options a method accepts and their default values."""

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    supports_rep_grad: ClassVar[bool] = False
    needs_tasks: ClassVar[bool] = False
    #: the method's update is Σ_t α_t g_t, so the option ``update_every`` (α held k steps) applies
    holds_weights: ClassVar[bool] = False
    defaults: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, tasks: Sequence[str] = (), **options: Any):
        super().__init__()
        valid = dict(self.defaults)
        if self.family == "gradient":
            valid.setdefault("rep_grad", False)
        if self.holds_weights:
            valid.setdefault("update_every", 1)
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise MtkdError(
                f"unknown option(s) {', '.join(map(repr, unknown))} for weighting {self.name!r}; "
                f"valid options: {', '.join(sorted(valid)) or 'none'}"
            )
        if isinstance(tasks, str):
            tasks = (tasks,)
        self.tasks: tuple[str, ...] = tuple(tasks)
        if len(set(self.tasks)) != len(self.tasks):
            raise MtkdError(f"weighting {self.name!r} got duplicate task names {list(self.tasks)}")
        if self.needs_tasks and not self.tasks:
            raise MtkdError(
                f"weighting {self.name!r} keeps per-task state, so it needs the task names: "
                f"mtkd.weighting.get({self.name!r}, tasks=[...])"
            )
        self.opts: dict[str, Any] = {**valid, **options}
        self.current_tasks: tuple[str, ...] = self.tasks
        if self.opts.get("rep_grad") and not self.supports_rep_grad:
            raise MtkdError(
                f"weighting {self.name!r} does not support rep_grad=True (gradients w.r.t. the shared "
                "representation); use rep_grad=False"
            )

    # ---------------------------------------------------------------- helpers
    def _order(self, losses: Mapping[str, Tensor]) -> tuple[str, ...]:
        if not losses:
            raise MtkdError(f"weighting {self.name!r} got no task losses")
        if not self.tasks:
            return tuple(losses)
        if set(losses) != set(self.tasks):
            missing = sorted(set(self.tasks) - set(losses))
            extra = sorted(set(losses) - set(self.tasks))
            raise MtkdError(
                f"weighting {self.name!r} was built for tasks {list(self.tasks)} but got losses for "
                f"{list(losses)} (missing: {missing}, unexpected: {extra})"
            )
        return self.tasks

    def _choice(self, option: str, valid: Sequence[Any]) -> Any:
        v = self.opts[option]
        if v not in valid:
            raise MtkdError(f"option {option}={v!r} of weighting {self.name!r} must be one of {list(valid)}")
        return v

    def _average_own_grads(self) -> None:
        """Average the gradients of this weighting's own parameters over processes (no-op single-process)."""
        if not distributed():
            return
        ps = [p for p in self.parameters() if p.grad is not None]
        if not ps:
            return
        flat = torch.cat([p.grad.reshape(-1) for p in ps])
        dist.all_reduce(flat)
        flat /= dist.get_world_size()
        i = 0
        for p in ps:
            n = p.numel()
            p.grad.copy_(flat[i : i + n].view_as(p.grad))
            i += n

    # ---------------------------------------------------------------- interface
    def backward(
        self,
        losses: dict[str, Tensor],
        *,
        extra: Tensor | None = None,
        shared_params: Sequence[nn.Parameter] = (),
        rep: Tensor | None = None,
        backward_fn: Callable[[Tensor], None] = _default_backward,
    ) -> dict[str, float]:
        """Put this step's gradients in ``.grad`` of every parameter; return the per-task weights it chose.

        ``extra`` is added unweighted (the distillation losses); ``backward_fn`` back-propagates a scalar (the
        engine passes Lightning's ``manual_backward``)."""
        raise NotImplementedError

    def on_train_epoch_end(self, epoch: int, mean_losses: dict[str, float]) -> None:
        """Called by the engine after each training epoch with the epoch's mean unweighted task losses."""

    def wants_post_step_losses(self) -> bool:
        """Whether the engine should recompute the same batch's task losses after the optimiser step and pass them to
        :meth:`after_step` (one extra forward; FAMO's authors' protocol)."""
        return False

    def after_step(self, losses: dict[str, Tensor]) -> None:
        """The same batch's unweighted task losses after the optimiser step (only if ``wants_post_step_losses``)."""

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.opts.items())


class LossWeighting(Weighting):
    """Loss family: ``backward_fn(objective(L, w) + extra)`` with ``w = self.weights(L, ...)``."""

    family: ClassVar[str] = "loss"

    def weights(self, losses: Tensor, shared_params: Sequence[nn.Parameter]) -> Tensor:
        """The T task weights for the stacked losses ``losses`` (T,), possibly carrying graph."""
        raise NotImplementedError

    def objective(self, losses: Tensor, weights: Tensor) -> Tensor:
        """The scalar to back-propagate (without ``extra``); methods with a regulariser override it."""
        return (weights * losses).sum()

    def logged_weights(self, losses: Tensor, weights: Tensor) -> Tensor:
        return weights

    def backward(self, losses, *, extra=None, shared_params=(), rep=None, backward_fn=_default_backward):
        order = self._order(losses)
        check_finite(losses, order, extra)
        L = torch.stack([losses[t].reshape(()).float() for t in order])
        self.current_tasks = order
        w = self.weights(L, shared_params)
        total = self.objective(L, w)
        if extra is not None:
            total = total + extra
        backward_fn(total)
        self._average_own_grads()
        return dict(zip(order, self.logged_weights(L, w).detach().float().cpu().tolist()))


class GradientWeighting(Weighting):
    """Gradient family: a method implements ``combine(G) -> d``; the plumbing does autograd and DDP.

    ``combine`` never touches model parameters or autograd. Stateful methods (GradVac's similarity targets,
    DB-MTL's gradient EMA, the random generators) update their own state inside ``combine``; calling it twice on the
    same matrix then gives different results (documented per method). After ``combine`` the attribute
    ``last_weights`` holds the effective per-task weights (T,) for logging.
    """

    family: ClassVar[str] = "gradient"
    #: back-propagate log(L_t) instead of L_t (DB-MTL)
    log_losses: ClassVar[bool] = False
    #: rep_grad mode: set ``rep_values`` (the shared representation, B×..., the union batch under DDP) for combine
    needs_rep_values: bool = False
    rep_values: Tensor | None = None
    #: parameter mode: the sizes (numel) of the shared parameter tensors, in G's column order, set by the plumbing
    #: before ``combine`` (GradVac's per-tensor groups); None for a bare matrix or in rep_grad mode
    blocks: tuple[int, ...] | None = None

    def __init__(self, tasks: Sequence[str] = (), **options: Any):
        super().__init__(tasks, **options)
        self.last_weights: Tensor | None = None

    def combine(self, grads: Tensor, *, losses: Tensor | None = None) -> Tensor:
        """Map the T×D matrix of per-task gradients to the D-vector update direction."""
        raise NotImplementedError

    def held_weights(self) -> Tensor | None:
        """Weights α (T,) to reuse at this step instead of computing per-task gradients (then the step is a plain
        backward of Σ_t α_t L_t); None (default) computes them. See :class:`GramWeighting`'s ``update_every``."""
        return None

    def backward(self, losses, *, extra=None, shared_params=(), rep=None, backward_fn=_default_backward):
        from mtkd.weighting.plumbing import gradient_backward

        return gradient_backward(self, losses, extra=extra, shared_params=shared_params, rep=rep,
                                 backward_fn=backward_fn)


def _gram(grads: Tensor) -> Tensor:
    """G Gᵀ in float64 on the CPU (T×T): the solvers of the Gram-matrix methods run there."""
    g = grads.detach()
    return (g @ g.T).double().cpu()


class GramWeighting(GradientWeighting):
    """A gradient method whose direction is a linear combination ``d = Σ_t α_t g_t`` with α computed from the Gram
    matrix ``M = G Gᵀ`` (T×T) alone: MGDA, PCGrad, CAGrad, IMTL-G, Nash-MTL, GradVac, Aligned-MTL. The solvers run
    in float64 on T×T, so they cost O(T²D) for M plus O(TD) for d, whatever D is, and α is exact for logging.

    Option ``update_every`` = k (default 1, as Nash-MTL's authors' ``update_weights_every``): α is recomputed at
    the steps 0, k, 2k, … of :meth:`backward`; in between the step is ONE plain backward of Σ_t α_t L_t + extra
    with the last α (no per-task gradients): the shared parameters get Σ_t α_t g_t as at a recomputation step,
    task-specific ones α_t-scaled gradients (as in the authors' code). Under DDP α is the same on every process
    (it came from the averaged G), so DDP's average is exact. The counter and α are checkpointed by the methods
    that have an ``extra_state`` (Nash-MTL, PCGrad, GradVac); the others recompute α at a resumed run's first step.
    """

    holds_weights: ClassVar[bool] = True

    def __init__(self, tasks: Sequence[str] = (), **options: Any):
        super().__init__(tasks, **options)
        k = self.opts["update_every"]
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise MtkdError(f"option update_every={k!r} of weighting {self.name!r} must be an integer ≥ 1")
        self._step = 0  # backward calls since the start (recomputations and held steps)
        self._held: Tensor | None = None

    def held_weights(self) -> Tensor | None:
        k = int(self.opts["update_every"])
        if k == 1 or self._held is None or self._step % k == 0:
            return None  # the plumbing computes G and calls combine, which counts the step
        self._step += 1
        self.last_weights = self._held
        return self._held

    def alpha(self, gram: Tensor, losses: Tensor | None) -> Tensor:
        """Effective weights α (T,) in float64 from the Gram matrix (float64, CPU)."""
        raise NotImplementedError

    def alpha_from_gram(self, gram: Tensor, losses: Tensor | None = None) -> Tensor:
        """α from the Gram matrix G Gᵀ (any dtype/device), recorded for logging and ``update_every``."""
        lv = None if losses is None else losses.detach().double().cpu().reshape(-1)
        a = self.alpha(gram.detach().double().cpu(), lv)
        self.last_weights = a
        self._held = a
        self._step += 1
        return a

    def combine(self, grads: Tensor, *, losses: Tensor | None = None) -> Tensor:
        if grads.dim() != 2:
            raise MtkdError(f"{self.name}.combine expects a T×D matrix of task gradients, got shape {tuple(grads.shape)}")
        a = self.alpha_from_gram(_gram(grads), losses)
        return a.to(grads.dtype).to(grads.device) @ grads

    def _hold_state(self) -> dict[str, Any]:
        return {"step": self._step, "held": self._held}

    def _load_hold_state(self, state: Mapping[str, Any]) -> None:
        self._step = int(state.get("step", 0))
        self._held = state.get("held")


class GeneratorMixin:
    """A seeded ``torch.Generator`` per device whose state travels in ``state_dict`` (``extra_state``)."""

    def _generator(self, device: torch.device | str = "cpu") -> torch.Generator:
        device = torch.device(device)
        gens = self.__dict__.setdefault("_gens", {})
        key = str(device)
        if key not in gens:
            g = torch.Generator(device=device)
            g.manual_seed(int(self.opts["seed"]))
            pending = self.__dict__.get("_pending_gen_state", {})
            if key in pending:
                g.set_state(pending.pop(key))
            gens[key] = g
        return gens[key]

    def get_extra_state(self) -> Any:
        state = {"generators": {k: g.get_state() for k, g in self.__dict__.get("_gens", {}).items()}}
        state.update(self._more_state())
        if isinstance(self, GramWeighting):
            state["hold"] = self._hold_state()
        return state

    def set_extra_state(self, state: Any) -> None:
        self.__dict__["_gens"] = {}
        self.__dict__["_pending_gen_state"] = dict(state.get("generators", {}))
        self._load_more_state(state)
        if isinstance(self, GramWeighting):
            self._load_hold_state(state.get("hold", {}))

    def _more_state(self) -> dict[str, Any]:
        return {}

    def _load_more_state(self, state: dict[str, Any]) -> None:
        pass
