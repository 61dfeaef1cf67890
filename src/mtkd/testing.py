"""Helpers for smoke runs and tests: a run that trains in seconds on a tiny rooms render."""

from __future__ import annotations

from pathlib import Path


def tiny_run_overrides(tmp: Path, *extra: str, n_train: int = 16, n_test: int = 4, epochs: int = 1) -> list[str]:
    """``dotted.key=value`` overrides for a seconds-long run under ``tmp`` (32×48 rooms images, narrow decoder);
    ``extra`` overrides come last and win."""
    return [
        f"out_dir={tmp / 'runs'}", f"data.root={tmp / 'rooms'}", f"data.rooms.n_train={n_train}",
        f"data.rooms.n_test={n_test}", "data.rooms.height=32", "data.rooms.width=48", "data.batch_size=4",
        f"trainer.max_epochs={epochs}", "trainer.progress_bar=false", "trainer.log_every_n_steps=1",
        "model.decoder_channels=16", *extra,
    ]


def finished_run(root: Path, name: str, test: dict, seed: int = 0, *overrides: str, minutes: float = 1.0) -> Path:
    """A finished run folder as ``mtkd train`` leaves it (config.yaml + results.json with ``test`` metrics), without
    checkpoints: for report tests."""
    import json

    from omegaconf import OmegaConf

    from mtkd.config import load_config, to_dict

    tasks = list(test)
    cfg = load_config(None, [f"data.tasks=[{','.join(tasks)}]", f"seed={seed}", f"name={name}",
                             f"out_dir={root}", *overrides])
    run = Path(root) / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    results = {"name": name, "dataset": cfg.data.dataset, "tasks": tasks, "test": test, "seed": seed,
               "wall_time_s": minutes * 60, "config": to_dict(cfg)}
    (run / "results.json").write_text(json.dumps(results))
    return run


def fed(metric, preds, targets):
    """``metric`` after one ``update`` per NumPy batch of ``(preds, targets)``: a NumPy reference's counterpart."""
    import torch

    for p, t in zip(preds, targets):
        metric.update(torch.from_numpy(p), torch.from_numpy(t))
    return metric


def merged_and_whole(make_metric, preds, targets):
    """Two metric objects fed disjoint halves of ``(preds, targets)`` (NumPy batches) and merged, as DDP's sum
    sync would, beside one that saw every batch; returns ``(merged, whole)`` for the caller to compare."""
    half = len(preds) // 2
    first = fed(make_metric(), preds[:half], targets[:half])
    first.merge_state(fed(make_metric(), preds[half:], targets[half:]))
    return first, fed(make_metric(), preds, targets)


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file and folder under ``root``: relative path -> bytes (None for a folder), to compare a tree before and
    after a command."""
    return {str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes()) for p in sorted(Path(root).rglob("*"))}


def refused(capsys, roots, argv: list[str], match: str) -> str:
    """``mtkd <argv>`` run in-process exits 2 with exactly one ``mtkd: error:`` stderr line matching ``match`` (a
    regex), no traceback, and every tree under ``roots`` (a folder or a list of folders) byte-identical afterwards;
    returns the line. ``capsys`` is pytest's fixture."""
    import re

    from mtkd.cli import main

    roots = [roots] if isinstance(roots, (str, Path)) else list(roots)
    before = [snapshot(r) for r in roots]
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("mtkd: error: ") and "Traceback" not in err, err
    assert re.search(match, lines[0]), lines[0]
    assert [snapshot(r) for r in roots] == before
    return lines[0]


def random_targets(tasks: dict[str, int], n: int = 2, hw: tuple[int, int] = (32, 48),
                   binary_above: dict[str, float] | None = None) -> dict:
    """Seeded random labels for ``tasks`` ({task: channels}) in the engine's formats: class indices, positive depth,
    unit normals, and 0/1 maps for binary tasks (a pixel is 1 where a uniform draw exceeds ``binary_above[task]``,
    default 0.7)."""
    import torch

    g = torch.Generator().manual_seed(1)
    above = {"edge": 0.7, "sal": 0.7, **(binary_above or {})}
    out = {}
    for t, c in tasks.items():
        if t in ("semseg", "parts"):
            out[t] = torch.randint(0, c, (n, *hw), generator=g)
        elif t == "depth":
            out[t] = torch.rand(n, 1, *hw, generator=g) + 0.5
        elif t == "normal":
            out[t] = torch.nn.functional.normalize(torch.randn(n, 3, *hw, generator=g), dim=1)
        else:
            out[t] = (torch.rand(n, 1, *hw, generator=g) > above[t]).float()
    return out
