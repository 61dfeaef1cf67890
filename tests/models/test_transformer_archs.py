"""Transformer multi-task models (issue #15): Swin / ViT backbones at the protocol's non-square sizes, InvPT, DeMT and
MQTransformer — interface, taps for every distiller, deep supervision, parameter partition, activation checkpointing,
state-dict round trip, bad input, the protocol's parameter counts (seed 003 Table 1, DeMT's README) and a short
training run that lowers every task's loss. Tiny widths (Swin embed 16, one block per stage) keep it fast."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mtkd.distill import DISTILLERS, build_distiller
from mtkd.errors import MtkdError
from mtkd.models import build_model
from mtkd.tasks import get_task, supervised_loss
from mtkd.testing import random_targets

SWIN = "timm:swin_tiny_patch4_window7_224"
VIT = "timm:vit_small_patch16_384"
ARCHS = ["invpt", "demt", "mqtransformer"]
SMALL = {"invpt": {"embed_dim": 16, "pred_channels": 8}, "demt": {"dim": 16, "heads": 2},
         "mqtransformer": {"dim": 16, "heads": 2, "n_queries": 4}}
TASK_SETS = {3: {"semseg": 5, "depth": 1, "normal": 3},
             5: {"semseg": 5, "parts": 4, "sal": 1, "normal": 3, "edge": 1}}
HW = (64, 96)  # non-square, sides multiples of 32 (Swin's deepest stride)


def swin_opts(hw=HW, **kw):
    return {"embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 2], "window_size": 4,
            "img_size": list(hw), "always_partition": True, **kw}


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    """One intra-op thread: these tiny ops thrash (100× slower) when several processes share two cores."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(arch, tasks, backbone=SWIN, **kw):
    opts = {"backbone_options": swin_opts()} if backbone == SWIN else {}
    return build_model(arch, backbone, tasks, **opts, **{**SMALL[arch], **kw})


def _targets(tasks, n=2, hw=HW):
    return random_targets(tasks, n, hw)


def _losses(out, targets, aux_weight=1.0):
    return {t: supervised_loss(get_task(t), out.preds[t], y, out.aux.get(t, ()), aux_weight)
            for t, y in targets.items()}


# --- InvPT on ViT ----------------------------------------------------------------------------------------------------


def test_invpt_on_vit_uses_the_authors_uniform_backbone_setting():
    """ViT (all maps at 1/16): decoder starts at 1/32, skips from the second and first selected maps (ViT-L: 12, 6)."""
    tasks = TASK_SETS[3]
    m = build_model("invpt", VIT, tasks, **SMALL["invpt"], backbone_options={
        "embed_dim": 32, "depth": 4, "num_heads": 2, "dynamic_img_size": True, "out_indices": [0, 1, 2, 3]})
    assert m.skip_stages == [1, 0] and m.reductions == [32, 16, 8, 4]
    out = m(torch.randn(2, 3, *HW))
    assert {t: p.shape[1:] for t, p in out.preds.items()} == {t: (c, *HW) for t, c in tasks.items()}
    assert out.features["head.depth"].shape[-2:] == (16, 24) and out.aux["depth"][0].shape[-2:] == (2, 3)


# --- the three architectures -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("n", [3, 5])
def test_forward_backward_taps_and_partition(arch, n):
    tasks = TASK_SETS[n]
    m = _model(arch, tasks)
    out = m(torch.randn(2, 3, *HW))
    assert {t: p.shape for t, p in out.preds.items()} == {t: (2, c, *HW) for t, c in tasks.items()}
    taps = m.taps()
    assert set(taps) == set(out.features)
    assert {"stage1", "stage4", "shared"} | {f"head.{t}" for t in tasks} <= set(taps)
    for name, (ch, red) in taps.items():
        assert out.features[name].shape == (2, ch, HW[0] // red, HW[1] // red), name
    sum(_losses(out, _targets(tasks)).values()).backward()
    assert all(p.grad is not None for p in m.parameters()), [k for k, p in m.named_parameters() if p.grad is None]
    groups = [m.shared_parameters()] + [m.task_parameters(t) for t in tasks]
    ids = [id(p) for g in groups for p in g]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in m.parameters()}
    assert all(groups) and m.shared_parameters()[0] is next(m.backbone.parameters())
    with pytest.raises(MtkdError, match="unknown task"):
        m.task_parameters("nope")


@pytest.mark.parametrize("arch", ARCHS)
def test_every_task_loss_reaches_the_shared_rep(arch):
    """Gradient methods in representation mode (MGDA-UB) differentiate each task's loss w.r.t. features['shared']."""
    tasks = TASK_SETS[3]
    m = _model(arch, tasks, backbone="small")
    out = m(torch.randn(2, 3, 32, 48))
    for t in tasks:
        (g,) = torch.autograd.grad(out.preds[t].square().mean(), out.features["shared"], retain_graph=True)
        assert g.abs().sum() > 0, t


def test_invpt_deep_supervision_reaches_the_initial_prediction_heads():
    tasks = TASK_SETS[3]
    m = _model("invpt", tasks)
    out = m(torch.randn(2, 3, *HW))
    assert set(out.aux) == set(tasks) and all(len(a) == 1 for a in out.aux.values())
    assert out.aux["semseg"][0].shape == (2, 5, 2, 3)  # the 1/32 start grid
    y = _targets(tasks)
    with_aux = torch.autograd.grad(sum(_losses(out, y, 1.0).values()), list(m.initial_logits.parameters()),
                                   retain_graph=True)
    without = torch.autograd.grad(sum(_losses(out, y, 0.0).values()), list(m.initial_logits.parameters()),
                                  retain_graph=True)
    # without the aux term the initial heads still get a gradient (their output feeds the decoder), but another one
    assert all(not torch.allclose(a, b) for a, b in zip(with_aux, without))
    aux_only = sum(get_task(t).loss(F.interpolate(out.aux[t][0], size=HW, mode="bilinear"), y[t]) for t in tasks)
    assert all(g.abs().sum() > 0 for g in torch.autograd.grad(aux_only, list(m.initial_logits.parameters())))


@pytest.mark.parametrize("arch", ARCHS)
def test_state_dict_round_trip_and_checkpointing_changes_no_gradient(arch, tmp_path):
    tasks = TASK_SETS[3]
    m = _model(arch, tasks).eval()
    torch.save(m.state_dict(), tmp_path / "m.pt")
    torch.manual_seed(5)
    m2 = _model(arch, tasks, grad_checkpointing=True).eval()
    m2.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    x = torch.randn(2, 3, *HW)
    o1, o2 = m(x), m2(x)
    assert all(torch.allclose(o1.preds[t], o2.preds[t], atol=1e-5) for t in tasks)
    sum(p.square().mean() for p in o1.preds.values()).backward()
    sum(p.square().mean() for p in o2.preds.values()).backward()
    for (k, p1), p2 in zip(m.named_parameters(), m2.parameters()):
        assert torch.allclose(p1.grad, p2.grad, atol=1e-5, rtol=1e-4), k


def test_bf16_autocast_and_the_reports_cost_run_every_architecture():
    from mtkd.report.cost import model_cost

    tasks = TASK_SETS[3]
    for arch in ARCHS:
        m = _model(arch, tasks, backbone="small")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = m(torch.randn(1, 3, 32, 48))
        assert all(torch.isfinite(p.float()).all() for p in out.preds.values()), arch
        cost = model_cost(m, (32, 48), repeats=1)  # FlopCounterMode under no_grad, as the report runs it
        assert cost["gflops"] > 0 and cost["parameters"] == sum(p.numel() for p in m.parameters()), arch


# --- distillers on a transformer teacher / student -----------------------------------------------------------------


def _kd_setup():
    tasks = TASK_SETS[3]
    student = _model("demt", tasks, backbone="small")
    teacher = build_model("shared", SWIN, tasks, head="hrnet", decoder_channels=24,
                          backbone_options=swin_opts((32, 64), embed_dim=24)).eval()
    x = torch.randn(2, 3, 32, 64)
    batch = {"image": x, **_targets(tasks, hw=(32, 64))}
    with torch.no_grad():
        tout = teacher(x)
    return tasks, student, teacher, batch, tout


def test_every_distiller_runs_a_step_from_a_swin_teacher_to_a_transformer_student():
    tasks, student, teacher, batch, tout = _kd_setup()
    config = {"arch": "demt", "backbone": "small", "arch_options": SMALL["demt"]}
    for name in DISTILLERS.names():
        if name == "okd":  # OKD trains single-task nets of the student's backbone ("shared" arch): default options
            config = {"arch": "demt", "backbone": "small"}
        d = build_distiller(name, list(tasks), student.taps(), {t: teacher.taps() for t in tasks},
                            model_config=config, task_channels=tasks)
        out = student(batch["image"])
        losses = d(out, {t: tout for t in tasks}, batch, _losses(out, {t: batch[t] for t in tasks}))
        assert losses and all(torch.isfinite(v) for v in losses.values()), name
        sum(losses.values()).backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters()), name
        student.zero_grad(set_to_none=True)


def test_kdam_and_kd4mtl_names_and_unmatched_taps():
    tasks, student, teacher, batch, tout = _kd_setup()
    kdam = build_distiller("kdam", list(tasks), student.taps(), {t: teacher.taps() for t in tasks})
    assert set(kdam(student(batch["image"]), {t: tout for t in tasks}, batch)) == {
        f"cs_{k}/{t}" for k in ("inter", "intra") for t in tasks}
    with pytest.raises(MtkdError, match=r"has no feature tap 'mixer.semseg'; valid taps: .*head.semseg"):
        build_distiller("kd4mtl", list(tasks), student.taps(), {t: teacher.taps() for t in tasks},
                        options={"taps": ["mixer.semseg"]})
    with pytest.raises(MtkdError, match=r"adaptor=none .* 384 channels and the teacher's 360; use adaptor=linear"):
        build_distiller("kd4mtl", list(tasks), student.taps(), {t: teacher.taps() for t in tasks},
                        options={"taps": ["shared"], "adaptor": "none"})


# --- bad input -------------------------------------------------------------------------------------------------------


def test_bad_sizes_and_options_are_one_line():
    tasks = TASK_SETS[3]
    with pytest.raises(MtkdError, match=r"input 64×80 must have sides that are multiples of 32"):
        _model("demt", tasks)(torch.randn(1, 3, 64, 80))
    with pytest.raises(MtkdError, match=r"takes 64×96 inputs only, got 128×96: .*dynamic_img_size"):
        _model("invpt", tasks)(torch.randn(1, 3, 128, 96))
    with pytest.raises(MtkdError, match="skip_stages must be 2 backbone stage indices"):
        _model("invpt", tasks, skip_stages=[1])
    with pytest.raises(MtkdError, match="not divisible by its 3 heads"):
        _model("demt", tasks, heads=3)
    with pytest.raises(MtkdError, match="n_queries must be a positive int"):
        _model("mqtransformer", tasks, n_queries=0)
    with pytest.raises(MtkdError, match="needs a start reduction that is a multiple of 8"):
        build_model("invpt", "timm:resnet18", tasks, backbone_options={"out_indices": [0, 1]}, **SMALL["invpt"])


# --- cost and training -----------------------------------------------------------------------------------------------


def test_protocol_parameter_counts_match_seed_003_and_demt():
    """Swin-T MT baseline (seed 003 Table 1: 32.50 M) and DeMT-T (DeMT's README: 32.07 M) on NYUD's four tasks."""
    nyud = {"semseg": 40, "depth": 1, "normal": 3, "edge": 1}
    opts = {"img_size": [480, 640]}
    base = build_model("shared", SWIN, nyud, head="hrnet", decoder_channels=96, backbone_options=opts)
    count = lambda m: sum(p.numel() for p in m.parameters()) / 1e6  # noqa: E731
    assert abs(count(base) - 32.50) < 0.01
    demt = build_model("demt", SWIN, nyud, backbone_options=opts)
    assert abs(count(demt) - 32.07) / 32.07 < 0.05


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_a_short_training_run_lowers_every_task_loss(arch):
    tasks = TASK_SETS[3]
    m = _model(arch, tasks, backbone="small")
    x, y = torch.randn(2, 3, 32, 48), _targets(tasks, n=2, hw=(32, 48))
    opt = torch.optim.Adam(m.parameters(), lr=2e-3)
    first = None
    for _ in range(20):
        losses = _losses(m(x), y)
        first = first or {t: float(v.detach()) for t, v in losses.items()}
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    m.eval()
    with torch.no_grad():
        last = {t: float(v) for t, v in _losses(m(x), y).items()}
    assert all(last[t] < first[t] for t in tasks), (first, last)


@pytest.mark.slow
def test_kdam_from_a_swin_teacher_to_a_small_swin_student_end_to_end(tmp_path):
    """The rooms pair of the full study (teacher_swin_mt → kdam_swin), trained for one epoch on a few images."""
    from mtkd.config import load_config
    from mtkd.engine.run import train
    from mtkd.testing import tiny_run_overrides

    size = ["data.rooms.height=64", "data.rooms.width=96", "model.backbone_options.img_size=[64,96]"]
    train(load_config("rooms/teacher_swin_mt", tiny_run_overrides(tmp_path, "name=teacher_swin_mt", *size,
                                                                  n_train=4, n_test=2)))
    teacher = tmp_path / "runs" / "teacher_swin_mt"
    res = train(load_config("rooms/kdam_swin", tiny_run_overrides(
        tmp_path, "name=kdam_swin", *size, *[f"distill.teachers.{t}={teacher}" for t in TASK_SETS[3]],
        n_train=4, n_test=2)))
    assert res["best_checkpoint"] and set(res["test"]) >= {"semseg", "depth", "normal"}
