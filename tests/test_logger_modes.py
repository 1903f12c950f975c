"""`logger.mode: disabled`: no W&B run at all, whatever WANDB_MODE says; the metrics still go to CSV."""

from __future__ import annotations

from pathlib import Path

from sepzoo.io.wandb import resolve_wandb_mode
from sepzoo.training.loggers import build_logger
from sepzoo.training.train import train


def test_disabled_is_passed_through_whatever_the_environment_says(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert resolve_wandb_mode("disabled") == "disabled"
    assert resolve_wandb_mode("online") == "offline"


def test_a_disabled_wandb_logger_writes_csv_instead(tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    logger = build_logger("wandb", tmp_path, "run", mode="disabled")
    assert isinstance(logger, CSVLogger)
    assert Path(logger.log_dir) == tmp_path / "logs"


def test_training_with_wandb_disabled_starts_no_wandb_run(tiny_recipe):
    import wandb

    run_dir = train(tiny_recipe, ["logger.mode=disabled"])
    assert not (run_dir / "wandb").exists()
    assert wandb.run is None
    metrics = (run_dir / "logs" / "metrics.csv").read_text()
    assert "train/loss" in metrics.splitlines()[0]
