"""IMTL-L, GLS and STCH on fixed losses (the loss family computes in float32: rtol 1e-6): closed-form gradients
property (equalised scaled losses, the geometric mean, the smooth maximum)."""

import math

import numpy as np
import pytest
import torch

import mtkd.weighting as W
from mtkd.errors import MtkdError

TASKS = ["semseg", "depth", "normal"]
VALS = [1.5, 0.07, 20.0]


def leaf_losses(values):
    return {t: torch.tensor(float(v), dtype=torch.float64, requires_grad=True) for t, v in zip(TASKS, values)}


def grads(L):
    return np.array([L[t].grad.item() for t in TASKS])


# ---------------------------------------------------------------- IMTL-L
def test_imtl_l_formula_and_gradients():
    m = W.get("imtl_l", tasks=TASKS)
    s = np.array([0.3, -0.2, 1.0])
    with torch.no_grad():
        m.log_scales.copy_(torch.tensor(s))
    L = leaf_losses(VALS)
    w = m.backward(L)
    np.testing.assert_allclose([w[t] for t in TASKS], np.exp(s), rtol=1e-6)
    np.testing.assert_allclose(grads(L), np.exp(s), rtol=1e-6)
    np.testing.assert_allclose(m.log_scales.grad.numpy(), np.exp(s) * VALS - 1, rtol=1e-6)  # ∂/∂s (e^s L − s)


def test_imtl_l_equalises_the_scaled_losses():
    # the scales' optimum for fixed losses four decades apart is e^{s_t} L_t = 1 for every task: there the
    # gradient w.r.t. s vanishes and any perturbation of s raises the objective (it is convex in s)
    m = W.get("imtl_l", tasks=TASKS)

    def objective_at(s):
        with torch.no_grad():
            m.log_scales.copy_(torch.tensor(s))
        m.zero_grad()
        L = leaf_losses(VALS)
        m.backward(L)
        s_now = m.log_scales.detach().double().numpy()
        return float(np.sum(np.exp(s_now) * VALS - s_now))

    s_star = -np.log(VALS)
    best = objective_at(s_star)
    np.testing.assert_allclose(m.log_scales.grad.numpy(), 0.0, atol=1e-6)
    np.testing.assert_allclose(np.exp(m.log_scales.detach().numpy()) * VALS, 1.0, rtol=1e-6)
    for delta in ([0.1, 0, 0], [0, -0.1, 0], [0, 0, 0.05]):
        assert objective_at(s_star + np.array(delta)) > best


# ---------------------------------------------------------------- GLS
def test_gls_is_the_geometric_mean():
    L = leaf_losses(VALS)
    w = W.get("gls").backward(L)
    T, gm = 3, np.prod(VALS) ** (1 / 3)
    ref = gm / (T * np.array(VALS))  # ∂(Π L)^{1/T}/∂L_t
    np.testing.assert_allclose(grads(L), ref, rtol=1e-6)
    np.testing.assert_allclose([w[t] for t in TASKS], ref, rtol=1e-6)
    # the defining invariance: scaling one task's loss by c scales the objective by c^{1/T}, so its direction in
    # parameter space is unchanged (gradient ratios follow the inverse losses)
    L2 = leaf_losses([VALS[0] * 1000, *VALS[1:]])
    W.get("gls").backward(L2)
    np.testing.assert_allclose(grads(L2)[1:] / grads(L)[1:], 1000 ** (1 / 3), rtol=1e-6)


# ---------------------------------------------------------------- STCH
def softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


@pytest.mark.parametrize("mu", [1.0, 0.1])
def test_stch_raw_gradients(mu):
    lam, z = np.array([1.0, 2.0, 0.5]), np.array([0.1, 0.0, 0.2])
    L = leaf_losses(VALS)
    w = W.get("stch", objective="raw", mu=mu, pref=lam.tolist(), ideal=z.tolist()).backward(L)
    ref = 3 * lam * softmax(lam * (np.array(VALS) - z) / mu)
    np.testing.assert_allclose(grads(L), ref, rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose([w[t] for t in TASKS], ref, rtol=1e-6, atol=1e-30)


def test_stch_smooth_max_limit():
    L = torch.tensor([0.3, 0.8, 0.75], dtype=torch.float64)
    lam = np.array([1.0, 0.5, 1.0])
    tcheb = float(np.max(lam * L.numpy()))
    for mu in (1.0, 0.1, 0.01, 1e-3, 1e-5):
        m = W.get("stch", objective="raw", mu=mu, pref=lam.tolist())
        g = float(m.scalarised(L)) / 3
        assert tcheb <= g + 1e-12 <= tcheb + mu * math.log(3) + 1e-12
    assert abs(g - tcheb) < 1e-9


def test_stch_log_nadir_warmup_then_nadir():
    m = W.get("stch", tasks=TASKS, warmup_epochs=2, mu=0.5)
    L = leaf_losses(VALS)
    m.backward(L)
    np.testing.assert_allclose(grads(L), 1 / np.array(VALS), rtol=1e-6)  # warm-up: Σ log L_t
    m.on_train_epoch_end(0, dict(zip(TASKS, [9.0, 9.0, 9.0])))
    nadir = np.array([2.0, 0.1, 10.0])
    m.on_train_epoch_end(1, dict(zip(TASKS, nadir)))
    L = leaf_losses(VALS)
    m.backward(L)
    f = np.log(np.array(VALS) / nadir)
    np.testing.assert_allclose(grads(L), 3 * softmax(f / 0.5) / np.array(VALS), rtol=1e-6)
    m.on_train_epoch_end(2, dict(zip(TASKS, [1.0, 1.0, 1.0])))  # later epochs do not move the nadir
    restored = W.get("stch", tasks=TASKS, warmup_epochs=2, mu=0.5)
    restored.load_state_dict(m.state_dict())
    L2 = leaf_losses(VALS)
    restored.backward(L2)
    np.testing.assert_allclose(grads(L2), grads(L), rtol=1e-12)


def test_stch_bad_options():
    with pytest.raises(MtkdError, match="mu must be a finite number > 0"):
        W.get("stch", mu=0)
    with pytest.raises(MtkdError, match="ideal applies to objective=raw only"):
        W.get("stch", ideal=[0, 0, 0])
    with pytest.raises(MtkdError, match="must be one of"):
        W.get("stch", objective="log")
    with pytest.raises(MtkdError, match="pref must hold 3 finite numbers"):
        W.get("stch", objective="raw", pref=[1.0, 2.0]).backward(leaf_losses(VALS))
    with pytest.raises(MtkdError, match=r"unknown option\(s\) 'warmup_epoch' for weighting 'stch'"):
        W.get("stch", warmup_epoch=4)
