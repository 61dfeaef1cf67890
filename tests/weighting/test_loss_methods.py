"""Loss-weighting methods follow their formulas on fixed loss sequences."""

import math

import numpy as np
import pytest
import torch

import mtkd.weighting as W

TASKS = ["semseg", "depth", "normal"]


def leaf_losses(values):
    return {t: torch.tensor(float(v), requires_grad=True) for t, v in zip(TASKS, values)}


def test_ew():
    L = leaf_losses([1.0, 2.0, 3.0])
    w = W.get("ew").backward(L, extra=torch.tensor(0.5, requires_grad=True))
    assert w == {t: 1.0 for t in TASKS}
    assert all(L[t].grad.item() == 1.0 for t in TASKS)


def test_uw_formula_and_gradients():
    uw = W.get("uw", tasks=TASKS)
    with torch.no_grad():
        uw.log_vars.copy_(torch.tensor([0.3, -0.2, 1.0]))
    vals = [1.5, 0.7, 2.0]
    L = leaf_losses(vals)
    w = uw.backward(L)
    s = np.array([0.3, -0.2, 1.0])
    coef = np.array([1.0, 0.5, 0.5]) * np.exp(-s)  # semseg classification, depth/normal regression
    np.testing.assert_allclose([w[t] for t in TASKS], coef, rtol=1e-6)
    np.testing.assert_allclose([L[t].grad.item() for t in TASKS], coef, rtol=1e-6)
    # d/ds of c e^{-s} L + s/2 = −c e^{-s} L + 1/2
    np.testing.assert_allclose(uw.log_vars.grad.numpy(), -coef * np.array(vals) + 0.5, rtol=1e-6)
    assert W.get("uw", tasks=TASKS, classification=()).backward(leaf_losses(vals))["semseg"] == 0.5


def test_uw_needs_tasks():
    with pytest.raises(W.base.MtkdError, match="tasks"):
        W.get("uw")


def test_dwa_schedule():
    dwa = W.get("dwa", tasks=TASKS)
    hist = [[1.0, 2.0, 3.0], [0.8, 1.9, 2.0], [0.7, 1.0, 1.9]]
    for e, h in enumerate(hist):
        w = dwa.backward(leaf_losses([1, 1, 1]))
        if e < 2:
            assert w == {t: 1.0 for t in TASKS}
        else:
            r = np.array(hist[e - 1]) / np.array(hist[e - 2])
            ref = 3 * np.exp(r / 2) / np.exp(r / 2).sum()
            np.testing.assert_allclose([w[t] for t in TASKS], ref, rtol=1e-6)
            assert abs(sum(w.values()) - 3) < 1e-5
        dwa.on_train_epoch_end(e, dict(zip(TASKS, h)))
    # state survives a state_dict round trip
    other = W.get("dwa", tasks=TASKS)
    other.load_state_dict(dwa.state_dict())
    assert other.backward(leaf_losses([1, 1, 1])) == dwa.backward(leaf_losses([1, 1, 1]))


def test_rlw_is_seeded_softmax_of_normals():
    rlw = W.get("rlw", seed=11)
    gen = torch.Generator().manual_seed(11)
    for _ in range(3):
        L = leaf_losses([1.0, 2.0, 3.0])
        w = rlw.backward(L)
        ref = torch.softmax(torch.randn(3, generator=gen, dtype=torch.float64), 0).numpy()
        np.testing.assert_allclose([w[t] for t in TASKS], ref, rtol=1e-6)
        np.testing.assert_allclose([L[t].grad.item() for t in TASKS], ref, rtol=1e-6)
        assert abs(sum(w.values()) - 1) < 1e-6 and min(w.values()) > 0


def test_gradnorm_weight_gradient_and_renormalisation():
    torch.manual_seed(0)
    Wt = torch.nn.Parameter(torch.randn(4, 3))
    x = torch.randn(5, 3)
    scales = [1.0, 3.0, 0.5]
    gn = W.get("gradnorm", tasks=TASKS, alpha=1.5)
    opt = torch.optim.SGD(gn.parameters(), lr=0.1)
    L0 = None
    for step in range(3):
        h = x @ Wt.T
        L = {t: s * (h ** (k + 1)).mean() ** 2 + 0.1 * step for k, (t, s) in enumerate(zip(TASKS, scales))}
        vals = np.array([L[t].item() for t in TASKS])
        norms = np.array([torch.autograd.grad(L[t], Wt, retain_graph=True)[0].norm().item() for t in TASKS])
        w_before = gn.loss_weights.detach().numpy().copy()
        w_used = np.clip(w_before, 1e-4, None)
        w_used = 3 * w_used / w_used.sum()
        L0 = vals if L0 is None else L0
        opt.zero_grad()
        Wt.grad = None
        out = gn.backward(L, shared_params=[torch.nn.Parameter(torch.zeros(4)), Wt, torch.nn.Parameter(torch.zeros(4))])
        np.testing.assert_allclose([out[t] for t in TASKS], w_used, rtol=1e-5)
        # reference gradient of L_grad = Σ|w n − mean(w n) r^α| with the target constant
        r = (vals / L0) / (vals / L0).mean()
        Gw = w_used * norms
        ref = np.sign(Gw - Gw.mean() * r**1.5) * norms
        np.testing.assert_allclose(gn.loss_weights.grad.numpy(), ref, rtol=1e-4, atol=1e-6)
        # the network sees Σ w_t L_t with w constant
        ref_net = sum(w_used[k] * torch.autograd.grad(s * ((x @ Wt.T) ** (k + 1)).mean() ** 2, Wt)[0]
                      for k, s in enumerate(scales))
        torch.testing.assert_close(Wt.grad, ref_net.float(), rtol=1e-4, atol=1e-6)
        opt.step()


def test_famo_against_torch_adam():
    famo = W.get("famo", tasks=TASKS)
    logits = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    adam = torch.optim.Adam([logits], lr=0.025, weight_decay=0.01)
    seq = [[1.0, 2.0, 3.0], [0.9, 1.0, 2.9], [0.8, 0.9, 2.5], [0.5, 0.85, 2.4]]
    prev = None
    for vals in seq:
        now = torch.log(torch.tensor(vals, dtype=torch.float64) + 1e-8)
        if prev is not None:
            adam.zero_grad()
            torch.softmax(logits, 0).backward(prev - now)
            adam.step()
        prev = now
        L = leaf_losses(vals)
        w = famo.backward(L)
        z = torch.softmax(logits.detach(), 0).numpy()
        d = np.array(vals) + 1e-8
        ref = z / d / (z / d).sum()
        np.testing.assert_allclose([w[t] for t in TASKS], ref, rtol=1e-6)
        np.testing.assert_allclose([L[t].grad.item() for t in TASKS], ref, rtol=1e-5)
        assert abs(sum(w.values()) - 1) < 1e-6
    np.testing.assert_allclose(famo.logits.numpy(), logits.detach().numpy(), rtol=1e-5, atol=1e-9)
    assert famo.logits[0] < famo.logits[2]  # the task that decreased least gets the larger logit


def test_fixed_weights_follow_the_option_and_refuse_bad_values():
    import torch

    from mtkd.errors import MtkdError
    from mtkd.weighting import get

    w = get("fixed", tasks=["semseg", "sal", "edge"], weights={"sal": 5, "edge": 50})
    p = torch.tensor(1.0, requires_grad=True)
    losses = {"semseg": p * 1.0, "sal": p * 2.0, "edge": p * 3.0}
    chosen = w.backward(losses)
    assert chosen == {"semseg": 1.0, "sal": 5.0, "edge": 50.0}
    assert p.grad.item() == 1 * 1 + 5 * 2 + 50 * 3
    for bad in ({"sal": -1}, {"sal": float("nan")}, {"depth": 1}):
        with pytest.raises(MtkdError):
            get("fixed", tasks=["semseg", "sal"], weights=bad)


def test_famo_same_batch_follows_the_authors_loop():
    """update=same_batch against the authors' famo.py loop written out with torch (their gradient of softmax,
    torch's Adam with weight decay γ on the logits; clipping off): backward, optimiser step, the same batch's losses
    recomputed under no_grad, logits updated from that decrease. Model and logits agree after several steps."""
    g = torch.Generator().manual_seed(0)
    X, Y = torch.randn(16, 4, generator=g, dtype=torch.float64), torch.randn(16, 3, generator=g, dtype=torch.float64)

    def model_and_opt():
        torch.manual_seed(1)
        m = torch.nn.Linear(4, 3).double()
        return m, torch.optim.SGD(m.parameters(), lr=0.1)

    def losses(m):
        return ((Y - m(X)) ** 2).mean(0) * torch.tensor([1.0, 5.0, 0.2], dtype=torch.float64)

    # the authors' loop
    ref, ref_opt = model_and_opt()
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    w_opt = torch.optim.Adam([w], lr=0.025, weight_decay=0.01)
    # mtkd
    mine, my_opt = model_and_opt()
    famo = W.get("famo", tasks=TASKS, update="same_batch")
    assert famo.wants_post_step_losses()
    for _ in range(5):
        loss = losses(ref)
        z = torch.softmax(w, -1).detach()
        D = loss + 1e-8
        c = (z / D).sum().detach()
        ref_opt.zero_grad()
        (D.log() * z / c).sum().backward()
        ref_opt.step()
        with torch.no_grad():
            new = losses(ref)
        delta = (loss.detach() + 1e-8).log() - (new + 1e-8).log()
        d = torch.autograd.grad(torch.softmax(w, -1), w, grad_outputs=delta)[0]
        w_opt.zero_grad()
        w.grad = d
        w_opt.step()

        my_opt.zero_grad()
        L = losses(mine)
        famo.backward({t: L[k] for k, t in enumerate(TASKS)})
        my_opt.step()
        with torch.no_grad():
            L2 = losses(mine)
        famo.after_step({t: L2[k] for k, t in enumerate(TASKS)})
    np.testing.assert_allclose(famo.logits.numpy(), w.detach().numpy(), rtol=1e-6, atol=1e-10)
    for a, b in zip(mine.parameters(), ref.parameters()):  # the loss family stacks losses in float32
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)
    assert not W.get("famo", tasks=TASKS).wants_post_step_losses()  # next_batch: no extra forward


@pytest.mark.slow
def test_famo_same_batch_through_the_engine(tmp_path, monkeypatch):
    """The engine recomputes the same batch's losses after every optimiser step (and only then) for same_batch."""
    from mtkd.config import load_config
    from mtkd.engine.run import train
    from mtkd.testing import tiny_run_overrides
    from mtkd.weighting.famo import FAMO

    calls = []
    original = FAMO.after_step

    def spy(self, losses):
        calls.append(sorted(losses))
        return original(self, losses)

    monkeypatch.setattr(FAMO, "after_step", spy)
    res = train(load_config(None, tiny_run_overrides(tmp_path, "name=famo", "weighting.name=famo",
                                                      "weighting.options.update=same_batch")))
    assert len(calls) == res["steps"] > 0 and calls[0] == sorted(["semseg", "depth", "normal"])
