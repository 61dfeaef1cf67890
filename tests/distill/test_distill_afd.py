import numpy as np
import pytest
import torch

from distill_testutil import maps
from mtkd.distill.losses import AdaptiveFeatureDistillation
from mtkd.errors import MtkdError

TASKS = ["semseg", "depth", "normal"]
SHAPES = [(2, 4, 6, 6), (2, 8, 3, 3)]


def feats(seed, grad=False):
    mtl = [maps(s, seed + i).requires_grad_(True) for i, s in enumerate(SHAPES)]
    stl = {t: [maps(s, seed + 10 * (j + 1) + i).requires_grad_(grad) for i, s in enumerate(SHAPES)] for j, t in enumerate(TASKS)}
    return mtl, stl


def ref_paper(mtl, stl, w):
    total = 0.0
    for l in range(len(mtl)):
        f = mtl[l].detach().double().numpy()
        target = np.zeros_like(f)
        for i, t in enumerate(TASKS):
            target = target + float(w[l, i]) * stl[t][l].detach().double().numpy()
        total += float(((f - target) ** 2).sum()) / f.size
    return total


def np_pixel_norm(f):
    out = np.empty_like(f)
    b, c, h, w = f.shape
    for i in range(b):
        for y in range(h):
            for x in range(w):
                v = f[i, :, y, x]
                out[i, :, y, x] = v / np.sqrt((v**2).sum() + 1e-6)
    return out


def ref_code(mtl, stl, w, weights, inside=True):
    total = 0.0
    for l in range(len(mtl)):
        f = mtl[l].detach().double().numpy()
        W = weights[l].detach().double().numpy()[:, :, 0, 0]  # out × in
        a = np_pixel_norm(np.einsum("oc,bchw->bohw", W, f))
        normed = [np_pixel_norm(stl[t][l].detach().double().numpy()) for t in TASKS]
        b, c, h, wd = a.shape
        if inside:
            d = a - sum(float(w[l, i]) * n for i, n in enumerate(normed))
            total += float((d**2).sum()) / (b * h * wd)
        else:
            total += sum(float(((a - float(w[l, i]) * n) ** 2).sum()) / (b * h * wd) for i, n in enumerate(normed))
    return total / len(mtl)


@pytest.mark.parametrize("mode", ["learned", "equal", "softmax", "select"])
def test_afd_paper_form_golden(mode):
    torch.manual_seed(0)
    afd = AdaptiveFeatureDistillation(2, TASKS, mode=mode, form="paper")
    mtl, stl = feats(80)
    w = afd.weights().detach()
    if mode == "equal":
        assert torch.equal(w, torch.ones(2, 3)) and "omega" not in dict(afd.named_parameters())
    if mode == "softmax":
        assert torch.allclose(w.sum(1), torch.ones(2))
    if mode == "select":
        assert set(w.unique().tolist()) <= {0.0, 1.0} and torch.equal(w.sum(1), torch.ones(2))
    assert afd(mtl, stl).item() == pytest.approx(ref_paper(mtl, stl, w), rel=1e-5)


@pytest.mark.parametrize("task_sum", ["inside", "outside"])
def test_afd_code_form_golden(task_sum):
    torch.manual_seed(1)
    afd = AdaptiveFeatureDistillation(2, TASKS, channels=[4, 8], task_sum=task_sum)
    assert afd.form == "code" and afd.mode == "learned"
    assert all(a.bias is None and a.kernel_size == (1, 1) for a in afd.adaptors)
    mtl, stl = feats(81)
    w = afd.weights().detach()
    ref = ref_code(mtl, stl, w, [a.weight for a in afd.adaptors], inside=task_sum == "inside")
    assert afd(mtl, stl).item() == pytest.approx(ref, rel=1e-5)


@pytest.mark.parametrize("form,mode", [("paper", "learned"), ("code", "learned"), ("code", "select"), ("paper", "softmax")])
def test_afd_gradients_never_reach_stl(form, mode):
    afd = AdaptiveFeatureDistillation(2, TASKS, mode=mode, form=form, channels=[4, 8])
    mtl, stl = feats(82, grad=True)
    afd(mtl, stl).backward()
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in mtl)
    assert all(f.grad is None for t in TASKS for f in stl[t])
    assert afd.omega.grad is not None and afd.omega.grad.abs().sum() > 0  # ω learns (select: straight-through)
    if form == "code":
        assert all(a.weight.grad is not None for a in afd.adaptors)


def test_afd_zero_when_mtl_matches_weighted_stl():
    afd = AdaptiveFeatureDistillation(2, TASKS, mode="equal", form="paper")
    _, stl = feats(83)
    mtl = [sum(stl[t][l] for t in TASKS).detach() for l in range(2)]
    assert afd(mtl, stl).item() == pytest.approx(0.0, abs=1e-10)


def test_afd_errors():
    with pytest.raises(MtkdError, match="channels"):
        AdaptiveFeatureDistillation(2, TASKS)  # code form needs channels
    with pytest.raises(MtkdError, match="unknown mode"):
        AdaptiveFeatureDistillation(2, TASKS, mode="uniform", form="paper")
    afd = AdaptiveFeatureDistillation(2, TASKS, form="paper")
    mtl, stl = feats(84)
    with pytest.raises(MtkdError, match="missing"):
        afd(mtl, {"semseg": stl["semseg"]})
    with pytest.raises(MtkdError, match="expected 2"):
        afd(mtl[:1], stl)


def test_afd_state_dict_round_trip():
    a = AdaptiveFeatureDistillation(2, TASKS, channels=[4, 8])
    b = AdaptiveFeatureDistillation(2, TASKS, channels=[4, 8])
    b.load_state_dict(a.state_dict())
    mtl, stl = feats(85)
    assert a(mtl, stl).item() == b(mtl, stl).item()
