"""Cross-Stitch and MTAN architectures: MultiTaskModel's interface, shapes, taps, parameter partition, gradient
routing, cross-stitch init, state_dict round-trip and the ARCHITECTURES registry."""

from __future__ import annotations

import math

import pytest
import torch

from mtkd.errors import MtkdError
from mtkd.models import ARCHITECTURES, CrossStitchModel, MTANModel, MultiTaskModel, build_model
from mtkd.models.cross_stitch import CrossStitchUnit

TASKS = {"semseg": 8, "depth": 1, "normal": 3}
ARCHS = ["shared", "cross_stitch", "mtan"]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_registry_and_unknown_arch_suggests_closest():
    assert {"shared", "cross_stitch", "mtan"} <= set(ARCHITECTURES.names())
    assert isinstance(build_model("shared", "tiny", TASKS), MultiTaskModel)
    assert isinstance(build_model("cross_stitch", "tiny", TASKS), CrossStitchModel)
    assert isinstance(build_model("mtan", "tiny", TASKS), MTANModel)
    with pytest.raises(MtkdError, match="did you mean 'cross_stitch'"):
        build_model("cross_stich", "tiny", TASKS)


@pytest.mark.parametrize("arch", ["cross_stitch", "mtan"])
def test_attributes_and_bad_args(arch):
    m = build_model(arch, "tiny", TASKS, head="fpn", decoder_channels=16)
    assert m.tasks == TASKS and m.backbone_name == "tiny" and m.head_name == "fpn"
    with pytest.raises(MtkdError, match="task name"):
        build_model(arch, "tiny", {"a.b": 1})
    with pytest.raises(MtkdError, match="decoder_channels"):
        build_model(arch, "tiny", TASKS, decoder_channels=0)
    with pytest.raises(MtkdError, match="B×3×H×W"):
        m(torch.randn(1, 1, 32, 48))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("backbone,head", [("tiny", "fpn"), ("tiny", "aspp"), ("timm:resnet18", "fpn")])
@pytest.mark.parametrize("hw", [(32, 48), (30, 46)])
def test_full_resolution_preds_and_taps_match_features(arch, backbone, head, hw):
    m = build_model(arch, backbone, TASKS, head=head, decoder_channels=16)
    out = m(torch.randn(2, 3, *hw))
    assert set(out.preds) == set(TASKS)
    for t, c in TASKS.items():
        assert out.preds[t].shape == (2, c, *hw)
    taps = m.taps()
    assert set(taps) == set(out.features)
    assert any(k.startswith("stage") for k in taps) and "shared" in taps
    assert {f"head.{t}" for t in TASKS} <= set(taps)
    for name, (ch, red) in taps.items():
        f = out.features[name]
        assert f.shape[:2] == (2, ch), name
        assert f.shape[-2:] == (math.ceil(hw[0] / red), math.ceil(hw[1] / red)), name
    if arch != "shared" and head == "fpn":
        assert taps["shared"][0] == 16 * len(TASKS)


@pytest.mark.parametrize("arch", ARCHS)
def test_shared_and_task_params_partition_all(arch):
    m = build_model(arch, "tiny", TASKS, decoder_channels=16)
    groups = [m.shared_parameters()] + [m.task_parameters(t) for t in TASKS]
    ids = [id(p) for g in groups for p in g]
    assert len(ids) == len(set(ids)), "overlap"
    assert set(ids) == {id(p) for p in m.parameters()}
    assert all(len(g) > 0 for g in groups)
    with pytest.raises(MtkdError, match="unknown task"):
        m.task_parameters("nope")


def _nonzero(params):
    return [p.grad is not None and bool(p.grad.abs().sum() > 0) for p in params]


@pytest.mark.parametrize("arch", ARCHS)
def test_one_task_loss_reaches_own_and_shared_params_only(arch):
    m = build_model(arch, "tiny", TASKS, decoder_channels=16)
    out = m(torch.randn(2, 3, 32, 48))
    out.preds["semseg"].square().mean().backward()
    shared = _nonzero(m.shared_parameters())
    assert any(shared)
    if arch == "cross_stitch":  # through the stitches every copy and every α sees every task's gradient
        assert all(shared)
        assert all(_nonzero(m.stitches.parameters()))
    assert any(_nonzero(m.task_parameters("semseg")))
    for t in ("depth", "normal"):
        assert not any(_nonzero(m.task_parameters(t))), t


@pytest.mark.parametrize("arch", ARCHS)
def test_every_task_loss_flows_through_shared_rep(arch):
    """MGDA-UB differentiates each task loss w.r.t. features["shared"]: every task must reach it."""
    m = build_model(arch, "tiny", TASKS, decoder_channels=16)
    out = m(torch.randn(2, 3, 32, 48))
    rep = out.features["shared"]
    for i, t in enumerate(TASKS):
        (g,) = torch.autograd.grad(out.preds[t].square().mean(), rep, retain_graph=True)
        assert g.abs().sum() > 0, t
        if arch != "shared":  # head t reads only its own slice
            c = rep.shape[1] // len(TASKS)
            mask = torch.ones(rep.shape[1], dtype=torch.bool)
            mask[i * c:(i + 1) * c] = False
            assert g[:, mask].abs().sum() == 0


@pytest.mark.parametrize("T,same,other", [(1, 1.0, None), (2, 0.9, 0.1), (3, 0.9, 0.05)])
def test_cross_stitch_init(T, same, other):
    unit = CrossStitchUnit(T, 5)
    a = unit.alpha.detach()
    assert a.shape == (5, T, T)
    eye = torch.eye(T, dtype=torch.bool)
    assert torch.allclose(a[:, eye], torch.full((5, T), same))
    if other is not None:
        assert torch.allclose(a[:, ~eye], torch.full((5, T * T - T), other))
        assert torch.allclose(a.sum(-1), torch.ones(5, T))
    m = CrossStitchModel("tiny", TASKS)
    assert len(m.stitches) == len(m.feature_info)
    for unit, fi in zip(m.stitches, m.feature_info):
        assert unit.alpha.shape == (fi["num_chs"], 3, 3)
        assert torch.allclose(unit.alpha.detach()[:, 0], torch.tensor([0.9, 0.05, 0.05]).expand(fi["num_chs"], 3))


def test_cross_stitch_unit_is_eq1():
    unit = CrossStitchUnit(2, 3)
    with torch.no_grad():
        unit.alpha.copy_(torch.randn(3, 2, 2))
    xs = [torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)]
    ys = unit(xs)
    a = unit.alpha.detach().numpy()
    x = torch.stack(xs).numpy()  # s, b, c, h, w
    import numpy as np

    ref = np.einsum("cts,sbchw->tbchw", a, x)
    for t in range(2):
        np.testing.assert_allclose(ys[t].detach().numpy(), ref[t], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backbone", ["tiny", "timm:resnet18"])
def test_cross_stitch_identity_alpha_runs_each_copy_like_its_backbone(backbone):
    """With α = I the streams are independent backbones: stage-by-stage execution must equal backbone(image)."""
    m = CrossStitchModel(backbone, {"a": 1, "b": 1}, decoder_channels=8).eval()
    with torch.no_grad():
        for unit in m.stitches:
            unit.alpha.copy_(torch.eye(2).expand_as(unit.alpha))
        m.backbones["b"].load_state_dict(m.backbones["a"].state_dict())
        x = torch.randn(1, 3, 32, 48)
        out = m(x)
        ref = m.backbones["a"](x)
    for fi, r in zip(m.feature_info, ref):
        torch.testing.assert_close(out.features[fi["name"]], r)


@pytest.mark.parametrize("arch", ["cross_stitch", "mtan"])
def test_state_dict_round_trip(arch):
    a = build_model(arch, "tiny", TASKS, decoder_channels=16)
    a.train()
    a(torch.randn(4, 3, 32, 48))  # move BN running stats off their init
    torch.manual_seed(1)
    b = build_model(arch, "tiny", TASKS, decoder_channels=16)
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        oa, ob = a(x), b(x)
    for t in TASKS:
        torch.testing.assert_close(oa.preds[t], ob.preds[t])
