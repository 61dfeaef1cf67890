"""Mask-Transformer heads ("mask_seg", "mask_reg"): shapes, taps, gradients to the queries, state_dict round trip."""

from __future__ import annotations

import pytest
import torch

from mtkd.errors import MtkdError
from mtkd.models import HEADS, MultiTaskModel
from mtkd.models.mask_transformer import MaskRegHead, MaskSegHead

TASKS = {"semseg": 5, "depth": 1, "normal": 3}
SMALL = dict(d_model=32, heads=2)  # keep the tests fast; defaults checked separately


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_registered_and_defaults():
    assert HEADS.get("mask_seg") is MaskSegHead and HEADS.get("mask_reg") is MaskRegHead
    seg, reg = MaskSegHead(64, 5), MaskRegHead(64, 1)
    assert seg.reads == reg.reads == "deepest"
    assert seg.channels == reg.channels == 192
    assert seg.queries.shape == (1, 5, 192) and reg.queries.shape == (1, 128, 192)
    assert len(seg.blocks) == len(reg.blocks) == 2 and seg.blocks[0].self_attn.num_heads == 3


@pytest.mark.parametrize("head", ["mask_seg", "mask_reg"])
def test_shapes_and_taps(head):
    m = MultiTaskModel("tiny", TASKS, head=head, head_options={head: SMALL}).eval()
    x = torch.randn(2, 3, 64, 96)
    out = m(x)
    for t, c in TASKS.items():
        assert out.preds[t].shape == (2, c, 64, 96)
        assert torch.isfinite(out.preds[t]).all()
    taps = m.taps()
    for name, (c, r) in taps.items():
        f = out.features[name]
        assert f.shape == (2, c, 64 // r, 96 // r), name
    assert taps["head.semseg"][0] == 32


@pytest.mark.parametrize("head", ["mask_seg", "mask_reg"])
def test_gradients_reach_queries_and_backbone(head):
    m = MultiTaskModel("tiny", TASKS, head=head, head_options={head: SMALL})
    out = m(torch.randn(2, 3, 64, 96))
    sum(p.square().mean() for p in out.preds.values()).backward()
    for t in TASKS:
        g = m.heads[t].queries.grad
        assert g is not None and g.abs().sum() > 0, t
    assert all(p.grad is not None for p in m.shared_parameters())


@pytest.mark.parametrize("head", ["mask_seg", "mask_reg"])
def test_state_dict_round_trip(head):
    m = MultiTaskModel("tiny", TASKS, head=head, head_options={head: SMALL}).eval()
    sd = m.state_dict()
    assert any(k.endswith(".queries") for k in sd)
    torch.manual_seed(1)
    m2 = MultiTaskModel("tiny", TASKS, head=head, head_options={head: SMALL}).eval()
    m2.load_state_dict(sd)
    x = torch.randn(1, 3, 64, 96)
    a, b = m(x), m2(x)
    for t in TASKS:
        torch.testing.assert_close(a.preds[t], b.preds[t])


def test_seg_logits_are_normalised_cosines_before_mask_norm():
    h = MaskSegHead(16, 1, d_model=16, heads=2)  # one class: no mask_norm, raw cosine similarities
    logits, feat = h(torch.randn(2, 16, 3, 4))
    assert logits.shape == (2, 1, 3, 4) and feat.shape == (2, 16, 3, 4)
    assert logits.abs().max() <= 1 + 1e-5


def test_reg_n_queries_option():
    h = MaskRegHead(16, 3, d_model=16, heads=2, n_queries=7, layers=1)
    assert h.queries.shape == (1, 7, 16) and len(h.blocks) == 1
    logits, feat = h(torch.randn(1, 16, 2, 5))
    assert logits.shape == (1, 3, 2, 5) and feat.shape == (1, 16, 2, 5)


@pytest.mark.parametrize("bad", [dict(d_model=30, heads=4), dict(layers=0), dict(n_queries=0)])
def test_bad_options(bad):
    with pytest.raises(MtkdError):
        MultiTaskModel("tiny", {"depth": 1}, head="mask_reg", head_options={"mask_reg": bad})
