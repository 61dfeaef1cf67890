"""``mtkd export``: the trained student alone (no teachers, no distiller weights) as safetensors or ONNX, with a card.

Both formats write ``model_card.json`` (read back by :func:`load_exported`) and ``model_card.md``: tasks and output
channels, class names, input size, the ImageNet normalisation the model expects, the ``model`` config section
(architecture, backbone, heads), the parameter count and the run's test metrics when ``results.json`` is there.

- ``safetensors``: ``model.safetensors`` (the card's JSON is also in its metadata, so the file describes itself);
  :func:`load_exported` rebuilds the model from the card and loads it strictly.
- ``onnx``: ``model.onnx``, input ``image`` (B×3×H×W at the training size, dynamic batch), one output per task
  named by the task (raw outputs, as ``model(image).preds``). Exported with the ``torch.export``-based exporter
  (needs ``onnx`` and ``onnxscript``); when ``onnxruntime`` is installed the file is run on a fixed input and
  compared with PyTorch, and a difference above ``1e-4 × max(1, max |output|)`` is refused.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

import mtkd
from mtkd.atomic import atomic_path, write_atomic
from mtkd.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from mtkd.checkpoints import load_model, state_dict_mismatch
from mtkd.errors import MtkdError, first_line
from mtkd.paths import output_folder
from mtkd.predict import class_names, training_size

FORMATS = ("safetensors", "onnx")
ONNX_RTOL = 1e-4
ONNX_PACKAGES = ("onnx", "onnxscript")  # what torch's ONNX exporter imports
CARD = "model_card.json"


class TaskOutputs(nn.Module):
    """``model(image).preds`` as a tuple in task order: exporters take tensors, not a NamedTuple of dicts."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        preds = self.model(image).preds
        return tuple(preds[t] for t in self.model.tasks)


def model_card(model: nn.Module, config: dict[str, Any], run_dir: Path | None) -> dict[str, Any]:
    """What a user of the exported file needs to know (see the module docstring)."""
    results = run_dir / "results.json" if run_dir is not None else None
    test = json.loads(results.read_text()).get("test") if results is not None and results.is_file() else None
    size = training_size(config)
    return {
        "name": config.get("name"), "mtkd_version": mtkd.__version__,
        "tasks": dict(model.tasks), "class_names": class_names(config, model.tasks),
        "input_size": list(size) if size else None,
        "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "input_range": [0, 1]},
        "model": dict(config["model"]), "parameters": sum(p.numel() for p in model.parameters()),
        "dataset": config["data"].get("dataset"), "test_metrics": test,
    }


def card_markdown(card: dict[str, Any]) -> str:
    """The card as a short Markdown page."""
    m, size = card["model"], card["input_size"]
    lines = [f"# {card['name']} (mtkd {card['mtkd_version']})", "",
             f"- files: {', '.join(card['files'])}; trained on: {card['dataset']}",
             f"- architecture: {m.get('arch')}, backbone {m.get('backbone')}, head {m.get('head')}, "
             f"decoder channels {m.get('decoder_channels')}; {card['parameters']:,} parameters",
             f"- input: RGB in [0, 1], {'×'.join(map(str, size)) + ' (H×W)' if size else 'size unknown'}, "
             f"normalised with mean {card['normalization']['mean']} and std {card['normalization']['std']}", "",
             "| task | output channels | classes |", "|---|---|---|"]
    for task, channels in card["tasks"].items():
        lines.append(f"| {task} | {channels} | {', '.join(card['class_names'].get(task, [])) or '–'} |")
    if card["test_metrics"]:
        from mtkd.report.table import UNITS

        lines += ["", "Test metrics:", "", "| task | metric | value |", "|---|---|---|"]
        for task, values in card["test_metrics"].items():
            lines += [f"| {task} | {name} | {value:.4g}{UNITS.get(name, '').replace('%', ' %')} |"
                      for name, value in values.items()]
    if "onnx_check" in card:
        c = card["onnx_check"]
        lines += ["", f"ONNX Runtime vs PyTorch: max abs difference {c['max_abs_diff']:.3g} "
                      f"(tolerance {c['tolerance']:.3g})"]
    return "\n".join(lines) + "\n"


def save_safetensors(model: nn.Module, path: Path, card: dict[str, Any]) -> None:
    from safetensors.torch import save

    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    data = save(tensors, metadata={"format": "pt", "mtkd_card": json.dumps(card)})
    write_atomic(path, lambda f: f.write(data))


def _check_onnx_packages() -> None:
    missing = [p for p in ONNX_PACKAGES if importlib.util.find_spec(p) is None]
    if missing:
        raise MtkdError(f"ONNX export needs {' and '.join(missing)}: pip install \"mtkd[export]\"")


def save_onnx(model: nn.Module, path: Path, size: tuple[int, int]) -> None:
    """``model.onnx`` through the ``torch.export`` exporter: input ``image`` with a dynamic batch, outputs by task."""
    example = torch.zeros(2, 3, *size)
    try:
        with atomic_path(path) as tmp:
            torch.onnx.export(TaskOutputs(model).eval(), (example,), str(tmp), input_names=["image"],
                              output_names=list(model.tasks),
                              dynamic_shapes={"image": {0: torch.export.Dim("batch")}}, dynamo=True,
                              external_data=False, verbose=False)
    except OSError:
        raise  # a full disk or a read-only folder: the CLI names the path and what to free
    except Exception as err:  # noqa: BLE001 - the exporter's failures are many types; report one line
        raise MtkdError(f"ONNX export failed: {type(err).__name__}: {first_line(err)}") from None


def check_onnx(model: nn.Module, path: Path, size: tuple[int, int]) -> dict[str, float] | None:
    """Max abs difference between ONNX Runtime and PyTorch on a fixed input; None without onnxruntime."""
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    import onnxruntime as ort

    x = torch.randn(3, 3, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = TaskOutputs(model).eval()(x)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(list(model.tasks), {"image": x.numpy()})
    diff = max(float((torch.from_numpy(g) - r).abs().max()) for g, r in zip(got, ref))
    tolerance = ONNX_RTOL * max(1.0, max(float(r.abs().max()) for r in ref))
    if diff > tolerance:
        raise MtkdError(f"{path}: ONNX Runtime differs from PyTorch by {diff:.3g} (tolerance {tolerance:.3g})")
    return {"max_abs_diff": diff, "tolerance": tolerance}


def run_folder_of(checkpoint: str | os.PathLike) -> Path | None:
    """The run folder of ``<run>/checkpoints/<file>.ckpt`` (an mtkd run: manifest or ``config.yaml``); None for a
    checkpoint elsewhere (a loose file, also one in a user's own ``checkpoints/`` folder)."""
    from mtkd.engine.run import MANIFEST

    run = Path(checkpoint).resolve().parent.parent
    is_run = Path(checkpoint).resolve().parent.name == "checkpoints" and any(
        (run / name).is_file() for name in (MANIFEST, "config.yaml"))
    return run if is_run else None


def export(checkpoint: str | os.PathLike, fmt: str = "safetensors", out: str | os.PathLike | None = None) -> Path:
    """Export the student of ``checkpoint`` as ``fmt`` into ``out``; returns the file. The default is
    ``<run>/export`` for a checkpoint in a run folder, ``<stem>-export/`` beside a loose checkpoint (never above
    it)."""
    if fmt not in FORMATS:
        raise MtkdError(f"export format {fmt!r}: must be one of {', '.join(FORMATS)}")
    if fmt == "onnx":
        _check_onnx_packages()
    model, config = load_model(checkpoint)
    model.eval()
    run_dir = run_folder_of(checkpoint)
    what = "export folder" if out is None else "--out"
    if out is None:  # a loose checkpoint: <stem>-export beside it
        ckpt = Path(checkpoint).resolve()
        out = run_dir / "export" if run_dir is not None else ckpt.with_name(f"{ckpt.stem}-export")
    out = output_folder(out, what)
    card = model_card(model, config, run_dir)
    if fmt == "safetensors":
        path = out / "model.safetensors"
        save_safetensors(model, path, card)
    else:
        size = training_size(config)
        if size is None:
            raise MtkdError(f"input size unknown (data {config['data'].get('root')} not found): the ONNX graph "
                            "needs the training H×W")
        path = out / "model.onnx"
        save_onnx(model, path, size)
        check = check_onnx(model, path, size)
        if check is not None:
            card["onnx_check"] = check
            Console(stderr=True).print(f"onnxruntime vs torch: max abs difference {check['max_abs_diff']:.3g} "
                                       f"(tolerance {check['tolerance']:.3g})", highlight=False)
    card["files"] = sorted(p.name for p in out.glob("model.*") if p.suffix in (".safetensors", ".onnx"))
    write_atomic(out / CARD, lambda f: f.write(json.dumps(card, indent=2).encode()))
    write_atomic(out / "model_card.md", lambda f: f.write(card_markdown(card).encode()))
    return path


def load_exported(folder: str | os.PathLike) -> nn.Module:
    """The model in an export folder: rebuilt from ``model_card.json``, weights from ``model.safetensors`` (strict)."""
    from safetensors.torch import load_file

    from mtkd.models import build_model_from_config

    folder = Path(folder)
    for name in (CARD, "model.safetensors"):
        if not (folder / name).is_file():
            raise MtkdError(f"{folder / name} does not exist (export with --format safetensors first)")
    card = json.loads((folder / CARD).read_text())
    model = build_model_from_config({**card["model"], "pretrained": False}, card["tasks"])
    try:
        model.load_state_dict(load_file(folder / "model.safetensors"))
    except RuntimeError as err:
        raise MtkdError(f"{folder / 'model.safetensors'} does not match {folder / CARD}: "
                        f"{state_dict_mismatch(err)}") from None
    return model.eval()
