"""Properties every distillation loss must have: ≥ 0, minimum at student = teacher, gradient to the student only,
masked-out pixels ignored, fp32 results from bf16 inputs, and the by-name table."""

import pytest
import torch

from distill_testutil import maps, rand_mask
from mtkd.distill.losses import (
    LOSSES,
    AdaptiveFeatureDistillation,
    TrajectoryBuffer,
    attention_map,
    cs_distill_loss,
    cwd_loss,
    dist_loss,
    fitnet_loss,
    get_loss,
    kd4mtl_feature_loss,
    kd_loss,
    prediction_loss,
    trajectory_loss,
)
from mtkd.errors import MtkdError

# name → (fn(student, teacher, mask), channels)
PIXEL_LOSSES = {
    "kd": (lambda s, t, m: kd_loss(s, t, m), 5),
    "kd_T3": (lambda s, t, m: kd_loss(s, t, m, temperature=3.0), 5),
    "prediction_l1": (lambda s, t, m: prediction_loss(s, t, m), 1),
    "prediction_cos": (lambda s, t, m: prediction_loss(s, t, m, metric="cosine"), 3),
    "dist": (lambda s, t, m: dist_loss(s, t, m), 5),
    "cwd": (lambda s, t, m: cwd_loss(s, t, m), 4),
    "kd4mtl_pixel": (lambda s, t, m: kd4mtl_feature_loss(s, t, m), 6),
    "kd4mtl_map": (lambda s, t, m: kd4mtl_feature_loss(s, t, m, normalize="map"), 6),
    "fitnet": (lambda s, t, m: fitnet_loss(s, t, m), 6),
    "cs_channel": (lambda s, t, m: cs_distill_loss(s, t, m, distribution="channel"), 5),
    "cs_spatial": (lambda s, t, m: cs_distill_loss(s, t, m, distribution="spatial"), 1),
}
NAMES = sorted(PIXEL_LOSSES)
H, W = 5, 6


def pair(name, seed):
    fn, c = PIXEL_LOSSES[name]
    return fn, maps((2, c, H, W), seed, 2.0), maps((2, c, H, W), seed + 1, 2.0)


@pytest.mark.parametrize("name", NAMES)
def test_nonnegative_and_minimum_at_equality(name):
    fn, s, t = pair(name, 100)
    for seed in range(3):
        _, s, t = pair(name, 100 + 2 * seed)
        assert fn(s, t, None).item() >= 0.0
    assert fn(t.clone(), t, None).item() == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_gradient_reaches_student_not_teacher(name):
    fn, s, t = pair(name, 110)
    s.requires_grad_(True)
    t.requires_grad_(True)
    loss = fn(s, t, rand_mask(2, H, W, 112))
    assert loss.dtype == torch.float32 and loss.dim() == 0
    loss.backward()
    assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    assert t.grad is None


@pytest.mark.parametrize("name", NAMES)
def test_masked_pixels_do_not_change_the_value(name):
    fn, s, t = pair(name, 120)
    m = rand_mask(2, H, W, 122, p=0.6)
    base = fn(s, t, m).item()
    off = ~m[:, None].expand_as(s)
    s2 = torch.where(off, maps(s.shape, 123, 10.0), s)
    t2 = torch.where(off, maps(s.shape, 124, 10.0), t)
    assert fn(s2, t2, m).item() == pytest.approx(base, rel=1e-5, abs=1e-6)
    assert fn(s, t, m[:, None]).item() == pytest.approx(base, rel=1e-6, abs=1e-7)  # B×1×H×W == B×H×W
    if name != "kd4mtl_map":  # the map normalisation couples pixels; only the masked-out ones are irrelevant
        assert abs(fn(s, t, None).item() - base) > 1e-6


@pytest.mark.parametrize("name", NAMES)
def test_empty_mask_gives_differentiable_zero(name):
    fn, s, t = pair(name, 130)
    s.requires_grad_(True)
    loss = fn(s, t, torch.zeros(2, H, W, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert s.grad is not None and (s.grad == 0).all()


@pytest.mark.parametrize("name", NAMES)
def test_bf16_inputs_give_fp32_close_to_fp32(name):
    fn, s, t = pair(name, 140)
    m = rand_mask(2, H, W, 142)
    ref = fn(s, t, m)
    got = fn(s.bfloat16(), t.bfloat16(), m)
    assert got.dtype == torch.float32
    # exactly the fp32 loss of the bf16-rounded inputs, and close to the fp32 inputs' loss
    assert got.item() == pytest.approx(fn(s.bfloat16().float(), t.bfloat16().float(), m).item(), rel=1e-6, abs=1e-7)
    assert got.item() == pytest.approx(ref.item(), rel=3e-2, abs=3e-3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = fn(s, t, m)
    assert auto.dtype == torch.float32 and auto.item() == pytest.approx(ref.item(), rel=1e-5, abs=1e-6)


def test_afd_and_trajectory_bf16():
    afd = AdaptiveFeatureDistillation(1, ["a", "b"], channels=[4])
    mtl = [maps((2, 4, 3, 3), 150)]
    stl = {"a": [maps((2, 4, 3, 3), 151)], "b": [maps((2, 4, 3, 3), 152)]}
    ref = afd(mtl, stl)
    got = afd([mtl[0].bfloat16()], {k: [v[0].bfloat16()] for k, v in stl.items()})
    assert got.dtype == torch.float32 and got.item() == pytest.approx(ref.item(), rel=3e-2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = afd(mtl, stl)
    assert auto.dtype == torch.float32 and auto.item() == pytest.approx(ref.item(), rel=3e-2)
    buf = TrajectoryBuffer(["a"], num_slots=2, size=(3, 3), k=2)
    buf.record("a", attention_map(maps((2, 4, 3, 3), 153).bfloat16()))
    assert buf.values.dtype == torch.float32
    st = attention_map(mtl[0])
    assert trajectory_loss(st.bfloat16(), buf, "a").dtype == torch.float32
    assert trajectory_loss(st.bfloat16(), buf, "a").item() == pytest.approx(trajectory_loss(st, buf, "a").item(), rel=3e-2, abs=1e-3)


def test_loss_table():
    assert set(LOSSES) == {"kd", "prediction", "dist", "cwd", "kd4mtl", "fitnet", "cs"}
    s, t = maps((1, 3, 4, 4), 160), maps((1, 3, 4, 4), 161)
    for name, fn in LOSSES.items():
        assert get_loss(name) is fn
        assert fn(s, t).dim() == 0
    with pytest.raises(MtkdError, match="did you mean 'cwd'"):
        get_loss("cdw")
    with pytest.raises(MtkdError, match="unknown distillation loss 'zzz'; valid:"):
        get_loss("zzz")
