"""KDAM (seed 003): CS inter/intra per task from one multi-task teacher, through the engine and on fixed inputs."""

import numpy as np
import pytest
import torch

from mtkd.config import load_config
from mtkd.distill import build_distiller
from mtkd.distill.losses import cs_distill_terms
from mtkd.engine.module import MultiTaskModule
from mtkd.engine.run import train
from mtkd.errors import MtkdError
from mtkd.models import Output
from mtkd.testing import tiny_run_overrides

TASKS = {"semseg": 8, "depth": 1, "normal": 3}


def tiny(tmp, *extra):
    return tiny_run_overrides(tmp, *extra, n_train=12)


@pytest.fixture(scope="module")
def mtl_teacher(tmp_path_factory):
    """A tiny multi-task teacher (1 epoch): one checkpoint provides every task, as in KDAM."""
    tmp = tmp_path_factory.mktemp("kdam")
    train(load_config(None, tiny(tmp, "name=teacher_mtl", "data.tasks=[semseg,depth,normal]")))
    return tmp, str(tmp / "runs" / "teacher_mtl")


def student_cfg(tmp, teacher, name, *extra):
    teach = [f"distill.teachers.{t}={teacher}" for t in TASKS]
    return load_config(None, tiny(tmp, f"name={name}", "data.tasks=[semseg,depth,normal]", "distill.name=kdam",
                                  *teach, *extra))


def make(options=None, tasks=("semseg", "depth", "normal")):
    return build_distiller("kdam", list(tasks), {}, {t: {} for t in tasks}, options or {})


def outputs(seed):
    g = torch.Generator().manual_seed(seed)
    return Output({t: torch.randn(2, c, 6, 5, generator=g) for t, c in TASKS.items()}, {})


@pytest.mark.slow
def test_end_to_end_logs_inter_and_intra_per_task(mtl_teacher):
    tmp, teacher = mtl_teacher
    res = train(student_cfg(tmp, teacher, "kdam"))
    assert res["epochs"] == 1
    header = (tmp / "runs" / "kdam" / "logs" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    for t in TASKS:
        assert f"train/kd/cs_inter/{t}" in header and f"train/kd/cs_intra/{t}" in header


@pytest.mark.slow
def test_losses_equal_a_direct_cs_computation_with_the_real_teacher(mtl_teacher):
    tmp, teacher = mtl_teacher
    cfg = student_cfg(tmp, teacher, "kdam_direct", "distill.options.temperature=2",
                      "distill.options.weights.normal=3", "distill.options.beta=0.5", "distill.options.w_inter=2")
    module = MultiTaskModule(dict(cfg), TASKS)
    assert len(module.teachers.models) == 1  # one multi-task teacher for all tasks
    image = torch.randn(2, 3, 32, 48)
    out = module.model(image)
    touts = module.teachers(image)
    kd = module.distiller(out, touts, {"image": image})
    assert set(kd) == {f"cs_{k}/{t}" for k in ("inter", "intra") for t in TASKS}
    for t in TASKS:
        lam = 3.0 if t == "normal" else 1.0
        ref = cs_distill_terms(out.preds[t], touts[t].preds[t], task=t, temperature=2.0)
        torch.testing.assert_close(kd[f"cs_inter/{t}"], 0.5 * lam * 2.0 * ref.inter)
        torch.testing.assert_close(kd[f"cs_intra/{t}"], 0.5 * lam * 1.0 * ref.intra)
    sum(kd.values()).backward()
    assert all(p.grad is None for p in module.teachers.parameters())
    assert any(p.grad is not None for p in module.model.parameters())


def test_segmentation_terms_match_numpy():
    s, t = outputs(0), outputs(1)
    kd = make({"temperature": 1.5}, tasks=("semseg",))(s, {"semseg": t}, {})

    def softmax(x, axis):
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)

    def dcs(p, q, axis):
        return -np.log((p * q).sum(axis) / np.sqrt((p * p).sum(axis) * (q * q).sum(axis)))

    rows = lambda x: x.numpy().astype(np.float64).transpose(0, 2, 3, 1).reshape(-1, 8) / 1.5  # noqa: E731
    ps, pt = softmax(rows(s.preds["semseg"]), 1), softmax(rows(t.preds["semseg"]), 1)
    assert kd["cs_inter/semseg"].item() == pytest.approx(dcs(ps, pt, 1).mean(), rel=1e-5)
    assert kd["cs_intra/semseg"].item() == pytest.approx(dcs(ps, pt, 0).mean(), rel=1e-5)


def test_zero_when_student_equals_teacher():
    out = outputs(3)
    kd = make()(out, {t: out for t in TASKS}, {})
    assert len(kd) == 6
    for v in kd.values():
        assert abs(v.item()) < 1e-5


@pytest.mark.parametrize("w_inter,w_intra", [(1.0, 0.0), (0.0, 1.0), (1.0, 1.0), (0.3, 2.0)])
def test_table6_term_weights(w_inter, w_intra):
    s, t = outputs(4), outputs(5)
    full = make()(s, {k: t for k in TASKS}, {})
    kd = make({"w_inter": w_inter, "w_intra": w_intra})(s, {k: t for k in TASKS}, {})
    expect = {f"cs_{k}/{task}" for k, w in (("inter", w_inter), ("intra", w_intra)) if w for task in TASKS}
    assert set(kd) == expect
    for name, v in kd.items():
        w = w_inter if name.startswith("cs_inter") else w_intra
        torch.testing.assert_close(v, w * full[name])
    assert all(v.item() > 0 for v in full.values())


def test_zero_task_weight_skips_task_and_bad_options_are_refused():
    s, t = outputs(6), outputs(7)
    kd = make({"weights": {"depth": 0}})(s, {k: t for k in TASKS}, {})
    assert not any(k.endswith("/depth") for k in kd)
    for bad in ({"temperature": 0}, {"w_inter": -1}, {"beta": float("nan")}, {"distribution": "pixel"}):
        with pytest.raises(MtkdError):
            make(bad)
    with pytest.raises(MtkdError, match="valid: "):
        make({"tau": 3})


def test_per_task_temperature_and_distribution_match_numpy():
    """semseg over classes at T = 2, depth as a spatial distribution at T = 0.5 (metres), normals switched to the
    channel form at the default T = 1 — each against a NumPy D_CS in float64."""
    s, t = outputs(8), outputs(9)
    kd = make({"temperature": {"semseg": 2.0, "depth": 0.5}, "distribution": {"normal": "channel"}})(
        s, {k: t for k in TASKS}, {})

    def softmax(x, axis):
        x = x - x.max(axis=axis, keepdims=True)
        e = np.exp(x)
        return e / e.sum(axis=axis, keepdims=True)

    def dcs(p, q, axis):
        return -np.log((p * q).sum(axis) / np.sqrt((p * p).sum(axis) * (q * q).sum(axis)))

    def arr(o, task):
        return o.preds[task].numpy().astype(np.float64)

    for task, T in (("semseg", 2.0), ("normal", 1.0)):  # channel: rows = pixels, softmax over channels
        c = TASKS[task]
        ps = softmax(arr(s, task).transpose(0, 2, 3, 1).reshape(-1, c) / T, 1)
        pt = softmax(arr(t, task).transpose(0, 2, 3, 1).reshape(-1, c) / T, 1)
        assert kd[f"cs_inter/{task}"].item() == pytest.approx(dcs(ps, pt, 1).mean(), rel=1e-5)
        assert kd[f"cs_intra/{task}"].item() == pytest.approx(dcs(ps, pt, 0).mean(), rel=1e-5)
    ds, dt = arr(s, "depth") / 0.5, arr(t, "depth") / 0.5  # spatial: softmax over each map's positions
    n = ds.shape[0]
    inter = dcs(softmax(ds.reshape(n, -1), 1), softmax(dt.reshape(n, -1), 1), 1).mean()
    intra = dcs(softmax(ds.reshape(1, -1), 1), softmax(dt.reshape(1, -1), 1), 1).mean()
    assert kd["cs_inter/depth"].item() == pytest.approx(inter, rel=1e-5)
    assert kd["cs_intra/depth"].item() == pytest.approx(intra, rel=1e-5)
    for bad in ({"temperature": {"sal": 2.0}}, {"temperature": {"depth": 0}}, {"distribution": {"depth": "pixels"}}):
        with pytest.raises(MtkdError):
            make(bad)
