"""Pictures of predictions (golden values), ``mtkd predict`` on images of another size, ``mtkd export`` round trips."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from mtkd.cli import main
from mtkd.config import load_config
from mtkd.checkpoints import load_checkpoint, load_model
from mtkd.engine.run import train
from mtkd.errors import MtkdError
from mtkd.export import export, load_exported
from mtkd.predict import predict
from mtkd.testing import tiny_run_overrides
from mtkd.visualize import (colorize_classes, colorize_depth, colorize_gray, colorize_normals, palette,
                            to_prediction)

TASKS = ("semseg", "depth", "normal", "edge")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny finished run (32×48 rooms images, four tasks): its folder."""
    tmp = tmp_path_factory.mktemp("pe")
    train(load_config(None, tiny_run_overrides(tmp, "name=m", f"data.tasks=[{','.join(TASKS)}]",
                                                     n_train=8, n_test=4)))
    return tmp / "runs" / "m"


@pytest.fixture(scope="module")
def ckpt(run):
    return run / "checkpoints" / "best.ckpt"


# ------------------------------------------------------------------------------------------------ visualize
def test_palette_is_fixed_distinct_and_never_black():
    p = palette(25)
    assert p[:3].tolist() == [[31, 119, 180], [255, 127, 14], [44, 160, 44]]  # tab10's first colours
    assert np.array_equal(palette(3), p[:3])  # class k keeps its colour whatever the class count
    assert len({tuple(c) for c in p}) == 25 and not (p.sum(axis=1) == 0).any()


def test_class_colours_with_ignore_black():
    rgb = colorize_classes(np.array([[0, 1, -1]]), 3)
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 3, 3)
    assert rgb[0].tolist() == [[31, 119, 180], [255, 127, 14], [0, 0, 0]]
    with pytest.raises(MtkdError, match="class id 3"):
        colorize_classes(np.array([[3]]), 3)


def test_normals_are_half_plus_half_of_the_unit_vector():
    n = np.array([[[0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [-3.0, 0.0, 0.0], [0.0, 0.6, 0.8]]])
    assert colorize_normals(n)[0].tolist() == [[128, 128, 255], [0, 0, 0], [0, 128, 128], [128, 204, 230]]


def test_depth_uses_the_given_scale_clips_and_blacks_out_invalid():
    d = np.array([[0.0, 1.0, 2.0, 3.0, 9.0]])
    rgb = colorize_depth(d, vmin=1.0, vmax=3.0, cmap="gray")
    assert rgb[0, :, 0].tolist() == [0, 0, 128, 255, 255]  # invalid black, vmin → 0, mid → 128, above vmax clipped
    assert np.array_equal(colorize_depth(d[:, 1:4]), colorize_depth(d[:, 1:4], 1.0, 3.0))  # default: valid range


def test_grey_and_predictions():
    assert colorize_gray(np.array([[0.0, 0.5, 1.0, -1.0]]))[0, :, 0].tolist() == [0, 128, 255, 0]
    logits = torch.tensor([[[1.0, -2.0]], [[3.0, -5.0]]])  # 2 classes × 1 × 2
    assert to_prediction("semseg", logits).tolist() == [[1, 0]]
    assert to_prediction("edge", logits[:1])[0].tolist() == pytest.approx([1 / (1 + np.exp(-1)), 1 / (1 + np.exp(2))])
    assert to_prediction("depth", logits[:1]).tolist() == [[1.0, -2.0]]
    normal = to_prediction("normal", torch.tensor([[[3.0, 0.0]], [[0.0, 0.0]], [[4.0, 0.0]]]))
    assert normal.shape == (1, 2, 3) and np.allclose(normal, [[[0.6, 0.0, 0.8], [0.0, 0.0, 0.0]]])


# ------------------------------------------------------------------------------------------------- predict
def test_predict_writes_every_task_at_the_original_size(ckpt, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(images / "a.png")
    Image.fromarray(rng.integers(0, 256, (40, 30), dtype=np.uint8)).save(images / "b.jpg")  # grey, another size
    (images / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    assert main(["predict", str(ckpt), str(images), str(tmp_path / "missing.png"), "--out", str(out),
                 "--batch-size", "2"]) == 0
    err = capsys.readouterr().err
    assert "skipped" in err and "broken.png" in err and "missing.png" in err
    warning = next(line for line in err.splitlines() if "broken.png" in line)
    assert warning.startswith("mtkd: warning:")
    for stem, (h, w) in (("a", (50, 70)), ("b", (40, 30))):
        for task in TASKS:
            assert Image.open(out / stem / f"{task}.png").size == (w, h)
            array = np.load(out / stem / f"{task}.npy")
            assert array.shape[:2] == (h, w)
        assert np.load(out / stem / "semseg.npy").dtype == np.int64
        normal = np.load(out / stem / "normal.npy")
        assert normal.shape == (h, w, 3) and np.allclose(np.linalg.norm(normal, axis=-1), 1.0, atol=1e-4)
        edge = np.load(out / stem / "edge.npy")
        assert edge.min() >= 0 and edge.max() <= 1
    assert not (out / "broken").exists() and (out / "legend_semseg.png").is_file()
    assert not list(out.rglob("*.tmp"))


def test_predict_matches_the_model_at_the_training_size(ckpt, tmp_path):
    """An image already at the training size goes through unresized: the arrays are the model's own outputs."""
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    (folder,) = predict(ckpt, [str(tmp_path / "x.png")], tmp_path / "out")
    model, _ = load_model(ckpt)
    x = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255
    x = (x - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    with torch.no_grad():
        depth = model.eval()(x[None]).preds["depth"][0, 0].numpy()
    assert np.allclose(np.load(folder / "depth.npy"), depth, atol=1e-5)


def test_predict_refuses_when_nothing_can_be_read(ckpt, tmp_path, capsys):
    (tmp_path / "bad.png").write_bytes(b"nope")
    with pytest.raises(MtkdError, match="none of the 1 image"):
        predict(ckpt, [str(tmp_path / "bad.png")], tmp_path / "out")


def test_a_foreign_checkpoint_exits_2(tmp_path, capsys):
    bogus = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}}, bogus)
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    assert main(["predict", str(bogus), str(tmp_path / "x.png"), "--out", str(tmp_path / "o")]) == 2
    assert main(["export", str(bogus)]) == 2
    err = capsys.readouterr().err
    assert err.count("not an mtkd training checkpoint") == 2 and err.count("\n") == 2


# -------------------------------------------------------------------------------------------------- export
def test_safetensors_round_trip_holds_the_student_alone(ckpt, run, tmp_path):
    from safetensors import safe_open

    raw = load_checkpoint(ckpt)
    raw["state_dict"]["distiller.teacher.weight"] = torch.ones(3)  # as a distillation run stores its extras
    with_teacher = tmp_path / "kd.ckpt"
    torch.save(raw, with_teacher)
    path = export(with_teacher, "safetensors", tmp_path / "exp")
    model, _ = load_model(ckpt)
    with safe_open(str(path), "pt") as f:
        assert set(f.keys()) == set(model.state_dict())
        assert json.loads(f.metadata()["mtkd_card"])["tasks"] == dict(model.tasks)
    card = json.loads((tmp_path / "exp" / "model_card.json").read_text())
    assert card["input_size"] == [32, 48] and card["class_names"]["semseg"][0] == "floor"
    assert card["normalization"]["mean"] == [0.485, 0.456, 0.406] and card["parameters"] > 0
    assert (tmp_path / "exp" / "model_card.md").read_text().startswith("# m ")
    reloaded = load_exported(tmp_path / "exp")
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        a, b = model.eval()(x).preds, reloaded(x).preds
    assert all(torch.equal(a[t], b[t]) for t in TASKS)


def test_export_defaults_to_the_run_folder_and_reads_its_results(ckpt, run):
    assert main(["export", str(ckpt)]) == 0
    card = json.loads((run / "export" / "model_card.json").read_text())
    assert card["test_metrics"]["semseg"]["mIoU"] == json.loads((run / "results.json").read_text())["test"][
        "semseg"]["mIoU"]
    assert card["files"] == ["model.safetensors"]


def test_onnx_round_trip_matches_pytorch(ckpt, tmp_path):
    for package in ("onnx", "onnxscript"):
        pytest.importorskip(package)
    ort = pytest.importorskip("onnxruntime")
    path = export(ckpt, "onnx", tmp_path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == list(TASKS)
    model, _ = load_model(ckpt)
    for batch in (1, 3):  # the batch is dynamic
        x = torch.randn(batch, 3, 32, 48)
        with torch.no_grad():
            ref = model.eval()(x).preds
        for task, got in zip(TASKS, session.run(None, {"image": x.numpy()})):
            assert np.abs(got - ref[task].numpy()).max() < 1e-4
    check = json.loads((tmp_path / "model_card.json").read_text())["onnx_check"]
    assert check["max_abs_diff"] < check["tolerance"]


def test_onnx_without_its_packages_says_what_to_install(ckpt, tmp_path, monkeypatch):
    monkeypatch.setattr("mtkd.export.ONNX_PACKAGES", ("onnx", "mtkd_no_such_package"))
    with pytest.raises(MtkdError, match=r'mtkd_no_such_package: pip install "mtkd\[export\]"'):
        export(ckpt, "onnx", tmp_path)
