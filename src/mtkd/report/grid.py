"""The prediction grid of a report: for each task, rows = images, columns = input | ground truth | each method.

Images. The first ``n_images`` of the split (``"val"``: the validation split held out of ``train``; ``"test"``: the
test split), read with the first run's data config, so every method sees the same pictures. Runs trained on other
data (another dataset, root, folder mapping or depth convention) are skipped with a warning; methods that did not
train a task have no column in that task's figure.

Pictures (:mod:`mtkd.visualize`): classes in the fixed palette with a legend of class names; depth with one colour
scale per row — the ground truth's valid range (the predictions' when the row has no valid label), predictions
clipped to it (a prediction <= 0 too: only labels can be invalid) — and its colour bar; normals as RGB; edges and
saliency in grey. Invalid label pixels are black.

Writes ``<out>/predictions_<task>.png`` and ``.pdf`` (the PDF carries no date, so a rebuild is byte-stable) on a bare
Agg ``Figure`` (pyplot and the global backend are left alone); returns the paths written.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize as ColourScale
from matplotlib.figure import Figure
from rich.console import Console

from mtkd.data.datamodule import MultiTaskDataModule
from mtkd.data.transforms import Normalize
from mtkd.checkpoints import load_model
from mtkd.errors import MtkdError
from mtkd.atomic import write_atomic
from mtkd.predict import class_names
from mtkd.visualize import CLASS_TASKS, DEPTH_CMAP, add_legend, colorize, depth_range, to_prediction

SPLITS = ("val", "test")
CELL = 1.9  # inches per picture side (the longer one)
TITLE_WIDTH = 16  # characters per line of a column title


def run_checkpoint(run: Path) -> Path:
    """``checkpoints/best.ckpt`` of a run folder, else ``last.ckpt``."""
    for name in ("best.ckpt", "last.ckpt"):
        if (run / "checkpoints" / name).is_file():
            return run / "checkpoints" / name
    raise MtkdError(f"{run}: no checkpoints/best.ckpt or last.ckpt")


def data_source(data: dict[str, Any]) -> tuple:
    """What makes two data configs show the same pictures and labels: dataset, resolved root, folders, depth."""
    root = MultiTaskDataModule(**data).root.resolve()
    return data["dataset"], str(root), sorted((data.get("folders") or {}).items()), bool(data.get("depth_from_disparity"))


def target_array(task: str, target: torch.Tensor) -> np.ndarray:
    """A dataset label in the image layout of :func:`mtkd.visualize.to_prediction` (H×W, or H×W×3 normals)."""
    if task == "normal":
        return target.permute(1, 2, 0).numpy()
    return (target if task in CLASS_TASKS else target[0]).numpy()


def _load_methods(runs: dict[str, Path], warn) -> tuple[dict[str, Any], dict[str, torch.nn.Module]]:
    """The first run's config and every usable method's model (others skipped with a warning)."""
    first, models = None, {}
    for label, run in runs.items():
        try:
            model, config = load_model(run_checkpoint(Path(run)))
        except MtkdError as err:
            warn(f"prediction grid: skipped {label}: {err}")
            continue
        if first is None:
            first = config
        elif data_source(config["data"]) != data_source(first["data"]):
            warn(f"prediction grid: skipped {label}: trained on other data than {next(iter(models))} "
                 f"({config['data'].get('root')} vs {first['data'].get('root')})")
            continue
        models[label] = model.eval()
    if first is None:
        raise MtkdError("prediction grid: no run with a readable checkpoint")
    return first, models


def _samples(config: dict[str, Any], tasks: list[str], n_images: int, split: str) -> tuple[list[dict], Any]:
    """The first ``n_images`` raw samples (image in [0, 1] and every task's label) of the split, and the dataset."""
    dm = MultiTaskDataModule(**{**config["data"], "tasks": tasks})
    dm.prepare_data()
    dm.setup("fit")
    ds = dm.val_set if split == "val" else dm.test_set
    return [ds.load(ds.indices[k]) for k in range(min(n_images, len(ds)))], ds


def _figure(rows: int, cols: int, aspect: float, extra_width: float, extra_height: float) -> Figure:
    width, height = (CELL, CELL / aspect) if aspect >= 1 else (CELL * aspect, CELL)
    fig = Figure(figsize=(cols * width + extra_width, rows * height + 0.45 + extra_height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def task_figure(task: str, samples: list[dict], preds: dict[str, list[np.ndarray]], num_classes: int | None,
                names: list[str] | None, depth_label: str = "depth") -> Figure:
    """One task's grid: rows = samples, columns = input | ground truth | each method of ``preds``."""
    columns = ["input", "ground truth", *preds]
    h, w = samples[0]["image"].shape[-2:]
    legend_rows = 0 if names is None else -(-len(names) // max(1, int(len(columns) * CELL / 1.4)))
    fig = _figure(len(samples), len(columns), w / h, 0.9 if task == "depth" else 0.0, 0.28 * legend_rows)
    axes = fig.subplots(len(samples), len(columns), squeeze=False)
    for r, sample in enumerate(samples):
        truth = target_array(task, sample[task])
        row = [truth] + [p[r] for p in preds.values()]
        scale = {}
        if task == "depth":
            lo, hi = depth_range([truth]) if (truth > 0).any() else depth_range(row[1:])
            scale = {"vmin": lo, "vmax": hi}
            row[1:] = [np.maximum(p, lo) for p in row[1:]]  # a prediction <= 0 is the scale's low end, not invalid
        pictures = [sample["image"].permute(1, 2, 0).clamp(0, 1).numpy()]
        pictures += [colorize(task, a, num_classes=num_classes, **scale) for a in row]
        for c, (ax, picture) in enumerate(zip(axes[r], pictures)):
            ax.imshow(picture, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_color("0.6")
            if r == 0:
                ax.set_title(textwrap.fill(columns[c], TITLE_WIDTH), fontsize=10)
        axes[r, 0].set_ylabel(f"image {sample['index']}", fontsize=9)
        if task == "depth":
            bar = fig.colorbar(ScalarMappable(ColourScale(scale["vmin"], scale["vmax"]), DEPTH_CMAP),
                               ax=axes[r].tolist(), shrink=0.9, pad=0.01, aspect=12)
            bar.ax.tick_params(labelsize=8)
            bar.set_label(depth_label, fontsize=8)
    if names is not None:
        ncol = max(1, int(len(columns) * CELL / 1.4))
        add_legend(fig, names, loc="outside lower center", ncol=min(ncol, len(names)), frameon=False, fontsize=9)
    return fig


def prediction_grid(runs: dict[str, Path], out: Path, n_images: int = 4, split: str = "val",
                    shown: list[int] | None = None) -> list[Path]:
    """Write ``predictions_<task>.{png,pdf}`` into ``out`` for every task of ``runs`` ({method label: run folder});
    the number of images drawn (``n_images`` or the split's size if smaller) is appended to ``shown``."""
    if split not in SPLITS:
        raise MtkdError(f"prediction grid: split {split!r} must be one of {', '.join(SPLITS)}")
    if n_images < 1:
        raise MtkdError(f"prediction grid: n_images {n_images} must be >= 1")
    console = Console(stderr=True)
    config, models = _load_methods(runs, lambda msg: console.print(f"mtkd: warning: {msg}", markup=False,
                                                                   highlight=False, soft_wrap=True))
    tasks = list(dict.fromkeys(t for m in models.values() for t in m.tasks))
    samples, ds = _samples(config, tasks, n_images, split)
    if shown is not None:
        shown.append(len(samples))
    images = Normalize()({"image": torch.stack([s["image"] for s in samples])})["image"]
    outputs = {}
    for label, model in models.items():
        with torch.no_grad():
            outputs[label] = model(images).preds
    names = class_names(config, {t: ds.num_classes[t] for t in tasks if t in CLASS_TASKS})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for task in tasks:
        preds = {label: [to_prediction(task, logits) for logits in o[task]]
                 for label, o in outputs.items() if task in o}
        fig = task_figure(task, samples, preds, ds.num_classes.get(task), names.get(task),
                          "disparity" if ds.depth_is_disparity else "depth")
        for suffix, extra in (("png", {"dpi": 150}), ("pdf", {"metadata": {"CreationDate": None}})):
            path = out / f"predictions_{task}.{suffix}"
            write_atomic(path, lambda f: fig.savefig(f, format=suffix, **extra))
            written.append(path)
    return written
