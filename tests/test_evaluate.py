"""``sepzoo eval``: museval-format results that museval itself loads and agrees with, scores of
estimates written by another program, resuming, and the bad inputs of the evaluation table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import museval
import numpy as np
import pytest
import soundfile as sf
from cli_helpers import assert_one_line_error, run

from sepzoo.cli.main import main

MUSDB_STEMS = ("vocals", "drums", "bass", "other")


def stems_of(track_folder: Path) -> dict[str, np.ndarray]:
    return {s: sf.read(track_folder / f"{s}.wav", dtype="float64")[0] for s in MUSDB_STEMS}


def write_estimates(
    root: Path, out: Path, sources=MUSDB_STEMS, seed: int = 0
) -> dict[str, dict[str, np.ndarray]]:
    """Estimates as another program would write them: each stem with some noise and some leakage
    of the next stem, 16-bit, one second of silence in one of them."""
    rng = np.random.default_rng(seed)
    written = {}
    for track_folder in sorted((root / "test").iterdir()):
        stems = stems_of(track_folder)
        estimates = {}
        for index, source in enumerate(sources):
            leak = stems[MUSDB_STEMS[(MUSDB_STEMS.index(source) + 1) % 4]]
            estimate = stems[source] + 0.2 * leak + 0.01 * rng.standard_normal(stems[source].shape)
            if index == 1:
                estimate[44100:88200] = 0
            estimate = np.round(np.clip(estimate, -1, 1) * 32767) / 32767
            (out / track_folder.name).mkdir(parents=True, exist_ok=True)
            path = out / track_folder.name / f"{source}.wav"
            sf.write(path, estimate, 44100, subtype="PCM_16")
            estimates[source] = sf.read(path, dtype="float64")[0]  # the very samples sepzoo reads
        written[track_folder.name] = estimates
    return written


def frames_of(path: Path) -> dict[str, dict[str, np.ndarray]]:
    data = json.loads(path.read_text())
    return {
        target["name"]: {
            metric: np.array(
                [np.nan if f["metrics"][metric] is None else f["metrics"][metric] for f in target["frames"]]
            )
            for metric in ("SDR", "SIR", "ISR", "SAR")
        }
        for target in data["targets"]
    }


@pytest.fixture(scope="module")
def irm2_eval(toy_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("eval") / "irm2"
    assert main(["eval", "-n", "irm2", "--root", str(toy_root), "-o", str(out)]) == 0
    return out


def test_oracle_results_load_in_museval_stores_with_the_same_aggregates(irm2_eval):
    import jsonschema

    schema = json.loads((Path(museval.__path__[0]) / "musdb.schema.json").read_text())
    files = sorted((irm2_eval / "test").glob("*.json"))
    assert len(files) == 2
    for path in files:
        jsonschema.validate(json.loads(path.read_text()), schema)

    store = museval.EvalStore()
    store.add_eval_dir(str(irm2_eval))
    assert set(store.df["track"]) == {p.stem for p in files}
    medians = store.agg_frames_tracks_scores()
    summary = json.loads((irm2_eval / "summary.json").read_text())
    for source in ("drums", "bass", "other", "vocals"):
        for metric in ("SDR", "SIR", "ISR", "SAR"):
            assert medians[(source, metric)] == pytest.approx(
                summary["bsseval"][metric]["median"][source], abs=1e-4
            )
        assert summary["bsseval"]["SDR"]["median"][source] > 5  # an oracle separates the toy stems well
        assert math.isfinite(summary["nSDR"][source]) and summary["mixture_nSDR"][source] < 0
    methods = museval.MethodStore()
    methods.add_eval_dir(str(irm2_eval))
    assert set(methods.df["method"]) == {"irm2"}
    table = (irm2_eval / "table.txt").read_text()
    for label in ("cSDR med", "cSDR mean", "nSDR", "SI-SDR", "SD-SDR", "mix nSDR", "smoke test"):
        assert label in table


def test_estimates_written_by_another_program_score_as_museval_scores_them(capsys, toy_root, tmp_path):
    import musdb

    estimates_dir = tmp_path / "other-system"
    written = write_estimates(toy_root, estimates_dir / "test")
    out = tmp_path / "scores"
    code, stdout, err = run(
        capsys, "eval", "--estimates", str(estimates_dir), "--root", str(toy_root), "-o", str(out)
    )
    assert code == 0, err
    assert "cSDR med" in stdout

    db = musdb.DB(root=str(toy_root), is_wav=True, subsets="test")
    for track in db.tracks:
        expected = museval.eval_mus_track(track, written[track.name])
        ours = frames_of(out / "test" / f"{track.name}.json")
        assert set(ours) == set(MUSDB_STEMS)
        for target in expected.scores["targets"]:
            for metric in ("SDR", "SIR", "ISR", "SAR"):
                theirs = np.array([float(f["metrics"][metric]) for f in target["frames"]])
                got = ours[target["name"]][metric]
                np.testing.assert_array_equal(
                    np.isnan(got), np.isnan(theirs), err_msg=f"{track.name} {metric}"
                )
                np.testing.assert_allclose(
                    got, theirs, atol=0.01, err_msg=f"{track.name} {target['name']} {metric}"
                )
        # the second source's silent second makes that frame NaN for every source, as museval has it
        assert all(np.isnan(ours[s]["SDR"][1]) for s in MUSDB_STEMS)
    summary = json.loads((out / "summary.json").read_text())
    assert all(math.isfinite(summary["nSDR"][s]) for s in MUSDB_STEMS)


def test_a_vocals_only_estimate_is_scored_against_the_rest_as_accompaniment(capsys, toy_root, tmp_path):
    import musdb

    estimates_dir = tmp_path / "vocals-only"
    written = write_estimates(toy_root, estimates_dir, sources=("vocals",), seed=1)
    out = tmp_path / "scores"
    code, _, err = run(
        capsys, "eval", "--estimates", str(estimates_dir), "--root", str(toy_root), "-o", str(out)
    )
    assert code == 0, err
    db = musdb.DB(root=str(toy_root), is_wav=True, subsets="test")
    track = db.tracks[0]
    vocals = written[track.name]["vocals"]
    expected = museval.eval_mus_track(track, {"vocals": vocals, "accompaniment": track.audio - vocals})
    ours = frames_of(out / "test" / f"{track.name}.json")
    assert list(ours) == ["vocals"]
    theirs = next(t for t in expected.scores["targets"] if t["name"] == "vocals")
    np.testing.assert_allclose(
        ours["vocals"]["SDR"], [float(f["metrics"]["SDR"]) for f in theirs["frames"]], atol=0.01
    )


def test_an_interrupted_evaluation_resumes_and_another_one_is_refused(capsys, toy_root, tmp_path):
    out = tmp_path / "ev"
    code, _, err = run(capsys, "eval", "-n", "ibm1", "--root", str(toy_root), "-o", str(out), "--tracks", "1")
    assert code == 0, err
    (first,) = (out / "test").glob("*.json")
    before = first.read_text()
    first.touch()
    stamp = first.stat().st_mtime_ns
    code, stdout, err = run(capsys, "eval", "-n", "ibm1", "--root", str(toy_root), "-o", str(out))
    assert code == 0, err
    assert "1 track(s) were already scored in" in stdout
    assert first.stat().st_mtime_ns == stamp and first.read_text() == before
    assert len(list((out / "test").glob("*.json"))) == 2
    assert json.loads((out / "summary.json").read_text())["tracks"] == 2

    code, _, err = run(capsys, "eval", "-n", "irm1", "--root", str(toy_root), "-o", str(out))
    assert_one_line_error(code, err, str(out), "another evaluation", "--force")
    assert first.read_text() == before
    code, _, err = run(capsys, "eval", "-n", "irm1", "--root", str(toy_root), "-o", str(out), "--force")
    assert code == 0, err
    assert json.loads(first.read_text())["sepzoo"]["model"] == "irm1"


def test_a_per_track_file_that_breaks_its_shape_is_named_and_scored_again(capsys, toy_root, tmp_path):
    out = tmp_path / "ev"
    args = ("eval", "-n", "ibm1", "--root", str(toy_root), "-o", str(out), "--tracks", "1")
    code, _, err = run(capsys, *args)
    assert code == 0, err
    (first,) = (out / "test").glob("*.json")
    data = json.loads(first.read_text())
    data["sepzoo"]["nSDRR"] = data["sepzoo"].pop("nSDR")
    first.write_text(json.dumps(data))
    code, stdout, err = run(capsys, *args)
    assert code == 0, err
    assert f"{first}: unknown key 'sepzoo.nSDRR'" in err and "did you mean 'sepzoo.nSDR'" in err
    assert "scoring the track again" in err and "already scored" not in stdout
    assert json.loads(first.read_text())["sepzoo"]["nSDR"]


def test_saved_estimates_score_the_same_when_read_back(capsys, toy_root, tmp_path, irm2_eval):
    out = tmp_path / "saved"
    code, _, err = run(
        capsys, "eval", "-n", "irm2", "--root", str(toy_root), "-o", str(out), "--save-estimates"
    )
    assert code == 0, err
    estimates = out / "estimates"
    assert len(list(estimates.glob("test/*/vocals.wav"))) == 2
    code, _, err = run(
        capsys, "eval", "--estimates", str(estimates), "--root", str(toy_root), "-o", str(tmp_path / "again")
    )
    assert code == 0, err
    first = json.loads((irm2_eval / "summary.json").read_text())
    again = json.loads((tmp_path / "again" / "summary.json").read_text())
    for source in MUSDB_STEMS:
        assert again["bsseval"]["SDR"]["median"][source] == pytest.approx(
            first["bsseval"]["SDR"]["median"][source], abs=1e-3
        )


def test_results_go_to_a_wandb_table(capsys, toy_root, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "wb"
    code, stdout, err = run(
        capsys, "eval", "-n", "mix", "--root", str(toy_root), "-o", str(out), "--wandb", "--tracks", "1"
    )
    assert code == 0, err
    tables = list(out.glob("wandb/offline-run-*/files/media/table/eval/*.table.json"))
    assert {p.name.split("_")[0] for p in tables} == {"per", "summary"}, tables
    per_track = json.loads(next(p for p in tables if p.name.startswith("per")).read_text())
    assert len(per_track["data"]) == 4 and "cSDR" in per_track["columns"]


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        ("short", ("vocals.wav", "samples", "as long as the track")),
        ("missing", ("drums", "every track needs the same estimates")),
        ("rate", ("vocals.wav", "sample rate 22050 Hz")),
        ("mono", ("vocals.wav", "1 channel(s)")),
        ("broken", ("vocals.wav", "not a readable audio file")),
    ],
)
def test_estimates_that_do_not_fit_the_references_are_refused(capsys, toy_root, tmp_path, change, fragments):
    estimates_dir = tmp_path / "est"
    write_estimates(toy_root, estimates_dir)
    second = sorted(estimates_dir.iterdir())[1]
    vocals = second / "vocals.wav"
    data, rate = sf.read(vocals)
    if change == "short":
        sf.write(vocals, data[:-100], rate)
    elif change == "missing":
        (second / "drums.wav").unlink()
    elif change == "rate":
        sf.write(vocals, data[::2], 22050)
    elif change == "mono":
        sf.write(vocals, data[:, 0], rate)
    else:
        vocals.write_bytes(b"RIFF\x00\x00 not a wav")
    out = tmp_path / "scores"
    code, _, err = run(
        capsys, "eval", "--estimates", str(estimates_dir), "--root", str(toy_root), "-o", str(out)
    )
    assert_one_line_error(code, err, *fragments)
    assert not list((out / "test").glob(f"{second.name}.json"))


def test_an_output_folder_that_cannot_be_written_is_refused_before_scoring(capsys, toy_root, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, _, err = run(capsys, "eval", "-n", "irm2", "--root", str(toy_root), "-o", str(blocker / "out"))
    assert_one_line_error(code, err, str(blocker / "out"), "cannot")


def test_a_model_and_estimates_together_or_neither_are_refused(capsys, toy_root, tmp_path):
    code, _, err = run(capsys, "eval", "--root", str(toy_root), "-o", str(tmp_path / "x"))
    assert_one_line_error(code, err, "-n MODEL", "--estimates")
    code, _, err = run(
        capsys,
        "eval",
        "-n",
        "irm2",
        "--estimates",
        str(tmp_path),
        "--root",
        str(toy_root),
        "-o",
        str(tmp_path / "x"),
    )
    assert_one_line_error(code, err, "-n MODEL", "--estimates")


def test_new_weights_at_the_same_path_are_not_resumed_as_the_old_ones(capsys, toy_root, tmp_path):
    import torch

    from sepzoo.models import create_model, get_model_class
    from sepzoo.models.files import save_model_file

    path = tmp_path / "model.sepzoo"
    kwargs = get_model_class("conv_tasnet").test_kwargs
    torch.manual_seed(0)
    save_model_file(create_model("conv_tasnet", **kwargs), path)
    out = tmp_path / "ev"
    assert (
        run(capsys, "eval", "-n", str(path), "--root", str(toy_root), "-o", str(out), "--tracks", "1")[0] == 0
    )
    torch.manual_seed(1)
    save_model_file(create_model("conv_tasnet", **kwargs), path, force=True)
    code, _, err = run(capsys, "eval", "-n", str(path), "--root", str(toy_root), "-o", str(out))
    assert_one_line_error(code, err, "another evaluation")


def test_musdb18_stem_files_are_scored_through_musdb(capsys, tmp_path):
    stempeg = pytest.importorskip("stempeg")
    root = tmp_path / "musdb18"
    (root / "test").mkdir(parents=True)
    rng = np.random.default_rng(0)
    streams = (0.1 * rng.standard_normal((5, 2 * 44100, 2))).astype(np.float32)
    streams[0] = streams[1:].sum(axis=0)
    writer = stempeg.StreamsWriter(codec="aac", bitrate=256000)
    stempeg.write_stems(
        str(root / "test" / "Artist - Song.stem.mp4"), streams, sample_rate=44100, writer=writer
    )
    out = tmp_path / "scores"
    code, _, err = run(capsys, "eval", "-n", "irm2", "--root", str(root), "-o", str(out))
    assert code == 0, err
    store = museval.EvalStore()
    store.add_eval_dir(str(out))
    assert set(store.df["track"]) == {"Artist - Song"}
    assert set(store.df["target"]) == set(MUSDB_STEMS)


def test_a_silent_stem_gives_nan_frames_and_finite_track_scores(capsys, toy_root, tmp_path):
    import musdb

    root = tmp_path / "silent"
    source_track = sorted((toy_root / "test").iterdir())[0]
    track = root / "test" / source_track.name
    track.mkdir(parents=True)
    stems = stems_of(source_track)
    stems["vocals"][:] = 0.0  # an instrumental: the vocals stem is digital silence
    for name, stem in stems.items():
        sf.write(track / f"{name}.wav", stem, 44100, subtype="PCM_16")
    sf.write(track / "mixture.wav", sum(stems.values()), 44100, subtype="PCM_16")
    out = tmp_path / "scores"
    code, _, err = run(capsys, "eval", "-n", "irm2", "--root", str(root), "-o", str(out), "--save-estimates")
    assert code == 0, err
    ours = frames_of(out / "test" / f"{track.name}.json")
    estimates = {s: sf.read(out / "estimates" / "test" / track.name / f"{s}.wav")[0] for s in MUSDB_STEMS}
    assert all(np.isfinite(e).all() for e in estimates.values())
    # museval refuses a track with an all-silent reference outright; its per-frame rule (NaN
    # where any reference is silent) makes every frame of every source NaN, which sepzoo reports.
    with pytest.raises(ValueError, match="non-silent"):
        museval.eval_mus_track(musdb.DB(root=str(root), is_wav=True, subsets="test").tracks[0], estimates)
    for source in MUSDB_STEMS:
        assert all(np.isnan(ours[source][metric]).all() for metric in ("SDR", "SIR", "ISR", "SAR"))
    summary = json.loads((out / "summary.json").read_text())
    assert math.isnan(summary["bsseval"]["SDR"]["median"]["vocals"])
    assert all(math.isfinite(summary["nSDR"][s]) for s in MUSDB_STEMS)
    assert "nan" in (out / "table.txt").read_text()


def test_a_disk_that_fills_mid_write_leaves_no_half_written_results(toy_root, tmp_path):
    import resource
    import signal
    import subprocess
    import sys

    def small_disk() -> None:  # writes past 4 kB fail with EFBIG, as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    out = tmp_path / "scores"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sepzoo.cli.main",
            "eval",
            "-n",
            "irm2",
            "--root",
            str(toy_root),
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        preexec_fn=small_disk,
    )
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("sepzoo eval: error:") and ".json" in last and "could not be written" in last
    assert not list((out / "test").glob("*.json")), "no per-track file may look complete"
    assert not list(out.rglob("*.part"))


@pytest.mark.parametrize(
    ("keep", "fragments"),
    [(0.5, ("bass.wav", "frames but", "same length")), (None, ("bass.wav", "not a readable"))],
)
def test_a_truncated_or_broken_stem_in_the_data_set_is_named(capsys, toy_root, tmp_path, keep, fragments):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(toy_root / "test", root / "test")
    stem = sorted((root / "test").iterdir())[1] / "bass.wav"
    size = stem.stat().st_size
    with open(stem, "r+b") as handle:
        handle.truncate(int(size * keep) if keep else 30)
    out = tmp_path / "scores"
    code, _, err = run(capsys, "eval", "-n", "irm2", "--root", str(root), "-o", str(out))
    assert_one_line_error(code, err, *fragments)
    assert not (out / "test").exists() or not list((out / "test").glob("*.json"))


def test_the_weights_digest_covers_scalar_buffers_such_as_batch_norm_counters():
    import torch

    from sepzoo.evaluation.evaluate import _fingerprint

    layer = torch.nn.BatchNorm1d(4)  # holds a 0-dimensional int64 counter
    before = _fingerprint(layer)
    layer.num_batches_tracked += 1
    assert _fingerprint(layer) != before


NOT_FOR_SCORING = (
    "torchmetrics",
    "lightning",
    "lightning_utilities",
    "pytorch_lightning",
    "wandb",
    "matplotlib",
    "musdb",
    "stempeg",
    "julius",
    "scipy.signal",
)
"""Libraries of training, logging, plotting and MUSDB18's stem files, which scoring WAV estimates
does not need: torchmetrics alone, with the scipy.signal and matplotlib it brings along, took one
to two seconds to import."""


def test_scoring_estimates_on_disk_imports_no_training_or_plotting_library(toy_root, tmp_path):
    import subprocess
    import sys

    estimates_dir = tmp_path / "estimates"
    write_estimates(toy_root, estimates_dir / "test")
    out, modules = tmp_path / "scores", tmp_path / "modules.json"
    argv = ["sepzoo", "eval", "--estimates", str(estimates_dir), "--root", str(toy_root), "-o", str(out)]
    # The whole command in a fresh interpreter, as a user runs it; what it imported is written
    # when that interpreter exits.
    script = (
        "import atexit, json, runpy, sys\n"
        f"atexit.register(lambda: open({str(modules)!r}, 'w').write(json.dumps(sorted(sys.modules))))\n"
        f"sys.argv = {argv!r}\n"
        "runpy.run_module('sepzoo.cli.main', run_name='__main__')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "cSDR med" in done.stdout and len(list((out / "test").glob("*.json"))) == 2
    imported = set(json.loads(modules.read_text()))
    assert "torch" in imported  # the check itself: the interpreter's modules were recorded
    loaded = [name for name in NOT_FOR_SCORING if name in imported]  # a package's modules load it too
    assert not loaded, f"`sepzoo eval --estimates` imported {loaded}"
