"""ConFIG, conflict-free inverse gradients (Liu, Chu & Thuerey, ICLR 2025, "ConFIG: towards conflict-free training
of physics informed neural networks", arXiv 2408.11104, eq. 2; the single-step ConFIG, not M-ConFIG).

With the unit gradients ĝ_t = g_t/‖g_t‖ stacked as Û (T×D) and target cosines p (the paper: all 1),

    g_u = Û⁺ p / ‖Û⁺ p‖,      d = (Σ_t ⟨g_t, g_u⟩) g_u,

i.e. the direction making the same angle with every task gradient (ĝ_tᵀ g_u equal for all t when the gradients are
linearly independent), scaled by the sum of the gradients' projections on it. On the Gram matrix: with the
correlation matrix C = D⁻¹MD⁻¹ (D = diag‖g_t‖), Û⁺p = Ûᵀc with c = C⁺p, so d = Σ_t α_t g_t with
α = (1ᵀM a / aᵀM a) a, a_t = c_t/‖g_t‖. The pseudo-inverse of C drops eigenvalues below T·ε·λ_max (singular values
of Û below √(T·ε)·σ_max, coarser than TorchJD's pinv of the T×D matrix; only nearly dependent gradients differ). A
zero gradient is a zero unit vector (as TorchJD's ``nan_to_num``). Logged weights α (sum scale: with orthogonal
equal gradients α = 1).

``rep_grad=True`` applies it to the representation gradients (not in the paper).

Options: ``pref`` = None (target cosines all equal; else T numbers ≥ 0, TorchJD's ``pref_vector``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from mtkd.weighting.base import WEIGHTINGS, GramWeighting
from mtkd.weighting.dualcone import preference


@WEIGHTINGS.register("config")
class ConFIG(GramWeighting):
    name = "config"
    supports_rep_grad = True
    defaults = {"pref": None}

    def alpha(self, gram: Tensor, losses: Tensor | None) -> Tensor:
        T = gram.shape[0]
        p = preference(self, T)  # its scale cancels in g_u
        n = gram.diagonal().clamp_min(0).sqrt()
        live = n > 0
        inv = torch.where(live, 1.0 / torch.where(live, n, torch.ones_like(n)), torch.zeros_like(n))
        C = inv[:, None] * gram * inv[None, :]
        c = torch.linalg.pinv(C, hermitian=True) @ p
        a = c * inv
        xx = float(a @ gram @ a)
        if xx <= 0:
            return torch.zeros(T, dtype=gram.dtype)
        return float((gram @ a).sum()) / xx * a
