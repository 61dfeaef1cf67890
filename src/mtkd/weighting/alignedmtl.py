"""Aligned-MTL (Senushkin, Patakin, Kuznetsov & Konushin, CVPR 2023, "Independent component alignment for multi-task
learning", §4, Algorithm 1).

Align the task gradients so that the linear system they form is perfectly conditioned: with M = GGᵀ = VΛVᵀ
(eigendecomposition, eigenvalues below max(λ)·T·eps dropped, as the authors' code),

    B = σ V Λ^{-1/2} Vᵀ,   Ĝ = B G   (rows of Ĝ orthogonal with equal norms σ: ĜĜᵀ = σ² I on the kept rank),
    d = Σ_t ĝ_t = Σ_t α_t g_t with α = B 1 (the logged weights),

where the scale σ is ``scale``: ``min`` → √λ_min (default, the paper), ``median`` → √median(λ), ``rmse`` →
√mean(λ). ``rep_grad=True`` is the paper's Aligned-MTL-UB.

Options: ``scale`` = "min".
"""

from __future__ import annotations

import torch
from torch import Tensor

from mtkd.weighting.base import WEIGHTINGS, GramWeighting


@WEIGHTINGS.register("alignedmtl")
class AlignedMTL(GramWeighting):
    name = "alignedmtl"
    supports_rep_grad = True
    defaults = {"scale": "min"}

    def __init__(self, tasks=(), **options):
        super().__init__(tasks, **options)
        self._choice("scale", ("min", "median", "rmse"))

    def alpha(self, gram: Tensor, losses: Tensor | None) -> Tensor:
        T = gram.shape[0]
        lam, V = torch.linalg.eigh(gram)
        tol = float(lam.max()) * T * torch.finfo(torch.float32).eps
        keep = lam > tol
        if not bool(keep.any()):
            return torch.zeros(T, dtype=gram.dtype)
        lam, V = lam[keep], V[:, keep]
        mode = self.opts["scale"]
        if mode == "min":
            sigma2 = lam.min()
        elif mode == "median":
            sigma2 = lam.median() if len(lam) % 2 else lam.sort().values[len(lam) // 2 - 1 : len(lam) // 2 + 1].mean()
        else:
            sigma2 = lam.mean()
        B = sigma2.sqrt() * (V / lam.sqrt()[None, :]) @ V.T
        return B.sum(1)
