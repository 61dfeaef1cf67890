"""Gradient methods vs independent NumPy/SciPy re-derivations on fixed matrices, plus their defining properties."""

import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

import mtkd.weighting as W

RNG = np.random.default_rng(1234)


def mats():
    """Fixed T×D matrices: random, conflicting, nearly collinear, 2..4 tasks."""
    out = [RNG.normal(size=(T, 7)) for T in (2, 3, 4)]
    out.append(np.array([[1.0, 0.0, 0.5], [-0.8, 0.3, 0.0], [0.1, -1.0, 0.2]]))
    out.append(np.array([[1.0, 0.2, 0.0, 0.0], [1.0, 0.25, 0.01, 0.0]]))
    out.append(np.array([[2.0, 1.0, 0.0], [-1.0, 0.5, 0.3], [0.5, -2.0, 1.0], [0.0, 0.0, -1.0]]))
    return out


def t(a):
    return torch.tensor(a, dtype=torch.float64)


def simplex_grid(T, n):
    if T == 2:
        a = np.linspace(0, 1, n + 1)
        return np.stack([a, 1 - a], 1)
    i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    m = i + j <= n
    return np.stack([i[m], j[m], n - i[m] - j[m]], 1) / n


# ---------------------------------------------------------------- MGDA
@pytest.mark.parametrize("G", [m for m in mats() if m.shape[0] <= 3])
def test_mgda_matches_grid_search(G):
    d = W.get("mgda").combine(t(G)).numpy()
    grid = simplex_grid(G.shape[0], 2000 if G.shape[0] == 2 else 600)
    norms = np.linalg.norm(grid @ G, axis=1)
    best = grid[np.argmin(norms)] @ G
    assert np.linalg.norm(d) <= norms.min() + 1e-9
    np.testing.assert_allclose(d, best, atol=5e-3)


@pytest.mark.parametrize("G", mats())
def test_mgda_is_min_norm_point(G):
    w = W.get("mgda")
    d = w.combine(t(G)).numpy()
    a = w.last_weights.double().numpy()
    assert abs(a.sum() - 1) < 1e-9 and (a >= -1e-12).all()
    np.testing.assert_allclose(a @ G, d, atol=1e-6)
    # KKT of min ‖Gᵀα‖² on the simplex: g_t·d ≥ ‖d‖² for all t, with equality where α_t > 0
    proj = G @ d
    dd = d @ d
    assert (proj >= dd - 1e-6 * (1 + dd)).all()
    assert np.allclose(proj[a > 1e-4], dd, atol=1e-5 * (1 + dd))


def test_mgda_normalisation_l2_and_loss():
    G = mats()[1]
    L = np.array([0.5, 2.0, 1.0])
    for mode, s in [("l2", np.linalg.norm(G, axis=1)), ("loss", L), ("loss+", L * np.linalg.norm(G, axis=1))]:
        w = W.get("mgda", normalization=mode)
        d = w.combine(t(G), losses=t(L)).numpy()
        ref = W.get("mgda")
        ref.combine(t(G / s[:, None]))
        a = ref.last_weights.double().numpy()
        np.testing.assert_allclose(d, a @ G, atol=1e-5)  # α from normalised grads, applied to the raw ones


# ---------------------------------------------------------------- PCGrad
def pcgrad_reference(G, orders):
    out = []
    for i in range(len(G)):
        gi = G[i].copy()
        for j in orders[i]:
            dot = gi @ G[j]
            if dot < 0:
                gi = gi - dot / (G[j] @ G[j]) * G[j]
        out.append(gi)
    return np.array(out)


@pytest.mark.parametrize("G", mats())
def test_pcgrad_matches_reference_with_same_orders(G):
    w = W.get("pcgrad", seed=7)
    gen = torch.Generator().manual_seed(7)
    T = len(G)
    orders = [torch.randperm(T, generator=gen).tolist() for _ in range(T)]
    d = w.combine(t(G)).numpy()
    np.testing.assert_allclose(d, pcgrad_reference(G, orders).sum(0), atol=1e-10)


@pytest.mark.parametrize("G", mats())
def test_pcgrad_fixed_order_leaves_no_conflict(G, monkeypatch):
    T = len(G)
    w = W.get("pcgrad")
    order = list(range(T))
    monkeypatch.setattr(w, "task_orders", lambda T: [order] * T)
    d = w.combine(t(G)).numpy()
    proj = pcgrad_reference(G, [order] * T)
    np.testing.assert_allclose(d, proj.sum(0), atol=1e-10)
    # each projected gradient does not conflict with the last task it was projected against
    for i in range(T):
        last = [j for j in order if j != i][-1]
        assert proj[i] @ G[last] >= -1e-10
    if T == 2:  # two tasks: no pair (original or projected) in conflict
        for a, b in itertools.product(range(2), repeat=2):
            assert proj[a] @ proj[b] >= -1e-10 and proj[a] @ G[1 - a] >= -1e-10


def test_pcgrad_no_conflict_is_sum():
    G = np.abs(RNG.normal(size=(3, 5)))
    np.testing.assert_allclose(W.get("pcgrad").combine(t(G)).numpy(), G.sum(0), atol=1e-12)


# ---------------------------------------------------------------- CAGrad
def cagrad_primal(G, c):
    """max_d min_t g_t·d s.t. ‖d − g0‖ ≤ c‖g0‖, as an epigraph problem in (d, s) solved by SLSQP."""
    T, D = G.shape
    g0 = G.mean(0)
    r2 = (c * np.linalg.norm(g0)) ** 2
    cons = [{"type": "ineq", "fun": lambda x, i=i: G[i] @ x[:D] - x[D]} for i in range(T)]
    cons.append({"type": "ineq", "fun": lambda x: r2 - np.sum((x[:D] - g0) ** 2)})
    x0 = np.concatenate([g0, [min(G @ g0)]])
    res = minimize(lambda x: -x[D], x0, constraints=cons, method="SLSQP", options={"ftol": 1e-14, "maxiter": 500})
    return res.x[:D], -res.fun


@pytest.mark.parametrize("G", mats())
@pytest.mark.parametrize("c", [0.4, 0.8])
def test_cagrad_solves_its_subproblem(G, c):
    w = W.get("cagrad", c=c, rescale=0)
    d = w.combine(t(G)).numpy()
    g0 = G.mean(0)
    assert np.linalg.norm(d - g0) <= c * np.linalg.norm(g0) * (1 + 1e-6)
    _, best = cagrad_primal(G, c)
    assert min(G @ d) >= best - 1e-5 * (1 + abs(best))
    np.testing.assert_allclose(w.last_weights.double().numpy() @ G, d, atol=1e-6)


def test_cagrad_rescale_options():
    G = mats()[1]
    d0 = W.get("cagrad", rescale=0).combine(t(G))
    torch.testing.assert_close(W.get("cagrad", rescale=1).combine(t(G)), d0 / (1 + 0.4**2))
    torch.testing.assert_close(W.get("cagrad", rescale=2).combine(t(G)), d0 / 1.4)


def test_cagrad_c0_is_mean():
    G = mats()[2]
    np.testing.assert_allclose(W.get("cagrad", c=0.0).combine(t(G)).numpy(), G.mean(0), atol=1e-9)


# ---------------------------------------------------------------- IMTL-G
@pytest.mark.parametrize("G", [m for m in mats() if np.linalg.matrix_rank(m) == len(m)])
def test_imtl_equal_projections_and_lstsq_reference(G):
    T = len(G)
    w = W.get("imtl")
    d = w.combine(t(G)).numpy()
    U = G / np.linalg.norm(G, axis=1, keepdims=True)
    p = U @ d
    np.testing.assert_allclose(p, p[0], rtol=1e-8, atol=1e-10)
    # reference: solve [Σα = 1; (u_1 − u_t)·Gᵀα = 0] for α by least squares
    A = np.vstack([np.ones(T)] + [(U[0] - U[k]) @ G.T for k in range(1, T)])
    b = np.zeros(T)
    b[0] = 1
    a_ref = np.linalg.lstsq(A, b, rcond=None)[0]
    np.testing.assert_allclose(w.last_weights.double().numpy(), a_ref, atol=1e-5)
    np.testing.assert_allclose(d, a_ref @ G, atol=1e-8)


# ---------------------------------------------------------------- Nash-MTL
@pytest.mark.parametrize("G", [m for m in mats() if np.linalg.matrix_rank(m) == len(m)])
def test_nashmtl_bargaining_equation(G):
    w = W.get("nashmtl", normalize=False, max_norm=0)
    d = w.combine(t(G)).numpy()
    a = w.last_weights.double().numpy()
    M = G @ G.T
    assert (a > 0).all()
    np.testing.assert_allclose(M @ a, 1 / a, rtol=1e-6)
    np.testing.assert_allclose(d, a @ G, atol=1e-6)
    # independent: root of Mα − 1/α with scipy starting elsewhere
    from scipy.optimize import fsolve

    ref = fsolve(lambda x: M @ x - 1 / x, np.ones(len(G)) * 0.5 / np.sqrt(np.trace(M)), xtol=1e-13)
    if (ref > 0).all() and np.allclose(M @ ref, 1 / ref, rtol=1e-6):
        np.testing.assert_allclose(a, ref, rtol=1e-5)


def test_nashmtl_normalize_and_clip():
    G = mats()[3]
    M = G @ G.T
    s = np.linalg.norm(M)
    w = W.get("nashmtl", normalize=True, max_norm=0)
    w.combine(t(G))
    a = w.last_weights.double().numpy()
    np.testing.assert_allclose((M / s) @ a, 1 / a, rtol=1e-6)
    w = W.get("nashmtl", max_norm=0.1)
    assert np.linalg.norm(w.combine(t(G)).numpy()) <= 0.1 + 1e-6


def _authors_constraint_solution(M):
    """The authors' program: ‖M‖_F-normalised G in the objective, the factor multiplied back into every constraint
    (α_t·s·((M/s)α)_t ≥ 1), solved here to the equality its optimum attains, with SciPy's generic root finder."""
    from scipy.optimize import fsolve

    s = np.linalg.norm(M)
    Mn = M / s
    return fsolve(lambda a: a * s * (Mn @ a) - 1, 1 / np.sqrt(np.diag(M)), xtol=1e-12)


@pytest.mark.parametrize("T", [2, 3, 4])
@pytest.mark.parametrize("ratio", [1.0, 1e2, 1e4, 1e5, 1e6])
def test_nashmtl_residual_at_unequal_scales(T, ratio):
    """(GGᵀα)_t = 1/α_t to 1e-6 (relative) when task gradient norms differ by up to 1e6, and the direction agrees
    with SciPy's float64 root of the authors' (normalised, factor restored) constraints."""
    rng = np.random.default_rng(int(ratio) % 97 + T)
    G = rng.normal(size=(T, 40))
    G[0] *= ratio
    if T > 2:
        G[-1] /= np.sqrt(ratio)
    M = G @ G.T
    w = W.get("nashmtl", max_norm=0)
    d = w.combine(t(G)).numpy()
    a = w.last_weights.double().numpy()
    assert (a > 0).all()
    assert np.abs(a * (M @ a) - 1).max() < 1e-6
    assert np.linalg.norm(M @ a - 1 / a) / np.linalg.norm(1 / a) < 1e-6
    ref = _authors_constraint_solution(M)
    assert np.abs(ref * (M @ ref) - 1).max() < 1e-8  # the reference itself converged
    np.testing.assert_allclose(a, ref, rtol=1e-6)
    np.testing.assert_allclose(d, ref @ G, rtol=1e-6, atol=1e-9 * np.abs(ref @ G).max())


def test_nashmtl_default_is_authors_scale():
    """Default normalize=False: the authors' constraints restore ‖M‖_F, so ‖d‖² = αᵀMα = T at any gradient scale."""
    G = RNG.normal(size=(3, 9)) * 1e3
    w = W.get("nashmtl", max_norm=0)
    d = w.combine(t(G)).numpy()
    np.testing.assert_allclose(d @ d, 3.0, rtol=1e-8)
    np.testing.assert_allclose(w.last_weights.numpy(), _authors_constraint_solution(G @ G.T), rtol=1e-6)


def test_nashmtl_zero_gradient_task_and_opposite_gradients():
    G = np.array([[1.0, 2.0, 0.0], [0.0, 0.0, 0.0], [0.5, -1.0, 3.0]])
    w = W.get("nashmtl", max_norm=0)
    w.combine(t(G))
    a = w.last_weights.numpy()
    assert a[1] == 0 and (a[[0, 2]] > 0).all()
    M = G @ G.T
    np.testing.assert_allclose((a * (M @ a))[[0, 2]], 1, atol=1e-9)
    # exactly opposite gradients: no solution exists; finite weights, a (near) zero direction
    w.combine(t(np.array([[1.0, 2.0], [-1.0, -2.0]])))
    assert torch.isfinite(w.last_weights).all()


def test_update_every_refused_when_not_positive_or_not_a_weight_method():
    from mtkd.errors import MtkdError

    with pytest.raises(MtkdError, match="update_every"):
        W.get("nashmtl", update_weights_every=0)
    with pytest.raises(MtkdError, match="update_every"):
        W.get("mgda", update_every=1.5)
    with pytest.raises(MtkdError, match="not both"):
        W.get("nashmtl", update_every=2, update_weights_every=3)
    with pytest.raises(MtkdError, match="update_every"):
        W.get("gradvac", groups="tensor", update_every=2)
    with pytest.raises(MtkdError, match="unknown option"):
        W.get("graddrop", update_every=2)  # no task weights to hold


# ---------------------------------------------------------------- GradDrop
def test_graddrop_matches_reference():
    G = RNG.normal(size=(3, 50))
    d = W.get("graddrop", seed=3).combine(t(G)).numpy()
    U = torch.rand(50, generator=torch.Generator().manual_seed(3), dtype=torch.float64).numpy()
    P = 0.5 * (1 + G.sum(0) / (np.abs(G).sum(0) + 1e-7))
    keep = ((P > U) & (G > 0)) | ((P < U) & (G < 0))
    np.testing.assert_allclose(d, (G * keep).sum(0), atol=1e-12)
    # full leak = plain sum; same-sign columns are kept whole
    np.testing.assert_allclose(W.get("graddrop", leak=1.0).combine(t(G)).numpy(), G.sum(0), atol=1e-12)
    Gp = np.abs(G)
    np.testing.assert_allclose(W.get("graddrop").combine(t(Gp)).numpy(), Gp.sum(0), atol=1e-12)


# ---------------------------------------------------------------- GradVac
def gradvac_reference(G, orders, targets, beta):
    targets = targets.copy()
    out = []
    for i in range(len(G)):
        gi = G[i].copy()
        for j in orders[i]:
            if j == i:
                continue
            phi = gi @ G[j] / (np.linalg.norm(gi) * np.linalg.norm(G[j]))
            tg = targets[i, j]
            if phi < tg:
                gi = gi + np.linalg.norm(gi) * (tg * np.sqrt(1 - phi**2) - phi * np.sqrt(1 - tg**2)) / (
                    np.linalg.norm(G[j]) * np.sqrt(1 - tg**2)) * G[j]
            targets[i, j] = (1 - beta) * tg + beta * phi
        out.append(gi)
    return np.array(out).sum(0), targets


def test_gradvac_matches_reference_over_steps():
    w = W.get("gradvac", seed=5, beta=0.5)
    gen = torch.Generator().manual_seed(5)
    targets = np.zeros((3, 3))
    for step in range(4):
        G = RNG.normal(size=(3, 6))
        orders = [torch.randperm(3, generator=gen).tolist() for _ in range(3)]
        d_ref, targets = gradvac_reference(G, orders, targets, 0.5)
        np.testing.assert_allclose(w.combine(t(G)).numpy(), d_ref, atol=1e-9)
    np.testing.assert_allclose(w.targets.numpy(), targets, atol=1e-12)


def test_gradvac_first_step_two_tasks_equals_pcgrad():
    # with φ̂ = 0 the GradVac update of a conflicting pair is exactly the PCGrad projection (cos → 0)
    G = np.array([[1.0, 0.0, 0.3], [-0.6, 0.8, 0.0]])
    d = W.get("gradvac").combine(t(G)).numpy()
    proj = pcgrad_reference(G, [[0, 1], [0, 1]])
    assert abs(proj[0] @ G[1]) < 1e-12 and abs(proj[1] @ G[0]) < 1e-12
    np.testing.assert_allclose(d, proj.sum(0), atol=1e-10)


# ---------------------------------------------------------------- Aligned-MTL
@pytest.mark.parametrize("G", [m for m in mats() if np.linalg.matrix_rank(m) == len(m)])
def test_alignedmtl_is_scaled_procrustes(G):
    # independent: SVD G = U S Vᵀ → aligned rows Ĝ = σ U Vᵀ (orthogonal Procrustes), d = Σ rows of Ĝ
    Uu, S, Vt = np.linalg.svd(G, full_matrices=False)
    for mode, sigma in [("min", S.min()), ("median", np.sqrt(np.median(S**2))), ("rmse", np.sqrt(np.mean(S**2)))]:
        w = W.get("alignedmtl", scale=mode)
        d = w.combine(t(G)).numpy()
        Ghat = sigma * Uu @ Vt
        np.testing.assert_allclose(d, Ghat.sum(0), atol=1e-7)
        np.testing.assert_allclose(Ghat @ Ghat.T, sigma**2 * np.eye(len(G)), atol=1e-7)


def test_alignedmtl_rank_deficient_is_finite():
    G = np.array([[1.0, 2.0, 0.0], [2.0, 4.0, 0.0]])
    d = W.get("alignedmtl").combine(t(G))
    assert torch.isfinite(d).all()


# ---------------------------------------------------------------- DB-MTL
@pytest.mark.parametrize("sigma", [None, 0.5])
def test_dbmtl_ema_and_balancing(sigma):
    """Against LibMTL's recursion (the authors' library): buffer ← g + (β/k^σ)(buffer − g) from a zero buffer,
    α = max‖buffer‖/‖buffer_t‖, d = Σ α_t buffer_t; σ defaults to 0 there and here."""
    w = W.get("dbmtl") if sigma is None else W.get("dbmtl", beta_sigma=sigma)
    s = 0.0 if sigma is None else sigma
    buf = np.zeros((3, 5))
    for k in range(1, 5):
        G = RNG.normal(size=(3, 5)) * np.array([[1.0], [10.0], [0.1]])
        buf = G + (0.9 / k**s) * (buf - G)
        n = np.linalg.norm(buf, axis=1)
        ref = ((n.max() / (n + 1e-8))[:, None] * buf).sum(0)
        np.testing.assert_allclose(w.combine(t(G)).numpy(), ref, rtol=1e-9)
    scaled = (w.last_weights.double().numpy()[:, None] * buf)
    np.testing.assert_allclose(np.linalg.norm(scaled, axis=1), n.max(), rtol=1e-6)


# ---------------------------------------------------------------- all methods
@pytest.mark.parametrize("name", [n for n in W.names() if W.get(n, tasks=["a", "b"]).family == "gradient"])
def test_public_combine_without_tasks(name):
    G = torch.randn(3, 11, generator=torch.Generator().manual_seed(0))
    w = W.get(name)
    d = w.combine(G)
    assert d.shape == (11,) and d.dtype == G.dtype and torch.isfinite(d).all()
    assert w.last_weights.shape == (3,)
    d32 = W.get(name).combine(G.float())
    assert d32.dtype == torch.float32
