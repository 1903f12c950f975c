"""Parity with the official `demucs.hdemucs.HDemucs`: its checkpoints convert, and sepzoo's Hybrid
Demucs returns the same stems for the same weights, alone and through the inference engine."""

from __future__ import annotations

import pytest
import torch
from demucs.apply import apply_model as official_apply_model
from demucs.hdemucs import HDemucs as OfficialHDemucs
from demucs.states import load_model as official_load_model
from demucs.states import serialize_model
from demucs.wiener import wiener as official_wiener
from omegaconf import OmegaConf
from parity import randomize, relative_error

from sepzoo.convert.demucs import convert_file
from sepzoo.dsp.wiener import demucs_wiener as multichannel_wiener
from sepzoo.engine.apply import apply_model
from sepzoo.errors import CheckpointError
from sepzoo.models import create_model

FOUR = ["drums", "bass", "other", "vocals"]
SIX = ["drums", "bass", "other", "vocals", "guitar", "piano"]

# Small STFTs (nfft 64 or 256) keep every setting fast; stride ** (frequency layers) == nfft / 4.
HDEMUCS_SETTINGS = {
    "hybrid-lstm-attention": dict(
        sources=FOUR, channels=8, depth=4, nfft=256, norm_starts=2, dconv_attn=2, dconv_lstm=2
    ),
    "two-sources-both-branches-wider-time": dict(
        sources=["vocals", "accompaniment"], channels=8, channels_time=12, depth=4, nfft=256, dconv_mode=3,
        context=2, context_enc=1, norm_starts=1, dconv_attn=3, dconv_lstm=3,
    ),
    "six-sources-rough-embedding": dict(
        sources=SIX, channels=8, depth=3, nfft=256, growth=1.5, freq_emb=0.5, emb_scale=3, emb_smooth=False
    ),
    "spectrogram-only": dict(
        sources=FOUR, channels=8, depth=4, nfft=256, hybrid=False, norm_starts=2, dconv_lstm=3
    ),
    "stride-2-no-rewrite-no-embedding": dict(
        sources=FOUR, channels=6, depth=5, nfft=64, stride=2, kernel_size=4, time_stride=4, rewrite=False,
        freq_emb=0, norm_groups=2, norm_starts=3, dconv_depth=-2, dconv_comp=2, samplerate=22050, segment=3,
    ),
    "hybrid-old-band-split": dict(
        sources=FOUR, channels=8, depth=4, nfft=256, hybrid_old=True, multi_freqs=[0.25, 0.5],
        multi_freqs_depth=2, norm_starts=2, dconv_mode=3,
    ),
    "spectrogram-wiener-residual": dict(
        sources=FOUR, channels=8, depth=3, nfft=256, hybrid=False, cac=False, wiener_iters=2, end_iters=0,
        wiener_residual=True,
    ),
    "hybrid-mono-wiener": dict(
        sources=FOUR, audio_channels=1, channels=8, depth=3, nfft=256, cac=False, wiener_iters=1, end_iters=1
    ),
    "hybrid-stereo-wiener": dict(
        sources=FOUR, channels=8, depth=3, nfft=256, cac=False, wiener_iters=2, end_iters=2, dconv_mode=2
    ),
    "hybrid-mixture-phase": dict(
        sources=FOUR, channels=8, depth=3, nfft=256, cac=False, wiener_iters=-1, end_iters=-1
    ),
}  # fmt: skip


def official_hdemucs(settings: dict, seed: int = 0) -> OfficialHDemucs:
    torch.manual_seed(seed)
    return randomize(OfficialHDemucs(**settings), seed)


def save_package(model: torch.nn.Module, path, half: bool = False):
    torch.save(serialize_model(model, OmegaConf.create({}), half=half), path)
    return path


@pytest.mark.parametrize("name", list(HDEMUCS_SETTINGS))
def test_hdemucs_matches_the_official_model(name, tmp_path):
    settings = HDEMUCS_SETTINGS[name]
    theirs = official_hdemucs(settings)
    ours = convert_file(save_package(theirs, tmp_path / "model.th")).eval()
    assert ours.registry_name == "hdemucs" and ours.sources == settings["sources"]
    assert ours.num_parameters() == sum(p.numel() for p in theirs.parameters())
    channels = settings.get("audio_channels", 2)
    for length in (4000, 12345, 30000):
        mix = torch.randn(2, channels, length)
        with torch.no_grad():
            assert relative_error(ours(mix), theirs(mix)) <= 1e-4, length
    theirs.double()
    ours.double()
    mix = torch.randn(1, channels, 7777, dtype=torch.float64)
    with torch.no_grad():
        assert relative_error(ours(mix), theirs(mix)) <= 1e-9


def test_the_default_model_matches_the_official_model(tmp_path):
    theirs = official_hdemucs(dict(sources=FOUR))
    ours = convert_file(save_package(theirs, tmp_path / "model.th")).eval()
    assert ours.num_parameters() == sum(p.numel() for p in theirs.parameters())
    mix = torch.randn(1, 2, 20000)
    with torch.no_grad():
        assert relative_error(ours(mix), theirs(mix)) <= 1e-4


def test_training_mode_uses_the_training_wiener_iterations(tmp_path):
    settings = HDEMUCS_SETTINGS["spectrogram-wiener-residual"]
    theirs = official_hdemucs(settings)
    ours = convert_file(save_package(theirs, tmp_path / "model.th"))
    theirs.train()
    ours.train()
    mix = torch.randn(1, 2, 9000)
    with torch.no_grad():
        assert relative_error(ours(mix), theirs(mix)) <= 1e-4


@pytest.mark.parametrize(
    "settings",
    [
        dict(sources=SIX, channels=16, channels_time=24, depth=7, dconv_mode=3, context_enc=1, hybrid=False),
        dict(sources=FOUR, channels=16, multi_freqs=[0.2, 0.6], cac=False, rewrite=False, freq_emb=0),
    ],
)
def test_parameter_counts_equal_the_official_classes(settings):
    arguments = {("sample_rate" if k == "samplerate" else k): v for k, v in settings.items()}
    ours = create_model("hdemucs", **arguments)
    assert ours.num_parameters() == sum(p.numel() for p in OfficialHDemucs(**settings).parameters())


@pytest.mark.parametrize(
    ("name", "length", "segment", "overlap"),
    [
        ("hybrid-lstm-attention", 60000, 0.5, 0.25),
        ("hybrid-lstm-attention", 44100, 0.33, 0.5),
        ("two-sources-both-branches-wider-time", 9000, 1.0, 0.25),
    ],
)
def test_the_engine_matches_official_apply_model(tmp_path, name, length, segment, overlap):
    theirs = official_hdemucs(HDEMUCS_SETTINGS[name])
    ours = convert_file(save_package(theirs, tmp_path / "model.th")).eval()
    mix = torch.randn(1, 2, length)
    expected = official_apply_model(theirs, mix, shifts=0, split=True, overlap=overlap, segment=segment)
    got = apply_model(ours, mix, segment=segment, overlap=overlap, batch_size=3)
    assert relative_error(got, expected) <= 1e-4


def test_half_precision_packages_match_the_official_loader(tmp_path):
    settings = HDEMUCS_SETTINGS["two-sources-both-branches-wider-time"]
    path = save_package(official_hdemucs(settings), tmp_path / "half.th", half=True)
    package = torch.load(path, weights_only=False)
    assert all(v.dtype == torch.float16 for v in package["state"].values() if v.is_floating_point())
    theirs = official_load_model(package).eval()
    ours = convert_file(path).eval()
    mix = torch.randn(1, 2, 20000)
    with torch.no_grad():
        assert relative_error(ours(mix), theirs(mix)) <= 1e-4


@pytest.mark.parametrize(("channels", "iterations", "residual"), [(2, 0, False), (2, 3, True), (1, 2, False)])
def test_the_wiener_filter_matches_open_unmix(channels, iterations, residual):
    generator = torch.Generator().manual_seed(channels + iterations)
    mix = torch.randn(channels, 33, 40, dtype=torch.complex128, generator=generator)
    mix[:, :3, :5] = 0  # silent bins take the reference's special case
    magnitudes = torch.rand(3, channels, 33, 40, dtype=torch.float64, generator=generator)
    ours = multichannel_wiener(magnitudes, mix, iterations, residual=residual)  # S, C, Fr, N
    # The reference takes [N, Fr, C, S] magnitudes and [N, Fr, C, 2] mixtures, and changes the
    # mixture in place.
    reference_mix = torch.view_as_real(mix.permute(2, 1, 0)).clone()
    theirs = official_wiener(magnitudes.permute(3, 2, 1, 0), reference_mix, iterations, residual=residual)
    theirs = torch.view_as_complex(theirs.transpose(-1, -2).contiguous()).permute(3, 2, 1, 0)
    assert relative_error(ours, theirs) <= 1e-12


def test_a_spectrogram_model_takes_inputs_shorter_than_half_a_frame():
    model = create_model("hdemucs", channels=4, depth=3, nfft=256, hybrid=False).eval()
    for length in (1, 7, 128, 129):
        with torch.no_grad():
            out = model(torch.randn(1, 2, length))
        assert out.shape == (1, 4, 2, length) and torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (dict(depth=2, nfft=256), "single row within depth=2"),
        (dict(depth=4, nfft=512), r"stride \*\* 4 .* must equal the hop"),
        (dict(hybrid=False, hybrid_old=True), "hybrid_old=True needs hybrid=True"),
        (dict(cac=False, wiener_iters=1, end_iters=0), "wiener_iters == end_iters"),
        (dict(multi_freqs=[0.5], norm_starts=1), "norm_starts=1"),
        (dict(nfft=102), "multiple of 4"),
        (dict(dconv_mode=4), "dconv_mode"),
    ],
)
def test_bad_arguments_are_refused_by_name(arguments, message):
    with pytest.raises(ValueError, match=message):
        create_model("hdemucs", **{"channels": 4, **arguments})


def test_packages_that_do_not_fit_are_refused_in_one_line(tmp_path):
    # The official class builds this model, but its forward pass fails: the branches never meet.
    package = serialize_model(OfficialHDemucs(FOUR, channels=4, depth=2, nfft=256), OmegaConf.create({}))
    torch.save(package, tmp_path / "unmerged.th")
    with pytest.raises(CheckpointError, match="cannot build hdemucs.*single row") as error:
        convert_file(tmp_path / "unmerged.th")
    assert "\n" not in str(error.value)
    path = save_package(official_hdemucs(HDEMUCS_SETTINGS["hybrid-old-band-split"]), tmp_path / "model.th")
    package = torch.load(path, weights_only=False)
    package["state"]["tdecoder.9.conv_tr.weight"] = torch.zeros(3)
    del package["state"]["encoder.1.layers.2.conv.bias"]
    torch.save(package, tmp_path / "odd.th")
    with pytest.raises(
        CheckpointError,
        match=r"cannot map: tdecoder\.9\.conv_tr\.weight.*"
        r"nothing maps to: freq_encoder\.1\.bands\.2\.conv\.bias",
    ):
        convert_file(tmp_path / "odd.th")
