"""Training end to end on real audio files: run directories, checkpoints, offline W&B runs with
media, resume from a mid-epoch checkpoint (bit for bit, after the data set moved and the worker
count changed), export, and DDP over two CPU processes."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from sepzoo.errors import OutputExistsError, SepzooError
from sepzoo.models.files import export_model_file, load_model_file, load_separator, safe_load
from sepzoo.training.rundir import DONE_MARKER
from sepzoo.training.train import train

REPO_ROOT = Path(__file__).resolve().parents[1]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as stream:
        return list(csv.DictReader(stream))


def test_fit_writes_checkpoints_config_and_an_offline_wandb_run_with_media(tiny_recipe):
    run_dir = train(tiny_recipe)
    assert (run_dir / DONE_MARKER).is_file()
    assert {"best.ckpt", "last.ckpt"} <= {p.name for p in (run_dir / "checkpoints").iterdir()}

    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["model"]["name"] == "conv_tasnet"
    assert config["meta"]["config_hash"] == run_dir.name.rsplit("-", 1)[1]
    assert {"torch", "lightning", "musdb", "wandb"} <= set(config["meta"]["packages"])
    assert config["meta"]["git_commit"]

    offline_runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1
    media = offline_runs[0] / "files" / "media"
    audio = list(media.rglob("*.wav"))
    images = list(media.rglob("*.png"))
    assert len(audio) == 3 * 4, "mixture, estimate and reference for each of the 4 sources"
    assert len(images) == 4
    # The W&B run config (kept in the run's record file until `wandb sync`) holds the resolved recipe.
    records = (offline_runs[0] / f"run-{run_dir.name}.wandb").read_bytes()
    assert config["meta"]["config_hash"].encode() in records and b"encoder_filters" in records

    checkpoint = safe_load(run_dir / "checkpoints" / "last.ckpt")
    assert checkpoint["global_step"] == 6
    assert checkpoint["sepzoo"]["model"]["name"] == "conv_tasnet"
    assert "optimizer_states" in checkpoint and checkpoint["optimizer_states"]


def test_finished_run_is_kept_unless_forced(tiny_recipe):
    run_dir = train(tiny_recipe, ["logger.name=csv"])
    stamp = (run_dir / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    with pytest.raises(OutputExistsError, match="already finished"):
        train(tiny_recipe, ["logger.name=csv"])
    with pytest.raises(SepzooError, match="already finished"):
        train(tiny_recipe, ["logger.name=csv"], resume=True)
    assert (run_dir / "checkpoints" / "last.ckpt").stat().st_mtime_ns == stamp
    assert train(tiny_recipe, ["logger.name=csv"], force=True) == run_dir
    assert (run_dir / DONE_MARKER).is_file()


def test_resume_with_nothing_to_resume_is_refused(tiny_recipe):
    with pytest.raises(SepzooError, match="nothing to resume"):
        train(tiny_recipe, ["logger.name=csv"], resume=True)


class _SimulatedCrash(RuntimeError):
    pass


class _StopAfter:
    """A callback that crashes training after a given step, as a lost machine would."""

    def __init__(self, step: int) -> None:
        from lightning.pytorch.callbacks import Callback

        stop_step = step

        class Stop(Callback):
            def on_train_batch_end(self, trainer, *args):
                if trainer.global_step >= stop_step:
                    raise _SimulatedCrash(f"stopped after step {stop_step}")

        self.callback = Stop()


def _final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    checkpoint = safe_load(run_dir / "checkpoints" / "last.ckpt")
    assert checkpoint["global_step"] == 6
    state = {k: v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    return {**state, **{f"ema.{k}": v for k, v in checkpoint["sepzoo"]["ema"]["state"].items()}}


def test_resume_continues_mid_epoch_exactly_as_an_uninterrupted_run(
    tiny_recipe, toy_root, tmp_path, monkeypatch
):
    import sepzoo.training.train as train_module

    overrides = [
        "logger.name=csv",
        "train.checkpoint_every_n_steps=1",
        "train.ema_decay=0.9",
        "scheduler.name=cosine",
        "scheduler.total_steps=6",
    ]
    straight = train(tiny_recipe, [*overrides, f"run.root={tmp_path / 'straight'}"])

    build_callbacks = train_module.build_callbacks
    monkeypatch.setattr(
        train_module, "build_callbacks", lambda *args: [*build_callbacks(*args), _StopAfter(3).callback]
    )
    resumed_overrides = [*overrides, f"run.root={tmp_path / 'resumed'}"]
    with pytest.raises(_SimulatedCrash):
        train(tiny_recipe, resumed_overrides)
    monkeypatch.setattr(train_module, "build_callbacks", build_callbacks)

    run_dir = tmp_path / "resumed" / straight.name
    assert not (run_dir / DONE_MARKER).exists(), "an interrupted run must not look finished"
    with pytest.raises(OutputExistsError, match="--resume"):
        train(tiny_recipe, resumed_overrides)
    # Resumed on another node, as it were: the data set mounted elsewhere, another worker count.
    moved = shutil.copytree(toy_root, tmp_path / "mounted-elsewhere" / "toy")
    elsewhere = [*resumed_overrides, f"data.root={moved}", "data.num_workers=1"]
    assert train(tiny_recipe, elsewhere, resume=True) == run_dir
    assert (run_dir / DONE_MARKER).is_file()

    # The crash came after step 3's update but before its checkpoint: the run resumes at step 2.
    before = read_csv(run_dir / "logs" / "metrics.before-resume-1.csv")
    after = read_csv(run_dir / "logs" / "metrics.csv")
    resumed_at = min(int(row["step"]) for row in after if row.get("train/loss"))
    steps = [int(row["step"]) for row in before if row.get("train/loss") and int(row["step"]) < resumed_at]
    steps += [int(row["step"]) for row in after if row.get("train/loss")]
    assert steps == [0, 1, 2, 3, 4, 5], "each step ran once: none repeated, none skipped"
    expected, actual = _final_weights(straight), _final_weights(run_dir)
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.equal(actual[key], expected[key]), f"{key}: the resumed weights differ"


def test_export_uses_ema_weights_and_matches_the_checkpoint(tiny_recipe, tmp_path):
    run_dir = train(tiny_recipe, ["logger.name=csv", "train.ema_decay=0.5"])
    out, used_ema = export_model_file(run_dir, tmp_path / "model.sepzoo")
    assert used_ema
    with pytest.raises(OutputExistsError):
        export_model_file(run_dir, out)
    exported = load_model_file(out).eval()
    from_checkpoint = load_separator(run_dir / "checkpoints" / "best.ckpt").eval()
    checkpoint = safe_load(run_dir / "checkpoints" / "best.ckpt")
    for key, value in checkpoint["sepzoo"]["ema"]["state"].items():
        torch.testing.assert_close(exported.state_dict()[key], value)
    mix = torch.randn(1, 2, 5000)
    with torch.no_grad():
        torch.testing.assert_close(exported(mix), from_checkpoint(mix))


def _run_cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sepzoo.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


def test_ddp_over_two_cpu_processes_scores_each_validation_track_once(tiny_recipe):
    done = _run_cli(
        "train",
        str(tiny_recipe),
        "trainer.strategy=ddp",
        "trainer.devices=2",
        "trainer.accelerator=cpu",
        "data.valid_count=3",
        "logger.name=csv",
        "trainer.max_steps=4",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = Path(done.stdout.split("run directory:")[1].split()[0])
    assert (run_dir / DONE_MARKER).is_file()
    metrics = read_csv(run_dir / "logs" / "metrics.csv")
    tracks = [float(row["valid/tracks"]) for row in metrics if row.get("valid/tracks")]
    assert tracks and all(count == 3 for count in tracks), "3 tracks over 2 ranks: each scored exactly once"
    assert safe_load(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 4


def test_fine_tuning_starts_from_a_model_file_and_refuses_another_model(tiny_recipe, tmp_path):
    from sepzoo.errors import CheckpointError
    from sepzoo.models import create_model
    from sepzoo.models.files import save_model_file
    from sepzoo.training.recipe import load_recipe
    from sepzoo.training.train import build_components

    recipe = load_recipe(tiny_recipe)
    torch.manual_seed(7)
    donor = create_model("conv_tasnet", **recipe.model.kwargs)
    path = save_model_file(donor, tmp_path / "donor.sepzoo")
    _, task = build_components(load_recipe(tiny_recipe, [f"train.init_from={path}"]))
    for key, value in donor.state_dict().items():
        torch.testing.assert_close(task.model.state_dict()[key], value, rtol=0, atol=0)
    other = save_model_file(
        create_model("conv_tasnet", encoder_filters=8, encoder_kernel=4), tmp_path / "o.sepzoo"
    )
    with pytest.raises(
        CheckpointError, match="does not fit.*shape mismatch: encoder.conv.weight.*init_strict"
    ):
        build_components(load_recipe(tiny_recipe, [f"train.init_from={other}"]))


def test_partial_fine_tuning_to_another_source_list_reports_what_it_kept(tiny_recipe, tmp_path, caplog):
    import logging

    from sepzoo.errors import CheckpointError
    from sepzoo.models import create_model
    from sepzoo.models.files import save_model_file
    from sepzoo.training.recipe import load_recipe
    from sepzoo.training.train import build_components

    recipe = load_recipe(tiny_recipe)
    kwargs = {**recipe.model.kwargs, "sources": ["vocals", "accompaniment"]}
    torch.manual_seed(3)
    donor = create_model("conv_tasnet", **kwargs)
    path = save_model_file(donor, tmp_path / "two_stems.sepzoo")
    with pytest.raises(CheckpointError, match=r"shape mismatch: mask_estimator\.mask_conv\.weight"):
        build_components(load_recipe(tiny_recipe, [f"train.init_from={path}"]))
    overrides = [f"train.init_from={path}", "train.init_strict=false"]
    caplog.set_level(logging.INFO, logger="sepzoo")
    _, task = build_components(load_recipe(tiny_recipe, overrides))
    report = caplog.text
    assert "tensors loaded" in report and "shape mismatch: mask_estimator.mask_conv.weight" in report
    for key, value in donor.state_dict().items():
        if key != "mask_estimator.mask_conv.weight":
            torch.testing.assert_close(task.model.state_dict()[key], value, rtol=0, atol=0)


def test_resuming_from_a_damaged_checkpoint_is_one_line(tiny_recipe):
    run_dir = train(tiny_recipe, ["logger.name=csv", "trainer.max_steps=2"])
    (run_dir / DONE_MARKER).unlink()
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"\x00" * 100)
    for extra in (run_dir / "checkpoints").glob("best*.ckpt"):
        extra.unlink()
    with pytest.raises(SepzooError, match="last.ckpt: not a readable checkpoint"):
        train(tiny_recipe, ["logger.name=csv", "trainer.max_steps=2"], resume=True)


@pytest.mark.parametrize("kind", ["csv", "tensorboard"])
def test_csv_and_tensorboard_loggers_keep_metrics_and_examples(tiny_recipe, kind):
    run_dir = train(tiny_recipe, [f"logger.name={kind}", "trainer.max_steps=4"])
    logs = run_dir / "logs"
    if kind == "csv":
        rows = read_csv(logs / "metrics.csv")
        assert any(row.get("valid/nSDR_vocals") for row in rows)
        assert len(list((logs / "media").rglob("*.wav"))) == 3 * 4
        assert len(list((logs / "media").rglob("*.png"))) == 4
    else:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(logs), size_guidance={"audio": 0, "images": 0}).Reload()
        assert "valid/nSDR_vocals" in events.Tags()["scalars"]
        assert len(events.Tags()["audio"]) == 3 * 4
        assert len(events.Tags()["images"]) == 4


def test_one_target_models_train_on_the_full_mixture_and_join_a_bag(tiny_recipe, tmp_path, toy_root):
    from sepzoo.evaluation.evaluate import evaluate
    from sepzoo.models.bag import BagOfModels
    from sepzoo.models.files import save_model_file

    members = []
    for target in ("vocals", "drums"):
        run_dir = train(tiny_recipe, [f"targets=[{target}]", "logger.name=csv"])
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert config["targets"] == [target] and config["model"]["sources"] == [target]
        assert config["data"]["sources"] == ["drums", "bass", "other", "vocals"]
        history = read_csv(next(run_dir.rglob("metrics.csv")))
        assert any(row.get(f"valid/nSDR_{target}") for row in history)
        model = load_separator(run_dir)
        assert model.sources == [target]
        summary = evaluate(str(run_dir), toy_root, "test", tmp_path / f"eval-{target}")
        # The mixture is the sum of all four stems, not of the one target.
        assert list(summary["nSDR"]) == [target]
        assert summary["mixture_nSDR"][target] < 0
        members.append(model)
    bag_file = save_model_file(BagOfModels(members, sources=["drums", "vocals"]), tmp_path / "bag.sepzoo")
    bag = load_model_file(bag_file)
    assert bag.sources == ["drums", "vocals"] and bag.weights == [[0.0, 1.0], [1.0, 0.0]]
    summary = evaluate(str(bag_file), toy_root, "test", tmp_path / "eval-bag")
    assert list(summary["nSDR"]) == ["drums", "vocals"]


def test_targets_outside_the_sources_are_refused_before_any_work(tiny_recipe):
    from sepzoo.errors import ConfigError
    from sepzoo.training.recipe import load_recipe

    with pytest.raises(
        ConfigError, match=r"targets: 'vocal' is not one of the sources .*did you mean 'vocals'"
    ):
        load_recipe(tiny_recipe, ["targets=[vocal]"])
    with pytest.raises(ConfigError, match="targets: target names must be unique"):
        load_recipe(tiny_recipe, ["targets=[bass,bass]"])


def test_frozen_parameters_keep_their_values_while_the_rest_train(tiny_recipe, tmp_path):
    from sepzoo.models import create_model
    from sepzoo.models.files import save_model_file
    from sepzoo.training.recipe import load_recipe

    recipe = load_recipe(tiny_recipe)
    torch.manual_seed(7)
    start = create_model("conv_tasnet", **recipe.model.kwargs)
    path = save_model_file(start, tmp_path / "start.sepzoo")
    overrides = [f"train.init_from={path}", "train.freeze=[encoder.*, decoder.*]", "train.ema_decay=0.9"]
    final = _final_weights(train(tiny_recipe, ["logger.name=csv", *overrides]))
    frozen = [key for key in start.state_dict() if key.startswith(("encoder.", "decoder."))]
    assert len(frozen) == 2
    for key, value in start.state_dict().items():
        if key in frozen:  # it keeps its value, and the average, of what trains, leaves it out
            torch.testing.assert_close(final[f"model.{key}"], value, rtol=0, atol=0)
            assert f"ema.{key}" not in final
        else:
            assert not torch.equal(final[f"model.{key}"], value), f"{key} did not train"


def test_freeze_patterns_that_match_nothing_or_everything_are_refused(tiny_recipe):
    from sepzoo.training.recipe import load_recipe
    from sepzoo.training.train import build_components

    with pytest.raises(
        SepzooError, match=r"train.freeze: 'encodr.\*' matches no parameter.*'encoder.conv.weight'"
    ):
        build_components(load_recipe(tiny_recipe, ["train.freeze=[encodr.*]"]))
    with pytest.raises(
        SepzooError, match=r"train.freeze: \['\*'\] match every parameter; nothing would train"
    ):
        build_components(load_recipe(tiny_recipe, ["train.freeze=['*']"]))
