"""The ``mtkd`` command: ``train``, ``eval``, ``study``, ``report``, ``demo``, ``predict``, ``export``, ``recipes``,
``data convert``.

User mistakes (``MtkdError``, also from DataLoader workers) and OS faults on the user's files (read-only folder, full
disk: ``user_error``) print one line and exit 2; ``--traceback`` shows the full trace.
"""

from __future__ import annotations

import argparse
import errno
import itertools
import logging
import os
import sys
import warnings

from mtkd.errors import MtkdError


CONVERTER_HELP = """converters:
  nyud_raw        the official NYUD-v2 nyu_depth_v2_labeled.mat + splits.mat (options: size=[H,W], classes=13|40,
                  class_map40=FILE)
  nyud_mt         the NYUD multi-task release (options: size=[H,W], classes=40|13)
  pascal_context  the PASCAL-Context multi-task release (options: size=[H,W], tasks=semseg,parts,...,
                  normals_mask=true|false)
  cityscapes      the official Cityscapes packages (options: size=[H,W] (default [128,256]),
                  depth=metric|disparity)
see docs/datasets.md"""


def _parser() -> argparse.ArgumentParser:
    from mtkd import __version__

    p = argparse.ArgumentParser(prog="mtkd", description="Multi-task dense prediction with knowledge distillation: "
                                "train, compare (studies and reports), predict and export.")
    p.add_argument("--version", action="version", version=f"mtkd {__version__}")
    p.add_argument("--traceback", action="store_true", help="show the full traceback on errors")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    t = sub.add_parser("train", help="train from a recipe, with dotted.key=value overrides; prints the test metrics")
    t.add_argument("config", help="a shipped recipe name (see 'mtkd recipes', e.g. rooms/mtl_ew) or a YAML file")
    t.add_argument("overrides", nargs="*", help="dotted.key=value config overrides, e.g. trainer.max_epochs=10")
    e = sub.add_parser("eval", help="evaluate a checkpoint on the test (or validation) split")
    e.add_argument("checkpoint", help="a run folder or a .ckpt file")
    e.add_argument("--split", choices=["test", "val"], default="test", help="the split to score (default: test)")
    e.add_argument("overrides", nargs="*", help="dotted.key=value data overrides, e.g. data.root=/data/nyuv2")
    st = sub.add_parser("study", help="train a study's methods × seeds in dependency order, then report")
    st.add_argument("file", help="study YAML (methods, seeds, budget; see docs/pipeline.md)")
    st.add_argument("--out", help="study folder (default: the file's 'out:', else runs/<name>)")
    st.add_argument("--no-report", action="store_true", help="train only, no report")
    st.add_argument("--workers", type=int, help="train N runs at once on a local Ray instance (needs mtkd[ray])")
    st.add_argument("--address", help="train on a running Ray cluster instead ('auto', or the head's host:port)")
    st.add_argument("--gpus-per-run", type=float, help="GPUs each run reserves on Ray (default: its trainer.devices "
                    "where there are GPUs, else 0)")
    st.add_argument("--cpus-per-run", type=int, help="CPU cores (torch threads) each run reserves on Ray (default: "
                    "the cores over --workers; 1 on a cluster)")
    r = sub.add_parser("report", help="tables, plots, prediction grids and report.html for a folder of runs")
    r.add_argument("dir", help="a study folder or any folder of run folders")
    r.add_argument("--out", help="output folder (default: DIR/report)")
    r.add_argument("--images", type=int, default=4, help="validation images in the prediction grids (0: none)")
    r.add_argument("--no-cost", action="store_true", help="skip measuring GFLOPs and latency")
    d = sub.add_parser("demo", help="the rooms study: single-task → MTL → distillation, then the report (~10 min)")
    d.add_argument("--out", default="runs/demo", help="study folder (default: runs/demo)")
    d.add_argument("--full", action="store_true", help="every weighting, architecture and distiller (~40 min)")
    d.add_argument("--methods", nargs="+", help="only these methods of the full study (plus baselines, teachers)")
    d.add_argument("--epochs", type=int, help="training epochs of every run (default: the study's budget)")
    d.add_argument("--seeds", type=int, nargs="+", help="seeds to run, e.g. 0 1 2 (3 or more give intervals)")
    d.add_argument("--n-train", type=int, help="rooms training images to render (default: the study's)")
    pr = sub.add_parser("predict", help="coloured PNGs and raw arrays per task for images of any size")
    pr.add_argument("checkpoint", help="a .ckpt file of a run")
    pr.add_argument("images", nargs="+", help="image files or folders of images")
    pr.add_argument("--out", required=True, help="output folder (one subfolder per image)")
    pr.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default: 8)")
    x = sub.add_parser("export", help="the student alone as safetensors or ONNX, with a model card")
    x.add_argument("checkpoint", help="a .ckpt file of a run")
    x.add_argument("--format", choices=["safetensors", "onnx"], default="safetensors",
                   help="safetensors (default) or onnx (needs the export extra)")
    x.add_argument("--out", help="output folder (default: <run>/export; <name>-export beside a loose checkpoint)")
    sub.add_parser("recipes", help="list the shipped recipes (names for 'mtkd train' and studies)")
    dc = sub.add_parser("data", help="dataset tools").add_subparsers(dest="data_command", required=True,
                                                                     metavar="TOOL")
    c = dc.add_parser("convert", help="convert a raw release to the training layout", epilog=CONVERTER_HELP,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("name", help="the converter: nyud_raw, nyud_mt, pascal_context or cityscapes")
    c.add_argument("src", help="the unpacked release")
    c.add_argument("out", help="the output folder (resumable: rerun to continue)")
    c.add_argument("options", nargs="*", help="key=value converter options (listed below)")
    return p


def show_report(report) -> None:
    """The tables in the terminal and where the files are."""
    from rich.console import Console

    from mtkd.report.table import rich_table

    from mtkd.report.build import judged

    console = Console(width=max(Console().width, 120))
    for name, rows in report.tables.items():
        console.print(rich_table(rows, title=f"{name}: test split (mean ± std over seeds)"))
        console.print(judged(rows), markup=False, highlight=False)
    console.print(f"report: {report.html}")


def show_metrics(results: dict) -> None:
    """A finished run's test metrics, one line per task, with units."""
    from mtkd.report.table import UNITS

    print(f"test metrics of {results['name']} (best epoch on validation):")
    for task, values in results["test"].items():
        shown = ", ".join(f"{m} {v:.4g}{UNITS.get(m, '').replace('%', ' %')}" for m, v in values.items())
        print(f"  {task}: {shown}")


def _dispatch(args: argparse.Namespace) -> None:
    if args.command == "train":
        from mtkd.config import load_config
        from mtkd.engine.run import train

        res = train(load_config(args.config, args.overrides))
        show_metrics(res)
        print(f"results: {res['config']['out_dir']}/{res['name']}/results.json")
    elif args.command == "eval":
        from mtkd.engine.evaluate import evaluate

        evaluate(args.checkpoint, split=args.split, overrides=args.overrides)
    elif args.command == "study":
        from mtkd.report.build import build_report
        from mtkd.study import failed_runs, load_study, run_study

        study = load_study(args.file, out=args.out)
        executor = None
        if any(v is not None for v in (args.workers, args.address, args.gpus_per_run, args.cpus_per_run)):
            from mtkd.study_ray import RayExecutor

            executor = RayExecutor(args.workers, args.address, args.gpus_per_run, args.cpus_per_run)
            executor.check()
        run_study(study, executor=executor)
        if not args.no_report:
            show_report(build_report(study.out))
        if failed_runs(study.out):  # the others finished and are reported; the command still fails
            raise MtkdError(f"study {study.name}: {failed_runs(study.out)}")
    elif args.command == "report":
        from mtkd.report.build import build_report

        show_report(build_report(args.dir, out=args.out, n_images=args.images, cost=not args.no_cost))
    elif args.command == "demo":
        from mtkd.demo import run_demo
        from mtkd.study import failed_runs

        show_report(run_demo(args.out, full=args.full, methods=args.methods, epochs=args.epochs, seeds=args.seeds,
                             n_train=args.n_train))
        if failed_runs(args.out):
            raise MtkdError(f"demo: {failed_runs(args.out)}")
    elif args.command == "predict":
        from mtkd.predict import predict

        predict(args.checkpoint, args.images, args.out, batch_size=args.batch_size)
    elif args.command == "export":
        from mtkd.export import export

        print(f"exported: {export(args.checkpoint, args.format, args.out)}")
    elif args.command == "recipes":
        from mtkd.config import recipe_names

        import textwrap

        print("shipped recipes ('mtkd train <dataset>/<name>', or a recipe in a study):")
        for dataset, names in itertools.groupby(recipe_names(), key=lambda n: n.split("/")[0]):
            print(textwrap.fill(" ".join(n.split("/", 1)[1] for n in names), 110, initial_indent=f"  {dataset}/: ",
                                subsequent_indent=" " * (len(dataset) + 6)))
    elif args.command == "data":
        from omegaconf import OmegaConf

        from mtkd.config import parse_overrides
        from mtkd.datasets.convert import convert

        options = OmegaConf.to_container(parse_overrides(args.options))  # a malformed option: one line
        print(f"converted: {convert(args.name, args.src, args.out, **options)}")


_FREE = {errno.ENOSPC: "free space on that disk or write elsewhere", errno.EDQUOT: "free quota or write elsewhere"}
_DENIED = (errno.EROFS, errno.EACCES, errno.EPERM)


def user_error(err: BaseException) -> str | None:
    """The one line to print for a user's mistake or an OS fault on their files; None for a bug (traceback).

    An ``MtkdError`` raised in a DataLoader worker arrives re-raised by torch with the worker's traceback in its
    message: its own last line is what the user needs."""
    if isinstance(err, MtkdError):
        lines = [line for line in str(err).splitlines() if line.strip()]
        if len(lines) > 1 and "DataLoader worker" in lines[0]:
            inner = [line.split("MtkdError: ", 1)[1] for line in lines if "MtkdError: " in line]
            lines = inner[-1:] or lines[:1]
        return " ".join(line.strip() for line in lines) or "MtkdError"
    if isinstance(err, OSError):
        where = f"{err.filename}" if err.filename is not None else "a file"
        reason = err.strerror or type(err).__name__
        if err.errno in _FREE:
            return f"cannot write {where}: {reason}; {_FREE[err.errno]}"
        if err.errno in _DENIED:
            return f"cannot write {where}: {reason}; choose a folder you can write to (out_dir=..., --out ...)"
        if err.filename is not None:
            return f"{where}: {reason}"
    return None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    warnings.filterwarnings("ignore", module="lightning")
    import lightning.pytorch  # noqa: F401  (it sets its loggers to INFO on import: quiet them after)

    for name in ("lightning.pytorch", "lightning.fabric"):  # device banners and tips: mtkd prints what matters
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        _dispatch(args)
    except BrokenPipeError:  # `mtkd recipes | head`: the reader left; not an error (Python's documented remedy)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (MtkdError, OSError) as err:
        message = user_error(err)
        if args.traceback or message is None:
            raise
        print(f"mtkd: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        again = "the same command" if args.command in ("study", "demo") else "the same command with resume=true"
        print(f"mtkd: interrupted; rerun {again} to continue", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
