"""Teachers → student through the engine: frozen teachers, checkpoints without them, refusals before training."""

import numpy as np
import pytest
import torch

from mtkd.config import load_config
from mtkd.distill.teachers import TeacherSet
from mtkd.checkpoints import load_checkpoint
from mtkd.engine.module import MultiTaskModule
from mtkd.engine.run import train
from mtkd.errors import MtkdError
from mtkd.testing import tiny_run_overrides

pytestmark = pytest.mark.slow


def tiny(tmp, *extra):
    return tiny_run_overrides(tmp, *extra)


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kd")
    for t in ("semseg", "depth"):
        train(load_config(None, tiny(tmp, f"name=single_{t}", f"data.tasks=[{t}]")))
    return tmp, {t: str(tmp / "runs" / f"single_{t}") for t in ("semseg", "depth")}


def student_cfg(tmp, sources, method, *extra):
    teach = [f"distill.teachers.{t}={p}" for t, p in sources.items()]
    return load_config(None, tiny(tmp, f"name={method}", "data.tasks=[semseg,depth]", f"distill.name={method}",
                                  *teach, *extra))


@pytest.mark.parametrize("method", ["kd4mtl", "kd", "dist", "cwd", "fitnet"])
def test_student_trains_and_teachers_stay_frozen(teachers, method):
    tmp, sources = teachers
    before = {k: v.clone() for k, v in TeacherSet(sources).state_dict().items()}
    cfg = student_cfg(tmp, sources, method, "distill.options.weights.depth=2")
    res = train(cfg)
    after = TeacherSet(sources).state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    ckpt = load_checkpoint(res["best_checkpoint"])
    assert not any("teacher" in k for k in ckpt["state_dict"])
    assert any(k.startswith("distiller.") for k in ckpt["state_dict"]) == (method in ("kd4mtl", "fitnet"))
    logged = (tmp / "runs" / method / "logs" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    assert "train/kd/" in logged


def test_teacher_gets_no_gradient_and_adaptors_do(teachers):
    tmp, sources = teachers
    module = MultiTaskModule(dict(student_cfg(tmp, sources, "kd4mtl")), {"semseg": 8, "depth": 1})
    batch = {"image": torch.randn(2, 3, 32, 48), "semseg": torch.randint(0, 8, (2, 32, 48)),
             "depth": torch.rand(2, 1, 32, 48)}
    out = module.model(batch["image"])
    kd = module.distiller(out, module.teachers(batch["image"]), batch)
    sum(kd.values()).backward()
    assert all(p.grad is None for p in module.teachers.parameters())
    assert all(p.grad is not None for p in module.distiller.parameters())
    assert set(kd) == {"kd4mtl/semseg", "kd4mtl/depth"}


def test_bad_distillation_inputs_are_refused_before_training(teachers):
    tmp, sources = teachers
    channels = {"semseg": 8, "depth": 1}

    def build(*extra, src=sources, method="kd4mtl", ch=channels):
        return MultiTaskModule(dict(student_cfg(tmp, src, method, *extra)), ch)

    with pytest.raises(MtkdError, match="does not exist"):
        build(src={"semseg": str(tmp / "nope")})
    with pytest.raises(MtkdError, match="does not predict task 'depth'"):
        build(src={"depth": sources["semseg"]})
    with pytest.raises(MtkdError, match="predicts 8 channels"):
        build(ch={"semseg": 5, "depth": 1})
    with pytest.raises(MtkdError, match="finite number"):
        build("distill.options.weights.depth=-1")
    with pytest.raises(MtkdError, match="finite number"):
        build("distill.options.weights.depth=nan")
    with pytest.raises(MtkdError, match="valid: "):
        build("distill.options.temprature=3")
    with pytest.raises(MtkdError, match="needs distill.teachers"):
        MultiTaskModule(dict(load_config(None, tiny(tmp, "distill.name=kd"))), channels)
    with pytest.raises(MtkdError, match="kd4mtl"):
        build(method="kd4mt")


def test_teacher_from_a_weights_file_and_its_model_config(teachers, tmp_path):
    from safetensors.torch import save_file

    from mtkd.checkpoints import load_model

    tmp, sources = teachers
    model, _ = load_model(f"{sources['semseg']}/checkpoints/best.ckpt")
    weights = tmp_path / "semseg.safetensors"
    save_file(model.state_dict(), str(weights))
    spec = [f"distill.teachers.semseg.weights={weights}", "distill.teachers.semseg.tasks.semseg=8",
            "distill.teachers.semseg.model.decoder_channels=16"]
    cfg = load_config(None, tiny(tmp, "name=w", "data.tasks=[semseg]", "distill.name=kd", *spec))
    module = MultiTaskModule(dict(cfg), {"semseg": 8})
    image = torch.randn(1, 3, 32, 48)
    torch.testing.assert_close(module.teachers(image)["semseg"].preds["semseg"], model.eval()(image).preds["semseg"])
    bad = load_config(None, tiny(tmp, "data.tasks=[semseg]", "distill.name=kd", *spec[:2]))  # wrong decoder width
    with pytest.raises(MtkdError, match="do not fit"):
        MultiTaskModule(dict(bad), {"semseg": 8})


@pytest.mark.parametrize("bn", ["eval"])
def test_teachers_are_in_eval_mode_inside_training_steps(teachers, monkeypatch, bn):
    """Recorded at every teacher call during a real run (not after reloading): the student is training, every
    teacher module is in eval mode (BatchNorm layers in train mode only with distill.teacher_bn=train), no grad."""
    tmp, sources = teachers
    calls = []
    original = TeacherSet.forward

    def spy(self, image):
        bn_layers = [m for m in self.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        others = [m for m in self.modules() if not isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        calls.append((spy.student_training, [m.training for m in bn_layers], [m.training for m in others]))
        return original(self, image)

    spy.student_training = False
    step = MultiTaskModule.training_step

    def in_step(self, batch, batch_idx):
        spy.student_training = self.model.training
        try:
            return step(self, batch, batch_idx)
        finally:
            spy.student_training = False

    monkeypatch.setattr(TeacherSet, "forward", spy)
    monkeypatch.setattr(MultiTaskModule, "training_step", in_step)
    train(student_cfg(tmp, sources, "kd4mtl", f"name=mode_{bn}", f"distill.teacher_bn={bn}"))
    during_training = [c for c in calls if c[0]]
    assert during_training  # the teachers ran inside training steps
    for _, bn_modes, other_modes in during_training:
        assert bn_modes and all(m == (bn == "train") for m in bn_modes)
        assert not any(other_modes)


def test_kd4mtl_adaptors_keep_their_lr_while_the_student_steps_down(teachers):
    tmp, sources = teachers
    cfg = student_cfg(tmp, sources, "kd4mtl", "optim.scheduler=step", "optim.step_size=2", "optim.gamma=0.5",
                      "optim.lr=0.001", "distill.lr=0.1", "trainer.max_epochs=6")
    module = MultiTaskModule(dict(cfg), {"semseg": 8, "depth": 1})
    conf = module.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]
    seen = []
    for _ in range(5):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    np.testing.assert_allclose([s[0] for s in seen], [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4])  # StepLR(2, 0.5)
    np.testing.assert_allclose([s[1] for s in seen], [0.1] * 5)  # the public code: adaptors unscheduled
    cfg = student_cfg(tmp, sources, "kd4mtl", "optim.scheduler=step", "optim.step_size=2", "optim.gamma=0.5",
                      "optim.lr=0.001", "distill.lr=0.1", "distill.options.schedule_adaptors=true")
    module = MultiTaskModule(dict(cfg), {"semseg": 8, "depth": 1})
    conf = module.configure_optimizers()
    for _ in range(2):
        conf["optimizer"].step()
        conf["lr_scheduler"].step()
    np.testing.assert_allclose([g["lr"] for g in conf["optimizer"].param_groups], [5e-4, 0.05])
