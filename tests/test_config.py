"""Recipes: every shipped recipe loads and builds; bad recipes fail before any work, naming the
key's dotted path, the file and the closest valid key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sepzoo.errors import ConfigError
from sepzoo.training.recipe import load_recipe, recipe_from_dict
from sepzoo.training.rundir import run_hash
from sepzoo.training.train import build_components, run_directory

REPO_ROOT = Path(__file__).resolve().parents[1]
# Training recipes; the comparison recipes in recipes/compare/ are checked by test_compare.py.
RECIPES = sorted(
    p for p in (REPO_ROOT / "recipes").rglob("*.yaml") if p.name != "base.yaml" and p.parent.name != "compare"
)
BASE = REPO_ROOT / "recipes" / "base.yaml"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture()
def recipe_file(tmp_path):
    def make(body: str, name: str = "exp.yaml") -> Path:
        return write(tmp_path / name, f"extends: {BASE}\nmodel:\n  name: conv_tasnet\n{body}")

    return make


def test_there_are_toy_and_musdb_recipes():
    names = {p.relative_to(REPO_ROOT).as_posix() for p in RECIPES}
    assert {"recipes/toy/conv_tasnet.yaml", "recipes/musdb/conv_tasnet.yaml"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.relative_to(REPO_ROOT / "recipes").as_posix())
def test_every_recipe_loads_and_builds(path, tmp_path):
    recipe = load_recipe(path, [f"data.root={tmp_path}", f"run.root={tmp_path / 'runs'}"])
    datamodule, task = build_components(recipe)
    assert task.model.registry_name == recipe.model.name
    assert list(task.model.sources) == recipe.targets
    assert recipe.sources == list(datamodule.sources)
    assert set(recipe.targets) <= set(recipe.sources)
    assert task.model.sample_rate == recipe.sample_rate == datamodule.sample_rate
    optimizer = task.optimizer_factory(task.model.parameters())
    assert optimizer.param_groups[0]["lr"] == recipe.optimizer.kwargs["lr"]


def test_sources_written_once_reach_model_and_data(recipe_file):
    path = recipe_file("data:\n  root: /nowhere\n")
    recipe = load_recipe(path, ["sources=[vocals,drums]", "sample_rate=22050"])
    assert recipe.model.kwargs["sources"] == ["vocals", "drums"]
    assert recipe.data.kwargs["sources"] == ["vocals", "drums"]
    assert recipe.model.kwargs["sample_rate"] == recipe.data.kwargs["sample_rate"] == 22050


def test_the_issue_example_names_the_dotted_key():
    with pytest.raises(ConfigError, match=r"model\.no_such_key"):
        load_recipe(REPO_ROOT / "recipes/toy/conv_tasnet.yaml", ["model.no_such_key=1"])


def test_misspelled_key_in_a_file_names_file_path_and_closest(recipe_file):
    path = recipe_file("  encoder_filter: 16\ndata:\n  root: /nowhere\n")
    with pytest.raises(ConfigError) as error:
        load_recipe(path)
    message = str(error.value)
    assert message.startswith(str(path))
    assert "model.encoder_filter" in message and "model.encoder_filters" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ("trainer.max_step=3", ["trainer.max_step", "trainer.max_steps"]),
        ("data.batch_sise=2", ["data.batch_sise", "data.batch_size"]),
        ("optimiser.lr=1", ["optimiser", "optimizer"]),
        ("train.ema_decy=0.9", ["train.ema_decy", "train.ema_decay"]),
        ("model.repeats=abc", ["model.repeats", "expected int", "'abc'"]),
        ("model.repeats=1.5", ["model.repeats", "expected int"]),
        ("trainer.max_steps=many", ["trainer.max_steps", "int"]),
        ("inference.overlap=2", ["inference.overlap", "[0, 1)"]),
        ("model.name=conv_tasnett", ["model.name", "'conv_tasnet'"]),
        ("loss.name=l2", ["loss.name", "'l1'"]),
        ("data.name=musd", ["data.name", "'musdb'"]),
        ("optimizer.name=adamm", ["optimizer.name", "'adam'"]),
        ("scheduler.name=cosin", ["scheduler.name", "'cosine'"]),
        ("logger.name=wandbb", ["logger.name", "'wandb'"]),
        ("loss.weights={vocal: 2}", ["loss.weights.vocal", "'vocals'"]),
        ("model.sources=[drums]", ["model.sources", "top-level"]),
        ("trainer.callbacks=[]", ["trainer.callbacks", "set by sepzoo"]),
        ("optimizer.lr=-1", ["optimizer", "learning rate"]),
        ("noequals", ["noequals", "key=value"]),
    ],
)
def test_bad_override_fails_with_the_key(recipe_file, override, fragments):
    path = recipe_file("data:\n  root: /nowhere\n")
    with pytest.raises(ConfigError) as error:
        load_recipe(path, [override])
    message = str(error.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_a_wrong_type_in_a_base_file_names_that_file(tmp_path):
    base = write(tmp_path / "base.yaml", f"extends: {BASE}\ntrainer:\n  max_steps: lots\n")
    leaf = write(
        tmp_path / "leaf.yaml", "extends: base.yaml\nmodel:\n  name: conv_tasnet\ndata:\n  root: /x\n"
    )
    with pytest.raises(ConfigError, match=rf"{base.name}.*trainer\.max_steps.*expected int"):
        load_recipe(leaf)


def test_missing_recipe_file_and_missing_base(tmp_path):
    with pytest.raises(ConfigError, match="recipe file not found"):
        load_recipe(tmp_path / "absent.yaml")
    leaf = write(tmp_path / "leaf.yaml", "extends: nothere.yaml\n")
    with pytest.raises(ConfigError, match="nothere.yaml, which does not exist"):
        load_recipe(leaf)


def test_extends_cycle_is_reported(tmp_path):
    write(tmp_path / "a.yaml", "extends: b.yaml\n")
    write(tmp_path / "b.yaml", "extends: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_recipe(tmp_path / "a.yaml")


def test_python_object_tags_are_refused(tmp_path):
    path = write(tmp_path / "evil.yaml", "model: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not allowed|tag"):
        load_recipe(path)


def test_invalid_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path / "broken.yaml", "model:\n  name: [conv_tasnet\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml:\d+:\d+: invalid YAML"):
        load_recipe(path)


def test_missing_mandatory_value_is_named():
    with pytest.raises(ConfigError, match=r"data\.root: must be set"):
        load_recipe(REPO_ROOT / "recipes/musdb/conv_tasnet.yaml")


def test_config_hash_ignores_where_it_runs_but_not_what_it_computes(recipe_file):
    path = recipe_file("data:\n  root: /nowhere\n")
    plain = load_recipe(path)
    moved = load_recipe(
        path, ["trainer.devices=2", "trainer.strategy=ddp", "logger.name=csv", "run.root=elsewhere"]
    )
    changed = load_recipe(path, ["optimizer.lr=0.01"])
    assert plain.config_hash() == moved.config_hash()
    assert plain.config_hash() != changed.config_hash()
    assert run_directory(plain).name == f"exp-{run_hash(plain.resolved, None)}"


def test_resolved_config_round_trips(recipe_file):
    import yaml

    recipe = load_recipe(recipe_file("data:\n  root: /nowhere\n"), ["trainer.max_steps=7"])
    again = recipe_from_dict(yaml.safe_load(recipe.to_yaml(meta={"git_commit": "abc"})))
    assert again.resolved["trainer"]["max_steps"] == 7
    assert again.config_hash() == recipe.config_hash()


def test_values_are_never_converted_but_a_list_fills_a_tuple(recipe_file):
    path = recipe_file("data:\n  root: /nowhere\n")
    with pytest.raises(ConfigError, match=r"model\.repeats: expected int, got str '2'"):
        load_recipe(path, ["model.repeats='2'"])
    with pytest.raises(ConfigError, match=r"train\.init_strict: expected bool, got str 'yes'"):
        load_recipe(path, ["train.init_strict='yes'"])
    recipe = load_recipe(path, ["optimizer.betas=[0.8,0.9]"])
    assert recipe.optimizer.kwargs["betas"] == [0.8, 0.9]  # the resolved config keeps plain YAML
    with pytest.raises(ConfigError, match=r"optimizer\.betas: expected a list of 2 items, got list \[0\.8\]"):
        load_recipe(path, ["optimizer.betas=[0.8]"])


@pytest.mark.parametrize(
    ("body", "first"),
    [
        ("  encoder_filter: 16\n  repeats: abc\n", "unknown key 'model.encoder_filter'"),
        ("  repeats: abc\n  encoder_filter: 16\n", "model.repeats: expected int, got str 'abc'"),
    ],
)
def test_the_first_problem_in_file_order_is_reported_and_the_rest_counted(recipe_file, body, first):
    path = recipe_file(f"{body}data:\n  root: /nowhere\n")
    with pytest.raises(ConfigError) as error:
        load_recipe(path)
    message = str(error.value)
    assert message.startswith(f"{path}: {first}")
    assert message.endswith("(and 1 more error)")


def test_a_registered_class_whose_annotation_does_not_resolve_is_named(recipe_file):
    from sepzoo.models import MODELS, Separator, register_model

    class Unresolved(Separator):
        def __init__(self, sources: list[str] | None = None, width: UndefinedWidth = 4) -> None:  # noqa: F821
            super().__init__(sources=sources or ["vocals"])

    try:
        register_model("unresolved_for_config")(Unresolved)
        with pytest.raises(ConfigError) as error:
            load_recipe(recipe_file("data:\n  root: /nowhere\n"), ["model.name=unresolved_for_config"])
    finally:
        MODELS._entries.pop("unresolved_for_config", None)
    message = str(error.value)
    assert re.search(
        r"model\.name: model class [\w.]*test_config\.test_a_registered_class\w*\.<locals>\.Unresolved "
        r"has an annotation that does not resolve \(NameError: name 'UndefinedWidth' is not defined\)$",
        message,
    ), message


def test_logger_mode_disabled_is_a_training_option(recipe_file):
    recipe = load_recipe(recipe_file("data:\n  root: /nowhere\n"), ["logger.mode=disabled"])
    assert recipe.logger.mode == "disabled" and recipe.logger.name == "wandb"
