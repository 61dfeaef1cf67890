"""KD4MTL (seed 004) as a specification: the taps it distils are distinct maps, Table 4's ✗ row, the adaptors'
unscheduled lr (the public code), against NumPy re-derivations of Eq. 4–5."""

import numpy as np
import pytest
import torch

from mtkd.distill import build_distiller
from mtkd.errors import MtkdError
from mtkd.models import MultiTaskModel

TASKS = {"semseg": 5, "depth": 1}


def nets(head, seed=0):
    torch.manual_seed(seed)
    student = MultiTaskModel("tiny", TASKS, head=head, decoder_channels=16)
    teachers = {t: MultiTaskModel("tiny", {t: c}, head=head, decoder_channels=16).eval() for t, c in TASKS.items()}
    return student, teachers


def ref_pixel(s, t):
    """Eq. 4 per pixel over channels (public code), mean over N·H·W, float64."""
    s, t = s.double().numpy(), t.double().numpy()
    s = s / np.sqrt((s**2).sum(1, keepdims=True) + 1e-6)
    t = t / np.sqrt((t**2).sum(1, keepdims=True) + 1e-6)
    return ((s - t) ** 2).sum(1).mean()


@pytest.mark.parametrize("head", ["aspp", "fpn"])
def test_mid_plus_last_taps_two_distinct_tensors(head):
    student, teachers = nets(head)
    d = build_distiller("kd4mtl", list(TASKS), student.taps(), {t: m.taps() for t, m in teachers.items()},
                        {"taps": "mid+last"})
    assert len(d.taps) == 2 and d.taps[-1] == "shared"
    seen = []
    for mod in d.adaptors.values():
        mod.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    image = torch.randn(2, 3, 32, 48)
    out = student(image)
    with torch.no_grad():
        touts = {t: m(image) for t, m in teachers.items()}
    kd = d(out, touts, {})
    per_task = len(d.taps)
    for k in range(len(TASKS)):
        a, b = seen[k * per_task : (k + 1) * per_task]
        assert a is not b and a.shape != b.shape  # two different maps (ASPP: layer "stage3" and "stage4"=shared)
    # the loss is Σ over the two taps of Eq. 4 with each adaptor (λ = 1): no map counted twice
    for t in TASKS:
        want = sum(ref_pixel(d.adaptors[f"{t}__{tap}"](out.features[tap]).detach(), touts[t].features[tap])
                   for tap in d.taps)
        assert float(kd[f"kd4mtl/{t}"]) == pytest.approx(want, rel=1e-5)


def test_aspp_mid_is_the_stage_before_shared():
    student, teachers = nets("aspp")
    taps = student.taps()
    d = build_distiller("kd4mtl", list(TASKS), taps, {t: m.taps() for t, m in teachers.items()}, {"taps": "mid+last"})
    stages = [n for n in taps if n.startswith("stage")]
    assert d.taps == [stages[-2], "shared"]
    student_fpn, teachers_fpn = nets("fpn")
    d = build_distiller("kd4mtl", list(TASKS), student_fpn.taps(), {t: m.taps() for t, m in teachers_fpn.items()},
                        {"taps": "mid+last"})
    assert d.taps == [stages[-1], "shared"]


def test_one_map_tapped_twice_is_refused():
    student, teachers = nets("aspp")
    stages = [n for n in student.taps() if n.startswith("stage")]
    d = build_distiller("kd4mtl", list(TASKS), student.taps(), {t: m.taps() for t, m in teachers.items()},
                        {"taps": [stages[-1], "shared"]})
    image = torch.randn(1, 3, 32, 48)
    with pytest.raises(MtkdError, match="same tensor"):
        d(student(image), {t: m(image) for t, m in teachers.items()}, {})
    with pytest.raises(MtkdError, match="twice"):
        build_distiller("kd4mtl", list(TASKS), student.taps(), {t: m.taps() for t, m in teachers.items()},
                        {"taps": ["shared", "shared"]})


def test_no_adaptor_is_table4_cross_row():
    student, teachers = nets("fpn")
    d = build_distiller("kd4mtl", list(TASKS), student.taps(), {t: m.taps() for t, m in teachers.items()},
                        {"adaptor": "none"})
    assert not list(d.parameters())
    image = torch.randn(2, 3, 32, 48)
    out = student(image)
    touts = {t: m(image) for t, m in teachers.items()}
    kd = d(out, touts, {})
    for t in TASKS:
        assert float(kd[f"kd4mtl/{t}"]) == pytest.approx(
            ref_pixel(out.features["shared"].detach(), touts[t].features["shared"].detach()), rel=1e-5)
    teacher_wide = {t: MultiTaskModel("tiny", {t: c}, head="fpn", decoder_channels=24) for t, c in TASKS.items()}
    with pytest.raises(MtkdError, match="16 channels and the teacher's 24"):
        build_distiller("kd4mtl", list(TASKS), student.taps(), {t: m.taps() for t, m in teacher_wide.items()},
                        {"adaptor": "none"})


def test_adaptor_schedule_option():
    student, teachers = nets("fpn")
    args = (list(TASKS), student.taps(), {t: m.taps() for t, m in teachers.items()})
    assert build_distiller("kd4mtl", *args).lr_scheduled is False  # the public code: own Adam, no schedule
    assert build_distiller("kd4mtl", *args, {"schedule_adaptors": True}).lr_scheduled is True
    assert build_distiller("fitnet", *args).lr_scheduled is True
