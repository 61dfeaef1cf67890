"""Run configuration: defaults, YAML recipes and ``dotted.key=value`` overrides, merged with OmegaConf.

Every key a recipe or override names must exist in ``DEFAULTS`` (a typo is refused with the closest key);
the free-form ``options`` mappings are checked by the component that reads them (weighting, distiller).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mtkd.errors import MtkdError
from mtkd.registry import suggest

DEFAULTS: dict[str, Any] = {
    "name": None,  # run folder name; defaults to the recipe's file name
    "out_dir": "runs",
    "seed": 0,
    "resume": False,  # continue runs/<name>/checkpoints/last.ckpt instead of refusing an existing run folder
    "data": {
        "dataset": "rooms",  # "rooms" (rendered by mtkd) or "folder" (MTAN-layout .npy folders)
        "root": None,
        "tasks": ["semseg", "depth", "normal"],
        "batch_size": 8,
        "num_workers": 0,
        "val_fraction": 0.1,  # held out of train for model selection
        "select_on": "val",  # "val" (held-out) or "test" (what the reference codebases do; flatters results)
        "augment": True,
        "seed": 0,
        "rooms": {"n_train": 800, "n_test": 200, "height": 96, "width": 128},
        "folders": None,  # task -> folder name, e.g. {semseg: label_19} for Cityscapes
        "depth_from_disparity": False,
        "limit_train": None,
    },
    "model": {
        "arch": "shared",  # shared | cross_stitch | mtan
        "backbone": "tiny",  # tiny | small | timm:<name>
        "backbone_options": {},  # backbone kwargs, e.g. {dynamic_img_size: true} for timm ViTs at non-224 sizes
        "head": "fpn",  # one head for every task, or {task: head}, e.g. {semseg: mask_seg, depth: mask_reg, ...}
        "head_options": {},  # {head name: {option: value}}, e.g. {mask_reg: {n_queries: 64}}
        "decoder_channels": 64,
        "pretrained": False,
    },
    "loss": {
        "edge_pos_weight": 0.95,
        "aux_weight": 1.0,  # weight of deep-supervision terms (models with initial predictions: PAD-Net, MTI-Net, ...)
    },
    "weighting": {"name": "ew", "options": {}},
    "distill": {
        "name": "none",  # none | kd4mtl | kd | prediction | dist | cwd | fitnet
        "teachers": {},  # task -> teacher checkpoint or run folder; one path for several tasks = one MTL teacher
        "options": {},  # method options, e.g. {weights: {semseg: 1, depth: 1, normal: 2}, taps: mid+last}
        "lr": None,  # learning rate of the distiller's own parameters (adaptors); default optim.lr
        "weight_decay": 0.0,
        "teacher_bn": "eval",  # eval | train (BatchNorm statistics of the batch; some papers found it better)
    },
    "optim": {
        "optimizer": "adam",  # adam | adamw | sgd
        "lr": 1e-3,
        "weight_decay": 0.0,
        "momentum": 0.9,
        "scheduler": "cosine",  # cosine | step | none
        "step_size": 100,  # epochs, for "step"
        "gamma": 0.5,
        "grad_clip": 0.0,
    },
    "trainer": {
        "max_epochs": 10,
        "max_steps": -1,
        "accelerator": "auto",
        "devices": 1,
        "num_nodes": 1,
        "strategy": "auto",
        "precision": "32-true",  # "bf16-mixed" for bf16 autocast
        "deterministic": False,
        "log_every_n_steps": 10,
        "check_val_every_n_epoch": 1,
        "progress_bar": True,
    },
}

FREE_FORM = {"weighting.options", "data.folders", "data.rooms", "distill.teachers", "distill.options",
             "model.backbone_options", "model.head_options"}


def _check_keys(cfg: Any, ref: Any, prefix: str = "") -> None:
    if not isinstance(cfg, dict) or prefix.rstrip(".") in FREE_FORM:
        return
    for key, value in cfg.items():
        if key not in ref:
            raise suggest(f"{prefix}{key}", [f"{prefix}{k}" for k in ref], "config key")
        if isinstance(ref[key], dict):
            _check_keys(value, ref[key], f"{prefix}{key}.")


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


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> DictConfig:
    """Defaults ← recipe (a YAML path or a shipped recipe name) ← ``key=value`` overrides, every key checked
    against ``DEFAULTS``."""
    layers = [OmegaConf.create(DEFAULTS)]
    if path is not None:
        path = resolve_recipe(path)
        try:
            recipe = OmegaConf.load(path)
        except (OmegaConfBaseException, ValueError, OSError) as err:
            raise MtkdError(f"cannot read config {path}: {err}") from None
        _check_keys(OmegaConf.to_container(recipe), DEFAULTS)
        layers.append(recipe)
        if "name" not in recipe:
            layers.append(OmegaConf.create({"name": path.stem}))
    for item in overrides:
        if "=" not in item:
            raise MtkdError(f"override {item!r} is not of the form dotted.key=value")
    try:
        dots = OmegaConf.from_dotlist(list(overrides))
    except OmegaConfBaseException as err:
        raise MtkdError(f"bad override: {err}") from None
    _check_keys(OmegaConf.to_container(dots), DEFAULTS)
    layers.append(dots)
    cfg = OmegaConf.merge(*layers)
    if cfg.name is None:
        cfg.name = "run"
    return cfg


def to_dict(cfg: DictConfig) -> dict[str, Any]:
    """A plain, picklable-with-weights_only dict of ``cfg``."""
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
