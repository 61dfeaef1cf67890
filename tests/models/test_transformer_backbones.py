"""Swin (and its weights) at the dense protocols' non-square input sizes through timm (issue #15): NCHW pyramid, the
option or multiple a bad size needs, weights of another Swin size refused. Tiny widths keep it fast."""

from __future__ import annotations

import pytest
import timm
import torch

from mtkd.errors import MtkdError
from mtkd.models import build_backbone

SWIN = "timm:swin_tiny_patch4_window7_224"
HW = (64, 96)


def swin_opts(hw=HW, **kw):
    return {"embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 2], "window_size": 4,
            "img_size": list(hw), "always_partition": True, **kw}


def test_swin_at_a_non_square_protocol_size_gives_nchw_pyramid():
    bb = build_backbone(SWIN, **swin_opts())
    assert [(f["num_chs"], f["reduction"]) for f in bb.feature_info] == [(16, 4), (32, 8), (64, 16), (128, 32)]
    feats = bb(torch.randn(1, 3, *HW))
    # stage 1 is 16×24 with 16 channels: a shape guess (dim 1 == channels) would leave it NHWC
    assert [tuple(f.shape) for f in feats] == [(1, 16, 16, 24), (1, 32, 8, 12), (1, 64, 4, 6), (1, 128, 2, 3)]
    with pytest.raises(MtkdError, match=r"takes 64×96 inputs only, got 96×64: .*dynamic_img_size=true .*img_size"):
        bb(torch.randn(1, 3, 96, 64))
    with pytest.raises(MtkdError, match=r"62×96 is not a multiple of the 4×4 patch .*multiples of 4"):
        bb(torch.randn(1, 3, 62, 96))
    dyn = build_backbone(SWIN, **swin_opts(dynamic_img_size=True))
    assert dyn(torch.randn(1, 3, 96, 128))[-1].shape == (1, 128, 3, 4)


def test_swin_weights_of_another_size_are_refused_and_its_own_load(tmp_path):
    arch = dict(embed_dim=16, num_heads=(1, 1, 2, 2), window_size=4)
    torch.save(timm.create_model("swin_tiny_patch4_window7_224", depths=(1, 1, 2, 1), **arch).state_dict(),
               tmp_path / "deeper.pth")
    torch.save(timm.create_model("swin_tiny_patch4_window7_224", depths=(1, 1, 1, 1), embed_dim=24,
                                 num_heads=(1, 1, 2, 2), window_size=4).state_dict(), tmp_path / "wider.pth")
    torch.save(timm.create_model("swin_tiny_patch4_window7_224", depths=(1, 1, 1, 1), **arch).state_dict(),
               tmp_path / "same.pth")
    with pytest.raises(MtkdError, match=r"deeper.pth' does not fit .*0 missing, \d+ extra: .*another Swin size"):
        build_backbone(SWIN, pretrained=str(tmp_path / "deeper.pth"), **swin_opts())
    with pytest.raises(MtkdError, match=r"wider.pth' does not fit .*tensors of another shape"):
        build_backbone(SWIN, pretrained=str(tmp_path / "wider.pth"), **swin_opts())
    bb = build_backbone(SWIN, pretrained=str(tmp_path / "same.pth"), **swin_opts())
    assert bb.load_report["missing"] == 0 and bb.load_report["mismatched"] == 0  # classifier keys: unexpected
