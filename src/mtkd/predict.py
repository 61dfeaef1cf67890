"""``mtkd predict``: a coloured picture and the raw array of every task, for images of any size and format.

Input size. The model runs at the size it was trained at (:func:`mtkd.data.input_size.input_size` of the
checkpoint's data config): rooms' rendered height × width, from the config alone; for a folder dataset the size of
its first image, read from the ``.npy`` header. When that folder is gone (a checkpoint moved to another machine),
each image keeps its own size rounded to a multiple of 32 (the deepest stride of the backbones), which fully
convolutional models accept.

Resampling. In: Pillow bilinear (antialiased when shrinking) to the input size, [0, 1], ImageNet mean / std as in
training. Out: the raw outputs (logits) are resized **bilinearly** to the original size first, then turned into
predictions by :func:`mtkd.visualize.to_prediction` (argmax *after* upsampling: smooth class boundaries at full
resolution, as the model itself upsamples its logits).

Output, per image: ``<out>/<stem>/<task>.png`` (coloured; depth on the image's own range) and ``<task>.npy``
(class ids int64 H×W, depth float32 H×W, unit normals float32 H×W×3, edge / saliency probabilities float32 H×W),
at the original size; a second image with the same stem goes to ``<stem>-2``. Class tasks also get
``<out>/legend_<task>.png``. An image that cannot be read is skipped with a one-line warning.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from rich.console import Console
from rich.progress import Progress

from mtkd.atomic import write_atomic
from mtkd.data.datamodule import MultiTaskDataModule
from mtkd.data.folder import DEFAULT_FOLDERS, dataset_info
from mtkd.data.input_size import input_size
from mtkd.data.transforms import Normalize
from mtkd.checkpoints import load_model
from mtkd.errors import MtkdError, first_line
from mtkd.paths import inside, output_folder
from mtkd.visualize import CLASS_TASKS, add_legend, colorize, to_prediction

STRIDE = 32


def training_size(config: dict[str, Any]) -> tuple[int, int] | None:
    """(H, W) the model was trained at (:func:`mtkd.data.input_size.input_size`); None when it cannot be told."""
    try:
        return input_size(config["data"])
    except MtkdError:
        return None


def class_names(config: dict[str, Any], task_channels: dict[str, int]) -> dict[str, list[str]]:
    """Names of each class task's classes: the data folder's ``meta.json`` (by folder, then task name), rooms'
    built-in names, else ``"class k"``; a list whose length differs from the model's channels is not trusted."""
    meta: dict[str, Any] = {}
    try:
        root = MultiTaskDataModule(**config["data"]).root  # rooms without a root: the cache folder it renders to
        if (root / "meta.json").is_file():
            meta = dataset_info(root)["classes"]
    except MtkdError:
        pass  # no usable meta.json: the fallbacks below
    folders = config["data"].get("folders") or {}
    out = {}
    for task, n in task_channels.items():
        if task not in CLASS_TASKS:
            continue
        names = meta.get(folders.get(task, DEFAULT_FOLDERS[task])) or meta.get(task)
        if names is None and task == "semseg" and config["data"].get("dataset") == "rooms":
            from mtkd.data.rooms import CLASSES

            names = list(CLASSES)
        out[task] = [str(x) for x in names] if names and len(names) == n else [f"class {k}" for k in range(n)]
    return out


def image_files(paths: list[str]) -> list[Path]:
    """The files to predict: each path as given, a folder expanded to its image files (Pillow's extensions), sorted."""
    known = {ext.lower() for ext in Image.registered_extensions()}
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in known)
        else:
            files.append(p)
    return files


def read_image(path: Path) -> Image.Image:
    """The RGB image at ``path``, turned upright by its EXIF orientation; any failure is one ``MtkdError`` line."""
    if not path.is_file():
        raise MtkdError(f"{path}: no such file")
    try:
        with Image.open(path) as im:
            return to_rgb8(ImageOps.exif_transpose(im))
    except UnidentifiedImageError:
        raise MtkdError(f"{path}: not an image format Pillow reads") from None
    except Exception as err:  # noqa: BLE001 - Pillow raises many types for broken files; each means "unreadable"
        raise MtkdError(f"{path}: cannot read image ({first_line(err)})") from None


def to_rgb8(image: Image.Image) -> Image.Image:
    """8-bit RGB; 16-bit grayscale (``I;16``, or ``I`` as PNG opens it) is scaled by its bit depth — Pillow's own
    ``convert`` clips it at 255, an all-white picture — and float grayscale (``F``) is read as [0, 1]."""
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        a = np.asarray(image, dtype=np.float64)
        scale = 1.0 if image.mode == "F" else 65535.0 if a.max() <= 65535 else float(a.max())
        image = Image.fromarray(np.clip(np.round(a / scale * 255.0), 0, 255).astype(np.uint8), "L")
    return image.convert("RGB")


def model_input(image: Image.Image, size: tuple[int, int] | None) -> torch.Tensor:
    """3×H×W normalised tensor at ``size`` (H, W), or at the image's size rounded to a multiple of 32 when None."""
    if size is None:
        size = tuple(max(STRIDE, round(v / STRIDE) * STRIDE) for v in (image.height, image.width))
    if (image.height, image.width) != tuple(size):
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return Normalize()({"image": x})["image"]


def save_prediction(folder: Path, task: str, logits: torch.Tensor, size: tuple[int, int],
                    num_classes: int | None) -> None:
    """Resize one image's logits (C×h×w) bilinearly to ``size``, then write ``<task>.npy`` and ``<task>.png``."""
    up = F.interpolate(logits[None].float(), size=size, mode="bilinear", align_corners=False)[0]
    array = to_prediction(task, up)
    rgb = colorize(task, array, num_classes=num_classes)
    write_atomic(folder / f"{task}.npy", lambda f: np.save(f, array))
    write_atomic(folder / f"{task}.png", lambda f: Image.fromarray(rgb).save(f, format="PNG"))


def save_legend(path: Path, names: list[str]) -> None:
    """A small picture of the class colours and names (a bare ``Figure``: no pyplot, no global backend)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2.6, 0.3 * len(names) + 0.4))
    add_legend(fig, names, loc="center", frameon=False)
    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=120, bbox_inches="tight"))


def _unique(name: str, used: set[str]) -> str:
    out, k = name, 2
    while out in used:
        out, k = f"{name}-{k}", k + 1
    used.add(out)
    return out


def predict(checkpoint: str | os.PathLike, images: list[str], out: str | os.PathLike,
            batch_size: int = 8) -> list[Path]:
    """Predict every task of the checkpoint's model for ``images`` (files or folders) into ``out``.

    Returns the per-image output folders; raises ``MtkdError`` when no image could be read.
    """
    if batch_size < 1:
        raise MtkdError(f"batch_size {batch_size}: must be >= 1")
    model, config = load_model(checkpoint)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.eval().to(device)
    size = training_size(config)
    names = class_names(config, model.tasks)
    files = image_files(list(images))
    if not files:
        raise MtkdError(f"no image files in {', '.join(map(str, images))}")
    out = Path(out)
    used = {f"legend_{task}.png" for task in names}  # every output folder named and checked before any write
    targets = [inside(out, _unique(path.stem, used), f"image {path}: its output folder") for path in files]
    output_folder(out, "--out")
    for task, task_names in names.items():
        save_legend(out / f"legend_{task}.png", task_names)
    console = Console(stderr=True)
    folders: list[Path] = []
    with Progress(console=console) as progress:
        bar = progress.add_task("predict", total=len(files))
        for start in range(0, len(files), batch_size):
            loaded = []
            for path, target in zip(files[start:start + batch_size], targets[start:start + batch_size]):
                try:
                    loaded.append((target, read_image(path)))
                except MtkdError as err:
                    progress.console.print(f"mtkd: warning: skipped {err}", markup=False, highlight=False,
                                           soft_wrap=True)
                    progress.advance(bar)
            groups: dict[tuple[int, ...], list] = {}  # one forward per input size (sizes differ only without `size`)
            for folder, image in loaded:
                x = model_input(image, size)
                groups.setdefault(tuple(x.shape), []).append((folder, image, x))
            for group in groups.values():
                with torch.no_grad():
                    preds = model(torch.stack([x for _, _, x in group]).to(device)).preds
                for i, (folder, image, _) in enumerate(group):
                    folder.mkdir(parents=True, exist_ok=True)
                    for task, logits in preds.items():
                        save_prediction(folder, task, logits[i], (image.height, image.width), model.tasks[task])
                    folders.append(folder)
                    progress.advance(bar)
    if not folders:
        raise MtkdError(f"none of the {len(files)} image(s) could be read")
    console.print(f"predicted {len(folders)} of {len(files)} image(s) into {out}", highlight=False)
    return folders
