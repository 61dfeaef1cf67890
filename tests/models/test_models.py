"""Shapes, taps, parameter partition, errors and weight loading of mtkd.models."""

from __future__ import annotations

import math

import pytest
import torch

from mtkd.errors import MtkdError
from mtkd.models import BACKBONES, HEADS, Backbone, MultiTaskModel, Output, build_backbone

TASKS = {"semseg": 8, "depth": 1, "normal": 3, "edge": 1}
BACKBONE_NAMES = ["tiny", "small", "timm:resnet18", "timm:convnext_atto"]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_registries():
    assert {"tiny", "small"} <= set(BACKBONES.names())
    assert {"fpn", "aspp"} <= set(HEADS.names())


@pytest.mark.parametrize("name", BACKBONE_NAMES)
def test_backbone_feature_info_matches_maps(name):
    bb = build_backbone(name)
    assert isinstance(bb, Backbone)
    feats = bb(torch.randn(2, 3, 96, 128))
    assert len(feats) == len(bb.feature_info)
    for i, (f, fi) in enumerate(zip(feats, bb.feature_info)):
        assert fi["name"] == f"stage{i + 1}"
        assert f.shape == (2, fi["num_chs"], 96 // fi["reduction"], 128 // fi["reduction"])


@pytest.mark.parametrize("name", BACKBONE_NAMES)
@pytest.mark.parametrize("hw", [(96, 128), (90, 120)])
def test_preds_full_resolution_and_taps(name, hw):
    m = MultiTaskModel(name, TASKS, decoder_channels=32)
    out = m(torch.randn(2, 3, *hw))
    assert isinstance(out, Output)
    assert {t: tuple(p.shape) for t, p in out.preds.items()} == {t: (2, c, *hw) for t, c in TASKS.items()}
    taps = m.taps()
    assert set(taps) == set(out.features)
    assert {"shared", *(f"head.{t}" for t in TASKS)} <= set(taps)
    assert taps["shared"] == (32, 4)
    for k, (c, r) in taps.items():
        f = out.features[k]
        assert f.shape[:2] == (2, c), k
        if hw == (96, 128):
            assert f.shape[-2:] == (96 // r, 128 // r), k
        else:  # not divisible: ceil(side / r) for stride-2 pad-1 convs, floor for patchify stems (convnext)
            for side, n in zip(hw, f.shape[-2:]):
                assert math.floor(side / r) <= n <= math.ceil(side / r), k


def test_aspp_head():
    m = MultiTaskModel("tiny", TASKS, head="aspp", decoder_channels=32)
    out = m(torch.randn(1, 3, 90, 120))  # batch 1 in train mode: the pooling branch has no BN
    assert out.preds["semseg"].shape == (1, 8, 90, 120)
    taps = m.taps()
    assert taps["shared"] == (96, 16) and taps["head.depth"] == (32, 16)
    for k, (c, _) in taps.items():
        assert out.features[k].shape[1] == c


@pytest.mark.parametrize("head", ["fpn", "aspp"])
def test_shared_and_task_parameters_partition(head):
    m = MultiTaskModel("tiny", TASKS, head=head)
    groups = [m.shared_parameters()] + [m.task_parameters(t) for t in TASKS]
    ids = [id(p) for g in groups for p in g]
    assert len(ids) == len(set(ids))  # no overlap
    assert set(ids) == {id(p) for p in m.parameters()}  # union = all
    # every parameter receives a gradient (none is dead)
    out = m(torch.randn(2, 3, 64, 64))
    sum(p.mean() for p in out.preds.values()).backward()
    assert all(p.grad is not None for p in m.parameters())


def test_task_gradient_only_reaches_own_head_and_shared():
    m = MultiTaskModel("tiny", TASKS)
    m(torch.randn(2, 3, 64, 64)).preds["depth"].mean().backward()
    assert all(p.grad is None for t in TASKS if t != "depth" for p in m.task_parameters(t))
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.shared_parameters())


def test_single_task_model():
    m = MultiTaskModel("tiny", {"semseg": 13})
    out = m(torch.randn(2, 3, 96, 128))
    assert list(out.preds) == ["semseg"] and out.preds["semseg"].shape == (2, 13, 96, 128)
    assert m.tasks == {"semseg": 13} and m.backbone_name == "tiny"
    assert set(m.taps()) == {"stage1", "stage2", "stage3", "stage4", "shared", "head.semseg"}


def test_backbone_instance_and_width():
    bb = build_backbone("tiny", width=0.5)
    assert [f["num_chs"] for f in bb.feature_info] == [8, 16, 32, 48]
    m = MultiTaskModel(bb, {"depth": 1})
    assert m.backbone is bb and m.backbone_name == "tiny"
    small, tiny = build_backbone("small"), build_backbone("tiny")
    assert sum(p.numel() for p in small.parameters()) > 3 * sum(p.numel() for p in tiny.parameters())


def test_unknown_names():
    with pytest.raises(MtkdError, match="'tiny'"):
        build_backbone("tinny")
    with pytest.raises(MtkdError, match="timm:resnet18"):
        build_backbone("timm:resnet81")
    with pytest.raises(MtkdError, match="'fpn'"):
        MultiTaskModel("tiny", TASKS, head="fnp")
    with pytest.raises(MtkdError, match="unknown task"):
        MultiTaskModel("tiny", TASKS).task_parameters("sal")


@pytest.mark.parametrize("tasks", [{"semseg": 0}, {"depth": 1.0}, {"depth": True}, {"depth": -1}, {}, {"a.b": 1}])
def test_bad_tasks(tasks):
    with pytest.raises(MtkdError):
        MultiTaskModel("tiny", tasks)


@pytest.mark.parametrize("shape", [(3, 96, 128), (2, 1, 96, 128), (2, 4, 96, 128)])
def test_bad_input_shape(shape):
    m = MultiTaskModel("tiny", {"depth": 1})
    with pytest.raises(MtkdError, match=str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")):
        m(torch.randn(*shape))


def test_pretrained_true_offline_is_mtkd_error(monkeypatch):
    import timm.models._builder as builder

    def no_network(*a, **k):
        raise OSError("[Errno -2] Name or service not known")

    monkeypatch.setattr(builder, "load_pretrained", no_network)
    with pytest.raises(MtkdError, match="pretrained=PATH"):
        build_backbone("timm:resnet18", pretrained=True)
    with pytest.raises(MtkdError, match="pretrained=PATH"):
        build_backbone("tiny", pretrained=True)


@pytest.mark.parametrize("name", ["tiny", "timm:resnet18", "timm:convnext_atto"])
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_weights_round_trip(tmp_path, name, suffix):
    src = build_backbone(name)
    with torch.no_grad():  # non-default BN statistics so that buffers are checked too
        for mod in src.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 1.5)
    path = tmp_path / f"w{suffix}"
    sd = {k: v.contiguous() for k, v in src.state_dict().items()}
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(sd, str(path))
    else:
        torch.save(sd, path)
    dst = build_backbone(name, pretrained=str(path))
    assert dst.load_report == {"missing": 0, "unexpected": 0, "mismatched": 0}
    x = torch.randn(2, 3, 64, 96)
    src.eval(), dst.eval()
    with torch.no_grad():
        for a, b in zip(src(x), dst(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_full_timm_checkpoint_loads_into_features_backbone(tmp_path):
    """A timm classification checkpoint (flattened 'stages.0' names, classifier keys) loads into features_only."""
    import timm

    full = timm.create_model("convnext_atto", pretrained=False)
    torch.save(full.state_dict(), tmp_path / "full.pth")
    bb = build_backbone("timm:convnext_atto", pretrained=tmp_path / "full.pth")
    assert bb.load_report["missing"] == 0 and bb.load_report["unexpected"] > 0
    w = dict(full.named_parameters())["stages.1.blocks.0.conv_dw.weight"]
    assert torch.equal(dict(bb.named_parameters())["body.stages_1.blocks.0.conv_dw.weight"], w)


def test_model_level_pretrained_and_bad_files(tmp_path):
    bb = build_backbone("tiny")
    torch.save(bb.state_dict(), tmp_path / "bb.pth")
    m = MultiTaskModel("tiny", TASKS, pretrained=str(tmp_path / "bb.pth"))
    assert torch.equal(m.backbone.stages[0][0][0].weight, bb.stages[0][0][0].weight)
    with pytest.raises(MtkdError, match="not found"):
        build_backbone("tiny", pretrained=tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(MtkdError, match="junk.pth"):
        build_backbone("tiny", pretrained=tmp_path / "junk.pth")
    torch.save({"x": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(MtkdError, match="matches no parameter"):
        build_backbone("tiny", pretrained=tmp_path / "other.pth")
