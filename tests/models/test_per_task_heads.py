"""Per-task heads (``model.head: {task: head}``), head and backbone options, and OKD-MTL's ViT + mask-head model."""

from __future__ import annotations

import pytest
import torch

from mtkd.config import load_config, to_dict
from mtkd.errors import MtkdError
from mtkd.models import MultiTaskModel, build_backbone, build_model, build_model_from_config
from mtkd.models.neck import DeepestStage, FPNNeck

TASKS = {"semseg": 5, "depth": 1, "normal": 3}
MASKS = {"semseg": "mask_seg", "depth": "mask_reg", "normal": "mask_reg"}
SMALL = {"mask_seg": {"d_model": 32, "heads": 2}, "mask_reg": {"d_model": 32, "heads": 2, "n_queries": 16}}
VIT = "timm:vit_tiny_patch16_224"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("arch", ["shared", "cross_stitch", "mtan"])
@pytest.mark.parametrize("head", [MASKS, {"semseg": "fpn", "depth": "mask_reg", "normal": "aspp"}])
def test_mixed_heads_forward_backward(arch, head):
    m = build_model(arch, "tiny", TASKS, head=head, decoder_channels=16, head_options=SMALL)
    assert m.head_names == head and m.head_name == head
    out = m(torch.randn(2, 3, 64, 96))
    for t, c in TASKS.items():
        assert out.preds[t].shape == (2, c, 64, 96)
    taps = m.taps()
    for name, (c, r) in taps.items():
        assert out.features[name].shape == (2, c, 64 // r, 96 // r), name
    # one shared map for every head: the deepest stage when all heads read it, else the FPN map at 1/4
    assert taps["shared"][1] == (16 if head == MASKS else 4)
    sum(p.square().mean() for p in out.preds.values()).backward()
    for t in TASKS:
        assert all(p.grad is not None for p in m.task_parameters(t)), t
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.shared_parameters())


def test_neck_follows_the_heads():
    assert isinstance(MultiTaskModel("tiny", TASKS, head=MASKS, head_options=SMALL).neck, DeepestStage)
    mixed = MultiTaskModel("tiny", TASKS, head={**MASKS, "depth": "fpn"}, head_options=SMALL, decoder_channels=16)
    assert isinstance(mixed.neck, FPNNeck) and mixed.heads["semseg"].proj_in.in_features == 16


def test_one_name_equals_the_uniform_mapping():
    a = MultiTaskModel("tiny", TASKS, head="aspp")
    torch.manual_seed(0)
    b = MultiTaskModel("tiny", TASKS, head=dict.fromkeys(TASKS, "aspp"))
    assert a.head_name == b.head_name == "aspp"
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_head_options_go_to_their_head_only():
    m = MultiTaskModel("tiny", TASKS, head=MASKS, head_options={"mask_reg": {"n_queries": 7, "d_model": 32,
                                                                            "heads": 2}})
    assert m.heads["depth"].queries.shape == m.heads["normal"].queries.shape == (1, 7, 32)
    assert m.heads["semseg"].queries.shape == (1, 5, 192)  # mask_seg keeps its defaults


def test_mapping_missing_a_task_is_refused():
    with pytest.raises(MtkdError, match=r"no head for task\(s\) normal.*semseg, depth, normal"):
        MultiTaskModel("tiny", TASKS, head={"semseg": "mask_seg", "depth": "mask_reg"})


def test_extra_mapping_keys_are_ignored():
    m = MultiTaskModel("tiny", {"depth": 1}, head=MASKS, head_options=SMALL)  # e.g. an OKD single-task net
    assert m.head_names == {"depth": "mask_reg"} and m.head_name == "mask_reg"


@pytest.mark.parametrize("head", [{**MASKS, "depth": "mask_rgs"}, "mask_sge"])
def test_unknown_head_name_gets_a_suggestion(head):
    with pytest.raises(MtkdError, match="did you mean 'mask_(reg|seg)'"):
        MultiTaskModel("tiny", TASKS, head=head)


@pytest.mark.parametrize("opts, match", [({"mask_sge": {}}, "did you mean 'mask_seg'"),
                                         ({"mask_seg": 3}, "must be a mapping"),
                                         ({"mask_seg": {"n_queries": 4}}, "bad option")])
def test_bad_head_options(opts, match):
    with pytest.raises(MtkdError, match=match):
        MultiTaskModel("tiny", TASKS, head=MASKS, head_options=opts)


def test_check_names_validates_the_mapping():
    from mtkd.engine.run import check_names

    check_names(to_dict(load_config(None, ["model.head={semseg: mask_seg, depth: mask_reg, normal: fpn}"])))
    with pytest.raises(MtkdError, match="no head for task"):
        check_names(to_dict(load_config(None, ["model.head={semseg: mask_seg, depth: mask_reg}"])))
    with pytest.raises(MtkdError, match="did you mean 'fpn'"):
        check_names(to_dict(load_config(None, ["model.head={semseg: fnp, depth: fpn, normal: fpn}"])))
    with pytest.raises(MtkdError, match="did you mean 'aspp'"):
        check_names(to_dict(load_config(None, ["model.head_options={asp: {rates: [1, 2]}}"])))


def test_model_config_without_the_new_keys_builds():
    """A checkpoint written before ``backbone_options``/``head_options`` (and ``arch``) existed still rebuilds."""
    old = {"backbone": "tiny", "head": "fpn", "decoder_channels": 16, "pretrained": False}
    m = build_model_from_config(old, TASKS)
    assert isinstance(m, MultiTaskModel) and m.taps()["shared"] == (16, 4)


def test_builtin_backbone_options():
    m = build_model_from_config({"backbone": "tiny", "backbone_options": {"width": 0.5}}, {"depth": 1})
    assert m.backbone.feature_info[-1]["num_chs"] == 48
    with pytest.raises(MtkdError, match="bad option in model.backbone_options"):
        build_model_from_config({"backbone": "tiny", "backbone_options": {"dynamic_img_size": True}}, {"depth": 1})


def test_vit_needs_dynamic_img_size_off_224():
    with pytest.raises(MtkdError, match="224×224 inputs only, got 96×128: set model.backbone_options.dynamic_img"):
        MultiTaskModel(VIT, {"depth": 1}, head="mask_reg", head_options=SMALL)(torch.randn(1, 3, 96, 128))
    m = MultiTaskModel(VIT, TASKS, head=MASKS, backbone_options={"dynamic_img_size": True})
    assert [(fi["num_chs"], fi["reduction"]) for fi in m.backbone.feature_info] == [(192, 16)] * 3
    out = m(torch.randn(2, 3, 96, 128))
    assert {t: p.shape for t, p in out.preds.items()} == {t: (2, c, 96, 128) for t, c in TASKS.items()}
    assert out.features["shared"].shape == (2, 192, 6, 8) and m.taps()["head.depth"] == (192, 16)
    with pytest.raises(MtkdError, match="not a multiple of the 16×16 patch.*dynamic_img_pad"):
        m(torch.randn(1, 3, 90, 128))


def test_vit_with_fpn_heads_and_padding():
    """The FPN neck takes a ViT's stages as they are (all at 1/16); dynamic_img_pad admits any side."""
    m = MultiTaskModel(VIT, {"depth": 1}, decoder_channels=16,
                       backbone_options={"dynamic_img_size": True, "dynamic_img_pad": True, "out_indices": [3, 7, 11]})
    assert [fi["reduction"] for fi in m.backbone.feature_info] == [16] * 3 and m.taps()["shared"] == (16, 16)
    assert m(torch.randn(1, 3, 90, 120)).preds["depth"].shape == (1, 1, 90, 120)


def test_bad_timm_option_is_refused():
    with pytest.raises(MtkdError, match="timm:resnet18: bad option in model.backbone_options"):
        build_backbone("timm:resnet18", dynamic_img_size=True)


def test_vit_classification_weights_load_from_a_local_file(tmp_path):
    """``pretrained=PATH`` matches a timm ViT checkpoint's keys to the features_only net's (``body.model.*``)."""
    import timm

    full = timm.create_model("vit_tiny_patch16_224")
    torch.save(full.state_dict(), tmp_path / "vit.pth")
    bb = build_backbone(VIT, pretrained=str(tmp_path / "vit.pth"), dynamic_img_size=True)
    assert bb.load_report == {"missing": 0, "unexpected": 4, "mismatched": 0}  # norm + classifier are unused
    assert torch.equal(bb.body.model.pos_embed, full.pos_embed)


@pytest.fixture(scope="module")
def okd_vit_run(tmp_path_factory):
    """The rooms recipe with the paper's model (ViT-tiny, mask heads), trained one tiny epoch with OKD-MTL."""
    from pathlib import Path

    import mtkd
    from mtkd.engine.run import train
    from mtkd.testing import tiny_run_overrides

    recipe = Path(mtkd.__file__).parent / "configs" / "rooms" / "okd_vit_mask.yaml"
    return train(load_config(recipe, tiny_run_overrides(tmp_path_factory.mktemp("okd_vit"))))


def test_okd_vit_recipe_trains_with_per_task_heads(okd_vit_run):
    from mtkd.checkpoints import read_training_checkpoint

    assert set(okd_vit_run["test"]) == set(TASKS)
    ckpt, hparams = read_training_checkpoint(okd_vit_run["best_checkpoint"])
    state = ckpt["state_dict"]
    # each single-task net carries its own task's head from the mapping: class queries, or the 128 regression ones
    assert state["distiller.stl.semseg.heads.semseg.queries"].shape[1] == hparams["task_channels"]["semseg"]
    assert state["distiller.stl.normal.heads.normal.queries"].shape[1] == 128


def test_mixed_head_checkpoint_reloads_with_identical_outputs(okd_vit_run):
    """``load_model`` rebuilds the trained model the way the LightningModule built it: same outputs."""
    from mtkd.checkpoints import load_model, read_training_checkpoint
    from mtkd.engine.module import MultiTaskModule

    ckpt, hparams = read_training_checkpoint(okd_vit_run["best_checkpoint"])
    module = MultiTaskModule(hparams["config"], hparams["task_channels"])
    module.load_state_dict(ckpt["state_dict"])
    model, config = load_model(okd_vit_run["best_checkpoint"])
    assert model.head_name == config["model"]["head"] == {"semseg": "mask_seg", "depth": "mask_reg",
                                                          "normal": "mask_reg"}
    x = torch.randn(2, 3, 32, 48)
    a, b = module.model.eval()(x), model.eval()(x)
    for t in a.preds:
        assert torch.equal(a.preds[t], b.preds[t]), t
