"""Folder locks with real processes: a second process is refused, a race has one winner, a dead holder's lock is
taken over; Ctrl-C exits 130 with one line, the last checkpoint intact and resumable."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from mtkd.cli import main
from mtkd.checkpoints import load_checkpoint
from mtkd.errors import MtkdError
from mtkd.lock import LOCK, FolderLock
from mtkd.testing import tiny_run_overrides

HOLD = """
import sys, time
from mtkd.errors import MtkdError
from mtkd.lock import FolderLock
lock = FolderLock(sys.argv[1], "study folder")
time.sleep(max(0.0, float(sys.argv[3]) - time.time()) if len(sys.argv) > 3 else 0)  # a common start time
try:
    lock.acquire()
except MtkdError:
    print("refused", flush=True)
    sys.exit(0)
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
lock.release()
"""


def holder(folder, seconds=60):
    """A process holding ``folder``'s lock (it has printed ``locked`` when this returns)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _default_sigint() -> None:
    """A test runner started in the background by a non-interactive shell (`make test &`, some CI) ignores SIGINT,
    and children inherit that; restore the default so Python turns Ctrl-C into KeyboardInterrupt as in a terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def mtkd(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "mtkd.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint, **kw)


def tree(root):
    return {str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes()) for p in sorted(root.rglob("*"))}


@pytest.mark.slow
def test_a_second_study_on_a_folder_in_use_is_refused(tmp_path):
    """Two ``mtkd study`` processes on one folder: the second exits 2 naming the first, touching nothing."""
    folder = tmp_path / "study"
    folder.mkdir()
    proc = holder(folder)  # the first study, as far as the folder can tell
    try:
        overrides = tiny_run_overrides(tmp_path)
        (tmp_path / "s.yaml").write_text(json.dumps({
            "budget": {"epochs": 1}, "methods": {"ew": "rooms/mtl_ew"},
            "overrides": [o for o in overrides if not o.startswith(("trainer.max_epochs", "out_dir"))]}))
        before = tree(tmp_path)
        second = mtkd("study", str(tmp_path / "s.yaml"), "--out", str(folder))
        _, err = second.communicate(timeout=300)
        lines = err.strip().splitlines()
        assert second.returncode == 2 and len(lines) == 1 and "Traceback" not in err, err
        assert re.search(rf"study folder {re.escape(str(folder))} is in use by pid {proc.pid} on "
                         rf"{re.escape(socket.gethostname())}", lines[0]), lines[0]
        assert tree(tmp_path) == before
    finally:
        proc.kill()
        proc.wait()


def test_a_run_folder_held_by_another_process_is_refused(tmp_path, capsys):
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    proc = holder(run)
    try:
        before = tree(tmp_path)
        assert main(["train", "rooms/mtl_ew", *tiny_run_overrides(tmp_path, "name=r")]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and f"{run} is in use by pid {proc.pid}" in lines[0], lines
        assert tree(tmp_path) == before
    finally:
        proc.kill()
        proc.wait()


def test_of_processes_racing_for_one_lock_exactly_one_wins(tmp_path):
    start = str(time.time() + 2)  # every process tries at the same moment
    procs = [subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), "1", start], stdout=subprocess.PIPE,
                              text=True) for _ in range(4)]
    results = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert results == ["locked", "refused", "refused", "refused"]
    assert not (tmp_path / LOCK).exists()  # the winner released it


def test_the_lock_of_a_killed_process_is_taken_over_with_a_message(tmp_path, capsys):
    proc = holder(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    assert json.loads((tmp_path / LOCK).read_text())["pid"] == proc.pid  # left behind
    with FolderLock(tmp_path, "run folder"):
        assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
    err = capsys.readouterr().err
    assert f"taking over the lock of run folder {tmp_path} from pid {proc.pid}" in err and "which is gone" in err
    assert not (tmp_path / LOCK).exists()


def test_a_lock_from_another_host_is_never_taken_over(tmp_path):
    other = {"pid": 1, "host": "elsewhere.example", "started": time.time(), "command": "mtkd study s.yaml"}
    (tmp_path / LOCK).write_text(json.dumps(other))
    with pytest.raises(MtkdError, match=rf"in use by pid 1 on elsewhere.example .*delete {re.escape(str(tmp_path))}"):
        FolderLock(tmp_path).acquire()
    assert json.loads((tmp_path / LOCK).read_text()) == other


def test_a_torn_lock_is_refused_while_fresh_and_taken_over_when_old(tmp_path, capsys):
    (tmp_path / LOCK).write_text("")
    with pytest.raises(MtkdError, match="being locked by another process"):
        FolderLock(tmp_path).acquire()
    os.utime(tmp_path / LOCK, (time.time() - 60, time.time() - 60))
    lock = FolderLock(tmp_path)
    lock.acquire()
    assert "taking over the unreadable lock" in capsys.readouterr().err
    lock.release()


def test_one_process_cannot_hold_a_folder_twice_and_never_removes_another_lock(tmp_path):
    lock = FolderLock(tmp_path, "study folder")
    lock.acquire()
    with pytest.raises(MtkdError, match="already in use by this process"):
        FolderLock(tmp_path, "study folder").acquire()
    taken = {"pid": 12345, "host": "elsewhere.example", "started": 0}
    (tmp_path / LOCK).write_text(json.dumps(taken))  # as if another process had taken it over
    lock.release()
    assert json.loads((tmp_path / LOCK).read_text()) == taken


@pytest.mark.slow
def test_ctrl_c_exits_130_with_one_line_and_the_run_resumes(tmp_path):
    run = tmp_path / "runs" / "c"
    last = run / "checkpoints" / "last.ckpt"
    overrides = tiny_run_overrides(tmp_path, "name=c", "data.tasks=[depth]", n_train=8, n_test=4)
    proc = mtkd("train", "rooms/mtl_ew", *overrides, "trainer.max_epochs=1000")
    deadline = time.time() + 180
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert last.exists(), proc.communicate()[1]
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    lines = err.strip().splitlines()
    assert proc.returncode == 130 and lines == [
        "mtkd: interrupted; rerun the same command with resume=true to continue"], err
    epoch = load_checkpoint(last)["epoch"]  # intact: loads
    assert not (run / LOCK).exists() and not list(run.rglob("*.tmp")) and not (run / "results.json").exists()
    assert main(["train", "rooms/mtl_ew", *overrides, f"trainer.max_epochs={epoch + 2}", "resume=true"]) == 0
    assert json.loads((run / "results.json").read_text())["epochs"] == epoch + 2
