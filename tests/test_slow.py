"""Slow checks, skipped by default; run them with `bash scripts/test.sh -m slow`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sepzoo.data.toy import generate_toy_musdb
from sepzoo.evaluation.evaluate import evaluate
from sepzoo.training.train import train

REPO_ROOT = Path(__file__).resolve().parents[1]


# The toy recipes that train on the toy MUSDB18-HQ set (the MoisesDB ones need its layout).
TOY_RECIPES = sorted(
    p
    for p in (REPO_ROOT / "recipes" / "toy").glob("*.yaml")
    if yaml.safe_load(p.read_text())["data"]["name"] == "musdb"
)


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data set of the README's main command."""
    root = tmp_path_factory.mktemp("slow") / "toy-musdb"
    return generate_toy_musdb(root, tracks=12, test_tracks=4, seconds=12, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("recipe", TOY_RECIPES, ids=lambda p: p.stem)
def test_each_toy_recipe_beats_the_mixture_on_every_source(recipe, demo_data, tmp_path):
    """Each toy recipe, trained as written (minutes on 2 CPU cores), beats the mixture by 3 dB."""
    run_dir = train(recipe, [f"data.root={demo_data}", f"run.root={tmp_path / 'runs'}", "logger.name=csv"])
    summary = evaluate(str(run_dir), demo_data, "test", tmp_path / "eval")
    assert summary["tracks"] == 4 and summary["toy"]
    for source in ("drums", "bass", "other", "vocals"):
        model, mixture = summary["nSDR"][source], summary["mixture_nSDR"][source]
        assert model - mixture > 3.0, f"{recipe.stem} {source}: {model:.2f} dB vs mixture {mixture:.2f}"
