"""FairGrad and ConFIG on fixed matrices: FairGrad against the α-fair utility maximised in the D-dimensional primal
(SciPy SLSQP) and its optimality condition; ConFIG against the paper's formula with NumPy's pseudo-inverse of the
T×D matrix; both side by side with TorchJD when it is installed."""

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

import mtkd.weighting as W
from mtkd.errors import MtkdError

RNG = np.random.default_rng(5)


def t(a):
    return torch.tensor(a, dtype=torch.float64)


def agreeing(T, D=6):
    """Random gradients whose mean has a positive inner product with each (so a feasible start exists)."""
    while True:
        G = RNG.normal(size=(T, D)) + 0.8
        if (G @ G.mean(0) > 0).all():
            return G


MATS = [agreeing(2), agreeing(3), agreeing(4),
        np.array([[1.0, 0.2, 0.0], [0.3, 1.0, 0.1], [0.2, -0.3, 1.0]]) * np.array([[100.0], [1.0], [0.01]])]


def primal_alpha_fair(G, alpha, radius):
    """argmax_{‖d‖ ≤ radius} Σ_t u_t^{1−α}/(1−α) (log u_t at α = 1), u = Gd, in D dimensions."""
    s = np.abs(G).max()
    Gs = G / s

    def util(d):
        u = np.maximum(Gs @ d, 1e-300)
        return -(np.log(u).sum() if alpha == 1 else (u ** (1 - alpha)).sum() / (1 - alpha))

    def jac(d):
        u = np.maximum(Gs @ d, 1e-300)
        return -(u ** (-alpha)) @ Gs

    x0 = Gs.mean(0) / np.linalg.norm(Gs.mean(0)) * radius * 0.5
    res = minimize(util, x0, jac=jac, method="SLSQP",
                   constraints=({"type": "ineq", "fun": lambda d: radius**2 - d @ d, "jac": lambda d: -2 * d},
                                {"type": "ineq", "fun": lambda d: Gs @ d - 1e-12, "jac": lambda d: Gs}),
                   options={"ftol": 1e-15, "maxiter": 1000})
    return res.x


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("G", MATS)
def test_fairgrad_maximises_the_alpha_fair_utility(G, alpha):
    w = W.get("fairgrad", alpha=alpha)
    d = w.combine(t(G)).numpy()
    a = w.last_weights.numpy()
    # optimality condition (the paper's equation): (GGᵀw)_t = w_t^{−1/α}
    np.testing.assert_allclose((G @ G.T @ a) * a ** (1 / alpha), 1.0, rtol=1e-8)
    # and the direction is the α-fair optimum found independently in parameter space on the same radius
    ref = primal_alpha_fair(G, alpha, np.linalg.norm(d))
    cos = ref @ d / (np.linalg.norm(ref) * np.linalg.norm(d))
    assert cos > 1 - 1e-9, cos
    np.testing.assert_allclose(ref, d, rtol=1e-4, atol=1e-5 * np.linalg.norm(d))


def test_fairgrad_scale_and_zero_gradient():
    G = MATS[1]
    for alpha in (0.5, 2.0):
        a = W.get("fairgrad", alpha=alpha)
        a.combine(t(G))
        b = W.get("fairgrad", alpha=alpha)
        b.combine(t(G * 1e4))  # M × 1e8: w × (1e8)^{−α/(α+1)}
        np.testing.assert_allclose(b.last_weights.numpy(), a.last_weights.numpy() * 1e8 ** (-alpha / (alpha + 1)),
                                   rtol=1e-9)
    Z = np.vstack([G[:2], np.zeros((1, G.shape[1]))])
    w = W.get("fairgrad")
    w.combine(t(Z))
    assert w.last_weights[2] == 0
    w2 = W.get("fairgrad")
    w2.combine(t(G[:2]))
    np.testing.assert_allclose(w.last_weights[:2].numpy(), w2.last_weights.numpy(), rtol=1e-12)


def test_fairgrad_refuses_alpha_zero():
    with pytest.raises(MtkdError, match="alpha = 0 is linear scalarisation"):
        W.get("fairgrad", alpha=0)
    with pytest.raises(MtkdError, match="does not support rep_grad"):
        W.get("fairgrad", rep_grad=True)


def config_reference(G, p=None):
    """The paper's formula on the T×D matrix: g_u = normalise(pinv(Û) p), d = (Σ_t g_t·g_u) g_u."""
    n = np.linalg.norm(G, axis=1, keepdims=True)
    U = np.divide(G, n, out=np.zeros_like(G), where=n > 0)
    x = np.linalg.pinv(U) @ (np.ones(len(G)) if p is None else np.asarray(p))
    gu = x / np.linalg.norm(x)
    return (G @ gu).sum() * gu


@pytest.mark.parametrize("G", MATS + [RNG.normal(size=(3, 8)), np.array([[1.0, 0.0, 0.5], [-0.8, 0.3, 0.0]])])
def test_config_formula_and_equal_angles(G):
    w = W.get("config")
    d = w.combine(t(G)).numpy()
    np.testing.assert_allclose(d, config_reference(G), rtol=1e-9, atol=1e-12 * np.abs(G).max())
    np.testing.assert_allclose(w.last_weights.numpy() @ G, d, rtol=1e-9, atol=1e-12 * np.abs(G).max())
    cos = G @ d / (np.linalg.norm(G, axis=1) * np.linalg.norm(d))
    np.testing.assert_allclose(cos, cos[0], rtol=1e-9)  # the same angle with every task gradient
    assert (cos > 0).all()
    p = np.linspace(1.0, 2.0, len(G))
    np.testing.assert_allclose(W.get("config", pref=p.tolist()).combine(t(G)).numpy(), config_reference(G, p),
                               rtol=1e-9, atol=1e-12 * np.abs(G).max())


def test_config_zero_gradient_is_a_zero_unit_vector():
    G = np.vstack([MATS[1], np.zeros((1, 6))])
    np.testing.assert_allclose(W.get("config").combine(t(G)).numpy(), config_reference(G), rtol=1e-9)


@pytest.mark.parametrize("name,peer,kw", [("fairgrad", "FairGrad", {"alpha": 1.0}),
                                          ("fairgrad", "FairGrad", {"alpha": 2.0}), ("config", "ConFIG", {})])
def test_side_by_side_with_torchjd(name, peer, kw):
    agg = pytest.importorskip("torchjd.aggregation")
    for G in MATS + [RNG.normal(size=(4, 30))]:
        ref = getattr(agg, peer)(**kw)(t(G)).numpy()
        got = W.get(name, **kw).combine(t(G)).numpy()
        # TorchJD's FairGrad stops scipy's least_squares at its default tolerances (cost change 1e-8)
        tol = 1e-4 if name == "fairgrad" else 1e-9
        np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * np.abs(ref).max())
