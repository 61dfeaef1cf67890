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


def test_defaults_are_the_schema_as_a_plain_dict():
    from mtkd.config import DEFAULTS, RunConfig

    assert isinstance(DEFAULTS, dict) and isinstance(DEFAULTS["optim"], dict)
    assert DEFAULTS["optim"]["lr"] == RunConfig().optim.lr == 1e-3
    assert DEFAULTS["data"]["rooms"]["n_train"] == 800


def test_values_take_the_schema_types_and_the_result_stays_editable():
    cfg = load_config(None, ["optim.lr=1", "trainer.max_epochs=3", "data.augment=false", "trainer.max_epochs=-1",
                             "trainer.accelerator=cpu", "trainer.devices=2"])
    assert isinstance(cfg.optim.lr, float) and cfg.optim.lr == 1.0
    assert cfg.trainer.max_epochs == -1 and cfg.data.augment is False  # -1: Lightning's "no limit"
    cfg.distill.teachers = {"semseg": "runs/t"}  # studies fill teachers in after loading
    cfg.distill.options.new_option = 1  # free-form mappings stay free-form
    assert cfg.distill.teachers.semseg == "runs/t"


@pytest.mark.parametrize("override, message", [
    ("trainer.max_epochs=abc", "config key trainer.max_epochs: got 'abc', expected an integer"),
    ("optim.lr=inf", "config key optim.lr: got inf, expected a finite number > 0"),
    ("trainer.max_epochs=0", "config key trainer.max_epochs: got 0, expected an integer ≥ 1 or -1"),
    ("optim.optimizer=sdg", "config key optim.optimizer: got 'sdg', expected one of adam, adamw, sgd (did you mean 'sgd'?)"),
])
def test_bad_values_name_the_key_the_value_and_what_is_expected(override, message):
    with pytest.raises(MtkdError) as info:
        load_config(None, [override])
    assert str(info.value) == message


def test_stored_configs_take_checked_overrides_without_rechecking_devices():
    from mtkd.config import DEFAULTS, apply_overrides

    stored = {**DEFAULTS, "trainer": {**DEFAULTS["trainer"], "accelerator": "gpu", "devices": 8}}  # another machine
    assert apply_overrides(stored, ["data.batch_size=2"])["data"]["batch_size"] == 2
    with pytest.raises(MtkdError, match="data.batch_size: got 'two'"):
        apply_overrides(stored, ["data.batch_size=two"])
