"""The gradient-family plumbing on a tiny two-layer model, and the user-facing errors."""

import numpy as np
import pytest
import torch

import mtkd.weighting as W
from mtkd.errors import MtkdError

from weighting_tiny import TASKS, expected_grads, losses_of, make_batch, make_model, shared_params

GRADIENT = [n for n in W.names() if W.get(n, tasks=TASKS).family == "gradient"]
REP = [n for n in GRADIENT if W.get(n).supports_rep_grad]
OPTIONS = {"mgda": {"normalization": "loss+"}}


def run(name, rep_grad=False, **opts):
    x, y = make_batch()
    model = make_model()
    L, extra, rep = losses_of(model, x, y)
    options = {**OPTIONS.get(name, {}), **opts}
    if rep_grad:
        options["rep_grad"] = True
    w = W.get(name, tasks=TASKS, **options)
    calls = []
    weights = w.backward(L, extra=extra, shared_params=shared_params(model), rep=rep,
                         backward_fn=lambda t: (calls.append(1), t.backward()))
    assert len(calls) == 1  # exactly one backward through the graph
    got_shared = [p.grad for p in shared_params(model)]
    got_heads = [p.grad for h in model.heads.values() for p in h.parameters()]
    ref_shared, ref_heads = expected_grads(name, options, x, y, rep_grad=rep_grad)
    return weights, got_shared, got_heads, ref_shared, ref_heads


@pytest.mark.parametrize("name", GRADIENT)
def test_param_mode_shared_grads_are_combined(name):
    weights, gs, gh, rs, rh = run(name)
    assert list(weights) == list(TASKS)
    for a, b in zip(gs, rs):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-10)
    for a, b in zip(gh, rh):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", REP)
def test_rep_mode(name):
    weights, gs, gh, rs, rh = run(name, rep_grad=True)
    for a, b in zip(gs, rs):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-10)
    for a, b in zip(gh, rh):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_gradient_accumulation_adds():
    x, y = make_batch()
    model = make_model()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    L, extra, rep = losses_of(model, x, y)
    W.get("mgda", tasks=TASKS).backward(L, extra=extra, shared_params=shared_params(model))
    ref_shared, _ = expected_grads("mgda", {}, x, y)
    for p, r in zip(shared_params(model), ref_shared):
        torch.testing.assert_close(p.grad, r + 1)


@pytest.mark.parametrize("name", ["ew", "uw", "gradnorm", "famo", "rlw", "dwa"])
def test_loss_family_on_model(name):
    x, y = make_batch()
    model = make_model()
    L, extra, rep = losses_of(model, x, y)
    w = W.get(name, tasks=TASKS)
    weights = w.backward(L, extra=extra, shared_params=shared_params(model), rep=rep)
    assert list(weights) == list(TASKS)
    assert all(p.grad is not None for p in model.parameters())


def test_unknown_name_suggests_closest():
    with pytest.raises(MtkdError, match="did you mean 'pcgrad'"):
        W.get("pcgard")
    assert "mgda" in W.names()


@pytest.mark.parametrize("name", W.names())
def test_every_registered_weighting_runs_a_step(name):
    # a newly registered method is exercised here with no test of its own: two steps on the tiny model, finite
    # gradients everywhere, the weights reported per task
    model = make_model()
    w = W.get(name, tasks=TASKS)
    for seed in (1, 2):
        x, y = make_batch(seed=seed)
        model.zero_grad(set_to_none=True)
        L, extra, rep = losses_of(model, x, y)
        weights = w.backward(L, extra=extra, shared_params=shared_params(model), rep=rep)
        assert list(weights) == list(TASKS)
        for p in model.parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_unknown_option_refused():
    with pytest.raises(MtkdError, match=r"unknown option\(s\) 'alpha' for weighting 'cagrad'; valid options: c, "):
        W.get("cagrad", alpha=0.5)
    with pytest.raises(MtkdError, match="must be one of"):
        W.get("mgda", normalization="l1")


@pytest.mark.parametrize("name", [n for n in GRADIENT if n not in REP])
def test_rep_grad_refused_where_unsupported(name):
    with pytest.raises(MtkdError, match="does not support rep_grad=True"):
        W.get(name, rep_grad=True)


def test_rep_grad_without_rep_refused():
    x, y = make_batch()
    L, extra, _ = losses_of(make_model(), x, y)
    with pytest.raises(MtkdError, match="no shared representation"):
        W.get("mgda", rep_grad=True).backward(L)


@pytest.mark.parametrize("name", ["ew", "uw", "pcgrad", "mgda"])
def test_nan_loss_refused_before_any_gradient(name):
    x, y = make_batch()
    model = make_model()
    L, extra, rep = losses_of(model, x, y)
    L["b"] = L["b"] * float("nan")
    with pytest.raises(MtkdError, match=r"loss of task 'b' is nan"):
        W.get(name, tasks=TASKS).backward(L, extra=extra, shared_params=shared_params(model), rep=rep)
    assert all(p.grad is None for p in model.parameters())
    L, extra, rep = losses_of(model, x, y)
    with pytest.raises(MtkdError, match=r"\(extra\) is inf"):
        W.get(name, tasks=TASKS).backward(L, extra=extra + float("inf"), shared_params=shared_params(model))


def test_wrong_tasks_and_missing_shared_params():
    x, y = make_batch()
    L, extra, rep = losses_of(make_model(), x, y)
    with pytest.raises(MtkdError, match="missing"):
        W.get("ew", tasks=("a", "b", "z")).backward(L)
    with pytest.raises(MtkdError, match="needs shared_params"):
        W.get("pcgrad").backward(L)


def test_generator_state_round_trip():
    G = torch.randn(3, 40, dtype=torch.float64)
    a = W.get("graddrop")
    a.combine(G)
    b = W.get("graddrop")
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(a.combine(G), b.combine(G))


@pytest.mark.parametrize("rep_grad", [False, True])
def test_loss_scaling_backward_fn_scales_everything(rep_grad):
    # Lightning's fp16 precision plugin back-propagates S·loss; the combined direction must be scaled by S as well
    x, y = make_batch()
    model = make_model()
    L, extra, rep = losses_of(model, x, y)
    W.get("mgda", rep_grad=rep_grad).backward(L, extra=extra, shared_params=shared_params(model), rep=rep,
                                              backward_fn=lambda t: (8.0 * t).backward())
    ref_shared, ref_heads = expected_grads("mgda", {}, x, y, rep_grad=rep_grad)
    for p, r in zip(shared_params(model), ref_shared):
        torch.testing.assert_close(p.grad, 8.0 * r)


@pytest.mark.parametrize("name,opts", [("nashmtl", {"update_weights_every": 3}), ("mgda", {"update_every": 3}),
                                       ("pcgrad", {"update_every": 3}), ("imtl", {"update_every": 3, "rep_grad": True})])
def test_update_every_holds_alpha_between_recomputations(name, opts):
    """k = 3: α is recomputed at steps 0 and 3 only (the usual update); at steps 1, 2 the step is ONE plain backward
    of Σ_t α_t L_t + extra with step 0's α (no per-task gradients): shared Σ_t α_t g_t, heads α_t-scaled."""
    model = make_model()
    sp = shared_params(model)
    heads = {t: list(model.heads[t].parameters()) for t in TASKS}
    w = W.get(name, tasks=TASKS, **opts)
    held = None
    for step in range(5):
        x, y = make_batch(seed=10 + step)
        for p in model.parameters():
            p.grad = None
        L, extra, rep = losses_of(model, x, y)
        ref = None if held is None else torch.autograd.grad(
            sum(held[i] * L[t] for i, t in enumerate(TASKS)) + extra, sp + [p for t in TASKS for p in heads[t]],
            retain_graph=True)
        calls, n_grads = [], []
        orig = torch.autograd.grad
        torch.autograd.grad = lambda *a, **k: (n_grads.append(1), orig(*a, **k))[1]
        try:
            w.backward(L, extra=extra, shared_params=sp, rep=rep, backward_fn=lambda t: (calls.append(1), t.backward()))
        finally:
            torch.autograd.grad = orig
        a = w.last_weights.double()
        assert len(calls) == 1
        if step % 3 == 0:
            assert held is None or not torch.allclose(a, held)
            assert n_grads  # per-task gradients taken
            held = a.clone()
            continue
        torch.testing.assert_close(a, held)
        assert not n_grads  # no per-task gradients in between
        got = [p.grad for p in sp] + [p.grad for t in TASKS for p in heads[t]]
        for g, r in zip(got, ref):
            torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-12)
    # the counter and the held α travel in the state dict where the method has an extra_state
    if name in ("nashmtl", "pcgrad"):
        w2 = W.get(name, tasks=TASKS, **opts)
        w2.load_state_dict(w.state_dict())
        assert w2._step == 5 and torch.equal(w2._held, w._held)


def test_graddrop_batch_purity_is_the_papers_activation_form():
    """purity=batch against a NumPy re-derivation of the paper's (and LibMTL's) form at the shared activation A:
    S_t = Σ_b sgn(A_b)∇_{A_b}L_t, P = ½(1 + ΣS/Σ|S|), one F-mask applied to every sample's gradient."""
    x, y = make_batch()
    model = make_model()
    L, extra, rep = losses_of(model, x, y)
    sp = shared_params(model)
    G = torch.stack([torch.autograd.grad(L[t], rep, retain_graph=True)[0] for t in TASKS]).double().numpy()  # T×B×F
    A = rep.detach().double().numpy()
    S = (G * np.sign(A)[None]).sum(1)
    P = 0.5 * (1 + S.sum(0) / (np.abs(S).sum(0) + 1e-7))
    U = torch.rand(P.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64).numpy()
    M = ((P > U) & (S > 0)) | ((P < U) & (S < 0))  # T×F
    d = (G * M[:, None, :]).sum(0)
    want = torch.autograd.grad(rep, sp, grad_outputs=torch.tensor(d).view_as(rep), retain_graph=True)
    want = [w + e for w, e in zip(want, torch.autograd.grad(extra, sp, retain_graph=True))]
    w = W.get("graddrop", tasks=TASKS, rep_grad=True, purity="batch")
    w.backward(L, extra=extra, shared_params=sp, rep=rep)
    for p, r in zip(sp, want):
        torch.testing.assert_close(p.grad, r, rtol=1e-9, atol=1e-12)
    assert not (M.all(0) | (~M).all(0)).all()  # the check is not vacuous: some features mix kept and dropped tasks
    with pytest.raises(MtkdError, match="rep_grad"):
        W.get("graddrop", purity="batch")


@pytest.mark.parametrize("name", ["mgda", "nashmtl", "upgrad"])
def test_batched_per_task_grads_equal_the_loop(name, monkeypatch):
    """PER_TASK_GRADS='batched' (one is_grads_batched backward): the same G and GGᵀ as T separate backwards, and
    the same update through the plumbing."""
    from mtkd.weighting import plumbing

    x, y = make_batch()
    model = make_model()
    L, extra, rep = losses_of(model, x, y)
    sp = shared_params(model)
    Gl = plumbing.per_task_grads([L[t] for t in TASKS], sp, mode="loop")
    Gb = plumbing.per_task_grads([L[t] for t in TASKS], sp, mode="batched")
    torch.testing.assert_close(Gb, Gl, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(Gb @ Gb.T, Gl @ Gl.T, rtol=1e-6, atol=1e-12)
    monkeypatch.setattr(plumbing, "PER_TASK_GRADS", "batched")
    W.get(name, tasks=TASKS).backward(L, extra=extra, shared_params=sp, rep=rep)
    ref_shared, ref_heads = expected_grads(name, {}, x, y)
    for p, r in zip(sp, ref_shared):
        torch.testing.assert_close(p.grad, r, rtol=1e-9, atol=1e-12)
    for p, r in zip([p for h in model.heads.values() for p in h.parameters()], ref_heads):
        torch.testing.assert_close(p.grad, r, rtol=1e-9, atol=1e-12)
    with pytest.raises(MtkdError, match="MTKD_PER_TASK_GRADS"):
        plumbing.per_task_grads([L[t] for t in TASKS], sp, mode="vmap")
