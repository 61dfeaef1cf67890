"""DualProj, projection of the averaged gradient onto the dual cone: the aggregator A_DualProj compared in Quinton &
Rey, 2024, "Jacobian descent for multi-objective optimization" (arXiv 2406.16232), i.e. the projection of GEM
(Lopez-Paz & Ranzato, NeurIPS 2017, "Gradient episodic memory for continual learning", eq. 11) applied to the mean
gradient.

The preference-weighted mean gradient Jᵀp (the paper: p = 1/T) is projected onto the dual cone
{x : Jx ≥ 0} of the task gradients:

    d = π_J(Jᵀp) = Jᵀ v,    v = argmin_{v ≥ p} vᵀ(JJᵀ)v       (Proposition 1),

one QP on the T×T Gram matrix (:mod:`mtkd.weighting.dualcone`, shared with UPGrad). Like UPGrad it never conflicts
with a task (⟨g_t, d⟩ ≥ 0) and equals the mean gradient when that conflicts with none; unlike UPGrad it projects once,
after averaging, so it is not "weighted" per task. Logged weights: α = v (α_t ≥ p_t), mean scale.
``rep_grad=True`` applies it to the representation gradients (not in the paper).

Peer: TorchJD's ``DualProj`` (quadprog, trace-normalised Gram + 1e-4·I: ``reg_eps`` = 1e-4 reproduces it); mtkd's
default is the exact projection.

Options: ``pref`` = None (uniform 1/T), ``reg_eps`` = 0.0.
"""

from __future__ import annotations

from torch import Tensor

from mtkd.weighting.base import WEIGHTINGS
from mtkd.weighting.dualcone import preference, project_weights
from mtkd.weighting.upgrad import UPGrad


@WEIGHTINGS.register("dualproj")
class DualProj(UPGrad):
    """UPGrad's options and checks; one projection of the preference-weighted mean instead of one per task."""

    name = "dualproj"

    def alpha(self, gram: Tensor, losses: Tensor | None) -> Tensor:
        p = preference(self, gram.shape[0])
        return project_weights(gram, p[None, :], float(self.opts["reg_eps"]))[0]
