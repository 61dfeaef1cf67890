"""UPGrad and DualProj (Jacobian descent): the projection onto the dual cone re-derived in the D-dimensional primal
with SciPy's SLSQP and by enumerating KKT active sets, the non-conflict property, and TorchJD side by side."""

import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

import mtkd.weighting as W
from mtkd.errors import MtkdError

RNG = np.random.default_rng(77)
MATS = [RNG.normal(size=(T, 6)) for T in (2, 3, 4, 5)] + [
    np.array([[1.0, 0.0, 0.5], [-0.8, 0.3, 0.0], [0.1, -1.0, 0.2]]),      # strong conflicts
    np.array([[2.0, 1.0, 0.0], [-1.0, 0.5, 0.3], [0.5, -2.0, 1.0], [0.0, 0.0, -1.0]]),
    np.array([[1.0, 0.2, 0.0, 0.0], [1.0, 0.25, 0.01, 0.0]]) * np.array([[1e3], [1e-2]]),  # norms 1e5 apart
]


def primal_projection(J, g):
    """argmin_x ‖x − g‖² s.t. Jx ≥ 0, in the D-dimensional primal (not the Gram-matrix dual mtkd solves)."""
    res = minimize(lambda x: float((x - g) @ (x - g)), g.copy(), jac=lambda x: 2 * (x - g), method="SLSQP",
                   constraints=({"type": "ineq", "fun": lambda x: J @ x, "jac": lambda x: J},),
                   options={"ftol": 1e-15, "maxiter": 500})
    return res.x


def kkt_weights(G, u):
    """argmin_{v ≥ u} vᵀGv by enumerating which constraints are active (exact linear solves, G positive definite)."""
    T = len(u)
    for k in range(T + 1):
        for free in itertools.combinations(range(T), k):
            free, fixed = list(free), [i for i in range(T) if i not in free]
            v = u.astype(float).copy()
            if free:
                v[free] = np.linalg.solve(G[np.ix_(free, free)], -G[np.ix_(free, fixed)] @ u[fixed])
            grad = G @ v
            if (v[free] >= u[free] - 1e-12).all() and (grad[fixed] >= -1e-12).all():
                return v
    raise AssertionError("no KKT point")


def t(a):
    return torch.tensor(a, dtype=torch.float64)


@pytest.mark.parametrize("J", MATS)
def test_upgrad_and_dualproj_match_primal_projection(J):
    T = len(J)
    s = np.abs(J).max()
    Js = J / s  # SLSQP's tolerances are absolute
    up = np.mean([primal_projection(Js, g) for g in Js], axis=0) * s
    dp = primal_projection(Js, Js.mean(0)) * s
    np.testing.assert_allclose(W.get("upgrad").combine(t(J)).numpy(), up, atol=1e-6 * s, rtol=1e-6)
    np.testing.assert_allclose(W.get("dualproj").combine(t(J)).numpy(), dp, atol=1e-6 * s, rtol=1e-6)
    # the weights against exact KKT enumeration on the Gram matrix (full row rank here)
    if np.linalg.matrix_rank(J) == T:
        G = J @ J.T
        w = W.get("upgrad")
        w.combine(t(J))
        ref = sum(kkt_weights(G, np.eye(T)[i] / T) for i in range(T))
        np.testing.assert_allclose(w.last_weights.numpy(), ref, rtol=1e-7, atol=1e-9)
        w = W.get("dualproj")
        w.combine(t(J))
        np.testing.assert_allclose(w.last_weights.numpy(), kkt_weights(G, np.full(T, 1 / T)), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name", ["upgrad", "dualproj"])
@pytest.mark.parametrize("J", MATS + [RNG.normal(size=(6, 3))])  # 6 tasks in 3 dimensions: rank-deficient
def test_no_conflict_with_any_task(name, J):
    w = W.get(name)
    d = w.combine(t(J)).numpy()
    a = w.last_weights.numpy()
    np.testing.assert_allclose(a @ J, d, atol=1e-12 * np.abs(J).max())
    assert (a >= 1 / len(J) - 1e-12).all()  # α ≥ p (Proposition 1's constraint)
    proj = J @ d
    n = np.linalg.norm(J, axis=1)
    assert (proj >= -1e-12 * n * n.max()).all(), proj  # rounding only (d may be 0: the cone can be {0})


def test_no_conflict_gives_the_mean():
    J = np.abs(RNG.normal(size=(3, 5)))  # all pairwise products positive: every g_t is in the dual cone
    for name in ("upgrad", "dualproj"):
        np.testing.assert_allclose(W.get(name).combine(t(J)).numpy(), J.mean(0), rtol=1e-12)


def test_preference_vector():
    J = MATS[1]
    p = np.array([0.5, 0.3, 0.2])
    up = sum(p[i] * primal_projection(J, J[i]) for i in range(3))
    np.testing.assert_allclose(W.get("upgrad", pref=p.tolist()).combine(t(J)).numpy(), up, atol=1e-6)
    np.testing.assert_allclose(W.get("dualproj", pref=p.tolist()).combine(t(J)).numpy(),
                               primal_projection(J, p @ J), atol=1e-6)


def test_bad_options():
    with pytest.raises(MtkdError, match="pref has 2 values but there are 3 tasks"):
        W.get("upgrad", pref=[0.5, 0.5]).combine(t(MATS[1]))
    with pytest.raises(MtkdError, match="finite numbers ≥ 0"):
        W.get("dualproj", pref=[1.0, -1.0]).combine(t(MATS[0]))
    with pytest.raises(MtkdError, match="reg_eps must be a finite number"):
        W.get("upgrad", reg_eps=-1)
    with pytest.raises(MtkdError, match=r"unknown option\(s\) 'pref_vector' for weighting 'upgrad'; valid options: pref"):
        W.get("upgrad", pref_vector=[1, 1])


@pytest.mark.parametrize("name,peer", [("upgrad", "UPGrad"), ("dualproj", "DualProj")])
def test_side_by_side_with_torchjd(name, peer):
    agg = pytest.importorskip("torchjd.aggregation")
    pytest.importorskip("quadprog")
    for J in MATS + [RNG.normal(size=(4, 50))]:
        ref = getattr(agg, peer)()(t(J)).numpy()
        # TorchJD regularises the trace-normalised Gram matrix with 1e-4·I: the same QP with reg_eps=1e-4
        got = W.get(name, reg_eps=1e-4).combine(t(J)).numpy()
        np.testing.assert_allclose(got, ref, atol=1e-9 * np.abs(J).max(), rtol=1e-7)
        # and the exact projection stays within the effect of that ridge
        exact = W.get(name).combine(t(J)).numpy()
        assert np.abs(exact - ref).max() <= 2e-3 * np.linalg.norm(J, axis=1).max()
