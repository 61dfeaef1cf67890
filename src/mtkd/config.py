"""Run configuration: a typed schema (dataclasses), YAML recipes and ``dotted.key=value`` overrides, merged with
OmegaConf and validated before anything is built.

Each section is a dataclass declared once below: a field's annotation is its type, its default the default, and
``num`` / ``choice`` add the range or the allowed values. Adding a key is one line. The free-form mappings
(``Dict[str, Any]`` fields: ``weighting.options``, ``distill.options``, ``model.head_options``, ...) are checked by
the component that reads them. Every mistake — an unknown key (with the closest names), a wrong type, a value out
of range, a device that does not exist, an unreadable YAML file — is one ``MtkdError`` line naming the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mtkd.errors import MtkdError, first_line
from mtkd.registry import suggest


# ------------------------------------------------------------------------------------------------ field helpers
def num(default: Any, *, gt: float | None = None, ge: float | None = None, lt: float | None = None,
        le: float | None = None, also: tuple = ()) -> Any:
    """A numeric field: finite, within the given bounds (or one of the special values ``also``, e.g. -1)."""
    return field(default=default, metadata={"gt": gt, "ge": ge, "lt": lt, "le": le, "also": also})


def choice(default: str, *choices: str) -> Any:
    """A string field that must be one of ``choices``."""
    return field(default=default, metadata={"choices": (default, *choices)})


def mapping(**default: Any) -> Any:
    """A free-form ``{key: value}`` field (checked by the component that reads it)."""
    return field(default_factory=lambda: dict(default))


# ------------------------------------------------------------------------------------------------------ schema
@dataclass
class DataConfig:
    dataset: str = choice("rooms", "folder")  # rooms (rendered by mtkd) | folder (MTAN-layout .npy folders)
    root: Optional[str] = None
    tasks: List[str] = field(default_factory=lambda: ["semseg", "depth", "normal"])
    batch_size: int = num(8, ge=1)
    num_workers: int = num(0, ge=0)
    val_fraction: float = num(0.1, ge=0, lt=1)  # held out of train for model selection
    select_on: str = choice("val", "test")  # val (held-out) | test (what the reference codebases do; flatters)
    feedback_fraction: float = num(0.0, ge=0, lt=1)  # held out of train, never trained or selected on (JointDistill)
    depth_range: Optional[List[float]] = None  # [min, max]: depth targets outside are invalid (e.g. [0.001, 80] m)
    augment: bool = True
    seed: int = 0
    rooms: Dict[str, Any] = mapping(n_train=800, n_test=200, height=96, width=128)
    folders: Optional[Dict[str, Any]] = None  # task -> folder name, e.g. {semseg: label_19} for Cityscapes
    depth_from_disparity: bool = False
    limit_train: Optional[int] = num(None, ge=1)


@dataclass
class ModelConfig:
    arch: str = "shared"  # a registered architecture: shared | cross_stitch | mtan | ...
    backbone: str = "tiny"  # tiny | small | timm:<name>
    backbone_options: Dict[str, Any] = mapping()  # backbone kwargs, e.g. {dynamic_img_size: true} for timm ViTs
    head: Any = "fpn"  # one head for every task, or {task: head}, e.g. {semseg: mask_seg, depth: mask_reg, ...}
    head_options: Dict[str, Any] = mapping()  # {head name: {option: value}}, e.g. {mask_reg: {n_queries: 64}}
    arch_options: Dict[str, Any] = mapping()  # the architecture's own options (e.g. ATRC's context preset)
    decoder_channels: int = num(64, ge=1)
    pretrained: Any = False  # false | true (download, timm) | path to a weights file


@dataclass
class LossConfig:
    edge_pos_weight: float = num(0.95, ge=0, le=1)
    aux_weight: float = num(1.0, ge=0)  # weight of deep-supervision terms (models with initial predictions)


@dataclass
class WeightingConfig:
    name: str = "ew"  # a registered weighting
    options: Dict[str, Any] = mapping()


@dataclass
class DistillConfig:
    name: str = "none"  # none | a registered distiller (kd4mtl, kd, prediction, dist, cwd, fitnet, ...)
    teachers: Dict[str, Any] = mapping()  # task -> checkpoint or run folder; one path for several tasks = MTL teacher
    options: Dict[str, Any] = mapping()  # method options, e.g. {weights: {semseg: 1, depth: 1, normal: 2}}
    lr: Optional[float] = num(None, gt=0)  # learning rate of the distiller's own parameters; default optim.lr
    weight_decay: float = num(0.0, ge=0)
    teacher_bn: str = choice("eval", "train")  # train: BatchNorm statistics of the batch


@dataclass
class OptimConfig:
    optimizer: str = choice("adam", "adamw", "sgd")
    lr: float = num(1e-3, gt=0)
    weight_decay: float = num(0.0, ge=0)
    momentum: float = num(0.9, ge=0, le=1)
    scheduler: str = choice("cosine", "step", "none")
    step_size: int = num(100, ge=1)  # epochs, for "step"
    gamma: float = num(0.5, gt=0)
    grad_clip: float = num(0.0, ge=0)


PRECISIONS = ("32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true", "32", "16", "bf16", "64",
              "transformer-engine", "transformer-engine-float16")


@dataclass
class TrainerConfig:
    max_epochs: int = num(10, ge=1, also=(-1,))
    max_steps: int = num(-1, ge=1, also=(-1,))
    accelerator: str = choice("auto", "cpu", "gpu", "cuda", "mps", "tpu")
    devices: Any = 1  # n, a list of device ids, or "auto"
    num_nodes: int = num(1, ge=1)
    strategy: str = "auto"
    precision: str = choice(*PRECISIONS)  # "bf16-mixed" for bf16 autocast
    deterministic: bool = False
    log_every_n_steps: int = num(10, ge=1)
    check_val_every_n_epoch: int = num(1, ge=1)
    progress_bar: bool = True


@dataclass
class EdgeEvalConfig:
    """The boundary benchmark (``mtkd.metrics.BoundaryF``: odsF / oisF) the edge task gets on the test split
    (``mtkd eval``, the end of training); validation logs the cheap ``F@0.5`` proxy. See docs/evaluation.md."""

    max_dist: float = num(0.0075, gt=0, lt=1)  # match radius / image diagonal: 0.0075 BSDS, PASCAL-Context; 0.011 NYUD
    thresholds: int = num(99, ge=1)  # 0.01 .. 0.99 for 99 (SEISM)
    thin: bool = True  # thin each binary map (bwmorph 'thin', inf) before matching
    nms: bool = False  # the reference codebases' structured-edge NMS of the soft map first (nms_process.m)
    quantize: bool = False  # round the map to k/255 first, as the reference codebases' 8-bit PNGs
    workers: int = num(0, ge=0)  # processes scoring images beside the model, per rank (0: in the evaluating one)


@dataclass
class EvalConfig:
    edge: EdgeEvalConfig = field(default_factory=EdgeEvalConfig)


@dataclass
class RunConfig:
    name: Optional[str] = None  # run folder name; defaults to the recipe's file name
    out_dir: str = "runs"
    seed: int = 0
    resume: bool = False  # continue runs/<name>/checkpoints/last.ckpt instead of refusing an existing run folder
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    weighting: WeightingConfig = field(default_factory=WeightingConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)  # test-split protocols (edge odsF)


DEFAULTS: dict[str, Any] = OmegaConf.to_container(OmegaConf.structured(RunConfig))  # type: ignore[assignment]
"""The defaults as a plain nested dict (derived from the schema)."""


# ---------------------------------------------------------------------------------------------- schema access
@functools.lru_cache(maxsize=None)
def _schema() -> DictConfig:
    """The schema with its defaults, built once (read-only; ``OmegaConf.merge`` copies it)."""
    schema = OmegaConf.structured(RunConfig)
    OmegaConf.set_readonly(schema, True)
    return schema


@functools.lru_cache(maxsize=None)
def _fields(cls: type) -> dict[str, tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(cls)
    return {f.name: (f, hints[f.name]) for f in dataclasses.fields(cls)}


def _keys(cls: type = RunConfig, prefix: str = "") -> list[str]:
    """Every dotted key of the schema, sections included."""
    out = []
    for name, (_, tp) in _fields(cls).items():
        out.append(prefix + name)
        if dataclasses.is_dataclass(tp):
            out += _keys(tp, f"{prefix}{name}.")
    return out


def _lookup(key: str) -> tuple[dataclasses.Field, Any] | None:
    """The field and type of a dotted schema key (None inside a free-form mapping or when unknown)."""
    cls: Any = RunConfig
    found = None
    for part in key.split("."):
        if not dataclasses.is_dataclass(cls) or part not in _fields(cls):
            return None
        found = _fields(cls)[part]
        cls = found[1]
    return found


def _required(tp: Any) -> Any:
    """``X`` for ``Optional[X]``, else ``tp``."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if typing.get_origin(tp) is typing.Union and len(args) == 1 else tp


def _expected(tp: Any) -> str:
    """What a value of type ``tp`` looks like, in words."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) is typing.Union:
        return f"{_expected(args[0])} or null"
    origin = typing.get_origin(tp)
    if origin in (list, List):
        return f"a list of {_expected(args[0]).split(' ', 1)[1]}s" if args else "a list"
    if origin in (dict, Dict):
        return "a mapping {key: value}"
    if dataclasses.is_dataclass(tp):
        return "a section of keys"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, "a value")


def _describe(meta: dict, tp: Any) -> str:
    parts = []
    for op, sym in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤")):
        if meta.get(op) is not None:
            parts.append(f"{sym} {meta[op]:g}")
    base = "an integer" if int in (tp, *typing.get_args(tp)) else "a finite number"
    text = f"{base} {' and '.join(parts)}".strip()
    return text + "".join(f" or {a}" for a in meta.get("also", ()))


# -------------------------------------------------------------------------------------------------- checking
def _bad(key: str, value: Any, expected: str) -> MtkdError:
    return MtkdError(f"config key {key}: got {value!r}, expected {expected}")


def _check_layer(node: Any, cls: type = RunConfig, prefix: str = "") -> None:
    """Key names and section shapes of one recipe or override layer (types are OmegaConf's, ranges below)."""
    if not isinstance(node, dict):
        raise MtkdError(f"config {prefix.rstrip('.') or 'file'}: expected a mapping of keys, got {node!r}")
    fields = _fields(cls)
    for key, value in node.items():
        if key not in fields:
            close = difflib.get_close_matches(f"{prefix}{key}", _keys(), n=3, cutoff=0.5)
            hint = (f"did you mean {', '.join(map(repr, close))}?" if close
                    else f"valid in {prefix.rstrip('.') or 'the top level'}: {', '.join(fields)}")
            raise MtkdError(f"unknown config key {prefix + str(key)!r}; {hint}")
        tp = fields[key][1]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise _bad(f"{prefix}{key}", value, "a section of keys")
            _check_layer(value, tp, f"{prefix}{key}.")
        container = {dict: dict, Dict: dict, list: list, List: list}.get(typing.get_origin(_required(tp)))
        if container and value is not None and not isinstance(value, container):  # OmegaConf: a TypeError
            raise _bad(f"{prefix}{key}", value, _expected(tp))


def _check_values(node: dict, cls: type = RunConfig, prefix: str = "") -> None:
    """Ranges and allowed values declared with ``num`` / ``choice``."""
    for name, (f, tp) in _fields(cls).items():
        value, key = node[name], prefix + name
        if dataclasses.is_dataclass(tp):
            _check_values(value, tp, f"{key}.")
        elif "choices" in f.metadata and value not in f.metadata["choices"]:
            close = difflib.get_close_matches(str(value), f.metadata["choices"], n=3, cutoff=0.5)
            hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
            raise _bad(key, value, f"one of {', '.join(f.metadata['choices'])}{hint}")
        elif "gt" in f.metadata and value is not None and value not in f.metadata["also"]:  # a num() field
            m = f.metadata
            ok = math.isfinite(value) and (m["gt"] is None or value > m["gt"]) and (m["ge"] is None or value >= m["ge"]) \
                and (m["lt"] is None or value < m["lt"]) and (m["le"] is None or value <= m["le"])
            if not ok:
                raise _bad(key, value, _describe(m, tp))


@functools.lru_cache(maxsize=1)
def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _devices(value: Any) -> int | list[int] | str:
    """``trainer.devices`` as Lightning reads it: a count (-1: all), a list of device ids, or "auto"."""
    devices = value
    if isinstance(value, str) and value != "auto":
        try:
            devices = [int(d) for d in value.split(",") if d.strip()] if "," in value else int(value)
        except ValueError:
            devices = None
    ok = devices == "auto" or isinstance(devices, int) and not isinstance(devices, bool) and (devices >= 1 or
                                                                                          devices == -1) \
        or isinstance(devices, list) and devices and all(isinstance(d, int) and d >= 0 for d in devices)
    if not ok:
        raise _bad("trainer.devices", value, "a count ≥ 1, -1 (all), a list of device ids or 'auto'")
    return devices


def _check_devices(trainer: dict) -> None:
    """``trainer.accelerator`` / ``trainer.devices`` that this machine has, checked up front (not by Lightning
    after the run folder exists). Several CPU processes must say ``accelerator=cpu``."""
    acc, devices = trainer["accelerator"], _devices(trainer["devices"])
    if acc not in ("auto", "gpu", "cuda"):
        return
    gpus = _cuda_count()
    if acc != "auto" and gpus == 0:
        raise _bad("trainer.accelerator", acc, "an accelerator this machine has: no CUDA GPU found (use cpu or auto)")
    if devices in ("auto", -1):
        return
    ids = devices if isinstance(devices, list) else list(range(devices))
    if gpus == 0 and len(ids) > 1:
        raise _bad("trainer.devices", trainer["devices"], "devices this machine has: no GPU found "
                   "(for several CPU processes set trainer.accelerator=cpu)")
    if gpus and max(ids) >= gpus:
        raise _bad("trainer.devices", trainer["devices"], f"devices this machine has: {gpus} GPU(s)")


def _merge(base: Any, layer: Any, where: str) -> Any:
    """``OmegaConf.merge`` with its type errors as one line naming the key, the value and the type expected."""
    try:
        return OmegaConf.merge(base, layer)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        found = _lookup(key)
        value = OmegaConf.select(layer, key, default="?", throw_on_resolution_failure=False) if found else None
        if found:
            raise _bad(key, value, _expected(found[1])) from None
        raise MtkdError(f"{where}: {first_line(err)}") from None
    except (TypeError, ValueError) as err:  # OmegaConf's own, for shapes _check_layer does not foresee
        raise MtkdError(f"{where}: {first_line(err)}") from None


def _validated(layers: list[tuple[Any, str]], devices: bool = True) -> DictConfig:
    """Schema ← each (layer, where), checked; a plain (non-struct) DictConfig, interpolations kept."""
    cfg = _schema()
    for layer, where in layers:
        _check_layer(OmegaConf.to_container(layer), prefix="")
        cfg = _merge(cfg, layer, where)
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as err:
        raise MtkdError(f"config key {getattr(err, 'full_key', '?')}: {first_line(err)}") from None
    _check_values(plain)
    if devices:
        _check_devices(plain["trainer"])
    return OmegaConf.create(OmegaConf.to_container(cfg))


# ------------------------------------------------------------------------------------------------- YAML files
def read_yaml(path: str | Path, what: str = "config") -> DictConfig:
    """A YAML file holding a mapping, as a plain dict; a syntax error, a list or a ``!!python`` tag is one line."""
    path = Path(path)
    try:
        node = OmegaConf.load(path)
    except Exception as err:  # noqa: BLE001 - YAML, OmegaConf and the OS raise many types
        where = ""
        mark = getattr(err, "problem_mark", None)
        if mark is not None:
            where = f" (line {mark.line + 1}, column {mark.column + 1})"
        problem = getattr(err, "problem", None) or first_line(err)
        if "Invalid loaded object type" in problem:
            raise MtkdError(f"{what} {path} must hold a mapping of keys, not {problem.rsplit(' ', 1)[-1]}") from None
        if "python/" in problem:
            problem += " (mtkd reads plain YAML: no !!python tags)"
        raise MtkdError(f"cannot read {what} {path}{where}: {problem}") from None
    if not isinstance(node, DictConfig):
        raise MtkdError(f"{what} {path} must hold a mapping of keys, not a {type(node).__name__.replace('Config', '')}")
    return node


RECIPES = Path(__file__).parent / "configs"


def recipe_names() -> list[str]:
    """The recipes shipped with mtkd, as ``dataset/name`` (``rooms/kd4mtl``, ``nyuv2/okd``, ...)."""
    return sorted(str(p.relative_to(RECIPES).with_suffix("")) for p in RECIPES.glob("*/*.yaml"))


def resolve_recipe(name: str | Path) -> Path:
    """A YAML file path, or the name of a shipped recipe (``rooms/kd4mtl``); an unknown name gets the closest ones."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = RECIPES / f"{name}.yaml"
    if path.suffix not in (".yaml", ".yml") and shipped.is_file():
        return shipped
    if path.suffix in (".yaml", ".yml") or len(path.parts) > 2:
        raise MtkdError(f"config file {path} does not exist")
    raise suggest(str(name), recipe_names(), "recipe")


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> DictConfig:
    """``dotted.key=value`` strings as one config layer (values parsed as YAML); a malformed one is one line."""
    layer = OmegaConf.create()
    for item in overrides:
        if not isinstance(item, str) or "=" not in item or not item.split("=", 1)[0].strip():
            raise MtkdError(f"override {item!r} is not of the form dotted.key=value")
        try:
            layer.merge_with_dotlist([item])
        except Exception as err:  # noqa: BLE001 - YAML and OmegaConf raise many types for a bad value
            raise MtkdError(f"bad override {item!r}: {getattr(err, 'problem', None) or first_line(err)}") from None
    return layer


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> DictConfig:
    """Defaults ← recipe (a YAML path or a shipped recipe name) ← ``key=value`` overrides, validated against the
    schema (keys, types, ranges, devices) before anything is built."""
    layers: list[tuple[Any, str]] = []
    if path is not None:
        path = resolve_recipe(path)
        recipe = read_yaml(path)
        layers.append((recipe, f"config {path}"))
        if "name" not in recipe:
            layers.append((OmegaConf.create({"name": path.stem}), "name"))
    layers.append((parse_overrides(overrides), "overrides"))
    cfg = _validated(layers)
    if cfg.name is None:
        cfg.name = "run"
    return portable(cfg)


def apply_overrides(config: dict[str, Any], overrides: list[str] = ()) -> dict[str, Any]:
    """A stored run config with ``key=value`` overrides, the overrides checked against the schema (the stored
    config is trusted as written; its devices are not re-checked: evaluation picks its own)."""
    dots = parse_overrides(overrides)
    _validated([(dots, "overrides")], devices=False)
    return OmegaConf.to_container(OmegaConf.merge(config, dots))  # type: ignore[return-value]


def to_dict(cfg: DictConfig) -> dict[str, Any]:
    """A plain, picklable-with-weights_only dict of ``cfg``."""
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def portable(cfg: DictConfig) -> DictConfig:
    """``cfg`` as it may be stored in ``config.yaml``, ``results.json`` and checkpoints: ``${oc.env:...}`` is
    refused (the environment's values would be copied into them), a relative or ``~`` ``data.root`` becomes
    absolute (so ``mtkd eval`` works from any folder)."""
    def walk(node: Any, key: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{key}.{k}" if key else str(k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{key}[{i}]")
        elif isinstance(node, str) and "oc.env" in node:
            raise MtkdError(f"{key}: {node!r} reads an environment variable, whose value would be stored in the run's "
                            "config.yaml and results.json; give the value itself (e.g. as an override)")

    walk(OmegaConf.to_container(cfg, resolve=False), "")
    if cfg.data.root is not None and str(cfg.data.root) != str(Path(str(cfg.data.root)).expanduser().absolute()):
        cfg.data.root = str(Path(str(cfg.data.root)).expanduser().absolute())
    return cfg
