"""Run directories: named by what changes results (not where the data live or how they load),
found again when an earlier version named them, and locked while a process trains in them."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sepzoo.data.toy import generate_toy_musdb
from sepzoo.io.lock import folder_lock
from sepzoo.training.recipe import load_recipe
from sepzoo.training.rundir import DONE_MARKER, data_fingerprint
from sepzoo.training.train import run_directory, train

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "v0.1"


def test_the_run_hash_ignores_where_the_data_live_and_how_they_load_but_not_the_data(
    tiny_recipe, toy_root, tmp_path
):
    moved = shutil.copytree(toy_root, tmp_path / "elsewhere" / "toy")
    plain = run_directory(load_recipe(tiny_recipe))
    same = run_directory(
        load_recipe(
            tiny_recipe,
            [f"data.root={moved}", "data.num_workers=3", "data.pin_memory=true", "inference.batch_size=1"],
        )
    )
    assert plain == same
    other = tmp_path / "other"
    shutil.copytree(toy_root, other)
    next(other.rglob("vocals.wav")).unlink()
    assert data_fingerprint(other) != data_fingerprint(toy_root)
    assert run_directory(load_recipe(tiny_recipe, [f"data.root={other}"])) != plain
    assert run_directory(load_recipe(tiny_recipe, ["optimizer.lr=0.01"])) != plain


def test_a_run_killed_under_version_0_1_resumes_after_its_data_moved_and_workers_changed(tmp_path):
    # The fixture's run was trained on this toy set at /tmp/fx/toy; it now lives elsewhere.
    data = generate_toy_musdb(tmp_path / "moved" / "toy", tracks=2, test_tracks=1, seconds=2.0, seed=0)
    runs = tmp_path / "runs"
    old_run = shutil.copytree(FIXTURES / "runs" / "tiny-6d67a7f4", runs / "tiny-6d67a7f4")
    recorded = yaml.safe_load((old_run / "config.yaml").read_text())
    recorded.pop("meta")
    recorded["data"].update(root=str(data), num_workers=1)
    recorded["run"]["root"] = str(runs)
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(recorded))
    assert run_directory(load_recipe(recipe)) == old_run
    assert train(recipe, resume=True) == old_run
    assert (old_run / DONE_MARKER).is_file() and sorted(p.name for p in runs.iterdir()) == ["tiny-6d67a7f4"]


def _start_training(recipe: Path, *args: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "sepzoo.cli.main", "train", str(recipe), *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_resume_and_force_are_refused_while_another_process_trains_the_run(tiny_recipe):
    overrides = ["logger.name=csv", "trainer.max_steps=40", "train.checkpoint_every_n_steps=1"]
    run_dir = run_directory(load_recipe(tiny_recipe, overrides))
    first = _start_training(tiny_recipe, *overrides)
    deadline = time.monotonic() + 120
    while not list(run_dir.glob("checkpoints/step-*.ckpt")):
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "the first run never wrote a checkpoint"
        time.sleep(0.1)
    for flag in ("--resume", "--force"):
        second = subprocess.run(
            [sys.executable, "-m", "sepzoo.cli.main", "train", str(tiny_recipe), *overrides, flag],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode != 0
        assert second.stderr.count("\n") == 1, second.stderr
        assert f"process {first.pid} is training in this run" in second.stderr
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert (run_dir / DONE_MARKER).is_file()


def test_an_eval_folder_is_locked_while_an_evaluation_writes_it(tmp_path, toy_root):
    from sepzoo.errors import SepzooError
    from sepzoo.evaluation.evaluate import evaluate

    out = tmp_path / "eval"
    out.mkdir()
    with folder_lock(out, "evaluating into this folder"):
        # Held by this process on another descriptor: a second evaluation is refused.
        with pytest.raises(SepzooError, match=r"eval: process \d+ is evaluating into this folder"):
            evaluate("mix", root=toy_root, out=out, subset="test", progress=False)
    assert not list(out.glob("test/*.json"))


def test_a_key_added_later_renames_only_the_runs_that_use_it(tiny_recipe):
    from sepzoo.training.recipe import load_recipe
    from sepzoo.training.rundir import run_hash

    resolved = load_recipe(tiny_recipe).resolved
    assert resolved["train"]["freeze"] == []
    without = {**resolved, "train": {k: v for k, v in resolved["train"].items() if k != "freeze"}}
    assert run_hash(resolved, "data") == run_hash(without, "data")  # as runs written before it
    frozen = load_recipe(tiny_recipe, ["train.freeze=[encoder.*]"]).resolved
    assert run_hash(frozen, "data") != run_hash(resolved, "data")
