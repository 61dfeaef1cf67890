"""The CLI as a new user meets it: --version, recipes, help texts (every option described, no raw markup, the
converters named), `mtkd train` ending with the test metrics, and the progress bar's epoch count."""

import argparse
import types

import pytest

from mtkd import __version__
from mtkd.cli import _parser, main
from mtkd.config import recipe_names
from mtkd.datasets.convert import CONVERTERS
from mtkd.testing import tiny_run_overrides


def subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                yield from ((f"{name} {n}", s) for n, s in subparsers(sub))


def test_version_and_recipes(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"mtkd {__version__}"
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert all(name.split("/", 1)[1] in out for name in recipe_names()) and "rooms/:" in out


def test_every_option_is_described_without_markup():
    for name, sub in [("mtkd", _parser()), *subparsers(_parser())]:
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            assert action.help, f"{name}: {action.dest} has no help"
            assert "`" not in action.help and "``" not in (sub.description or ""), f"{name}: {action.dest}"
    convert = dict(subparsers(_parser()))["data convert"].format_help()
    assert all(c in convert for c in CONVERTERS)


def test_train_ends_with_the_test_metrics(tmp_path, capsys):
    assert main(["train", "rooms/single_semseg", *tiny_run_overrides(tmp_path), "name=s"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-3].startswith("test metrics of s") and out[-2].startswith("  semseg: mIoU ") and " %" in out[-2]
    assert out[-1].endswith("results.json")


@pytest.mark.parametrize("max_epochs, max_steps, text", [(1, -1, "Epoch 1/1"), (6, -1, "Epoch 3/6"),
                                                          (-1, 40, "Epoch 3 (step 7/40)")])
def test_progress_bar_counts_epochs_from_one(max_epochs, max_steps, text):
    from mtkd.engine.progress import ProgressBar

    bar = ProgressBar()
    bar._trainer = types.SimpleNamespace(max_epochs=max_epochs, max_steps=max_steps, global_step=7)
    assert bar._get_train_description(2 if max_epochs != 1 else 0).strip() == text
