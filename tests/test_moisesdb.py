"""MoisesDB as a registered data set, on the synthetic set in its layout: songs found from either
root, per-instrument tracks summed into any sources (the loader's four- and six-stem mixes and a
routed sub-stem), missing stems as silence counted in one log line, a deterministic split with
list overrides, a cache that is made once, one-line errors, and a recipe that trains and scores."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from cli_helpers import assert_one_line_error, run
from conftest import TINY_RECIPE

from sepzoo.data.moisesdb import MoisesDbDataModule
from sepzoo.data.moisesdb_songs import (
    MOISESDB_STEMS,
    StemRouting,
    find_songs,
    hashed_test_songs,
    read_song,
)
from sepzoo.data.toy_moisesdb import PROVIDER, generate_toy_moisesdb
from sepzoo.data.tracks import read_stems
from sepzoo.errors import ConfigError, DataError, OutputExistsError
from sepzoo.training.rundir import DONE_MARKER, data_fingerprint

REPO_ROOT = Path(__file__).resolve().parents[1]
SIX = ["vocals", "guitar", "piano", "bass", "drums", "other"]
ROUTED = {"drums": ["drums", "percussion/a-tonal*"]}
"""Six sources with a-tonal percussion counted as drums (the toy recipe's)."""
SONGS = 6
FOUR = ["drums", "bass", "other", "vocals"]


@pytest.fixture(scope="module")
def moises_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six toy songs of 2 seconds in MoisesDB's layout."""
    return generate_toy_moisesdb(tmp_path_factory.mktemp("data") / "toy-moisesdb", songs=SONGS, seconds=2.0)


def module(root: Path, **kwargs) -> MoisesDbDataModule:
    options = {"segment": 0.5, "batch_size": 2, "num_workers": 0, "samples_per_epoch": 4, "valid": "none"}
    return MoisesDbDataModule(root=str(root), **{**options, **kwargs})


def records(root: Path) -> dict[str, dict]:
    """Each song's data.json, by song id."""
    return {path.parent.name: json.loads(path.read_text()) for path in root.glob(f"{PROVIDER}/*/data.json")}


def stem_sum(root: Path, song_id: str, keep) -> np.ndarray:
    """The sum of a song's track files whose ``(stem, track type)`` ``keep`` accepts, ``[2, T]``."""
    total = np.zeros((2, 2 * 44100))
    for stem in records(root)[song_id]["stems"]:
        for track in stem["tracks"]:
            if keep(stem["stemName"], track["trackType"]):
                path = root / PROVIDER / song_id / stem["stemName"] / f"{track['id']}.{track['extension']}"
                audio, _ = sf.read(path, dtype="float64", always_2d=True)
                total += np.broadcast_to(audio.T, (2, audio.shape[0]))  # mono files count on both sides
    return total


def whole_song(datamodule: MoisesDbDataModule, song_id: str) -> torch.Tensor:
    track = next(t for t in datamodule.train_tracks if t.name == song_id)
    return read_stems(track, datamodule.sources, 0, track.frames, 44100, 2)


# -- the toy set ----------------------------------------------------------------------------------


def test_the_toy_set_has_the_layout_and_taxonomy_of_moisesdb(moises_root):
    found = records(moises_root)
    assert len(found) == SONGS
    stems_per_song = []
    for song_id, record in found.items():
        assert {"artist", "song", "genre", "stems"} <= set(record)
        for stem in record["stems"]:
            for track in stem["tracks"]:
                assert set(track) == {"id", "trackType", "extension", "has_bleed"}
                assert track["trackType"] in MOISESDB_STEMS[stem["stemName"]]
                path = moises_root / PROVIDER / song_id / stem["stemName"] / f"{track['id']}.wav"
                assert sf.info(str(path)).subtype == "PCM_16"
        stems_per_song.append({s["stemName"]: len(s["tracks"]) for s in record["stems"]})
    assert any(count > 1 for stems in stems_per_song for count in stems.values()), "a stem with sub-stems"
    assert any("bass" not in stems for stems in stems_per_song) and any(
        "drums" not in s for s in stems_per_song
    )
    channels = {sf.info(str(p)).channels for p in moises_root.rglob("bass/*.wav")}
    assert channels == {1}, "the bass guitar tracks are mono files"
    assert "toy-moisesdb" in (moises_root / "README.txt").read_text()


def test_the_cli_writes_the_same_set_for_a_seed_and_never_clobbers(tmp_path):
    command = [sys.executable, "-m", "sepzoo.cli.main", "toy-moisesdb", str(tmp_path / "a"), "--songs", "1"]
    command += ["--seconds", "0.5", "--seed", "4"]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "already exists" in again.stderr
    copy = generate_toy_moisesdb(tmp_path / "b", songs=1, seconds=0.5, seed=4)
    files = sorted(p.relative_to(copy) for p in copy.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert all((copy / f).read_bytes() == (tmp_path / "a" / f).read_bytes() for f in files)
    with pytest.raises(OutputExistsError):
        generate_toy_moisesdb(copy, songs=1, seconds=0.5)


# -- reading songs and mapping them to sources ------------------------------------------------------


def test_songs_are_found_from_the_download_folder_or_its_provider_folder(moises_root):
    ids = [song.song_id for song in find_songs(moises_root)]
    assert ids == sorted(records(moises_root)) and len(ids) == SONGS
    assert [song.song_id for song in find_songs(moises_root / PROVIDER)] == ids
    song = read_song(moises_root / PROVIDER / ids[0])
    assert all(track.path.is_file() and track.path.parent.name == track.stem for track in song.tracks)


def test_the_musdb_four_are_the_loaders_four_stem_mix(moises_root):
    datamodule = module(moises_root, test_fraction=0.0)
    datamodule.setup("fit")
    named = {"vocals", "bass", "drums"}
    for song_id in sorted(records(moises_root))[:3]:
        stems = whole_song(datamodule, song_id).double().numpy()
        for index, source in enumerate(datamodule.sources):
            expected = stem_sum(
                moises_root, song_id, lambda stem, _, s=source: stem == s if s in named else stem not in named
            )
            np.testing.assert_allclose(stems[index], expected, atol=1e-6, err_msg=f"{song_id} {source}")


def test_six_sources_with_a_sub_stem_routed_to_drums(moises_root):
    datamodule = module(moises_root, sources=SIX, stems=ROUTED, test_fraction=0.0)
    datamodule.setup("fit")
    song_id = next(
        i for i, r in records(moises_root).items() if "percussion" in {s["stemName"] for s in r["stems"]}
    )
    stems = whole_song(datamodule, song_id).double().numpy()
    drums = stem_sum(moises_root, song_id, lambda stem, _: stem in ("drums", "percussion"))
    np.testing.assert_allclose(stems[SIX.index("drums")], drums, atol=1e-6)
    other = stem_sum(moises_root, song_id, lambda stem, _: stem not in {*SIX, "percussion"})
    np.testing.assert_allclose(stems[SIX.index("other")], other, atol=1e-6)
    everything = stem_sum(moises_root, song_id, lambda *_: True)
    np.testing.assert_allclose(stems.sum(axis=0), everything, atol=1e-5)  # nothing lost, nothing twice


def test_a_missing_stem_is_silence_counted_in_one_log_line(moises_root, caplog):
    datamodule = module(moises_root, sources=SIX, stems=ROUTED, test_fraction=0.0)
    with caplog.at_level(logging.INFO, logger="sepzoo.data.moisesdb"):
        datamodule.setup("fit")
    present = {i: {s["stemName"] for s in r["stems"]} for i, r in records(moises_root).items()}
    lacking = {source: sum(source not in stems for stems in present.values()) for source in SIX[:-1]}
    lacking["drums"] = sum(not {"drums", "percussion"} & stems for stems in present.values())
    lacking["other"] = sum(stems <= {*SIX, "percussion"} for stems in present.values())
    lines = [r.getMessage() for r in caplog.records if "lacking a source" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].endswith(": " + ", ".join(f"{s} {lacking[s]}" for s in SIX if lacking[s]))
    assert all(lacking[source] for source in ("guitar", "piano", "bass", "other"))
    song_id = next(i for i, stems in present.items() if "bass" not in stems)
    track = next(t for t in datamodule.train_tracks if t.name == song_id)
    assert "bass" in track.silent and "bass" not in track.files
    stems = read_stems(track, SIX, 0, track.frames, 44100, 2)
    assert not stems[SIX.index("bass")].any() and stems[SIX.index("vocals")].abs().max() > 0.01
    batch = next(iter(datamodule.train_dataloader()))
    assert batch.shape == (2, 6, 2, 22050)


# -- splits -----------------------------------------------------------------------------------------


def test_the_split_hashes_song_ids_and_lists_override_it(moises_root):
    ids = sorted(records(moises_root))
    test = hashed_test_songs(ids, 0.34)
    assert len(test) == 2 and hashed_test_songs(ids[::-1], 0.34) == test
    assert hashed_test_songs(ids, 0.1) and hashed_test_songs(ids, 0.0) == []
    assert module(moises_root, test_fraction=0.34).split() == ([i for i in ids if i not in test], test)

    assert module(moises_root, test_songs=ids[:2]).split() == (ids[2:], ids[:2])
    assert module(moises_root, train_songs=ids[:2]).split() == (ids[:2], ids[2:])
    assert module(moises_root, train_songs=ids[:2], test_songs=ids[4:]).split() == (ids[:2], ids[4:])
    with pytest.raises(ConfigError, match="both list"):
        module(moises_root, train_songs=ids[:2], test_songs=ids[1:3])
    with pytest.raises(
        ConfigError, match=f"data.test_songs: no song '{ids[0][:-1]}' .*did you mean '{ids[0]}'"
    ):
        module(moises_root, test_songs=[ids[0][:-1]]).split()
    with pytest.raises(ConfigError, match=r"data.test_fraction must be in \[0, 1\)"):
        module(moises_root, test_fraction=1.0)


def test_the_validation_choices_keep_working(moises_root):
    ids = sorted(records(moises_root))
    train, test = module(moises_root).split()
    tail = module(moises_root, valid="train-tail", valid_count=2)
    tail.setup("fit")
    assert [t.name for t in tail.valid_set] == train[-2:] and [t.name for t in tail.train_tracks] == train[
        :-2
    ]
    chosen = module(moises_root, valid="auto", valid_tracks=[train[0]])
    chosen.setup("fit")
    assert [t.name for t in chosen.valid_set] == [train[0]] and train[0] not in [
        t.name for t in chosen.train_tracks
    ]
    on_test = module(moises_root, valid="test")
    on_test.setup("fit")
    assert [t.name for t in on_test.valid_set] == test and len(test) == 1 and len(ids) == SONGS
    with pytest.raises(ConfigError, match="data.valid='official' is not one of auto, train-tail, test, none"):
        module(moises_root, valid="official")


# -- the cache of summed stems ---------------------------------------------------------------------


def test_summed_stems_are_cached_once_and_made_again_when_a_track_changes(moises_root, tmp_path):
    root = tmp_path / "moisesdb"
    for song in sorted((moises_root / PROVIDER).iterdir())[:2]:
        shutil.copytree(song, root / PROVIDER / song.name)
    fingerprint = data_fingerprint(root)
    first = module(root, test_fraction=0.0)
    first.setup("fit")
    cached = sorted((root / ".sepzoo-moisesdb-cache").rglob("*.wav"))
    assert cached and all(sf.info(str(p)).subtype == "FLOAT" for p in cached)
    assert data_fingerprint(root) == fingerprint, "the cache leaves the run hash's data fingerprint alone"
    stamps = {p: p.stat().st_mtime_ns for p in cached}

    changed = first.train_tracks[0].name
    track_file = next((root / PROVIDER / changed / "vocals").glob("*.wav"))
    audio, rate = sf.read(track_file, dtype="int16")
    sf.write(track_file, audio // 2, rate, subtype="PCM_16")
    again = module(root, test_fraction=0.0)
    again.setup("fit")
    remade = {p for p in cached if p.stat().st_mtime_ns != stamps[p]}
    assert remade and all(p.parent.name == changed for p in remade)
    vocals = whole_song(again, changed)[again.sources.index("vocals")].double().numpy()
    expected = stem_sum(root, changed, lambda stem, _: stem == "vocals")
    np.testing.assert_allclose(vocals, expected, atol=1e-6)

    six = module(root, sources=SIX, test_fraction=0.0)
    six.setup("fit")
    six_folder, four_folder = (
        six.entry(six.songs()[changed]).parent,
        again.entry(again.songs()[changed]).parent,
    )
    assert six_folder != four_folder, "each routing has its own folder"
    assert json.loads((six_folder / "routing.json").read_text())["stems"]["piano"] == ["piano"]


# -- bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sources", "stems", "fragments"),
    [
        (
            ["vocals", "keys"],
            None,
            ["data.sources: 'keys' is not a MoisesDB stem", "data.stems.keys", "'other_keys'"],
        ),
        (
            ["vocals", "other"],
            {"vocal": ["vocals"]},
            ["data.stems: 'vocal' is not one of data.sources", "'vocals'"],
        ),
        (
            ["guitar", "other"],
            {"guitar": ["guitars"]},
            ["data.stems.guitar: MoisesDB has no stem 'guitars'", "'guitar'"],
        ),
        (
            ["drums", "other"],
            {"drums": ["drums", "percussion/a-tonal"]},
            ["data.stems.drums: MoisesDB stem 'percussion' has no track type 'a-tonal'", "did you mean"],
        ),
        (
            ["bass", "other"],
            {"other": ["*", "bass"]},
            ["data.stems: 'bass' ('bass') and 'other' ('bass') both take MoisesDB track 'bass/bass guitar'"],
        ),
        (
            ["guitar", "other"],
            {"other": ["*", "guitar/*"]},
            ["data.stems.guitar: ['guitar'] takes no MoisesDB track"],
        ),
    ],
)
def test_a_mapping_outside_the_taxonomy_is_a_one_line_config_error(sources, stems, fragments):
    with pytest.raises(ConfigError) as error:
        StemRouting(sources, stems)
    message = str(error.value)
    assert "\n" not in message and all(fragment in message for fragment in fragments), message


def test_bad_roots_and_broken_songs_are_one_line_data_errors(moises_root, tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path / 'absent'}: no such MoisesDB folder"):
        module(tmp_path / "absent").setup("fit")
    (tmp_path / "empty" / "moisesdb_v0.1" / "song").mkdir(parents=True)
    with pytest.raises(DataError, match=f"{tmp_path / 'empty'}: holds no MoisesDB songs"):
        module(tmp_path / "empty").setup("fit")

    root = tmp_path / "broken"
    shutil.copytree(moises_root, root, ignore=shutil.ignore_patterns(".sepzoo-*"))
    song = sorted((root / PROVIDER).iterdir())[0]
    record = json.loads((song / "data.json").read_text())
    missing = next((song / "vocals").glob("*.wav"))
    missing.unlink()
    with pytest.raises(
        DataError, match=f"song '{song.name}': data.json lists {missing}, which does not exist"
    ):
        module(root, test_songs=[]).setup("fit")
    del record["stems"][0]["tracks"][0]["trackType"]
    (song / "data.json").write_text(json.dumps(record))
    with pytest.raises(DataError, match=r"data.json: stems\[0\].tracks\[0\].trackType: must be set"):
        module(root).setup("fit")
    (song / "data.json").write_text("{")
    with pytest.raises(DataError, match="data.json: is not valid JSON"):
        module(root).setup("fit")


def test_the_cli_reports_bad_moisesdb_input_in_one_line(capsys, tmp_path):
    recipe = REPO_ROOT / "recipes" / "toy" / "moisesdb_conv_tasnet.yaml"
    (tmp_path / "empty").mkdir()
    code, _, err = run(
        capsys, "train", str(recipe), f"data.root={tmp_path / 'empty'}", f"run.root={tmp_path}"
    )
    assert_one_line_error(code, err, "sepzoo train: error:", f"{tmp_path / 'empty'}: holds no MoisesDB songs")
    code, _, err = run(capsys, "train", str(recipe), "data.stems={piano: [pianos]}", f"run.root={tmp_path}")
    assert_one_line_error(code, err, "MoisesDB has no stem 'pianos'", "did you mean 'piano'")


# -- training and scoring through a recipe ------------------------------------------------------------


def test_a_recipe_trains_on_moisesdb_and_eval_scores_its_test_songs(moises_root, tmp_path, capsys):
    from sepzoo.training.train import train

    recipe = tmp_path / "moises.yaml"
    base = REPO_ROOT / "recipes" / "base.yaml"
    recipe.write_text(TINY_RECIPE.format(base=base, root=moises_root, runs=tmp_path / "runs"))
    on_moisesdb = ["data.name=moisesdb", "data.samples_per_epoch=4", "data.valid_max_seconds=1.0"]
    shorter = ["trainer.max_steps=2", "train.audio_examples=0", "logger.name=csv"]
    run_dir = train(recipe, on_moisesdb + shorter)
    assert (run_dir / DONE_MARKER).is_file()
    metrics = (run_dir / "logs" / "metrics.csv").read_text()
    assert "train/loss" in metrics and "valid/nSDR_bass" in metrics

    out = tmp_path / "eval"
    code, stdout, err = run(capsys, "eval", "-n", str(run_dir), "--root", str(moises_root), "-o", str(out))
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    _, test = module(moises_root).split()
    assert summary["toy"] and summary["sources"] == FOUR and sorted(summary["per_track"]) == test
    assert all(np.isfinite(summary["nSDR"][source]) for source in FOUR)
    code, _, err = run(
        capsys,
        "eval",
        "-n",
        str(run_dir),
        "--root",
        str(moises_root),
        "--subset",
        "valid",
        "-o",
        str(tmp_path / "e2"),
    )
    assert_one_line_error(code, err, "MoisesDB has the subsets train and test", "'valid'")
