"""Ensemble modes: a bag's median, minimum and maximum, per waveform sample or per STFT bin, and its
weighted mean; on hand-made member outputs with known answers, through both engines, in model
files and on the command line."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from cli_helpers import assert_one_line_error, run
from torch import Tensor, nn

from sepzoo.dsp.stft import hann_window, istft, stft
from sepzoo.engine.apply import apply_model
from sepzoo.engine.streaming import stream_model
from sepzoo.models import create_model, get_model_class
from sepzoo.models.bag import BagOfModels, Combination, MemberCombiner, combine_members
from sepzoo.models.base import Separator
from sepzoo.models.files import load_model_file, safe_load, save_model_file

RATE = 1024  # a bin of a 256-point STFT is then 4 Hz wide


class Gain(Separator):
    """Each source is the mixture times a learnable per-source gain (one per source)."""

    def __init__(self, gains: list[float], sources: list[str] | None = None, segment: float = 0.3) -> None:
        super().__init__(sources or ["drums", "vocals"][: len(gains)], RATE, 2, segment)
        self.gains = nn.Parameter(torch.tensor(gains))

    def forward(self, mix: Tensor, references: Tensor | None = None) -> Tensor:
        return mix.unsqueeze(1) * self.gains.view(1, -1, 1, 1)


def combined(bag: BagOfModels, outputs: list[Tensor]) -> Tensor:
    """The bag's combination of given member outputs ``[B, S_m, C, T]`` (one per member)."""
    given = iter(outputs)
    mix = torch.zeros(outputs[0].shape[0], 2, outputs[0].shape[-1])
    return combine_members(bag, mix, None, lambda *_: next(given))


def as_output(values: list[float]) -> Tensor:
    """One member's output ``[1, 1, 2, T]``: ``values`` on both channels of one source."""
    return torch.tensor(values).expand(2, -1).reshape(1, 1, 2, -1)


def tone(amplitude: float, bin_: int, length: int, n_fft: int = 256, phase: float = 0.0) -> Tensor:
    """A sinusoid at the centre of STFT bin ``bin_``."""
    t = torch.arange(length, dtype=torch.float64)
    return (amplitude * torch.sin(2 * math.pi * bin_ * t / n_fft + phase)).float()


def spec_reference(outputs: list[Tensor], mode: str, n_fft: int, hop: int) -> Tensor:
    """The whole-track STFT of each member, combined per bin by magnitude, inverted (MSST's way)."""
    window = hann_window(n_fft, outputs[0])
    spectra = torch.stack([stft(o, n_fft, hop, window) for o in outputs])  # M, ..., F, N
    if mode == "mean":
        chosen = spectra.mean(dim=0)
    else:
        order = spectra.abs().argsort(dim=0)
        pick = {"min": 0, "max": -1, "median": len(outputs) // 2}[mode]
        chosen = spectra.take_along_dim(order[pick : pick + 1 or None], dim=0)[0]
    return istft(chosen, n_fft, hop, window, length=outputs[0].shape[-1])


# -- waveform domain ------------------------------------------------------------------------------

A, B, C = [3.0, -1.0, 0.5, -4.0], [-2.0, 2.0, -0.25, 1.0], [-2.5, -3.0, 0.4, 2.0]


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("min", [-2.0, -1.0, -0.25, 1.0]),  # smallest absolute value, its sign kept
        ("max", [3.0, -3.0, 0.5, -4.0]),
        ("median", [-2.0, -1.0, 0.4, 1.0]),
        ("mean", [-0.5, -2 / 3, 0.65 / 3, -1 / 3]),
    ],
)
def test_wave_modes_per_sample(mode, expected):
    bag = BagOfModels([Gain([1.0]) for _ in range(3)], combination=Combination(mode, "wave"))
    out = combined(bag, [as_output(A), as_output(B), as_output(C)])
    torch.testing.assert_close(out, as_output(expected), atol=1e-6, rtol=0)


def test_median_of_an_even_number_of_members_is_the_middle_pair_average():
    bag = BagOfModels([Gain([1.0]) for _ in range(2)], combination=Combination("median"))
    out = combined(bag, [as_output(A), as_output(B)])
    torch.testing.assert_close(out, as_output([0.5, 0.5, 0.125, -1.5]), atol=1e-6, rtol=0)


def test_weighted_mean_per_source():
    bag = BagOfModels([Gain([1.0, 1.0]), Gain([1.0, 1.0])], weights=[[3, 1], [1, 0]])
    first = torch.cat([as_output(A), as_output(B)], dim=1)
    second = torch.cat([as_output(C), as_output(C)], dim=1)
    out = combined(bag, [first, second])
    expected_drums = [(3 * a + c) / 4 for a, c in zip(A, C)]
    torch.testing.assert_close(out[:, :1], as_output(expected_drums), atol=1e-6, rtol=0)
    torch.testing.assert_close(out[:, 1:], as_output(B), atol=1e-6, rtol=0)


def test_wave_max_and_min_through_the_engine():
    torch.manual_seed(0)
    mix = torch.randn(2, 700)
    gains = [[0.5, -2.0], [-3.0, 1.0], [1.0, 0.25]]
    members = [Gain(g, segment=s) for g, s in zip(gains, (0.3, 0.2, 0.25))]
    bag = BagOfModels(members, combination=Combination("max"))
    out = apply_model(bag, mix)
    torch.testing.assert_close(out[0], -3.0 * mix, atol=1e-5, rtol=0)  # largest |gain| per source
    torch.testing.assert_close(out[1], -2.0 * mix, atol=1e-5, rtol=0)
    low = apply_model(BagOfModels(members, combination=Combination("min")), mix)
    torch.testing.assert_close(low, torch.stack([0.5 * mix, 0.25 * mix]), atol=1e-5, rtol=0)


# -- spectrogram domain -------------------------------------------------------------------------

LENGTH, N_FFT, HOP = 4096, 256, 64
LOW, HIGH = 8, 40  # bins


def tones(low: float, high: float, phase: float = 0.0) -> Tensor:
    """One member's output ``[1, 1, 2, LENGTH]``: a tone in bin LOW and one in bin HIGH."""
    signal = tone(low, LOW, LENGTH, phase=phase) + tone(high, HIGH, LENGTH)
    return signal.expand(2, -1).reshape(1, 1, 2, -1)


@pytest.mark.parametrize(
    "mode, low, high",
    [("max", 1.0, 0.8), ("min", 0.3, 0.2), ("median", 0.6, 0.5)],
)
def test_spec_modes_choose_bins_by_magnitude(mode, low, high):
    # Members: amplitudes (1.0, 0.5) / (0.3, 0.8) / (0.6, 0.2) in the two bins; the third's low
    # tone is a quarter period late, so the chosen bin's phase shows in the result.
    outputs = [tones(1.0, 0.5), tones(0.3, 0.8), tones(0.6, 0.2, phase=math.pi / 2)]
    bag = BagOfModels([Gain([1.0]) for _ in range(3)], combination=Combination(mode, "spec", N_FFT, HOP))
    out = combined(bag, outputs)
    phase = math.pi / 2 if mode == "median" else 0.0
    expected = tones(low, 0.0, phase=phase) + tones(0.0, high)
    inside = slice(N_FFT, LENGTH - N_FFT)  # away from the zero-padded ends
    assert out.shape == expected.shape
    torch.testing.assert_close(out[..., inside], expected[..., inside], atol=2e-3, rtol=0)
    # Per sample, the waveform domain chooses something else entirely.
    wave = combined(BagOfModels(bag.members, combination=Combination(mode)), outputs)
    assert (wave - expected)[..., inside].abs().max() > 0.1


@pytest.mark.parametrize(
    "mode, n_fft, hop", [("mean", 256, 64), ("median", 256, 64), ("min", 64, 8), ("max", 256, 128)]
)
def test_spec_modes_match_the_whole_track_stft_and_stream_block_by_block(mode, n_fft, hop):
    # 64/8 makes 376 frames, more than the combiner transforms at once.
    torch.manual_seed(1)
    outputs = [torch.randn(1, 2, 2, 3000) for _ in range(3)]
    bag = BagOfModels([Gain([1.0, 1.0]) for _ in range(3)], combination=Combination(mode, "spec", n_fft, hop))
    whole = combined(bag, outputs)
    torch.testing.assert_close(whole, spec_reference(outputs, mode, n_fft, hop), atol=2e-6, rtol=0)
    combiner, pieces, start = MemberCombiner(bag), [], 0
    for size in (1, 5, 63, 64, 300, 1000, 1567):
        pieces.append(combiner.push([o[..., start : start + size] for o in outputs]))
        start += size
    pieces.append(combiner.finish())
    torch.testing.assert_close(torch.cat(pieces, dim=-1), whole, atol=1e-6, rtol=0)


@pytest.mark.parametrize("length", [1, 100, N_FFT + 1])
def test_spec_combination_of_tracks_shorter_than_a_frame(length):
    torch.manual_seed(2)
    outputs = [torch.randn(1, 1, 2, length) for _ in range(3)]
    bag = BagOfModels([Gain([1.0]) for _ in range(3)], combination=Combination("max", "spec", N_FFT, HOP))
    out = combined(bag, outputs)
    torch.testing.assert_close(out, spec_reference(outputs, "max", N_FFT, HOP), atol=2e-6, rtol=0)


def test_spec_weighted_mean_is_the_waveform_weighted_mean():
    torch.manual_seed(3)
    outputs = [torch.randn(1, 2, 2, 2000) for _ in range(2)]
    weights = [[2.0, 1.0], [1.0, 3.0]]
    members = [Gain([1.0, 1.0]), Gain([1.0, 1.0])]
    spec = combined(
        BagOfModels(members, weights, combination=Combination("mean", "spec", N_FFT, HOP)), outputs
    )
    wave = combined(BagOfModels(members, weights), outputs)
    torch.testing.assert_close(spec, wave, atol=1e-5, rtol=0)


@pytest.mark.parametrize("domain", ["wave", "spec"])
def test_streamed_bag_modes_give_apply_model_stems(domain):
    torch.manual_seed(4)
    mix = torch.randn(2, 2500)
    members = [Gain([0.5, -2.0], segment=0.3), Gain([-3.0, 1.0], segment=0.2), Gain([1.0, 0.25])]
    bag = BagOfModels(members, combination=Combination("median", domain, N_FFT, HOP))
    expected = apply_model(bag, mix, shifts=1, normalize=True)
    from sepzoo.engine.streaming import track_statistics

    blocks = list(mix.split(333, dim=-1))
    got = torch.cat(list(stream_model(bag, blocks, shifts=1, statistics=track_statistics(blocks))), dim=-1)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


# -- bad input ------------------------------------------------------------------------------------


def test_weights_with_another_mode_than_mean_are_refused():
    with pytest.raises(ValueError, match="mode 'median'"):
        BagOfModels([Gain([1.0]), Gain([1.0])], weights=[[1], [2]], combination=Combination("median"))
    bag = BagOfModels([Gain([1.0]), Gain([1.0])], weights=[[1], [1]], combination=Combination("median"))
    assert bag.weights == [[1.0], [1.0]]


def test_modes_other_than_mean_need_members_with_the_same_sources():
    one_target = [Gain([1.0], ["drums"]), Gain([1.0], ["vocals"])]
    assert BagOfModels(one_target).sources == ["drums", "vocals"]
    with pytest.raises(ValueError, match=r"differing: \['drums', 'vocals'\]"):
        BagOfModels(one_target, combination=Combination("max"))


@pytest.mark.parametrize(
    "settings, fragment",
    [
        ({"mode": "mode"}, "mode 'mode'"),
        ({"domain": "time"}, "domain 'time'"),
        ({"domain": "spec", "n_fft": 256, "hop": 200}, "hop=200"),
    ],
)
def test_bad_combination_settings(settings, fragment):
    with pytest.raises(ValueError, match=fragment):
        Combination(**settings)


# -- files and the command line -------------------------------------------------------------------


def tiny_files(tmp_path: Path, sources: list[list[str]]) -> list[str]:
    kwargs = get_model_class("conv_tasnet").test_kwargs
    files = []
    for index, member_sources in enumerate(sources):
        torch.manual_seed(index)
        model = create_model("conv_tasnet", **{**kwargs, "sources": member_sources})
        files.append(str(save_model_file(model, tmp_path / f"m{index}.sepzoo")))
    return files


def test_model_files_keep_the_combination_and_old_bag_files_load_as_means(tmp_path):
    members = [load_model_file(f) for f in tiny_files(tmp_path, [["drums", "bass"]] * 2)]
    bag = BagOfModels(members, combination=Combination("max", "spec", 1024, 256))
    path = save_model_file(bag, tmp_path / "bag.sepzoo")
    assert safe_load(path)["version"] == 2
    assert load_model_file(path).combination == Combination("max", "spec", 1024, 256)
    default = save_model_file(BagOfModels(members), tmp_path / "mean.sepzoo")
    content = safe_load(default)
    assert content["version"] == 1
    del content["combination"]  # as a bag file written before modes
    torch.save(content, tmp_path / "old.sepzoo")
    assert load_model_file(tmp_path / "old.sepzoo").combination == Combination()


def test_cli_bag_with_mode_and_domain_end_to_end(capsys, tmp_path):
    files = tiny_files(tmp_path, [["drums", "bass", "other", "vocals"]] * 2)
    out = tmp_path / "out.sepzoo"
    args = ["--mode", "max", "--domain", "spec", "--n-fft", "512", "--hop", "128"]
    code, stdout, err = run(capsys, "bag", *files, *args, "-o", str(out))
    assert code == 0, err
    assert "max of spectrograms" in stdout
    bag = load_model_file(out)
    assert bag.combination == Combination("max", "spec", 512, 128)
    torch.manual_seed(5)
    mix = torch.randn(2, 6000)
    members = [apply_model(member, mix).unsqueeze(0) for member in bag.members]
    expected = spec_reference(members, "max", 512, 128)[0]
    torch.testing.assert_close(apply_model(bag, mix), expected, atol=1e-5, rtol=0)


def test_eval_scores_a_bag_with_a_mode(capsys, tmp_path, toy_root):
    # Oracles run in no time, and a bag of them passes the references to its members.
    bag = BagOfModels(
        [create_model(name) for name in ("irm1", "ibm1", "mix")], combination=Combination("median", "spec")
    )
    out = save_model_file(bag, tmp_path / "bag.sepzoo")
    code, _, err = run(
        capsys, "eval", "-n", str(out), "--root", str(toy_root), "-o", str(tmp_path / "ev"), "--tracks", "1"
    )
    assert code == 0 and (tmp_path / "ev" / "summary.json").is_file(), err


def test_cli_bag_refuses_weights_with_median_and_mixed_sources_with_max(capsys, tmp_path):
    files = tiny_files(tmp_path, [["drums", "vocals"], ["drums", "bass"]])
    out = tmp_path / "out.sepzoo"
    code, _, err = run(capsys, "bag", *files, "--mode", "median", "--weights", "1", "2", "-o", str(out))
    assert_one_line_error(code, err, "--weights", "--mode median")
    code, _, err = run(capsys, "bag", *files, "--mode", "max", "-o", str(out))
    assert_one_line_error(code, err, "mode 'max'", "['bass', 'vocals']")
    code, _, err = run(capsys, "bag", *files, "--n-fft", "512", "-o", str(out))
    assert_one_line_error(code, err, "--domain spec")
    assert not out.exists()
    code, _, err = run(capsys, "bag", *files, "--weights", "1", "2,0,1", "-o", str(out))
    assert code == 0, err
    assert load_model_file(out).weights == [[1.0, 1.0, 0.0], [2.0, 0.0, 1.0]]
