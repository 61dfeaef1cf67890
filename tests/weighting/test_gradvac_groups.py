"""GradVac with per-tensor groups (the paper's per-layer vaccine, LibMTL's group type 2) against a NumPy
re-derivation that loops task i, task j, group k as LibMTL does; and through the plumbing on the tiny model."""

import numpy as np
import pytest
import torch

import mtkd.weighting as W
from mtkd.errors import MtkdError

from weighting_tiny import TASKS, losses_of, make_batch, make_model, shared_params

RNG = np.random.default_rng(21)


def grouped_reference(G, blocks, orders, rho, beta):
    """Per group k the vaccine on the slice G[:, group k], targets rho[k]; returns d and the new targets."""
    rho = rho.copy()
    edges = np.cumsum([0, *blocks])
    pc = G.copy()
    for i in range(len(G)):
        for j in orders[i]:
            if j == i:
                continue
            for k in range(len(blocks)):
                sl = slice(edges[k], edges[k + 1])
                gi, gj = pc[i, sl], G[j, sl]
                phi = gi @ gj / (np.linalg.norm(gi) * np.linalg.norm(gj))
                tg = rho[k, i, j]
                if phi < tg:
                    pc[i, sl] = gi + np.linalg.norm(gi) * (tg * np.sqrt(1 - phi**2) - phi * np.sqrt(1 - tg**2)) / (
                        np.linalg.norm(gj) * np.sqrt(1 - tg**2)) * gj
                rho[k, i, j] = (1 - beta) * tg + beta * phi
    return pc.sum(0), rho


def test_tensor_groups_match_reference_over_steps():
    blocks = (4, 6, 2)
    w = W.get("gradvac", groups="tensor", seed=3)
    w.blocks = blocks
    gen = torch.Generator().manual_seed(3)
    rho = np.zeros((3, 3, 3))
    for _ in range(4):
        G = RNG.normal(size=(3, sum(blocks)))
        orders = [torch.randperm(3, generator=gen).tolist() for _ in range(3)]
        d_ref, rho = grouped_reference(G, blocks, orders, rho, 0.5)
        d = w.combine(torch.tensor(G)).numpy()
        np.testing.assert_allclose(d, d_ref, atol=1e-9)
    np.testing.assert_allclose(w.targets.numpy(), rho, atol=1e-12)
    # one group spanning everything is the ungrouped method
    G = RNG.normal(size=(3, 12))
    one = W.get("gradvac", groups="tensor")
    one.blocks = (12,)
    torch.testing.assert_close(one.combine(torch.tensor(G)), W.get("gradvac").combine(torch.tensor(G)))


def test_tensor_groups_through_the_plumbing():
    x, y = make_batch()
    model = make_model()
    L, extra, rep = losses_of(model, x, y)
    sp = shared_params(model)
    w = W.get("gradvac", tasks=TASKS, groups="tensor", seed=1)
    w.backward(L, extra=extra, shared_params=sp, rep=rep)
    assert w.blocks == tuple(p.numel() for p in sp)
    # reference: per-task gradients by autograd, the NumPy grouped vaccine, plus the gradient of extra
    model2 = make_model()
    L2, extra2, _ = losses_of(model2, x, y)
    sp2 = shared_params(model2)
    G = np.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(L2[t], sp2, retain_graph=True)]).numpy()
                  for t in TASKS])
    gen = torch.Generator().manual_seed(1)
    orders = [torch.randperm(3, generator=gen).tolist() for _ in range(3)]
    d, _ = grouped_reference(G, w.blocks, orders, np.zeros((len(sp), 3, 3)), 0.5)
    ex = torch.cat([g.reshape(-1) for g in torch.autograd.grad(extra2, sp2)]).numpy()
    got = torch.cat([p.grad.reshape(-1) for p in sp]).numpy()
    np.testing.assert_allclose(got, d + ex, rtol=1e-7, atol=1e-10)


def test_tensor_groups_need_blocks():
    with pytest.raises(MtkdError, match="needs the shared parameter sizes"):
        W.get("gradvac", groups="tensor").combine(torch.randn(3, 5))
    with pytest.raises(MtkdError, match="must be one of"):
        W.get("gradvac", groups="layer")
