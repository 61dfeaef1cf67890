"""Projection onto the dual cone of the task gradients, shared by UPGrad and DualProj (Quinton & Rey, 2024,
"Jacobian descent for multi-objective optimization", arXiv 2406.16232, eq. 3 and Proposition 1).

For the T×D matrix J of task gradients the dual cone of its rows is {x : Jx ≥ 0}, and the projection of a
combination Jᵀu onto it is Jᵀv with

    v = argmin_{v ≥ u} vᵀ G v,     G = J Jᵀ        (Proposition 1: a QP on T variables only).

Here it is solved as a non-negative least-squares problem: with G = V Λ Vᵀ (eigenvalues clamped at 0) and
A = Λ^{1/2} Vᵀ, vᵀGv = ‖A v‖², and with v = u + λ, λ ≥ 0 this is min_{λ≥0} ‖A λ − (−A u)‖², which
``scipy.optimize.nnls`` (Lawson–Hanson active set, finite termination) solves exactly up to rounding. The Gram matrix
is first divided by its trace (the minimiser does not depend on G's scale). ``reg_eps`` adds reg_eps·I to the
trace-normalised G — TorchJD's and LibMTL's QP does so with 1e-4 so its solver sees a positive-definite matrix;
the NNLS form needs no regularisation, so mtkd's default is 0 (the paper's exact projection).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from mtkd.errors import MtkdError


def project_weights(gram: Tensor, U: Tensor, reg_eps: float = 0.0) -> Tensor:
    """For each row u of ``U`` (k×T) the weights v (k×T) with Jᵀv = π(Jᵀu), given ``gram`` = JJᵀ (T×T)."""
    from scipy.optimize import nnls  # scipy.optimize is slow to import; only these methods need it

    G = gram.double().cpu().numpy()
    U_ = U.double().cpu().numpy().reshape(-1, G.shape[0])
    tr = float(np.trace(G))
    if not np.isfinite(tr) or tr <= 0:
        return torch.from_numpy(U_.copy())  # all gradients zero: every vector is in the cone
    G = G / tr + reg_eps * np.eye(len(G))
    lam, V = np.linalg.eigh((G + G.T) / 2)
    A = np.sqrt(np.clip(lam, 0.0, None))[:, None] * V.T
    out = np.empty_like(U_)
    for i, u in enumerate(U_):
        x, _ = nnls(A, -A @ u, maxiter=50 * len(u) + 100)
        out[i] = u + x
    return torch.from_numpy(out)


def preference(method, T: int) -> Tensor:
    """The preference vector p (T,) of a Jacobian-descent aggregator: option ``pref`` or uniform 1/T."""
    pref = method.opts["pref"]
    if pref is None:
        return torch.full((T,), 1.0 / T, dtype=torch.float64)
    p = [float(x) for x in pref]
    if len(p) != T:
        raise MtkdError(f"{method.name}: option pref has {len(p)} values but there are {T} tasks")
    if any(not math.isfinite(x) or x < 0 for x in p):
        raise MtkdError(f"{method.name}: option pref must hold finite numbers ≥ 0, got {list(pref)}")
    return torch.tensor(p, dtype=torch.float64)


def check_reg_eps(method) -> None:
    r = method.opts["reg_eps"]
    if not isinstance(r, (int, float)) or not math.isfinite(r) or r < 0:
        raise MtkdError(f"{method.name}: option reg_eps must be a finite number ≥ 0, got {r!r}")
