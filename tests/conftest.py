"""Shared fixtures and helpers: a small toy data set written once per session, a tiny training
recipe, and a small MUSDB data module over that set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sepzoo.data.musdb import MusdbDataModule

REPO_ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def toy_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A toy MUSDB18-HQ set: 4 training and 2 test tracks of 4 seconds."""
    from sepzoo.data.toy import generate_toy_musdb

    root = tmp_path_factory.mktemp("data") / "toy-musdb"
    return generate_toy_musdb(root, tracks=4, test_tracks=2, seconds=4.0, seed=0)


TINY_RECIPE = """\
extends: {base}
model:
  name: conv_tasnet
  encoder_filters: 16
  encoder_kernel: 32
  bottleneck_channels: 16
  hidden_channels: 24
  blocks_per_repeat: 2
  repeats: 1
  segment: 0.5
data:
  name: musdb
  root: {root}
  segment: 0.5
  batch_size: 2
  num_workers: 0
  samples_per_epoch: 8
  valid: train-tail
  valid_count: 1
  valid_max_seconds: 2.0
trainer:
  max_steps: 6
  accelerator: cpu
  precision: 32-true
  log_every_n_steps: 1
  enable_progress_bar: false
train:
  audio_examples: 1
inference:
  batch_size: 4
run:
  root: {runs}
"""


@pytest.fixture()
def tiny_recipe(tmp_path: Path, toy_root: Path) -> Path:
    """A recipe that trains a tiny Conv-TasNet for 6 steps on the toy set, into ``tmp_path/runs``."""
    path = tmp_path / "tiny.yaml"
    path.write_text(
        TINY_RECIPE.format(base=REPO_ROOT / "recipes" / "base.yaml", root=toy_root, runs=tmp_path / "runs")
    )
    return path


NO_AUGMENT = {"shift": 0.0, "channel_swap": False, "sign_flip": False, "scale": None, "remix": False}
"""Data-module keys that switch off every augmentation on by default."""


def musdb_module(root: Path, **kwargs) -> MusdbDataModule:
    """A MUSDB data module of 0.5-s segments in batches of 2 on the toy set at ``root``."""
    options = {
        "segment": 0.5,
        "batch_size": 2,
        "num_workers": 0,
        "samples_per_epoch": 8,
        "valid": "train-tail",
        "seed": 3,
        **kwargs,
    }
    return MusdbDataModule(root=str(root), **options)
