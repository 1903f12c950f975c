"""Streaming: the engine gives apply_model's stems while holding a bounded number of samples;
files are read, resampled and written block by block."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from test_inference import (
    FixedLengthRecorder,
    LocalConv,
    MultipleOf64,
    Pointwise,
    ReturnsReferences,
    WholeTrackCounter,
)
from torch import Tensor

import sepzoo.engine.apply as whole_tensor_engine
import sepzoo.engine.streaming as streaming_engine
from sepzoo.engine.apply import apply_model
from sepzoo.engine.chunks import group_batches
from sepzoo.engine.streaming import RunningStatistics, StreamingEngine, stream_model, track_statistics
from sepzoo.errors import DataError, SepzooError
from sepzoo.io.audio import AudioStream, BlockResampler, StemWriter, read_audio, resample
from sepzoo.models import create_model, get_model_class
from sepzoo.models.bag import BagOfModels

BLOCK_SIZES = [[1000], [37], [1, 64, 5, 300], [7, 2000]]


def blocks(signal: Tensor, sizes: list[int]) -> Iterator[Tensor]:
    """``signal`` ``[C, T]`` cut into consecutive blocks, cycling through ``sizes``."""
    start, index = 0, 0
    while start < signal.shape[-1]:
        size = sizes[index % len(sizes)]
        yield signal[:, start : start + size]
        start, index = start + size, index + 1


def streamed(model, signal: Tensor, sizes: list[int], normalize: bool = False, **options) -> Tensor:
    statistics = track_statistics(blocks(signal, [333])) if normalize else None
    return torch.cat(
        list(stream_model(model, blocks(signal, sizes), statistics=statistics, **options)), dim=-1
    )


@pytest.fixture
def mix() -> Tensor:
    return torch.randn(2, 1003, generator=torch.Generator().manual_seed(1))


def tiny(name: str, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(name, **{**get_model_class(name).test_kwargs, **overrides}).eval()


# ----------------------------------------------------------------------------------------------
# The engine gives apply_model's stems


@pytest.mark.parametrize("sizes", BLOCK_SIZES)
@pytest.mark.parametrize(
    ("segment", "overlap", "batch_size"), [(0.37, 0.25, 4), (0.2, 0.5, 1), (0.11, 0.9, 3), (20.0, 0.25, 2)]
)
def test_streamed_equals_apply_model_for_any_blocks(mix, sizes, segment, overlap, batch_size):
    torch.manual_seed(0)
    model = LocalConv(segment=0.3)  # real context matters at every chunk edge
    options = dict(segment=segment, overlap=overlap, batch_size=batch_size)
    expected = apply_model(model, mix, **options)
    torch.testing.assert_close(streamed(model, mix, sizes, **options), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("model_kind", ["multiple_of_64", "fixed_length", "whole_track", "no_segment"])
def test_streamed_honours_valid_length_fixed_chunks_and_whole_tracks(mix, model_kind):
    torch.manual_seed(0)
    model = {
        "multiple_of_64": lambda: MultipleOf64(segment=0.7),
        "fixed_length": lambda: FixedLengthRecorder(segment=0.3),
        "whole_track": WholeTrackCounter,
        "no_segment": lambda: LocalConv(segment=None),
    }[model_kind]()
    expected = apply_model(model, mix, overlap=0.25, batch_size=2)
    torch.testing.assert_close(
        streamed(model, mix, [50], overlap=0.25, batch_size=2), expected, atol=1e-6, rtol=0
    )


@pytest.mark.parametrize("shifts", [0, 2])
@pytest.mark.parametrize("model_kind", ["multiple_of_64", "fixed_length", "no_segment"])
def test_the_stream_runs_the_chunks_and_batches_of_apply_model(mix, monkeypatch, model_kind, shifts):
    torch.manual_seed(0)
    model = {
        "multiple_of_64": lambda: MultipleOf64(segment=0.7),  # short last chunks run as 64, not 128
        "fixed_length": lambda: FixedLengthRecorder(segment=0.3),
        "no_segment": lambda: LocalConv(segment=None),
    }[model_kind]()
    options = dict(overlap=0.75, shifts=shifts, batch_size=3, seed=4)
    whole_batches = []

    def recording_group_batches(chunks, batch_size):
        for batch in group_batches(chunks, batch_size):
            whole_batches.append(batch)
            yield batch

    monkeypatch.setattr(whole_tensor_engine, "group_batches", recording_group_batches)
    apply_model(model, mix, **options)

    claimed = []
    next_batch = streaming_engine._Lane.next_batch

    def recording_next_batch(lane, *args):
        batch = next_batch(lane, *args)
        if batch:
            claimed.append((lane, batch))
        return batch

    monkeypatch.setattr(streaming_engine._Lane, "next_batch", recording_next_batch)
    engine = StreamingEngine(model, **options)
    for block in blocks(mix, [41]):
        engine.push(block)
    engine.finish()
    # Lanes claim their batches as their input arrives, interleaved; in lane order they are the
    # batches apply_model ran, shift after shift.
    streamed_batches = [batch for lane in engine.lanes for owner, batch in claimed if owner is lane]
    assert streamed_batches == whole_batches
    padded_lengths = {chunk.padded_length for batch in whole_batches for chunk in batch}
    shift_padding = 50 if shifts else 0  # the shift trick pads the track by 0.5 s
    whole_track = 1003 + shift_padding + 2 * LocalConv.context
    expected = {"multiple_of_64": {128, 64}, "fixed_length": {30}, "no_segment": {whole_track}}
    assert padded_lengths == expected[model_kind]


def test_streamed_shifts_draw_the_same_shifts_from_the_seed(mix):
    torch.manual_seed(0)
    model = LocalConv(segment=0.2, with_context=False)  # chunk edges show, so the shifts must agree
    for seed in (1, 2):
        expected = apply_model(model, mix, shifts=3, seed=seed, batch_size=2)
        got = streamed(model, mix, [90], shifts=3, seed=seed, batch_size=2)
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_streamed_normalisation_uses_whole_track_statistics(mix):
    loud = 5 * mix + 0.3
    model = WholeTrackCounter()
    expected = apply_model(model, loud, normalize=True)
    torch.testing.assert_close(streamed(model, loud, [100], normalize=True), expected, atol=1e-5, rtol=0)
    torch.manual_seed(0)
    chunked = LocalConv(segment=0.25, with_context=False)
    expected = apply_model(chunked, loud, normalize=True, shifts=2)
    torch.testing.assert_close(
        streamed(chunked, loud, [64], normalize=True, shifts=2), expected, atol=1e-5, rtol=0
    )


def test_streamed_bag_with_shifts_and_one_target_members(mix):
    torch.manual_seed(0)
    bag = BagOfModels(
        [LocalConv(segment=0.3, with_context=False), Pointwise(segment=0.2), Pointwise(sources=["vocals"])],
        weights=[[1, 2], [3, 0], [0, 1]],
    )
    for shifts in (0, 2):
        expected = apply_model(bag, mix, shifts=shifts, normalize=True, batch_size=3)
        got = streamed(bag, mix, [128], shifts=shifts, normalize=True, batch_size=3)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_a_bag_holding_one_model_twice_draws_shifts_for_each_member(mix):
    torch.manual_seed(0)
    model = LocalConv(segment=0.2, with_context=False)
    bag = BagOfModels([model, model], weights=[[1, 1], [2, 1]])
    expected = apply_model(bag, mix, shifts=1, seed=3)
    torch.testing.assert_close(streamed(bag, mix, [100], shifts=1, seed=3), expected, atol=1e-6, rtol=0)


def test_concurrent_jobs_give_the_same_stems(mix):
    torch.manual_seed(0)
    bag = BagOfModels([LocalConv(segment=0.2), LocalConv(segment=0.3, with_context=False)])
    one = streamed(bag, mix, [200], shifts=1, batch_size=2)
    torch.testing.assert_close(streamed(bag, mix, [200], shifts=1, batch_size=2, jobs=3), one, atol=0, rtol=0)


@pytest.mark.parametrize(("name", "segment"), [("hdemucs", 0.15), ("demucs", 0.15), ("htdemucs", None)])
def test_streamed_demucs_family_with_normalisation_and_shifts(name, segment):
    """Hybrid Demucs, Demucs and HT Demucs (fixed-length chunks), whole-track normalisation on."""
    model = tiny(name)
    mix = 0.1 * torch.randn(2, 9000, generator=torch.Generator().manual_seed(3)) + 0.02
    options = dict(segment=segment, overlap=0.25, batch_size=2, shifts=1)
    expected = apply_model(model, mix, normalize=True, **options)
    got = streamed(model, mix, [4096], normalize=True, **options)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5 * float(expected.abs().max()), rtol=0)


def test_streamed_bag_of_demucs_family_models():
    bag = BagOfModels([tiny("hdemucs"), tiny("demucs")], weights=[[1, 1, 0, 2], [1, 0, 1, 1]])
    mix = 0.1 * torch.randn(2, 7000, generator=torch.Generator().manual_seed(4))
    expected = apply_model(bag, mix, segment=0.1, normalize=True)
    got = streamed(bag, mix, [3000], segment=0.1, normalize=True)
    torch.testing.assert_close(got, expected, atol=1e-5 * float(expected.abs().max()), rtol=0)


# ----------------------------------------------------------------------------------------------
# Memory does not grow with the track


@pytest.mark.parametrize("shifts", [0, 2])
def test_the_engine_holds_the_same_number_of_samples_for_a_10x_longer_track(shifts):
    torch.manual_seed(0)
    bag = BagOfModels([LocalConv(segment=0.3), Pointwise(segment=0.2)])
    peaks = []
    for length in (2_000, 20_000):
        engine = StreamingEngine(bag, shifts=shifts, batch_size=2)
        signal = torch.randn(2, length)
        total = 0
        for block in blocks(signal, [50]):
            total += engine.push(block).shape[-1]
        total += engine.finish().shape[-1]
        assert total == length
        peaks.append(engine.peak_held)
    assert peaks[0] == peaks[1]
    # Input from a padded chunk back, a batch of chunks, the 0.5 s of shift: a few hundred samples.
    assert peaks[1] < 1_500 * (1 + shifts)


def test_a_whole_track_model_holds_the_whole_track(mix):
    engine = StreamingEngine(WholeTrackCounter())
    for block in blocks(mix, [100]):
        assert engine.push(block).shape[-1] == 0  # nothing is final before the end
    assert engine.finish().shape[-1] == mix.shape[-1]
    assert engine.peak_held >= mix.shape[-1]


def test_running_statistics_equal_whole_track_statistics(mix):
    loud = 3 * mix + 0.7
    statistics = RunningStatistics()
    for block in blocks(loud, [1, 99, 500]):
        statistics.update(block)
    mean, std = statistics.result()
    mono = loud.mean(dim=0)
    assert mean == pytest.approx(float(mono.mean()), abs=1e-6)
    assert std == pytest.approx(float(mono.std(correction=0)), rel=1e-6)
    assert track_statistics([torch.zeros(2, 10)]) == (0.0, 1e-8)  # silence keeps a tiny scale
    with pytest.raises(ValueError, match="length 0"):
        RunningStatistics().result()


def test_the_engine_refuses_what_it_cannot_stream(mix):
    with pytest.raises(ValueError, match="needs the reference stems"):
        StreamingEngine(ReturnsReferences())
    engine = StreamingEngine(Pointwise())
    with pytest.raises(ValueError, match=r"expected blocks of shape \[2, time\]"):
        engine.push(torch.zeros(1, 10))
    with pytest.raises(ValueError, match="length 0"):
        StreamingEngine(Pointwise()).finish()
    with pytest.raises(SepzooError, match="longer than"):
        StreamingEngine(FixedLengthRecorder(), segment=0.6)


# ----------------------------------------------------------------------------------------------
# Reading and resampling in blocks


@pytest.mark.parametrize(("orig", "new"), [(48000, 44100), (22050, 44100), (44100, 16000), (8000, 44100)])
def test_block_resampling_equals_whole_signal_resampling(orig, new):
    signal = torch.randn(2, 12_345, generator=torch.Generator().manual_seed(0))
    whole = resample(signal, orig, new)
    resampler = BlockResampler(orig, new, channels=2)
    pieces = [resampler.push(block) for block in blocks(signal, [1, 500, 4096, 33])]
    got = torch.cat([*pieces, resampler.finish()], dim=-1)
    assert got.shape == whole.shape
    torch.testing.assert_close(got, whole, atol=1e-6, rtol=0)


def write(path: Path, data: np.ndarray, rate: int = 44100, subtype: str = "PCM_16") -> Path:
    sf.write(path, data, rate, subtype=subtype)
    return path


def noise(frames: int, channels: int = 2, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal((frames, channels))).astype(np.float32)


@pytest.mark.parametrize(
    ("name", "rate", "channels", "subtype"),
    [("stereo.wav", 44100, 2, "FLOAT"), ("mono.flac", 48000, 1, "PCM_24"), ("low.wav", 22050, 2, "PCM_16")],
)
def test_audio_stream_reads_small_blocks_and_equals_reading_whole(tmp_path, name, rate, channels, subtype):
    path = write(tmp_path / name, noise(30_000, channels), rate, subtype)
    stream = AudioStream(path, sample_rate=44100, channels=2, block_frames=4096)
    got = torch.cat(list(stream), dim=-1)
    whole, _ = read_audio(path, sample_rate=44100, channels=2)
    assert stream.largest_read == 4096
    assert got.shape == whole.shape and stream.estimated_frames == whole.shape[-1]
    torch.testing.assert_close(got, whole, atol=1e-6, rtol=0)
    assert torch.equal(torch.cat(list(stream), dim=-1), got)  # every pass reads the same


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
@pytest.mark.parametrize("suffix", [".mp3", ".m4a"])
def test_audio_stream_decodes_through_ffmpeg_in_blocks(tmp_path, suffix):
    source = write(tmp_path / "source.wav", noise(22050))
    encoded = tmp_path / f"song{suffix}"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(source), str(encoded)], check=True)
    stream = AudioStream(encoded, sample_rate=44100, channels=2, block_frames=2048)
    got = torch.cat(list(stream), dim=-1)
    whole, _ = read_audio(encoded, sample_rate=44100, channels=2)  # one whole decode
    assert stream.largest_read == 2048 and not stream.info.exact
    assert torch.equal(got, whole)
    assert abs(stream.estimated_frames - got.shape[-1]) < 4096  # the container's duration


def test_bad_blocks_are_named_data_errors(tmp_path):
    data = noise(20_000)
    data[15_000, 1] = np.nan
    nan_file = write(tmp_path / "nan.wav", data, subtype="FLOAT")
    with pytest.raises(DataError, match=r"nan\.wav: contains NaN"):
        list(AudioStream(nan_file, block_frames=4096))
    flac = write(tmp_path / "cut.flac", noise(44100))
    flac.write_bytes(flac.read_bytes()[: flac.stat().st_size // 2])
    with pytest.raises(DataError, match=r"cut\.flac: cannot decode it after frame \d+, it looks truncated"):
        list(AudioStream(flac, block_frames=4096))
    with pytest.raises(DataError, match="holds no audio samples"):
        AudioStream(write(tmp_path / "empty.wav", np.zeros((0, 2))))


# ----------------------------------------------------------------------------------------------
# Writing in blocks


def test_a_stem_appears_only_when_committed_and_abort_leaves_nothing(tmp_path):
    path = tmp_path / "vocals.wav"
    writer = StemWriter(path, 44100, 2, clip_mode="clamp")
    writer.write(torch.full((2, 1000), 0.25))
    assert not path.exists() and len(list(tmp_path.glob(".vocals.wav.*.part"))) == 1
    writer.commit()
    assert sf.info(str(path)).frames == 1000 and not list(tmp_path.glob("*.part"))
    other = StemWriter(tmp_path / "drums.wav", 44100, 2)
    other.write(torch.zeros(2, 10))
    other.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vocals.wav"]


@pytest.mark.parametrize(
    ("clip_mode", "subtype", "expected_peak"),
    [
        ("rescale", "PCM_16", 1 / 1.01),
        ("rescale", "FLOAT", 1 / 1.01),
        ("clamp", "PCM_24", 0.99),
        ("none", "FLOAT", 2.0),
        ("none", "PCM_16", 1.0),  # the integer format clips at full scale
    ],
)
def test_clip_modes_follow_demucs(tmp_path, clip_mode, subtype, expected_peak):
    path = tmp_path / "loud.wav"
    writer = StemWriter(path, 44100, 2, subtype=subtype, clip_mode=clip_mode, block_frames=300)
    signal = torch.linspace(-1.0, 2.0, 2000).repeat(2, 1)
    for block in blocks(signal, [700]):
        writer.write(block)
    writer.commit()
    data, _ = sf.read(path, dtype="float32")
    assert sf.info(str(path)).subtype == subtype
    assert float(np.abs(data).max()) == pytest.approx(expected_peak, abs=1e-4)


def test_quiet_stems_are_not_rescaled(tmp_path):
    path = tmp_path / "quiet.wav"
    writer = StemWriter(path, 44100, 1, subtype="FLOAT")
    writer.write(torch.full((1, 100), 0.5))
    writer.commit()
    assert np.allclose(sf.read(path)[0], 0.5)


def test_flac_holds_integers_only(tmp_path):
    writer = StemWriter(tmp_path / "a.flac", 44100, 2, subtype="PCM_24")
    writer.write(torch.zeros(2, 10))
    writer.commit()
    assert sf.info(str(tmp_path / "a.flac")).subtype == "PCM_24"
    with pytest.raises(ValueError, match="FLAC samples as FLOAT"):
        StemWriter(tmp_path / "b.flac", 44100, 2, subtype="FLOAT")
