"""Data modules over real files: MUSDB18-HQ and MUSDB18 through the `musdb` package, stem folders
with any sources, deterministic segments and augmentations, and one-line errors for bad data."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import NO_AUGMENT, musdb_module
from scipy.signal import correlate

from sepzoo.data.augment import (
    AugmentConfig,
    change_pitch_tempo,
    flip_sign,
    random_shift,
    scale_gain,
    swap_channels,
)
from sepzoo.data.folder import StemFolderDataModule
from sepzoo.data.samplers import PADDING_INDEX, EpochSampler, ShardedEvalSampler
from sepzoo.data.tracks import read_stems
from sepzoo.errors import ConfigError, DataError


def first_batch(module) -> torch.Tensor:
    module.setup("fit")
    return next(iter(module.train_dataloader()))


# -- MUSDB18-HQ layout (the toy set) ----------------------------------------------------------


def test_musdb_hq_segments_and_validation_split(toy_root):
    module = musdb_module(toy_root, valid_count=1)
    batch = first_batch(module)
    assert batch.shape == (2, 4, 2, 22050) and batch.dtype == torch.float32
    assert [t.name for t in module.valid_set] == [sorted(p.name for p in (toy_root / "train").iterdir())[-1]]
    assert len(module.train_tracks) == 3
    valid = next(iter(module.val_dataloader()))
    assert valid["stems"].shape == (1, 4, 2, 4 * 44100) and not bool(valid["padding"])


def test_segments_are_deterministic_under_a_seed_and_across_workers(toy_root):
    reference = first_batch(musdb_module(toy_root))
    torch.testing.assert_close(first_batch(musdb_module(toy_root)), reference, rtol=0, atol=0)
    torch.testing.assert_close(first_batch(musdb_module(toy_root, num_workers=2)), reference, rtol=0, atol=0)
    assert not torch.equal(first_batch(musdb_module(toy_root, seed=4)), reference)


def test_any_subset_of_sources_in_any_order(toy_root):
    module = musdb_module(toy_root, sources=["vocals", "drums"], valid_max_seconds=1.0)
    module.setup("fit")
    item = module.valid_dataset()[0]
    track = toy_root / "train" / item["name"]
    for index, source in enumerate(["vocals", "drums"]):
        expected, _ = sf.read(track / f"{source}.wav", frames=44100, dtype="float32", always_2d=True)
        torch.testing.assert_close(item["stems"][index], torch.from_numpy(expected.T.copy()))
    with pytest.raises(ConfigError, match="no source 'vocal'.*'vocals'"):
        musdb_module(toy_root, sources=["vocal"])


def test_without_augmentation_a_segment_is_a_window_of_the_track(toy_root):
    module = musdb_module(toy_root, **NO_AUGMENT)
    segment = module.setup("fit") or module.train_dataset()[0]
    mixtures = [
        sf.read(t.files["drums"].parent / "mixture.wav", dtype="float32")[0].T for t in module.train_tracks
    ]
    window = segment.sum(dim=0).numpy()
    found = False
    for mixture in mixtures:
        offset = int(np.argmax(correlate(mixture[0], window[0], mode="valid", method="fft")))
        found |= np.allclose(mixture[:, offset : offset + window.shape[1]], window, atol=1e-4)
    assert found, "the sum of the stems of a segment is a window of some track's mixture"


def test_official_split_needs_official_tracks(toy_root):
    with pytest.raises(DataError, match="no validation tracks"):
        first_batch(musdb_module(toy_root, valid="official"))


def test_explicit_validation_tracks_and_a_misspelled_one(toy_root):
    names = sorted(p.name for p in (toy_root / "train").iterdir())
    module = musdb_module(toy_root, valid="auto", valid_tracks=[names[0]])
    module.setup("fit")
    assert [t.name for t in module.valid_set] == [names[0]]
    assert names[0] not in [t.name for t in module.train_tracks]
    with pytest.raises(ConfigError, match="no track named 'Toy Train 00' .*did you mean"):
        musdb_module(toy_root, valid="auto", valid_tracks=["Toy Train 00"]).setup("fit")


def test_bad_roots_name_the_folder(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path / 'absent'}: no such MUSDB18 folder"):
        musdb_module(tmp_path / "absent").setup("fit")
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="holds no MUSDB18 tracks"):
        musdb_module(tmp_path / "empty").setup("fit")


def test_a_track_missing_a_source_file_is_named(toy_root, tmp_path):
    root = tmp_path / "broken"
    shutil.copytree(toy_root, root)
    track = sorted((root / "train").iterdir())[1]
    (track / "bass.wav").unlink()
    with pytest.raises(DataError) as error:
        musdb_module(root).setup("fit")
    assert track.name in str(error.value) and "bass.wav" in str(error.value)


# -- MUSDB18 (.stem.mp4), decoded once ------------------------------------------------------------


def test_musdb18_stem_files_are_decoded_once_to_a_wav_cache(tmp_path):
    stempeg = pytest.importorskip("stempeg")
    root = tmp_path / "musdb18"
    rng = np.random.default_rng(0)
    for subset, name in [
        ("train", "Artist A - Song"),
        ("train", "Artist B - Song"),
        ("test", "Artist C - Song"),
    ]:
        (root / subset).mkdir(parents=True, exist_ok=True)
        streams = (0.1 * rng.standard_normal((5, 44100, 2))).astype(np.float32)
        streams[0] = streams[1:].sum(axis=0)
        writer = stempeg.StreamsWriter(codec="aac", bitrate=256000)
        stempeg.write_stems(
            str(root / subset / f"{name}.stem.mp4"), streams, sample_rate=44100, writer=writer
        )
    module = musdb_module(root, cache_dir=str(tmp_path / "cache"), valid_count=1)
    module.prepare_data()
    cached = sorted((tmp_path / "cache" / "train").glob("*/*.wav"))
    assert len(cached) == 2 * 4
    stamps = {p: p.stat().st_mtime_ns for p in cached}
    batch = first_batch(module)
    assert batch.shape == (2, 4, 2, 22050)
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in stamps.items()), "decoded only once"
    assert [t.name for t in module.test_tracks()] == ["Artist C - Song"]


# -- stem folders ---------------------------------------------------------------------------------


def write_track(folder: Path, sources: dict[str, tuple[int, int, str, str]], frames: int = 8820) -> None:
    """Write one file per source: (sample rate, channels, subtype, suffix)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(folder)))
    for source, (rate, channels, subtype, suffix) in sources.items():
        length = frames * rate // 44100
        sf.write(
            folder / f"{source}{suffix}", 0.1 * rng.standard_normal((length, channels)), rate, subtype=subtype
        )


def folder_module(root: Path, **kwargs) -> StemFolderDataModule:
    options = {
        "sources": ["vocals", "accompaniment"],
        "segment": 0.1,
        "batch_size": 2,
        "num_workers": 0,
        "samples_per_epoch": 4,
        **kwargs,
    }
    return StemFolderDataModule(root=str(root), **options)


def test_stem_folders_with_free_sources_mono_flac_24_bit_and_other_rates(tmp_path):
    write_track(
        tmp_path / "train" / "a",
        {"vocals": (44100, 1, "PCM_16", ".wav"), "accompaniment": (44100, 2, "PCM_24", ".flac")},
    )
    write_track(
        tmp_path / "train" / "b",
        {"vocals": (48000, 2, "FLOAT", ".wav"), "accompaniment": (48000, 2, "PCM_16", ".wav")},
    )
    write_track(
        tmp_path / "valid" / "c",
        {"vocals": (44100, 2, "PCM_16", ".wav"), "accompaniment": (44100, 2, "PCM_16", ".wav")},
    )
    module = folder_module(tmp_path)
    batch = first_batch(module)
    assert batch.shape == (2, 2, 2, 4410)
    assert [t.name for t in module.valid_set] == ["c"]  # root/valid is the validation set
    resampled = module.train_dataset().tracks[1]
    assert resampled.sample_rate == 48000 and resampled.frames_at(44100) == 8820
    whole = module.valid_dataset()
    assert whole[0]["stems"].shape == (2, 2, 8820)
    unvalidated = folder_module(tmp_path, valid="none")
    unvalidated.setup("fit")
    assert len(unvalidated.valid_dataset()) == 0 and len(unvalidated.train_tracks) == 2
    stems = read_stems(unvalidated.train_tracks[0], ["vocals", "accompaniment"], 0, 8820, 44100, 2)
    torch.testing.assert_close(stems[0, 0], stems[0, 1])  # the mono vocals, up-mixed


@pytest.mark.parametrize(
    ("layout", "fragment"),
    [
        ({"vocals": (44100, 2, "PCM_16", ".wav")}, "missing source file"),
        (
            {"vocals": (44100, 2, "PCM_16", ".wav"), "accompaniment": (22050, 2, "PCM_16", ".wav")},
            "sample rate",
        ),
    ],
)
def test_broken_tracks_name_track_and_file(tmp_path, layout, fragment):
    write_track(
        tmp_path / "train" / "good",
        {"vocals": (44100, 2, "PCM_16", ".wav"), "accompaniment": (44100, 2, "PCM_16", ".wav")},
    )
    write_track(tmp_path / "train" / "bad", layout)
    with pytest.raises(DataError) as error:
        folder_module(tmp_path).setup("fit")
    message = str(error.value)
    assert "'bad'" in message and fragment in message and "\n" not in message


def test_stems_of_different_lengths_are_named(tmp_path):
    write_track(tmp_path / "train" / "x", {"vocals": (44100, 2, "PCM_16", ".wav")}, frames=9000)
    write_track(tmp_path / "train" / "x", {"accompaniment": (44100, 2, "PCM_16", ".wav")}, frames=8000)
    with pytest.raises(
        DataError, match=r"track 'x': .*accompaniment\.wav has 8000 frames but vocals\.wav has 9000"
    ):
        folder_module(tmp_path).setup("fit")


def test_unreadable_and_three_channel_files_are_named(tmp_path):
    write_track(tmp_path / "train" / "x", {"vocals": (44100, 3, "PCM_16", ".wav")})
    (tmp_path / "train" / "x" / "accompaniment.wav").write_text("not audio")
    with pytest.raises(DataError, match="accompaniment.wav: not a readable audio file|3 channels"):
        folder_module(tmp_path).setup("fit")
    (tmp_path / "train" / "x" / "accompaniment.wav").unlink()
    write_track(tmp_path / "train" / "x", {"accompaniment": (44100, 2, "PCM_16", ".wav")})
    with pytest.raises(DataError, match=r"vocals\.wav has 3 channels"):
        folder_module(tmp_path).setup("fit")


def test_empty_or_missing_folders(tmp_path):
    with pytest.raises(DataError, match="no such data folder"):
        folder_module(tmp_path / "nothing").setup("fit")
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match="holds no tracks"):
        folder_module(tmp_path).setup("fit")


# -- augmentations and samplers -------------------------------------------------------------------


def test_augmentations_do_what_they_say():
    stems = torch.arange(2 * 2 * 6, dtype=torch.float32).view(2, 2, 6)
    rng = np.random.default_rng(0)
    shifted = random_shift(stems, 2, rng)
    assert shifted.shape == (2, 2, 4)
    for source in range(2):
        assert any(torch.equal(shifted[source], stems[source, :, o : o + 4]) for o in range(3))
    swapped = swap_channels(stems, np.random.default_rng(1))
    assert all(torch.equal(s, o) or torch.equal(s, o.flip(0)) for s, o in zip(swapped, stems))
    flipped = flip_sign(stems, np.random.default_rng(2))
    assert all(torch.equal(f, o) or torch.equal(f, -o) for f, o in zip(flipped, stems))
    scaled = scale_gain(stems + 1, 0.25, 1.25, np.random.default_rng(3))
    ratios = scaled / (stems + 1)
    assert all(
        0.25 <= float(r.min()) and float(r.max()) <= 1.25 and torch.allclose(r, r.flatten()[0])
        for r in ratios
    )


def test_bad_augmentation_settings_are_config_errors():
    with pytest.raises(ConfigError, match="data.scale"):
        AugmentConfig(scale=(1.5, 0.5))
    with pytest.raises(ConfigError, match="data.shift"):
        AugmentConfig(shift=-1)


def test_epoch_sampler_resumes_where_it_stopped():
    full = list(EpochSampler(10, seed=1, world_size=1))
    resumed = EpochSampler(10, seed=1, world_size=1)
    resumed.skip(4)
    assert list(resumed) == full[4:]
    assert list(resumed) == full  # the skip applies once
    ranks = [list(EpochSampler(10, seed=1, rank=r, world_size=3)) for r in range(3)]
    assert sorted(sum(ranks, [])) == sorted(full[:9]) and len({len(r) for r in ranks}) == 1


def test_eval_sampler_scores_each_item_once_and_pads_evenly():
    shards = [list(ShardedEvalSampler(5, rank=r, world_size=3, pad=True)) for r in range(3)]
    assert {len(s) for s in shards} == {2}
    real = [i for s in shards for i in s if i != PADDING_INDEX]
    assert sorted(real) == [0, 1, 2, 3, 4]


def test_pitch_and_tempo_change_with_soundstretch():
    rate = 44100
    time = np.arange(rate) / rate
    tone = torch.from_numpy(0.3 * np.sin(2 * np.pi * 440 * time)).float()
    stems = torch.stack([tone.expand(2, -1), 0.5 * tone.expand(2, -1)])  # S=2, C=2, T
    higher = change_pitch_tempo(stems, pitch=2, tempo=0.0, sample_rate=rate)
    spectrum = np.abs(np.fft.rfft(higher[0, 0].numpy()))
    peak = np.fft.rfftfreq(higher.shape[-1], 1 / rate)[int(np.argmax(spectrum))]
    assert abs(peak - 440 * 2 ** (2 / 12)) < 5
    faster = change_pitch_tempo(stems, pitch=0, tempo=10.0, sample_rate=rate)
    assert faster.shape[:2] == (2, 2) and abs(faster.shape[-1] - rate / 1.1) < 0.02 * rate


def test_pitch_tempo_augmentation_keeps_the_segment_length(toy_root):
    module = musdb_module(toy_root, pitch_tempo=True, pitch_tempo_probability=1.0)
    assert first_batch(module).shape == (2, 4, 2, 22050)
