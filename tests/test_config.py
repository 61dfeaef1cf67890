import pytest

from mtkd.config import load_config
from mtkd.errors import MtkdError


def test_recipe_and_overrides_merge(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data:\n  batch_size: 4\nweighting:\n  name: uw\n")
    cfg = load_config(recipe, ["trainer.max_epochs=2", "weighting.options.classification=[semseg]"])
    assert (cfg.name, cfg.data.batch_size, cfg.trainer.max_epochs) == ("r", 4, 2)
    assert list(cfg.weighting.options.classification) == ["semseg"]


def test_typo_in_override_names_the_closest_key():
    with pytest.raises(MtkdError, match="data.batch_size"):
        load_config(None, ["data.bach_size=4"])


def test_typo_in_recipe_is_refused(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("trainer:\n  max_epoch: 3\n")
    with pytest.raises(MtkdError, match="trainer.max_epochs"):
        load_config(recipe)


def test_missing_recipe_and_malformed_override():
    with pytest.raises(MtkdError, match="does not exist"):
        load_config("nope.yaml")
    with pytest.raises(MtkdError, match="dotted.key=value"):
        load_config(None, ["data.batch_size"])


def test_every_shipped_recipe_loads():
    from pathlib import Path

    recipes = sorted(Path(__file__).resolve().parents[1].glob("configs/**/*.yaml"))
    assert recipes
    for r in recipes:
        load_config(r)


def test_every_recipe_names_a_known_weighting_with_valid_options():
    from pathlib import Path

    from mtkd import weighting

    for r in sorted(Path(__file__).resolve().parents[1].glob("configs/**/*.yaml")):
        cfg = load_config(r)
        weighting.get(cfg.weighting.name, tasks=list(cfg.data.tasks), **dict(cfg.weighting.options))
