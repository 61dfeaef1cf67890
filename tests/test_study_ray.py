"""Studies on Ray: a local instance with 2 workers gives the sequential study's test metrics digit for digit (same
torch threads per run), keeps teachers before students, records a run that fails inside a worker and skips its
students while the others finish, reuses finished runs on a rerun; bad addresses and worker counts are one line."""

import json

import pytest
import torch
import yaml

from mtkd.errors import MtkdError
from mtkd.study import load_study, run_study
from mtkd.study_ray import RayExecutor
from mtkd.testing import tiny_run_overrides

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance with 2 CPUs for the module (starting Ray costs seconds)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def write_study(tmp, out, broken=False):
    tiny = [o for o in tiny_run_overrides(tmp) if not o.startswith(("trainer.max_epochs", "out_dir"))]
    both = {"data.tasks": ["semseg", "depth"]}
    methods = {"single_semseg": "rooms/single_semseg", "single_depth": "rooms/single_depth",
               "kd": {"recipe": "rooms/kd", "overrides": both}}
    if broken:  # passes every check before training, then fails in its worker: one rendered image cannot be split
        methods["ew_one_image"] = {"recipe": "rooms/mtl_ew", "overrides": {
            **both, "data.rooms.n_train": 1, "data.root": str(tmp / "rooms-one")}}
        methods["kd_from_it"] = {"recipe": "rooms/kd", "overrides": both, "teachers": "ew_one_image"}
    spec = {"budget": {"epochs": 1}, "seeds": [0], "out": str(out), "overrides": tiny,
            "teachers": {"semseg": "single_semseg", "depth": "single_depth"}, "methods": methods}
    path = tmp / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_check_refuses_in_one_line():
    with pytest.raises(MtkdError, match="more than this machine's"):
        RayExecutor(workers=10_000).check()
    with pytest.raises(MtkdError, match=r"cannot reach the Ray cluster at 127.0.0.1:1 .*sequentially"):
        RayExecutor(address="127.0.0.1:1").check()
    with pytest.raises(MtkdError, match="give one"):
        RayExecutor(workers=2, address="auto").check()
    if not torch.cuda.is_available():
        with pytest.raises(MtkdError, match="GPU"):
            RayExecutor(workers=1, gpus_per_run=1).check()


@pytest.mark.slow
def test_two_workers_match_the_sequential_study_digit_for_digit(tmp_path, local_ray):
    par, seq = tmp_path / "par", tmp_path / "seq"
    lines = []
    records = run_study(load_study(write_study(tmp_path, par, broken=True)), log=lines.append,
                        executor=RayExecutor(workers=2))
    status = {r["method"]: r for r in records}
    assert {m: r["status"] for m, r in status.items()} == {
        "single_semseg": "done", "single_depth": "done", "kd": "done", "ew_one_image": "failed",
        "kd_from_it": "skipped"}
    assert "validation split" in status["ew_one_image"]["error"]
    assert json.loads((par / "study.json").read_text())["runs"] == records  # the driver's record, on disk
    started = [line.split("]")[1].split(" seed")[0].strip() for line in lines if line.endswith("training")]
    done = [line.split("]")[1].split(" seed")[0].strip() for line in lines if ": done in" in line]
    assert started.index("kd") > max(done.index("single_semseg"), done.index("single_depth"))

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the thread count a task got (2 CPUs / 2 workers)
    try:
        run_study(load_study(write_study(tmp_path, seq)), log=lambda _: None)
    finally:
        torch.set_num_threads(threads)
    for method in ("single_semseg", "single_depth", "kd"):
        ours, theirs = (json.loads((folder / method / "seed0" / "results.json").read_text())["test"]
                        for folder in (par, seq))
        assert ours == theirs, method  # exact floats

    lines.clear()  # a rerun reuses what finished and tries the failed run again
    again = run_study(load_study(write_study(tmp_path, par, broken=True)), log=lines.append,
                      executor=RayExecutor(workers=2))
    assert [r["status"] for r in again] == [r["status"] for r in records]
    assert sum("finished earlier, reused" in line for line in lines) == 3


def test_an_exception_in_a_worker_is_one_line(local_ray):
    bad = ray.remote(max_retries=0)(json.loads).remote("{")
    assert RayExecutor._outcome(ray, bad).startswith("JSONDecodeError in the Ray worker: Expecting property name")
