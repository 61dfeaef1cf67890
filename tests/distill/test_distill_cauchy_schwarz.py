import math

import numpy as np
import pytest
import torch

from distill_testutil import maps, np_cs, np_softmax, rand_mask, valid_pixels
from mtkd.distill.losses import CSTerms, cs_distill_loss, cs_distill_terms, cs_divergence, cs_divergence_log
from mtkd.errors import MtkdError


def test_cs_divergence_golden_and_properties():
    g = torch.Generator().manual_seed(60)
    p, q = torch.rand(5, 7, generator=g), torch.rand(5, 7, generator=g)
    d = cs_divergence(p, q, dim=1)
    ref = [np_cs(p[i].double().tolist(), q[i].double().tolist()) for i in range(5)]
    assert d.tolist() == pytest.approx(ref, rel=1e-5)
    assert (d >= 0).all()
    assert cs_divergence(p, p.clone(), dim=1).abs().max().item() < 1e-6
    # invariant to rescaling either argument, symmetric
    assert cs_divergence(13.0 * p, q, dim=1).tolist() == pytest.approx(d.tolist(), rel=1e-5, abs=2e-6)
    assert cs_divergence(p, 1e-3 * q, dim=1).tolist() == pytest.approx(d.tolist(), rel=1e-5, abs=2e-6)
    assert cs_divergence(q, p, dim=1).tolist() == pytest.approx(d.tolist(), rel=1e-6)
    # log-domain version agrees, including scaling by adding constants to the logs
    assert cs_divergence_log(p.log(), q.log() + 5.0, dim=1).tolist() == pytest.approx(d.tolist(), rel=1e-5, abs=2e-6)
    # the paper's Eq. 4 as printed (no squares) is not zero at equality: the standard form is the one implemented
    u = torch.softmax(torch.randn(7, generator=g), 0)
    assert -math.log(float((u * u).sum())) > 0.1


def test_cs_divergence_random_nonnegative_and_zero_mass():
    g = torch.Generator().manual_seed(61)
    p, q = torch.rand(50, 9, generator=g) ** 4, torch.rand(50, 9, generator=g) ** 4
    assert (cs_divergence(p, q) >= 0).all()
    disjoint = cs_divergence(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]))
    assert torch.isfinite(disjoint) and disjoint.item() > 10


def ref_cs_channel(s, t, mask, T):
    s, t = s.double().numpy(), t.double().numpy()
    b, c, h, w = s.shape
    ps, pt = [], []
    for i, y, x in valid_pixels(b, h, w, mask):
        ps.append(np_softmax(s[i, :, y, x] / T))
        pt.append(np_softmax(t[i, :, y, x] / T))
    inter = np.mean([np_cs(ps[r], pt[r]) for r in range(len(ps))])
    intra = np.mean([np_cs([row[j] for row in ps], [row[j] for row in pt]) for j in range(c)])
    return inter, intra


def ref_cs_spatial(s, t, mask, T):
    s, t = s.double().numpy(), t.double().numpy()
    n, c, h, w = s.shape
    inter = []
    for i in range(n):
        pix = [(y, x) for _, y, x in valid_pixels(1, h, w, None if mask is None else mask[i : i + 1])]
        if not pix:
            continue
        for ch in range(c):
            inter.append(np_cs(np_softmax([s[i, ch, y, x] / T for y, x in pix]), np_softmax([t[i, ch, y, x] / T for y, x in pix])))
    intra = []
    for ch in range(c):
        pix = list(valid_pixels(n, h, w, mask))
        intra.append(np_cs(np_softmax([s[i, ch, y, x] / T for i, y, x in pix]), np_softmax([t[i, ch, y, x] / T for i, y, x in pix])))
    return np.mean(inter), np.mean(intra)


@pytest.mark.parametrize("T", [1.0, 2.0])
@pytest.mark.parametrize("masked", [False, True])
def test_cs_channel_golden(T, masked):
    s, t = maps((2, 4, 3, 5), 62, 2.0), maps((2, 4, 3, 5), 63, 2.0)
    m = rand_mask(2, 3, 5, 64) if masked else None
    terms = cs_distill_terms(s, t, m, distribution="channel", temperature=T)
    assert isinstance(terms, CSTerms)
    r_inter, r_intra = ref_cs_channel(s, t, m, T)
    assert terms.inter.item() == pytest.approx(r_inter, rel=1e-5, abs=2e-6)
    assert terms.intra.item() == pytest.approx(r_intra, rel=1e-5, abs=2e-6)
    total = cs_distill_loss(s, t, m, distribution="channel", temperature=T, w_inter=0.3, w_intra=2.0)
    assert total.item() == pytest.approx(0.3 * r_inter + 2.0 * r_intra, rel=1e-5, abs=2e-6)


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("masked", [False, True])
def test_cs_spatial_golden(c, masked):
    s, t = maps((2, c, 4, 5), 65, 2.0), maps((2, c, 4, 5), 66, 2.0)
    m = rand_mask(2, 4, 5, 67) if masked else None
    if masked:
        m[1] = False  # an image with no valid pixel is dropped from the rows
    inter, intra = cs_distill_terms(s, t, m, distribution="spatial", temperature=1.5)
    r_inter, r_intra = ref_cs_spatial(s, t, m, 1.5)
    assert inter.item() == pytest.approx(r_inter, rel=1e-5, abs=2e-6)
    assert intra.item() == pytest.approx(r_intra, rel=1e-5, abs=2e-6)


def test_cs_spatial_large_map_is_stable():
    # softmax over 2·64·64 pixels: Σp² ~ 1e-4, no eps bias in the log-domain form
    t = maps((2, 1, 64, 64), 68, 3.0)
    inter, intra = cs_distill_terms(t + 0.0, t, distribution="spatial")
    assert inter.item() < 1e-5 and intra.item() < 1e-5
    inter2, intra2 = cs_distill_terms(t + 7.0, t, distribution="spatial")  # a constant shift = rescaled p
    assert inter2.item() < 1e-5 and intra2.item() < 1e-5


def test_cs_auto_distribution():
    s, t = maps((1, 3, 4, 4), 69), maps((1, 3, 4, 4), 70)
    ch = cs_distill_terms(s, t, distribution="channel")
    sp = cs_distill_terms(s, t, distribution="spatial")
    assert cs_distill_terms(s, t, task="semseg").inter.item() == pytest.approx(ch.inter.item())
    assert cs_distill_terms(s, t, task="normal").inter.item() == pytest.approx(sp.inter.item())
    assert cs_distill_terms(s, t).inter.item() == pytest.approx(ch.inter.item())  # no task, C > 1
    d1, d2 = maps((1, 1, 4, 4), 71), maps((1, 1, 4, 4), 72)
    assert cs_distill_terms(d1, d2).inter.item() == pytest.approx(
        cs_distill_terms(d1, d2, distribution="spatial").inter.item()
    )
    with pytest.raises(MtkdError, match="spatial"):
        cs_distill_terms(d1, d2, distribution="channel")
    with pytest.raises(MtkdError, match="unknown distribution"):
        cs_distill_terms(s, t, distribution="pixel")


def test_cs_zero_at_equality():
    s = maps((2, 4, 3, 3), 73)
    for dist in ("channel", "spatial"):
        inter, intra = cs_distill_terms(s, s.clone(), distribution=dist)
        assert inter.item() == pytest.approx(0.0, abs=1e-6) and intra.item() == pytest.approx(0.0, abs=1e-6)
