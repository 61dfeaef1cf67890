"""OKD-MTL (seed 002): OTW weights on fixed numbers, gradient routing (STL nets / MTL net / warm-up), end to end."""

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from mtkd.config import load_config
from mtkd.distill.okd import OKDDistiller
from mtkd.distill.otw import otw_weights
from mtkd.checkpoints import load_checkpoint
from mtkd.engine.module import MultiTaskModule
from mtkd.engine.run import train
from mtkd.errors import MtkdError
from mtkd.testing import tiny_run_overrides

CHANNELS = {"semseg": 8, "depth": 1}


def np_otw(mtl, stl, T=0.1, clamp=None):
    m = np.asarray(mtl, dtype=np.float64) / np.asarray(stl, dtype=np.float64)
    e = np.exp(m / T)
    if clamp is not None:
        e = np.minimum(e, clamp)
    return len(m) * e / e.sum()


# ---------------------------------------------------------------- OTW (Eq. 3)

@pytest.mark.parametrize("mtl,stl", [([1.0, 2.0, 0.5], [1.0, 1.5, 0.6]), ([0.3, 0.31], [0.4, 0.2]),
                                     ([2.0, 1.0, 1.0, 4.0], [2.0, 2.0, 1.0, 3.0])])
def test_otw_matches_numpy_and_sums_to_nt(mtl, stl):
    w = otw_weights(mtl, stl, T=0.1)
    np.testing.assert_allclose(w.numpy(), np_otw(mtl, stl), rtol=1e-5, atol=1e-6)
    assert float(w.sum()) == pytest.approx(len(mtl), rel=1e-6)
    for T in (0.05, 1.0):
        np.testing.assert_allclose(otw_weights(mtl, stl, T=T).numpy(), np_otw(mtl, stl, T), rtol=1e-5, atol=1e-6)


def test_otw_favours_the_task_lagging_its_single_task_net():
    w = otw_weights({"a": 1.0, "b": 1.0}, {"a": 1.0, "b": 0.8})  # ratios 1.0, 1.25
    assert w[1] > w[0]
    assert otw_weights([1.0, 1.0], [1.0, 1.0]).tolist() == pytest.approx([1.0, 1.0])
    # a large temperature flattens, a small one sharpens
    flat, sharp = otw_weights([1.0, 1.0], [1.0, 0.8], T=100.0), otw_weights([1.0, 1.0], [1.0, 0.8], T=0.01)
    assert flat.tolist() == pytest.approx([1.0, 1.0], abs=1e-2) and sharp[1] == pytest.approx(2.0, abs=1e-6)


def test_otw_clamp_caps_each_exponential():
    mtl, stl = [1.0, 2.0, 0.01], [1.0, 1.0, 1.0]  # ratios 1, 2, 0.01: exp(10), exp(20) capped at 10; exp(0.1) not
    w = otw_weights(mtl, stl, T=0.1, clamp=10.0)
    np.testing.assert_allclose(w.numpy(), np_otw(mtl, stl, 0.1, 10.0), rtol=1e-5)
    assert w[0] == pytest.approx(w[1]) and w[2] < w[0] and float(w.sum()) == pytest.approx(3.0)
    huge = otw_weights([1e4, 1.0], [1e-3, 1.0], clamp=10.0)  # exp would overflow: still finite, capped
    assert torch.isfinite(huge).all() and huge[0] == pytest.approx(2 * 10 / (10 + np.exp(10.0)) * 0 + 2 * 10 / 20)


def test_otw_zero_and_bad_losses():
    assert otw_weights([0.0, 1.0], [0.0, 1.0]).tolist() == pytest.approx(np_otw([0.0, 1.0], [1.0, 1.0]).tolist())
    with pytest.raises(MtkdError, match="finite"):
        otw_weights([float("nan"), 1.0], [1.0, 1.0])
    with pytest.raises(MtkdError, match="temperature"):
        otw_weights([1.0], [1.0], T=0)


# ---------------------------------------------------------------- gradient routing

def tiny(tmp, *extra):
    return tiny_run_overrides(tmp, *extra)


def okd_cfg(tmp, *extra, name="okd"):
    return load_config(None, tiny(tmp, f"name={name}", "data.tasks=[semseg,depth]", "distill.name=okd", *extra))


def make_batch():
    g = torch.Generator().manual_seed(0)
    return {"image": torch.randn(2, 3, 32, 48, generator=g), "semseg": torch.randint(0, 8, (2, 32, 48), generator=g),
            "depth": torch.rand(2, 1, 32, 48, generator=g) + 0.1}


def step(module, batch):
    """The engine's loss path (task losses, distiller, EW backward), without the optimizer."""
    module.zero_grad(set_to_none=True)
    out = module.model(batch["image"])
    losses = module.task_losses(out, batch)
    kd = module.distiller(out, {}, batch, task_losses=losses)
    module.weighting.backward(losses, extra=sum(kd.values()))
    return losses, kd


def grads(params):
    return [p.grad for p in params]


def nonzero(gs):
    return any(g is not None and g.abs().sum() > 0 for g in gs)


def test_stl_nets_learn_only_from_their_own_loss_and_afd_reaches_the_mtl_net(tmp_path):
    torch.manual_seed(0)
    module = MultiTaskModule(dict(okd_cfg(tmp_path)), CHANNELS)
    d = module.distiller
    assert isinstance(d, OKDDistiller) and set(d.stl) == {"semseg", "depth"} and d.taps == ["stage1", "stage2",
                                                                                              "stage3", "stage4"]
    batch = make_batch()
    out = module.model(batch["image"])
    losses = module.task_losses(out, batch)
    kd = d(out, {}, batch, task_losses=losses)
    assert set(kd) == {"stl/semseg", "stl/depth", "afd", "otw"}
    # AFD + OTW: no gradient into any single-task net; AFD reaches the MTL backbone and ω
    (kd["afd"] + kd["otw"]).backward(retain_graph=True)
    assert all(g is None for g in grads(d.stl.parameters()))
    assert nonzero(grads(module.model.backbone.parameters())) and d.afd.omega.grad is not None
    module.zero_grad(set_to_none=True)
    kd["afd"].backward(retain_graph=True)
    assert nonzero(grads(module.model.backbone.parameters()))
    assert all(g is None for g in grads(module.model.heads.parameters()))  # AFD taps the backbone only
    # each STL loss trains its own net, nothing else
    module.zero_grad(set_to_none=True)
    kd["stl/semseg"].backward()
    assert nonzero(grads(d.stl["semseg"].parameters()))
    assert all(g is None for g in grads(d.stl["depth"].parameters()))
    assert all(g is None for g in grads(module.model.parameters())) and d.afd.omega.grad is None
    # OTW: λ sums to N_t; otw = Σ (λ_i − 1) L_i
    lam = torch.stack([d.last_weights[t] for t in d.tasks])
    assert float(lam.sum()) == pytest.approx(2.0)
    expected = sum((lam[i] - 1) * losses[t] for i, t in enumerate(d.tasks))
    assert float(kd["otw"].detach()) == pytest.approx(float(expected.detach()), rel=1e-5, abs=1e-7)


def test_total_mtl_term_is_lambda_weighted_with_ew(tmp_path):
    """Engine EW (w = 1) + otw ⇒ the MTL heads' gradient equals that of Σ λ_i L_MTL^i."""
    torch.manual_seed(0)
    module = MultiTaskModule(dict(okd_cfg(tmp_path, "distill.options.afd=false")), CHANNELS)
    batch = make_batch()
    losses, kd = step(module, batch)
    lam = {t: float(w) for t, w in module.distiller.last_weights.items()}
    got = [p.grad.clone() for p in module.model.heads.parameters()]
    module.zero_grad(set_to_none=True)
    out = module.model(batch["image"])
    ref = module.task_losses(out, batch)
    sum(lam[t] * ref[t] for t in ref).backward()
    for g, p in zip(got, module.model.heads.parameters()):
        torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-6)


def test_warmup_trains_only_the_stl_nets(tmp_path):
    torch.manual_seed(0)
    module = MultiTaskModule(dict(okd_cfg(tmp_path, "distill.options.warmup_epochs=1")), CHANNELS)
    d, batch = module.distiller, make_batch()
    d.epoch = 0
    losses, kd = step(module, batch)
    assert float(kd["afd"]) == 0.0 and all(float(w) == 0.0 for w in d.last_weights.values())
    assert float(kd["otw"].detach()) == pytest.approx(-float(sum(losses.values()).detach()), rel=1e-6)
    assert not nonzero(grads(module.model.parameters()))  # the MTL net: zero gradient
    assert all(g is None for g in grads(d.afd.parameters()))
    assert nonzero(grads(d.stl["semseg"].parameters())) and nonzero(grads(d.stl["depth"].parameters()))
    d.epoch = 1  # warm-up over: the MTL net and AFD train
    losses, kd = step(module, batch)
    assert nonzero(grads(module.model.parameters())) and d.afd.omega.grad is not None


def test_code_form_uses_previous_epoch_ratios(tmp_path):
    torch.manual_seed(0)
    module = MultiTaskModule(dict(okd_cfg(tmp_path, "distill.options.otw_form=code")), CHANNELS)
    d, batch = module.distiller, make_batch()
    assert d.otw_clamp == 10.0
    losses, kd = step(module, batch)
    assert [float(w) for w in d.last_weights.values()] == pytest.approx([1.0, 1.0])  # first epoch: ratios 1
    d.end_epoch()
    ratios = d.prev_ratio.clone()
    assert float(ratios.sum()) > 0 and float(d._count) == 0
    step(module, batch)
    lam = torch.stack([d.last_weights[t] for t in d.tasks])
    np.testing.assert_allclose(lam.numpy(), np_otw(ratios.numpy(), np.ones(2), 0.1, 10.0), rtol=1e-5)


def test_frozen_stl_checkpoints_and_bad_options(tmp_path):
    torch.manual_seed(0)
    cfg = OmegaConf.to_container(okd_cfg(tmp_path), resolve=True)
    src = MultiTaskModule(cfg, CHANNELS).distiller.stl
    paths = {}
    for t, net in src.items():  # a minimal mtkd training checkpoint per single-task net
        paths[t] = str(tmp_path / f"{t}.ckpt")
        torch.save({"hyper_parameters": {"config": cfg, "task_channels": {t: CHANNELS[t]}},
                    "state_dict": {f"model.{k}": v for k, v in net.state_dict().items()}}, paths[t])
    ck = [f"distill.options.stl_checkpoints.{t}={p}" for t, p in paths.items()]
    module = MultiTaskModule(dict(okd_cfg(tmp_path, "distill.options.otw=false", *ck)), CHANNELS)
    d = module.distiller
    for t in CHANNELS:
        for k, v in src[t].state_dict().items():
            assert torch.equal(d.stl[t].state_dict()[k], v)
    module.train()
    assert not any(m.training for m in d.stl.modules()) and not any(p.requires_grad for p in d.stl.parameters())
    losses, kd = step(module, make_batch())
    assert set(kd) == {"afd"} and nonzero(grads(module.model.backbone.parameters()))
    with pytest.raises(MtkdError, match="stl_checkpoints"):
        MultiTaskModule(dict(okd_cfg(tmp_path, ck[0])), CHANNELS)
    with pytest.raises(MtkdError, match="afd_layers"):
        MultiTaskModule(dict(okd_cfg(tmp_path, "distill.options.afd_layers=first")), CHANNELS)
    with pytest.raises(MtkdError, match="channels"):
        MultiTaskModule(dict(okd_cfg(tmp_path, "distill.options.stl_backbone=timm:resnet18")), CHANNELS)
    with pytest.raises(MtkdError, match="valid: "):
        MultiTaskModule(dict(okd_cfg(tmp_path, "distill.options.warmup=5")), CHANNELS)
    last = MultiTaskModule(dict(okd_cfg(tmp_path, "distill.options.afd_layers=last")), CHANNELS).distiller
    assert last.taps == ["stage4"] and last.afd.num_layers == 1


# ---------------------------------------------------------------- end to end

@pytest.mark.slow
def test_okd_trains_two_epochs_checkpoints_stl_nets_and_resumes(tmp_path):
    extra = ("trainer.max_epochs=2", "distill.options.warmup_epochs=1", "distill.options.otw_form=code")
    res = train(okd_cfg(tmp_path, *extra))
    ckpt = load_checkpoint(res["best_checkpoint"])
    keys = ckpt["state_dict"]
    assert any(k.startswith("distiller.stl.semseg.") for k in keys) and any(k.startswith("distiller.stl.depth.")
                                                                             for k in keys)
    assert "distiller.prev_ratio" in keys and "distiller.afd.omega" in keys
    run = tmp_path / "runs" / "okd"
    header = (run / "logs" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    assert all(f"train/kd/{k}" in header for k in ("stl/semseg", "stl/depth", "afd", "otw"))
    last = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert not torch.equal(last["state_dict"]["distiller.prev_ratio"], torch.ones(2))
    (run / "results.json").unlink()  # as if killed after the last epoch's checkpoint
    res2 = train(okd_cfg(tmp_path, "trainer.max_epochs=3", "distill.options.warmup_epochs=1",
                         "distill.options.otw_form=code", "resume=true"))
    assert res2["steps"] == res["steps"] // 2 * 3  # one more epoch, not three


@pytest.mark.slow
def test_warmup_leaves_the_student_and_its_optimizer_untouched(tmp_path):
    torch.manual_seed(0)
    cfg = okd_cfg(tmp_path, "trainer.max_epochs=1", "distill.options.warmup_epochs=1", "optim.weight_decay=0.01",
                  name="warm")
    initial = MultiTaskModule(dict(cfg), CHANNELS).model.state_dict()
    res = train(cfg)
    ckpt = load_checkpoint(res["best_checkpoint"])
    student = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    weights = [k for k, v in initial.items() if v.is_floating_point() and "running" not in k]
    assert all(torch.equal(student[k], initial[k]) for k in weights)  # weight decay did not touch it either
    stl = [k for k in ckpt["state_dict"] if k.startswith("distiller.stl.") and k.endswith("weight")]
    assert stl  # while the single-task networks did train (checked against their init elsewhere)


def test_okd_single_task_nets_ignore_the_students_architecture_options(tmp_path):
    """An ATRC student (arch_options.preset) gets plain shared-encoder single-task nets, which take no preset."""
    cfg = okd_cfg(tmp_path, "model.arch=atrc", "model.arch_options={preset: global}", "distill.options={afd: false}")
    module = MultiTaskModule(OmegaConf.to_container(cfg, resolve=True), {"semseg": 8, "depth": 1})
    assert type(module.model).__name__ == "ATRC"
    assert all(type(net).__name__ == "MultiTaskModel" for net in module.distiller.stl.values())
    losses, kd = step(module, make_batch())
    assert set(losses) == {"semseg", "depth"} and all(torch.isfinite(v) for v in kd.values())
