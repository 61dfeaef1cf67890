"""The catalogue of bad inputs: each goes through ``mtkd.cli.main`` in-process and must end with exit code 2, exactly
one stderr line ``mtkd: error: ...`` that names the problem (the key, the value, the path), no traceback, and the
tree unchanged (the sandbox — the working folder — and the prepared inputs, byte for byte: no folder created).

Every case is refused while validating, before any training, so the whole catalogue takes seconds.
"""

from __future__ import annotations

import argparse
import errno
import pickle
import re

import numpy as np
import pytest
import torch
from PIL import Image

import mtkd.cli
from mtkd.cli import main
from mtkd.config import load_config, to_dict
from mtkd.engine.module import MultiTaskModule
from mtkd.errors import MtkdError
from mtkd.testing import refused

GPUS = torch.cuda.device_count() if torch.cuda.is_available() else 0


def write_checkpoint(path, state_dict=None, **overrides):
    """An mtkd training checkpoint of a tiny untrained model, written as the engine does (no training)."""
    cfg = to_dict(load_config(None, ["data.tasks=[semseg,depth]", "model.decoder_channels=8",
                                     "data.rooms.height=32", "data.rooms.width=32", *overrides]))
    channels = {"semseg": 13, "depth": 1}
    module = MultiTaskModule(cfg, channels)
    torch.save({"state_dict": module.state_dict() if state_dict is None else state_dict(module.state_dict()),
                "hyper_parameters": {"config": cfg, "task_channels": channels}, "epoch": 0, "global_step": 0}, path)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The bad (and a few good) files the cases refer to as ``{in}``."""
    d = tmp_path_factory.mktemp("inputs")
    yamls = {
        "list.yaml": "- semseg\n- depth\n",
        "scalar.yaml": "42\n",
        "syntax.yaml": "data:\n  tasks: [semseg\n  batch_size: 4\n",
        "python.yaml": "data: !!python/object/apply:os.system ['echo owned']\n",
        "tab.yaml": "data:\n\tbatch_size: 4\n",
        "typo.yaml": "trainer:\n  max_epoch: 3\n",
        "type.yaml": "trainer:\n  max_epochs: ten\n",
        "section.yaml": "optim: 0.1\n",
        "interp.yaml": "optim:\n  lr: ${nowhere}\n",
    }
    for name, text in yamls.items():
        (d / name).write_text(text)
    (d / "empty.ckpt").write_bytes(b"")
    (d / "garbage.ckpt").write_bytes(b"not a checkpoint at all\n" * 8)
    torch.save({"config": argparse.Namespace(lr=1)}, d / "objects.ckpt")  # a pickled class: weights_only refuses it
    (d / "plain.pkl").write_bytes(pickle.dumps({"a": 1}))
    torch.save({"weights": torch.zeros(3)}, d / "foreign.ckpt")
    write_checkpoint(d / "good.ckpt")
    (d / "truncated.ckpt").write_bytes((d / "good.ckpt").read_bytes()[:2000])
    write_checkpoint(d / "mismatch.ckpt", lambda sd: {**sd, "model.extra_weight": torch.zeros(1)})
    (d / "run" / "checkpoints").mkdir(parents=True)  # a run folder without best.ckpt
    data = d / "data"  # a folder dataset without meta.json whose label file is corrupt
    for split in ("train", "val"):
        for sub in ("image", "label", "depth"):
            (data / split / sub).mkdir(parents=True)
        np.save(data / split / "image" / "0.npy", np.zeros((8, 8, 3), np.float32))
        np.save(data / split / "depth" / "0.npy", np.ones((8, 8), np.float32))
        np.save(data / split / "label" / "0.npy", np.zeros((8, 8), np.int64))
    (data / "val" / "label" / "0.npy").write_bytes(b"\x93NUMPY\x01\x00" + b"\x00" * 6)
    Image.new("RGB", (8, 8)).save(d / "x.png")
    return d


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """An empty working folder: relative outputs (``runs/``) would land here."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


TRAIN = ["train", "rooms/mtl_ew"]


def case(name, argv, match, **kw):
    return pytest.param(argv, match, id=name, **kw)


CASES = [
    # ---------------------------------------------------------------- wrong types, ranges, choices (overrides)
    case("int-word", [*TRAIN, "trainer.max_epochs=abc"], r"trainer\.max_epochs: got 'abc', expected an integer"),
    case("float-word", [*TRAIN, "optim.lr=fast"], r"optim\.lr: got 'fast', expected a number"),
    case("lr-inf", [*TRAIN, "optim.lr=inf"], r"optim\.lr: got inf, expected a finite number > 0"),
    case("lr-nan", [*TRAIN, "optim.lr=nan"], r"optim\.lr: got nan"),
    case("lr-negative", [*TRAIN, "optim.lr=-0.001"], r"optim\.lr: got -0\.001"),
    case("seed-word", [*TRAIN, "seed=abc"], r"seed: got 'abc', expected an integer"),
    case("seed-float", [*TRAIN, "seed=1.5"], r"seed: got 1\.5, expected an integer"),
    case("epochs-negative", [*TRAIN, "trainer.max_epochs=-5"], r"trainer\.max_epochs: got -5, expected an integer ≥ 1"),
    case("batch-zero", [*TRAIN, "data.batch_size=0"], r"data\.batch_size: got 0"),
    case("workers-negative", [*TRAIN, "data.num_workers=-1"], r"data\.num_workers: got -1"),
    case("val-fraction", [*TRAIN, "data.val_fraction=1.5"], r"data\.val_fraction: got 1\.5, expected .*< 1"),
    case("edge-weight", [*TRAIN, "loss.edge_pos_weight=2"], r"loss\.edge_pos_weight: got 2\.0"),
    case("distill-lr-zero", [*TRAIN, "distill.lr=0"], r"distill\.lr: got 0\.0"),
    case("bool-word", [*TRAIN, "resume=maybe"], r"resume: got 'maybe', expected true or false"),
    case("list-expected", [*TRAIN, "data.tasks=semseg"], r"data\.tasks: got 'semseg', expected a list of strings"),
    case("section-scalar", [*TRAIN, "data=3"], r"config key data: got 3, expected a section"),
    case("precision", [*TRAIN, "trainer.precision=17-mixed"], r"trainer\.precision: got '17-mixed', expected one of"),
    case("optimizer", [*TRAIN, "optim.optimizer=adma"], r"optim\.optimizer: got 'adma'.*did you mean 'adam'"),
    case("scheduler", [*TRAIN, "optim.scheduler=cos"], r"optim\.scheduler: got 'cos'.*'cosine'"),
    case("select-on", [*TRAIN, "data.select_on=train"], r"data\.select_on: got 'train'"),
    case("teacher-bn", [*TRAIN, "distill.teacher_bn=frozen"], r"distill\.teacher_bn: got 'frozen'"),
    case("accelerator", [*TRAIN, "trainer.accelerator=quantum"], r"trainer\.accelerator: got 'quantum'"),
    case("devices-zero", [*TRAIN, "trainer.devices=0"], r"trainer\.devices: got 0"),
    case("devices-word", [*TRAIN, "trainer.devices=many"], r"trainer\.devices: got 'many'"),
    case("devices-missing", [*TRAIN, f"trainer.devices={GPUS + 4}"],
         r"trainer\.devices: got \d+, expected devices this machine has"),
    case("gpu-missing", [*TRAIN, "trainer.accelerator=gpu"], r"trainer\.accelerator: got 'gpu'.*no CUDA GPU",
         marks=pytest.mark.skipif(GPUS > 0, reason="this machine has a GPU")),
    # ----------------------------------------------------------------------------- unknown keys and names
    case("key-typo", [*TRAIN, "data.bach_size=4"], r"unknown config key 'data\.bach_size'; did you mean 'data\.batch_size'"),
    case("key-misplaced", [*TRAIN, "max_epochs=3"], r"unknown config key 'max_epochs'; did you mean 'trainer\.max_epochs'"),
    case("no-equals", [*TRAIN, "trainer.max_epochs"], r"'trainer\.max_epochs' is not of the form dotted\.key=value"),
    case("bad-yaml-value", [*TRAIN, "data.tasks=[semseg"], r"bad override 'data\.tasks=\[semseg'"),
    case("weighting-typo", [*TRAIN, "weighting.name=pcgard"], r"unknown weighting.* 'pcgard'; did you mean 'pcgrad'"),
    case("weighting-option", [*TRAIN, "weighting.name=uw", "weighting.options.clasification=[semseg]"],
     r"clasification.*classification"),
    case("distiller-typo", [*TRAIN, "distill.name=kd4mt"], r"unknown .*'kd4mt'.*'kd4mtl'"),
    case("recipe-typo", ["train", "rooms/mtl_eww"], r"unknown recipe 'rooms/mtl_eww'; did you mean"),
    case("recipe-missing", ["train", "{in}/nope.yaml"], r"config file .*nope\.yaml does not exist"),
    # ----------------------------------------------------------------------------------- recipe and study files
    case("recipe-list", ["train", "{in}/list.yaml"], r"list\.yaml must hold a mapping of keys, not a List"),
    case("recipe-scalar", ["train", "{in}/scalar.yaml"], r"scalar\.yaml must hold a mapping of keys, not int"),
    case("recipe-syntax", ["train", "{in}/syntax.yaml"], r"cannot read config .*syntax\.yaml \(line \d+, column \d+\)"),
    case("recipe-python-tag", ["train", "{in}/python.yaml"], r"python\.yaml .*no !!python tags"),
    case("recipe-tab", ["train", "{in}/tab.yaml"], r"cannot read config .*tab\.yaml \(line 2"),
    case("recipe-key-typo", ["train", "{in}/typo.yaml"], r"'trainer\.max_epoch'; did you mean 'trainer\.max_epochs'"),
    case("recipe-type", ["train", "{in}/type.yaml"], r"trainer\.max_epochs: got 'ten', expected an integer"),
    case("recipe-section", ["train", "{in}/section.yaml"], r"config key optim: got 0\.1, expected a section"),
    case("recipe-interpolation", ["train", "{in}/interp.yaml"], r"optim\.lr: .*'nowhere' not found"),
    case("study-list", ["study", "{in}/list.yaml"], r"study .*list\.yaml must hold a mapping"),
    case("study-syntax", ["study", "{in}/syntax.yaml"], r"cannot read study .*syntax\.yaml \(line"),
    case("study-python-tag", ["study", "{in}/python.yaml"], r"cannot read study .*no !!python tags"),
    case("study-missing", ["study", "{in}/nope.yaml"], r"study file .*nope\.yaml does not exist"),
    # ------------------------------------------------------------------------------------------- checkpoints
    case("ckpt-empty", ["eval", "{in}/empty.ckpt"], r"empty\.ckpt is empty \(0 bytes\)"),
    case("ckpt-garbage", ["eval", "{in}/garbage.ckpt"], r"garbage\.ckpt: not a torch checkpoint"),
    case("ckpt-objects", ["eval", "{in}/objects.ckpt"], r"objects\.ckpt: .*mtkd never unpickles"),
    case("ckpt-plain-pickle", ["eval", "{in}/plain.pkl"], r"plain\.pkl: not a torch checkpoint"),
    case("ckpt-truncated", ["eval", "{in}/truncated.ckpt"], r"truncated\.ckpt: corrupt"),
    case("ckpt-foreign", ["eval", "{in}/foreign.ckpt"], r"foreign\.ckpt is not an mtkd training checkpoint"),
    case("ckpt-mismatch", ["eval", "{in}/mismatch.ckpt"], r"does not match .*unexpected key\(s\).*model\.extra_weight"),
    case("ckpt-missing", ["eval", "{in}/nope.ckpt"], r"checkpoint .*nope\.ckpt does not exist"),
    case("eval-folder", ["eval", "{in}/run"], r"run is a folder without checkpoints/best\.ckpt"),
    case("eval-override-typo", ["eval", "{in}/good.ckpt", "data.bach_size=2"], r"'data\.bach_size'.*'data\.batch_size'"),
    case("eval-override-type", ["eval", "{in}/good.ckpt", "data.batch_size=two"], r"data\.batch_size: got 'two'"),
    case("eval-corrupt-label", ["eval", "{in}/good.ckpt", "data.dataset=folder", "data.root={in}/data"],
     r"data/\w+/label/0\.npy: not a readable \.npy"),
    case("predict-empty-ckpt", ["predict", "{in}/empty.ckpt", "{in}/x.png", "--out", "out"], r"empty\.ckpt is empty"),
    case("export-garbage-ckpt", ["export", "{in}/garbage.ckpt"], r"garbage\.ckpt: not a torch checkpoint"),
]


@pytest.mark.parametrize("argv, match", CASES)
def test_bad_input_is_one_line(inputs, sandbox, capsys, argv, match):
    argv = [a.replace("{in}", str(inputs)) for a in argv]
    line = refused(capsys, [sandbox, inputs], argv, match)
    assert "weights_only" not in line  # torch's advice to unpickle anyway is never relayed


@pytest.mark.parametrize("fault, match", [
    (OSError(errno.ENOSPC, "No space left on device", "/data/runs/r/checkpoints/last.ckpt"),
     r"cannot write /data/runs/r/checkpoints/last\.ckpt: No space left on device; free space"),
    (OSError(errno.EDQUOT, "Disk quota exceeded", "/data/runs/r/results.json"), r"results\.json: .*free quota"),
    (PermissionError(errno.EACCES, "Permission denied", "/shared/runs"),
     r"cannot write /shared/runs: Permission denied; choose a folder you can write to"),
    (OSError(errno.EROFS, "Read-only file system", "/mnt/ro/report"), r"cannot write /mnt/ro/report: Read-only"),
])
@pytest.mark.parametrize("command", [[*TRAIN], ["predict", "m.ckpt", "x.png", "--out", "o"], ["export", "m.ckpt"],
                                     ["report", "runs"]])
def test_os_faults_on_output_are_one_line_naming_the_path(sandbox, capsys, monkeypatch, fault, match, command):
    """A full disk or a read-only folder, wherever a command writes (simulated: the machine running the tests may
    be root, for whom no folder is read-only)."""
    def fail(args):
        raise fault

    monkeypatch.setattr(mtkd.cli, "_dispatch", fail)
    refused(capsys, [sandbox], command, match)


def _raise_in_worker(i):
    raise MtkdError(f"/data/val/depth/{i}.npy: depth contains NaN (3 values)")


class _Bad(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        _raise_in_worker(i)


def test_an_error_in_a_dataloader_worker_is_its_own_line(sandbox, capsys, monkeypatch):
    """torch re-raises a worker's exception with the worker's traceback in its message: only its line is shown."""
    def iterate(args):
        next(iter(torch.utils.data.DataLoader(_Bad(), num_workers=1)))

    monkeypatch.setattr(mtkd.cli, "_dispatch", iterate)
    refused(capsys, [sandbox], TRAIN, r"^mtkd: error: /data/val/depth/0\.npy: depth contains NaN \(3 values\)$")


def test_a_bug_still_shows_its_traceback(sandbox, monkeypatch):
    """Only user errors become one line: anything else propagates (the CLI prints Python's traceback)."""
    def bug(args):
        raise KeyError("internal")

    monkeypatch.setattr(mtkd.cli, "_dispatch", bug)
    with pytest.raises(KeyError):
        main(TRAIN)


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs (needs root on Linux; skipped elsewhere): a real full disk."""
    import subprocess

    mnt = tmp_path / "full"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=True)  # lazy: a writer's handle may still be closing


def test_a_real_full_disk_names_the_file_and_leaves_no_tmp(full_disk):
    from mtkd.atomic import write_atomic
    from mtkd.cli import user_error
    from mtkd.checkpoints import AtomicCheckpointIO

    writes = {"last.ckpt": lambda p: AtomicCheckpointIO().save_checkpoint({"w": torch.zeros(100_000)}, p),
              "depth.npy": lambda p: write_atomic(p, lambda f: np.save(f, np.zeros(100_000)))}
    for name, write in writes.items():
        with pytest.raises(OSError) as info:
            write(full_disk / name)
        assert user_error(info.value) == f"cannot write {full_disk / name}: No space left on device; free space on " \
                                         "that disk or write elsewhere"
    assert list(full_disk.iterdir()) == []


def test_nan_in_the_test_split_is_found_before_training(tmp_path, capsys, monkeypatch):
    """The test split is read only after training; its values are checked when the data is set up, so the run
    stops before its first step (no checkpoint), naming the file."""
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    for split in ("train", "val"):
        for sub in ("image", "label", "depth"):
            (data / split / sub).mkdir(parents=True)
        for i in range(2):
            np.save(data / split / "image" / f"{i}.npy", np.zeros((8, 8, 3), np.float32))
            np.save(data / split / "label" / f"{i}.npy", np.zeros((8, 8), np.int64))
            np.save(data / split / "depth" / f"{i}.npy", np.ones((8, 8), np.float32))
    np.save(data / "val" / "depth" / "1.npy", np.full((8, 8), np.nan, np.float32))
    capsys.readouterr()
    code = main(["train", "rooms/mtl_ew", "data.dataset=folder", f"data.root={data}", "data.tasks=[semseg,depth]",
                 "data.val_fraction=0.5", "data.batch_size=1", "trainer.progress_bar=false", "name=nan"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert re.search(r"data/val/depth/1\.npy: depth contains NaN \(64 values\)", lines[0]), lines[0]
    assert not list(tmp_path.glob("runs/nan/checkpoints/*.ckpt"))


def test_eval_accepts_a_run_folder_as_teachers_do(inputs, tmp_path):
    from mtkd.engine.evaluate import module_from_checkpoint

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "best.ckpt").write_bytes((inputs / "good.ckpt").read_bytes())
    module, config = module_from_checkpoint(str(run), ["data.batch_size=2"])
    assert config["data"]["batch_size"] == 2 and set(module.model.tasks) == {"semseg", "depth"}


@pytest.fixture
def read_only(tmp_path):
    """An empty read-only file system (a tmpfs mounted ``ro``: read-only for root too; skipped where the test
    cannot mount one)."""
    import subprocess

    mnt = tmp_path / "ro"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=True)


@pytest.mark.parametrize("command", [
    [*TRAIN, "out_dir={ro}/runs"],
    ["predict", "{in}/good.ckpt", "{in}/x.png", "--out", "{ro}/pred"],
    ["export", "{in}/good.ckpt", "--out", "{ro}/export"],
])
def test_a_real_read_only_folder_is_one_line(inputs, read_only, sandbox, capsys, command):
    argv = [a.replace("{in}", str(inputs)).replace("{ro}", str(read_only)) for a in command]
    refused(capsys, [sandbox, inputs, read_only], argv,
            rf"{read_only}/\w+.*Read-only file system")
