"""The MSST set of training augmentations: each does what it says, is a function of
(seed, epoch, index), changes nothing at probability 0 and always applies at probability 1;
codecs stay sample-aligned; batch lengths are shared, reproducible and survive a resume; bad
settings fail in one line; a toy run trains with everything on."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import NO_AUGMENT, musdb_module
from scipy.signal import correlate
from torch.utils.data import DataLoader

from sepzoo.data.augment import (
    AugmentConfig,
    ProductionAugmentConfig,
    apply_effects,
    augment_stems,
    change_loudness,
    random_stream,
)
from sepzoo.data.base import ADDED_AUGMENT_KEYS, SegmentDataset, StemDataModule
from sepzoo.data.codecs import CODECS, codec_round_trip, codec_round_trips
from sepzoo.data.effects import EFFECTS
from sepzoo.data.musdb import MusdbDataModule
from sepzoo.data.samplers import EpochSampler
from sepzoo.errors import ConfigError
from sepzoo.training.recipe import load_recipe
from sepzoo.training.rundir import ADDED_KEYS_AT_DEFAULT
from sepzoo.training.train import run_directory, train

RATE = 44100
SOURCES = ["drums", "bass", "other", "vocals"]
DEMUCS = {"shift": 0.1, "channel_swap": True, "sign_flip": True, "scale": (0.25, 1.25), "remix": True}


def module(root, **kwargs) -> MusdbDataModule:
    datamodule = musdb_module(root, **kwargs)
    datamodule.setup("fit")
    return datamodule


@pytest.fixture(scope="module")
def tracks(toy_root) -> list:
    """The toy set's training tracks, listed once."""
    return module(toy_root).train_tracks


def dataset(
    tracks: list, production: ProductionAugmentConfig | None = None, seed: int = 3, **augment
) -> SegmentDataset:
    """Half-second training segments of ``tracks``, with the Demucs set off unless ``augment``
    says otherwise."""
    config = AugmentConfig(**{**NO_AUGMENT, **augment})
    return SegmentDataset(
        tracks, SOURCES, RATE // 2, RATE, 2, 8, seed=seed, augment=config, production=production
    )


def music(seconds: float = 0.5, seed: int = 0) -> torch.Tensor:
    """Stereo test audio ``[2, T]``: decaying harmonic notes and band-limited noise, the two
    channels different."""
    rng = np.random.default_rng(seed)
    time = np.arange(int(seconds * RATE)) / RATE
    notes = sum(np.sin(2 * np.pi * 220 * k * time) / k for k in range(1, 6)) * np.exp(-4 * (time % 0.125))
    noise = np.convolve(rng.standard_normal(time.size), np.ones(8) / 8, mode="same")
    left, right = 0.2 * notes + 0.05 * noise, 0.15 * np.roll(notes, 300) + 0.05 * noise
    return torch.from_numpy(np.stack([left, right])).float()


def lag(output: np.ndarray, reference: np.ndarray) -> int:
    """The lag (in samples) at the cross-correlation peak; positive when ``output`` is late."""
    peak = np.argmax(correlate(output, reference, mode="full", method="fft"))
    return int(peak) - (reference.size - 1)


# -- polarity, channel shuffle, and how they relate to sign_flip and channel_swap ---------------


def test_sign_flip_and_channel_swap_are_polarity_and_channel_shuffle_at_one_half():
    stems = torch.randn(4, 2, 64)
    old = AugmentConfig(shift=0.0, scale=None)
    new = AugmentConfig(
        shift=0.0, scale=None, sign_flip=False, polarity=0.5, channel_swap=False, channel_shuffle=0.5
    )
    for seed in range(5):
        expected = augment_stems(stems, old, np.random.default_rng(seed), 64, RATE)
        actual = augment_stems(stems, new, np.random.default_rng(seed), 64, RATE)
        assert torch.equal(actual, expected)


def test_polarity_and_channel_shuffle_at_one_always_apply_and_at_zero_never():
    stems = torch.randn(4, 2, 64)
    always = AugmentConfig(**{**NO_AUGMENT, "polarity": 1.0, "channel_shuffle": 1.0})
    assert torch.equal(augment_stems(stems, always, np.random.default_rng(0), 64, RATE), -stems.flip(1))
    never = AugmentConfig(**NO_AUGMENT)
    assert torch.equal(augment_stems(stems, never, np.random.default_rng(0), 64, RATE), stems)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"polarity": 0.3},
            "data.polarity=0.3 and data.sign_flip=true both set how often it happens "
            "(sign_flip is polarity 1/2); set data.sign_flip=false to use data.polarity",
        ),
        ({"channel_shuffle": 0.2}, "set data.channel_swap=false to use data.channel_shuffle"),
        ({"sign_flip": False, "polarity": 1.5}, "data.polarity must be a probability in [0, 1], got 1.5"),
    ],
)
def test_polarity_settings_that_contradict_sign_flip_are_refused(kwargs, message):
    with pytest.raises(ConfigError) as error:
        AugmentConfig(**kwargs)
    assert message in str(error.value) and "\n" not in str(error.value)


# -- loudness and mixup ---------------------------------------------------------------------------


def test_loudness_changes_each_level_within_the_range():
    stems = torch.randn(4, 2, 100) + 3.0
    louder = change_loudness(stems, 1.0, -6.0, 6.0, np.random.default_rng(0))
    ratios = louder / stems
    for ratio in ratios:
        assert torch.allclose(ratio, ratio.flatten()[0])  # one gain per source
        assert 10 ** (-6 / 20) - 1e-6 <= float(ratio.flatten()[0]) <= 10 ** (6 / 20) + 1e-6
    assert len({round(float(r.flatten()[0]), 6) for r in ratios}) == 4
    assert torch.equal(change_loudness(stems, 0.0, -6.0, 6.0, np.random.default_rng(0)), stems)


def test_mixup_adds_the_same_source_from_some_track_at_a_gain_in_the_range(tracks):
    clean = dataset(tracks)
    mixed = dataset(tracks, ProductionAugmentConfig(mixup=1.0, mixup_db=(-6.0, 0.0)))
    added = (mixed.item(0, 1) - clean.item(0, 1)).numpy()  # S, C, T
    for position, source in enumerate(SOURCES):
        part = added[position, 0]
        assert np.abs(part).max() > 0, f"{source}: nothing was added"
        found = []
        for track in clean.tracks:  # the added part is a window of this source in some track
            audio = sf.read(track.files[source], dtype="float32", always_2d=True)[0][:, 0]
            power = np.concatenate([[0.0], np.cumsum(audio.astype(np.float64) ** 2)])
            energy = power[part.size :] - power[: -part.size]  # of each window
            similarity = np.abs(correlate(audio, part, mode="valid", method="fft")) / np.sqrt(energy + 1e-9)
            offset = int(np.argmax(similarity))
            window = audio[offset : offset + part.size]
            gain = float(window @ part / max(window @ window, 1e-12))
            if np.allclose(gain * window, part, atol=1e-4):
                found.append(gain)
        assert found, f"{source}: the added part is no window of any track's {source}"
        assert any(10 ** (-6 / 20) - 1e-3 <= gain <= 1 + 1e-3 for gain in found)


# -- studio effects -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(EFFECTS))
def test_each_effect_changes_the_audio_and_keeps_shape_dtype_and_finiteness(name):
    audio = music().numpy()
    out = EFFECTS[name](audio.copy(), RATE, np.random.default_rng(1))
    assert out.shape == audio.shape and out.dtype == np.float32 and np.isfinite(out).all()
    assert not np.allclose(out, audio, atol=1e-3), f"{name} left the audio as it was"
    again = EFFECTS[name](audio.copy(), RATE, np.random.default_rng(1))
    assert np.array_equal(again, out), f"{name} is not a function of its generator"


def test_effects_touch_only_the_sources_named_and_all_at_probability_one():
    stems = torch.stack([music(seed=s) for s in range(4)])
    every = {name: 1.0 for name in EFFECTS}
    changed = apply_effects(stems, ProductionAugmentConfig(**every), (0, 0, 0), RATE, SOURCES)
    assert all(not torch.allclose(a, b, atol=1e-3) for a, b in zip(changed, stems))
    only = ProductionAugmentConfig(**every, effect_sources=("vocals",))
    some = apply_effects(stems, only, (0, 0, 0), RATE, SOURCES)
    assert torch.equal(some[:3], stems[:3]) and not torch.allclose(some[3], stems[3], atol=1e-3)


# -- codecs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kbps", [32, 192])
@pytest.mark.parametrize("codec", list(CODECS))
def test_a_codec_round_trip_is_aligned_same_length_and_degraded(codec, kbps):
    audio = music()
    out = codec_round_trip(audio, codec, kbps, RATE)
    assert out.shape == audio.shape and out.dtype == torch.float32
    # On the sum of the channels: joint-stereo coding at low bitrates moves energy between them.
    assert lag(out.sum(dim=0).numpy(), audio.sum(dim=0).numpy()) == 0, f"{codec} {kbps} kbps is shifted"
    mono = codec_round_trip(audio[:1], codec, kbps, RATE)
    assert mono.shape == (1, audio.shape[1]) and lag(mono[0].numpy(), audio[0].numpy()) == 0
    error = float((out - audio).pow(2).mean() / audio.pow(2).mean())
    assert 1e-6 < error < 0.5, f"{codec} at {kbps} kbps: relative error {error}"


def test_several_signals_in_one_ffmpeg_run_come_out_as_each_alone():
    jobs = [(music(seed=0), "mp3", 96), (music(seed=1)[:1], "opus", 300), (2 * music(seed=2), "aac", 64)]
    together = codec_round_trips(jobs, RATE)
    for (audio, codec, kbps), out in zip(jobs, together):
        assert torch.equal(out, codec_round_trip(audio, codec, kbps, RATE))


def test_a_codec_round_trip_keeps_levels_above_full_scale():
    audio = 8 * music()
    assert float(audio.abs().max()) > 2
    out = codec_round_trip(audio, "mp3", 192, RATE)
    assert (
        0.9 < float(out.abs().max() / audio.abs().max()) < 1.1 and lag(out[0].numpy(), audio[0].numpy()) == 0
    )


def test_codec_per_stem_degrades_the_targets_and_on_the_mixture_keeps_them_clean(tracks):
    clean = dataset(tracks).item(0, 2)
    stems = dataset(tracks, ProductionAugmentConfig(codec=1.0, codec_formats=("opus",))).item(0, 2)
    assert isinstance(stems, torch.Tensor) and stems.shape == clean.shape
    assert all(not torch.equal(a, b) for a, b in zip(stems, clean))
    on_mixture = ProductionAugmentConfig(mixture_codec=1.0, codec_formats=("aac",))
    targets, mixture = dataset(tracks, on_mixture).item(0, 2)
    assert torch.equal(targets, clean) and mixture.shape == clean.shape[1:]
    assert not torch.allclose(mixture, clean.sum(dim=0), atol=1e-4)
    assert lag(mixture[0].numpy(), clean.sum(dim=0)[0].numpy()) == 0


def test_codecs_need_ffmpeg_on_the_path(toy_root, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no ffmpeg
    with pytest.raises(ConfigError, match=r"^data\.codec_formats needs the 'ffmpeg' program on the PATH"):
        MusdbDataModule(root=str(toy_root), codec=0.5).setup("fit")


# -- batch lengths --------------------------------------------------------------------------------


def batches(datamodule: StemDataModule) -> list[torch.Tensor]:
    return list(datamodule.train_dataloader())


def test_each_batch_has_one_length_from_the_list_whatever_the_workers_and_after_a_resume(toy_root):
    options = {"batch_segments": [0.1, 0.2, 0.25], "samples_per_epoch": 16, "reverb": 1.0}
    full = batches(module(toy_root, **options))
    lengths = [batch.shape[-1] for batch in full]
    assert len(full) == 8 and set(lengths) <= {4410, 8820, 11025} and len(set(lengths)) > 1
    again = batches(module(toy_root, **options, num_workers=2))
    assert len(again) == len(full) and all(torch.equal(a, b) for a, b in zip(again, full))
    resumed = module(toy_root, **options)
    resumed.set_position(0, 6)  # three batches of two done
    tail = batches(resumed)
    assert len(tail) == 5 and all(torch.equal(a, b) for a, b in zip(tail, full[3:]))
    later = module(toy_root, **options)
    later.set_position(1, 0)
    assert [b.shape[-1] for b in batches(later)] != lengths  # another epoch, other lengths


def test_a_batch_length_is_the_start_of_the_full_segment(toy_root):
    datamodule = module(toy_root, batch_segments=[0.2])
    data = datamodule.train_dataset()
    assert torch.equal(data[(0, 5, 8820)], data.item(0, 5)[..., :8820])


def test_batch_lengths_must_fit_the_segment(toy_root):
    with pytest.raises(ConfigError, match=r"data\.batch_segments: 0\.75 s is not in \(0, 0\.5\]"):
        module(toy_root, batch_segments=[0.25, 0.75])


def test_ht_demucs_trains_on_lengths_up_to_its_segment():
    from sepzoo.models import create_model, get_model_class

    model = create_model("htdemucs", **get_model_class("htdemucs").test_kwargs)  # a 0.05 s segment
    model.train()  # the training path, which takes any length (evaluation pads to the segment)
    with torch.no_grad():
        for frames in (1000, 2205):  # a batch cut shorter than the segment, and the segment itself
            assert model(torch.randn(1, 2, frames)).shape == (1, 4, 2, frames)


# -- off, on, determinism -------------------------------------------------------------------------


def test_with_every_new_key_at_its_default_batches_are_bit_identical_to_the_plain_loader(toy_root):
    defaults = {key: ADDED_KEYS_AT_DEFAULT[("data", key)] for key in ADDED_AUGMENT_KEYS}
    datamodule = module(toy_root, **defaults)
    data = datamodule.train_dataset()
    # How the loader was built before batch lengths existed: a sampler, a batch size, drop_last.
    plain = DataLoader(
        data, batch_size=2, sampler=EpochSampler(len(data), seed=3, tag_epoch=True), drop_last=True
    )
    ours = batches(datamodule)
    assert all(isinstance(b, torch.Tensor) for b in ours)
    assert len(ours) == 4 and all(torch.equal(a, b) for a, b in zip(ours, plain))


ON = {
    "loudness": 1.0,
    "loudness_db": [2.0, 6.0],
    "mixup": 1.0,
    **{name: 1.0 for name in EFFECTS},
    "codec": 1.0,
    "mixture_codec": 1.0,
    "codec_formats": ["mp3", "aac", "opus"],
    "codec_bitrate": [48, 96],
}


@pytest.mark.parametrize("key", ["loudness", "mixup", *EFFECTS, "codec"])
def test_probability_one_always_applies(tracks, key):
    settings = {k: v for k, v in ON.items() if not isinstance(v, float) or k == key}
    config = ProductionAugmentConfig(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}
    )
    clean, data = dataset(tracks), dataset(tracks, config)
    for index in (0, 3):
        before, after = clean.item(0, index), data.item(0, index)
        for position, source in enumerate(SOURCES):
            if before[position].abs().max() > 1e-3:  # a silent stem may stay silent
                assert not torch.allclose(after[position], before[position], atol=1e-5), (key, source)


def test_items_are_a_function_of_seed_epoch_and_index(tracks):
    config = ProductionAugmentConfig(loudness=0.5, mixup=0.5, reverb=0.5, distortion=0.5, eq=0.5)
    data, twin = dataset(tracks, config, **DEMUCS), dataset(tracks, config, **DEMUCS)
    assert torch.equal(data.item(1, 4), twin.item(1, 4))
    assert not torch.equal(data.item(1, 4), data.item(1, 5))
    assert not torch.equal(data.item(1, 4), data.item(2, 4))
    other_seed = dataset(tracks, config, seed=4, **DEMUCS)
    assert not torch.equal(other_seed.item(1, 4), data.item(1, 4))


def test_one_augmentation_on_or_off_leaves_what_the_others_draw():
    assert random_stream((1, 2, 3), "reverb").random() != random_stream((1, 2, 3), "chorus").random()
    assert random_stream((1, 2, 3), "reverb").random() != np.random.default_rng([1, 2, 3]).random()
    stems = torch.stack([music(seed=s) for s in range(4)])
    both = apply_effects(stems, ProductionAugmentConfig(reverb=0.5, chorus=0.5), (0, 1, 2), RATE, SOURCES)
    chorus = apply_effects(stems, ProductionAugmentConfig(chorus=0.5), (0, 1, 2), RATE, SOURCES)
    then_reverb = apply_effects(chorus, ProductionAugmentConfig(reverb=0.5), (0, 1, 2), RATE, SOURCES)
    assert torch.equal(both, then_reverb)  # the chorus comes before the reverb, each with its own draws
    assert not torch.equal(both, stems) and not torch.equal(both, chorus)


# -- bad settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mixup": 1.5}, "data.mixup must be a probability in [0, 1], got 1.5"),
        ({"reverb": -0.1}, "data.reverb must be a probability in [0, 1], got -0.1"),
        ({"loudness_db": [6, -6]}, "data.loudness_db must be [low, high] with low <= high, got [6, -6]"),
        ({"mixup_db": [0.0]}, "data.mixup_db must be [low, high] with low <= high, got [0.0]"),
        (
            {"codec_bitrate": [64, 500]},
            "data.codec_bitrate must be [low, high] with low <= high within [8, 320], got [64, 500]",
        ),
        ({"codec_bitrate": [64.5, 128]}, "data.codec_bitrate must be whole kbit/s, got [64.5, 128]"),
        (
            {"codec_formats": ["mp3", "mp4"]},
            "data.codec_formats: unknown codec 'mp4'; did you mean 'mp3'? (known: mp3, aac, opus)",
        ),
        ({"codec_formats": []}, "data.codec_formats must name at least one of mp3, aac, opus"),
        (
            {"effect_sources": ["vocal"]},
            "data.effect_sources: 'vocal' is not one of the sources ['drums', 'bass', 'other', 'vocals']; "
            "did you mean 'vocals'?",
        ),
        ({"batch_segments": []}, "data.batch_segments must list at least one length in seconds, or be null"),
    ],
)
def test_bad_settings_fail_in_one_line_naming_the_key(toy_root, kwargs, message):
    with pytest.raises(ConfigError) as error:
        MusdbDataModule(root=str(toy_root), **kwargs)
    assert str(error.value) == message


def test_a_misspelled_augmentation_key_is_named_with_the_closest(tiny_recipe):
    with pytest.raises(ConfigError) as error:
        load_recipe(tiny_recipe, ["data.mixpu=0.5"])
    assert "unknown key 'data.mixpu' for data set 'musdb'; did you mean 'data.mixup'" in str(error.value)
    assert "\n" not in str(error.value)


# -- run hashes and a toy run with everything on ------------------------------------------------------


def test_new_keys_written_at_their_defaults_keep_the_run_hash(tiny_recipe):
    overrides = [f"data.{key}={value}".replace("None", "null") for key, value in _defaults().items()]
    assert run_directory(load_recipe(tiny_recipe, overrides)) == run_directory(load_recipe(tiny_recipe))
    assert run_directory(load_recipe(tiny_recipe, ["data.reverb=0.1"])) != run_directory(
        load_recipe(tiny_recipe)
    )


def _defaults() -> dict:
    return {key: ADDED_KEYS_AT_DEFAULT[("data", key)] for key in ADDED_AUGMENT_KEYS}


def test_a_toy_run_trains_with_every_augmentation_on(tiny_recipe):
    on = {
        **{key: 0.5 for key in ("loudness", "mixup", *EFFECTS)},
        "codec": 0.1,
        "mixture_codec": 0.5,
        "codec_formats": "[mp3,aac,opus]",
        "sign_flip": "false",
        "polarity": 0.3,
        "channel_swap": "false",
        "channel_shuffle": 0.3,
        "batch_segments": "[0.25,0.5]",
    }
    overrides = ["logger.name=csv", "trainer.max_steps=4", "data.valid=none"]
    overrides += [f"data.{key}={value}" for key, value in on.items()]
    run_dir = train(tiny_recipe, overrides)
    with (run_dir / "logs" / "metrics.csv").open(newline="") as stream:
        losses = [float(row["train/loss"]) for row in csv.DictReader(stream) if row.get("train/loss")]
    assert len(losses) == 4 and all(math.isfinite(loss) for loss in losses)
