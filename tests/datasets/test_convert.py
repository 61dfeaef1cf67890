"""Dispatch, resumability (a run killed after k samples resumes to the same result), and option records."""

import numpy as np
import pytest
from conftest import make_nyud_mt

import mtkd.datasets.nyud_mt as nyud_mt
from mtkd.datasets import CONVERTERS, convert, is_complete
from mtkd.errors import MtkdError


def _all_arrays(out):
    return {str(p.relative_to(out)): np.load(p) for p in sorted(out.rglob("*.npy"))}


def test_unknown_name_suggests(tmp):
    with pytest.raises(MtkdError, match="did you mean 'nyud_mt'"):
        convert("nyud-mt", tmp, tmp / "out")
    with pytest.raises(MtkdError, match="option"):
        convert("nyud_mt", tmp, tmp / "out", sise=3)
    assert set(CONVERTERS) == {"nyud_raw", "nyud_mt", "pascal_context", "cityscapes"}


def test_resume_after_crash_gives_same_result(tmp, monkeypatch):
    make_nyud_mt(tmp / "src")
    ref = convert("nyud_mt", tmp / "src", tmp / "ref", progress=False)
    real_edge, calls = nyud_mt._edge, {"n": 0}

    def crashing(path):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt("simulated kill")
        return real_edge(path)

    monkeypatch.setattr(nyud_mt, "_edge", crashing)
    with pytest.raises(KeyboardInterrupt):
        convert("nyud_mt", tmp / "src", tmp / "out", progress=False)
    out = tmp / "out"
    assert not is_complete(out) and not (out / "meta.json").exists()
    assert len(list((out / "train" / "edge").glob("*.npy"))) == 3 and not list(out.rglob("*.tmp"))
    # a half-written sample (image but no label) is redone, not taken as done
    (out / "val" / "label" / "0.npy").unlink(missing_ok=True)
    np.save(out / "val" / "image" / "0.npy", np.zeros(1))
    calls["n"] = -100
    convert("nyud_mt", tmp / "src", tmp / "out", progress=False)
    assert calls["n"] == -100 + 2  # only the 2 val samples were loaded again
    assert is_complete(out)
    a, b = _all_arrays(ref), _all_arrays(out)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert (ref / "meta.json").read_text() == (out / "meta.json").read_text()


def test_rerun_with_other_options_refused(tmp):
    make_nyud_mt(tmp / "src")
    convert("nyud_mt", tmp / "src", tmp / "out", progress=False)
    with pytest.raises(MtkdError, match="other options"):
        convert("nyud_mt", tmp / "src", tmp / "out", size=(4, 4), progress=False)
