"""Slow checks, skipped by default; run them with `bash scripts/test.sh -m slow`."""

from __future__ import annotations

from pathlib import Path

import pytest

from sepzoo.data.toy import generate_toy_musdb
from sepzoo.evaluate import evaluate
from sepzoo.train import train

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_toy_conv_tasnet_recipe_beats_the_mixture_on_every_source(tmp_path):
    """What the README's main command shows, checked: about 7 minutes on 2 CPU cores."""
    root = generate_toy_musdb(tmp_path / "toy-musdb", tracks=12, test_tracks=4, seconds=12, seed=0)
    run_dir = train(
        REPO_ROOT / "recipes/toy/conv_tasnet.yaml",
        [f"data.root={root}", f"run.root={tmp_path / 'runs'}", "logger.name=csv"],
    )
    summary = evaluate(str(run_dir), root, "test", tmp_path / "eval")
    assert summary["tracks"] == 4 and summary["toy"]
    for source in ("drums", "bass", "other", "vocals"):
        gain = summary["nSDR"][source] - summary["mixture_nSDR"][source]
        assert gain > 3.0, (
            f"{source}: {summary['nSDR'][source]:.2f} dB vs mixture {summary['mixture_nSDR'][source]:.2f}"
        )
