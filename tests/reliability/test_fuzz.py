"""Property-based fuzzing (hypothesis): whatever a user writes — a recipe, ``key=value`` overrides, a dataset folder
— mtkd either accepts it or refuses it with one ``MtkdError`` line; no other exception ever escapes.

Examples are few (50 per property, no deadline, no example database written) so the file runs in seconds; YAML
shapes random text rarely reaches are pinned as plain tests at the end.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mtkd.config import DEFAULTS, load_config, to_dict
from mtkd.data.folder import FolderDataset
from mtkd.errors import MtkdError

FUZZ = settings(max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def dotted(node, prefix=""):
    out = []
    for k, v in node.items():
        out.append(prefix + k)
        if isinstance(v, dict):
            out += dotted(v, f"{prefix}{k}.")
    return out


KEYS = dotted(DEFAULTS)
key = st.one_of(st.sampled_from(KEYS), st.text(min_size=1, max_size=12),
                st.sampled_from(KEYS).map(lambda k: k[:-1]))  # real keys, noise, and typos
scalar = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                   st.text(max_size=12), st.sampled_from(["inf", "-1", "nan", "1e999", "${x}", "[", "{a:", "!!python/x",
                                                          "adam", "gpu", "auto", "32-true", "semseg"]))
value = st.recursive(scalar, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                      st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                     max_leaves=6)


def nest(pairs):
    """``[(dotted key, value)]`` as a nested mapping (the shape a recipe has)."""
    root: dict = {}
    for k, v in pairs:
        node = root
        parts = k.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {}) if isinstance(node.get(p, {}), dict) else node
        node[parts[-1]] = v
    return root


def one_line_or_result(call):
    try:
        return call()
    except MtkdError as err:
        assert str(err) and "\n" not in str(err), repr(str(err))
        return None


@FUZZ
@given(st.lists(st.tuples(key, value), max_size=5))
@example([("data.folders", [])])  # found by this test: OmegaConf raised a TypeError merging a list into a mapping
def test_any_recipe_mapping_loads_or_is_one_line(pairs):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.yaml"
        path.write_text(yaml.safe_dump(nest(pairs)))
        cfg = one_line_or_result(lambda: load_config(path))
        if cfg is not None:
            assert to_dict(cfg)["trainer"]["max_epochs"] is not None


@FUZZ
@given(st.text(max_size=80))
def test_any_recipe_text_loads_or_is_one_line(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.yaml"
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        one_line_or_result(lambda: load_config(path))


override_value = st.one_of(st.text(max_size=12), scalar.map(str), value.map(lambda v: yaml.safe_dump(
    v, default_flow_style=True).strip()))


@FUZZ
@given(st.lists(st.one_of(st.tuples(key, override_value).map("=".join), st.text(max_size=16)), max_size=4))
def test_any_override_list_loads_or_is_one_line(overrides):
    one_line_or_result(lambda: load_config(None, overrides))


# ------------------------------------------------------------------------------------------- dataset folders
TASK_FOLDERS = {"semseg": "label", "depth": "depth", "normal": "normal"}
shape = st.tuples(st.integers(0, 4), st.integers(0, 4)).flatmap(
    lambda hw: st.sampled_from([hw, (*hw, 1), (*hw, 3), (*hw, 2), (hw[0],), ()]))
dtype = st.sampled_from(["uint8", "int64", "float32", "float64", "bool", "U3", "complex64"])
fill = st.sampled_from([0.0, 1.0, -1.0, 2.0, 7.5, np.nan, np.inf, -5.0])
npy_file = st.one_of(
    st.tuples(shape, dtype, fill).map(lambda t: ("array", t)),
    st.binary(max_size=24).map(lambda b: ("bytes", b)),
    st.just(("object", None)),
)
GOOD = {"image": ((4, 4, 3), "uint8", 0.0), "label": ((4, 4), "int64", 1.0), "depth": ((4, 4), "float32", 2.0),
        "normal": ((4, 4, 3), "float32", 0.5), "edge": ((4, 4, 1), "float32", 1.0)}


def folder(name, n):
    """``n`` files ``0.npy ..``, each valid for ``name`` or fuzzed, and now and then a badly named extra file."""
    good = st.just(("array", GOOD[name]))
    files = st.lists(st.one_of(good, good, good, npy_file), min_size=n, max_size=n)  # mostly valid: deep checks
    extra = st.sets(st.sampled_from(["01.npy", "x.npy", "7.npy", "3.txt"]), max_size=1)
    return st.tuples(files, extra).map(
        lambda t: {**{f"{i}.npy": f for i, f in enumerate(t[0])}, **{n: ("bytes", b"") for n in t[1]}})


split_folders = st.integers(1, 3).flatmap(lambda n: st.fixed_dictionaries(
    {name: folder(name, n) for name in ("image", "label", "depth", "normal")}, optional={"edge": folder("edge", n)}))
dataset = st.fixed_dictionaries({"train": split_folders}, optional={"val": split_folders})


def write_folder(root: Path, spec) -> None:
    for split, folders in spec.items():
        for name, files in folders.items():
            d = root / split / name
            d.mkdir(parents=True)
            for fname, (kind, content) in files.items():
                if kind == "bytes":
                    (d / fname).write_bytes(content)
                elif kind == "object":
                    np.save(d / fname, np.array([{"a": 1}], dtype=object), allow_pickle=True)
                else:
                    shp, dt, v = content
                    arr = np.full(shp, v if dt.startswith(("float", "complex")) else (0 if not np.isfinite(v) else v))
                    np.save(d / fname, arr.astype(dt))


@FUZZ
@given(dataset, st.sampled_from([("semseg",), ("depth",), ("semseg", "depth", "normal")]),
       st.sampled_from(["train", "val"]))
def test_any_dataset_folder_loads_or_is_one_line(spec, tasks, split):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_folder(root, spec)

        def build_and_read():
            ds = FolderDataset(root, split, tasks)
            return [ds[k] for k in range(len(ds))]

        one_line_or_result(build_and_read)


@pytest.mark.parametrize("text", ["a: [1\n", "- x\n", "!!python/object:os.system {}\n", "\x00", "a: *b\n"])
def test_yaml_found_by_fuzzing_stays_refused(tmp_path, text):
    """Bad recipes random text rarely hits (unclosed flow, a list, a python tag, NUL, an unknown alias), pinned."""
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(MtkdError):
        load_config(path)
