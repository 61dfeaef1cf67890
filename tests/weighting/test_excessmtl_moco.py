"""ExcessMTL and MoCo (stateful gradient methods) against step-by-step NumPy re-derivations of their algorithms on
fixed gradient sequences, and their defining behaviour."""

import numpy as np
import pytest
import torch

import mtkd.weighting as W
from mtkd.errors import MtkdError

RNG = np.random.default_rng(11)
SEQ = [RNG.normal(size=(3, 8)) * np.array([[1.0], [5.0], [0.2]]) for _ in range(5)]
LOSSES = [np.array([1.0, 3.0, 0.5]) * (1 - 0.1 * k) for k in range(5)]


def t(a):
    return torch.tensor(a, dtype=torch.float64)


# ---------------------------------------------------------------- ExcessMTL
def excessmtl_reference(seq, eta):
    H, w, e0, out = np.zeros_like(seq[0]), np.ones(len(seq[0])), None, []
    for G in seq:
        H = H + G**2
        e = (G**2 / np.sqrt(H + 1e-7)).sum(1)
        if e0 is None:
            e0 = e
        else:
            w = w * np.exp(eta * e / e0)
            w = w / w.sum() * len(w)
        out.append((w.copy(), w @ G))
    return out


@pytest.mark.parametrize("eta", [0.01, 1.0])
def test_excessmtl_matches_the_algorithm(eta):
    m = W.get("excessmtl", step_size=eta)
    for G, (w, d) in zip(SEQ, excessmtl_reference(SEQ, eta)):
        np.testing.assert_allclose(m.combine(t(G)).numpy(), d, rtol=1e-10)
        np.testing.assert_allclose(m.last_weights.numpy(), w, rtol=1e-10)
    assert abs(float(m.last_weights.sum()) - 3) < 1e-12


def test_excessmtl_favours_the_task_far_from_its_optimum():
    # task 0's gradient stays as large as at the start (far from its optimum), task 1's decays (converging)
    m = W.get("excessmtl", step_size=1.0)
    base = RNG.normal(size=(2, 6))
    for k in range(6):
        m.combine(t(base * np.array([[1.0], [0.5**k]])))
    w = m.last_weights.numpy()
    assert w[0] > w[1]


def test_excessmtl_state_round_trip_and_bad_input():
    a = W.get("excessmtl")
    for G in SEQ[:3]:
        a.combine(t(G))
    b = W.get("excessmtl")
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(a.combine(t(SEQ[3])), b.combine(t(SEQ[3])))
    with pytest.raises(MtkdError, match="does not support rep_grad"):
        W.get("excessmtl", rep_grad=True)
    with pytest.raises(MtkdError, match="step_size must be a finite number > 0"):
        W.get("excessmtl", step_size=-0.1)


# ---------------------------------------------------------------- MoCo
def simplex_by_bisection(v):
    """Projection onto the simplex as max(v − τ, 0) with Σ = 1, τ found by bisection (not the sort-based rule)."""
    lo, hi = v.min() - 1, v.max()
    for _ in range(200):
        tau = (lo + hi) / 2
        if np.maximum(v - tau, 0).sum() > 1:
            lo = tau
        else:
            hi = tau
    return np.maximum(v - (lo + hi) / 2, 0)


def moco_reference(seq, losses, beta=0.5, bs=0.5, gamma=0.1, gs=0.5, rho=0.0, normalize=False, softmax=False):
    T = len(seq[0])
    y, lam, out = np.zeros_like(seq[0]), np.full(T, 1 / T), []
    for k, (G, L) in enumerate(zip(seq, losses), start=1):
        h = G / (np.linalg.norm(G, axis=1, keepdims=True) + 1e-8) * L[:, None] if normalize else G
        y = y - beta / k**bs * (y - h)
        v = lam - gamma / k**gs * (y @ y.T + rho * np.eye(T)) @ lam
        lam = np.exp(v) / np.exp(v).sum() if softmax else simplex_by_bisection(v)
        out.append((lam.copy(), lam @ y))
    return out


@pytest.mark.parametrize("opts", [{}, {"rho": 0.3, "gamma": 0.05},
                                  {"normalize_grads": True, "simplex": "softmax"}])  # the last: LibMTL's variant
def test_moco_matches_the_algorithm(opts):
    m = W.get("moco", **opts)
    ref = moco_reference(SEQ, LOSSES, rho=opts.get("rho", 0.0), gamma=opts.get("gamma", 0.1),
                         normalize=opts.get("normalize_grads", False), softmax=opts.get("simplex") == "softmax")
    for G, L, (lam, d) in zip(SEQ, LOSSES, ref):
        np.testing.assert_allclose(m.combine(t(G), losses=t(L)).numpy(), d, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(m.last_weights.numpy(), lam, rtol=1e-9, atol=1e-12)


def test_moco_converges_to_mgda_on_fixed_gradients():
    # with exact (noise-free) gradients Y → G and λ follows projected gradient descent on λᵀGGᵀλ: MGDA's weights
    G = np.array([[1.0, 0.2, 0.0], [-0.3, 1.0, 0.1], [0.2, -0.3, 0.6]])
    m = W.get("moco", gamma=0.5, gamma_sigma=0.0)
    for _ in range(500):
        d = m.combine(t(G)).numpy()
    ref = W.get("mgda")
    ref.combine(t(G))
    np.testing.assert_allclose(m.last_weights.numpy(), ref.last_weights.numpy(), atol=1e-4)
    np.testing.assert_allclose(d, ref.last_weights.numpy() @ G, atol=1e-4)


def test_moco_bad_input():
    with pytest.raises(MtkdError, match="needs the task losses"):
        W.get("moco", normalize_grads=True).combine(t(SEQ[0]))
    with pytest.raises(MtkdError, match="must be one of"):
        W.get("moco", simplex="sparsemax")
    with pytest.raises(MtkdError, match="does not support rep_grad"):
        W.get("moco", rep_grad=True)
