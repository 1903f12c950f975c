"""Oracle baselines: the definitions of sigsep-mus-oracle, answers known in advance, the toy set's
ordering (IRM2 far above MIX, IRM2 >= IRM1), and one-line errors."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy.signal import istft, stft

from sepzoo.engine.apply import apply_model
from sepzoo.evaluation.evaluate import evaluate
from sepzoo.evaluation.metrics import nsdr
from sepzoo.models import create_model, get_model_class
from sepzoo.models.oracles import EPS

ORACLES = ["irm1", "irm2", "ibm1", "ibm2", "mwf"]
N_FFT = 2048


# ----------------------------------------------------------------------------------------------
# The definitions, written independently with NumPy and scipy's STFT (channels first, [S, C, T]).


def scipy_spectra(signal: np.ndarray) -> np.ndarray:
    return stft(signal, nperseg=N_FFT)[-1]


def scipy_inverse(spectra: np.ndarray, length: int) -> np.ndarray:
    return istft(spectra)[1][..., :length]


def reference_irm(stems: np.ndarray, alpha: float) -> np.ndarray:
    mix = scipy_spectra(stems.sum(0))
    powers = [np.abs(scipy_spectra(stem)) ** alpha for stem in stems]
    total = EPS + sum(powers)
    return np.stack([scipy_inverse(mix * power / total, stems.shape[-1]) for power in powers])


def reference_ibm(stems: np.ndarray, alpha: float, theta: float = 0.5) -> np.ndarray:
    mix = scipy_spectra(stems.sum(0))
    estimates = []
    for stem in stems:
        ratio = np.abs(scipy_spectra(stem)) ** alpha / (EPS + np.abs(mix) ** alpha)
        estimates.append(scipy_inverse(mix * (ratio >= theta), stems.shape[-1]))
    return np.stack(estimates)


def invert_with_eps(matrices: np.ndarray) -> np.ndarray:
    """2x2 inverses with ``eps`` added to the determinant, as the definition regularises them."""
    a, b, c, d = matrices[..., 0, 0], matrices[..., 0, 1], matrices[..., 1, 0], matrices[..., 1, 1]
    adjugate = np.stack([np.stack([d, -b], -1), np.stack([-c, a], -1)], -2)
    return adjugate / (EPS + a * d - b * c)[..., None, None]


def reference_mwf(stems: np.ndarray) -> np.ndarray:
    """Loops over channel pairs, as the definition reads; ``[C, F, N]`` spectra."""
    mix = scipy_spectra(stems.sum(0))
    channels, bins, frames = mix.shape
    identity = np.eye(channels)
    densities, covariances = [], []
    for stem in stems:
        spectra = scipy_spectra(stem)
        outer = np.zeros((bins, frames, channels, channels), dtype=complex)
        for i, j in itertools.product(range(channels), repeat=2):
            outer[..., i, j] = spectra[i] * np.conj(spectra[j])
        density = np.mean(np.abs(spectra) ** 2, axis=0)
        covariance = np.mean(outer / (EPS + density[..., None, None]), axis=1)
        trace = np.real(np.trace(covariance, axis1=-2, axis2=-1))
        covariance = covariance * channels / trace[:, None, None] + EPS * identity
        inverse = invert_with_eps(covariance)
        density = np.real(np.einsum("fij,fnji->fn", inverse, outer)) / channels
        densities.append(density)
        covariances.append(covariance)
    mixture_covariance = sum(v[..., None, None] * r[:, None] for v, r in zip(densities, covariances))
    mixture_inverse = invert_with_eps(mixture_covariance)
    estimates = []
    for density, covariance in zip(densities, covariances):
        gain = density[..., None, None] * covariance[:, None] @ mixture_inverse
        filtered = np.einsum("fnij,jfn->ifn", gain, mix)
        estimates.append(scipy_inverse(filtered, stems.shape[-1]))
    return np.stack(estimates)


REFERENCES = {
    "irm1": lambda stems: reference_irm(stems, 1),
    "irm2": lambda stems: reference_irm(stems, 2),
    "ibm1": lambda stems: reference_ibm(stems, 1),
    "ibm2": lambda stems: reference_ibm(stems, 2),
    "mwf": reference_mwf,
}


def coloured_stems(length: int, seed: int = 0) -> torch.Tensor:
    """Four stereo stems ``[4, 2, T]`` with different spectra and some inter-channel correlation."""
    generator = torch.Generator().manual_seed(seed)
    stems = torch.randn(4, 2, length, generator=generator, dtype=torch.float64)
    for index in range(4):
        kernel = torch.ones(1, 1, 2 * index + 1, dtype=torch.float64) / (2 * index + 1)
        stems[index] = torch.nn.functional.conv1d(stems[index].unsqueeze(1), kernel, padding=index).squeeze(1)
    stems[:, 1] += 0.5 * stems[:, 0]
    return stems * torch.tensor([1.0, 0.5, 0.3, 0.8], dtype=torch.float64).view(4, 1, 1)


@pytest.mark.parametrize("name", ORACLES)
@pytest.mark.parametrize("length", [5000, 2 * 1024 * 4])
def test_oracle_matches_the_definition(name, length):
    stems = coloured_stems(length)
    model = create_model(name)
    estimate = model(stems.sum(0, keepdim=True), stems.unsqueeze(0))[0]  # float64 in, float64 out
    expected = torch.from_numpy(REFERENCES[name](stems.numpy()))
    scale = stems.abs().max()
    torch.testing.assert_close(estimate / scale, expected / scale, rtol=0, atol=1e-9)


def disjoint_band_noise(
    bands: list[tuple[float, float]], seconds: float = 2.0, rate: int = 44100
) -> torch.Tensor:
    """One stereo stem per frequency band, ``[S, 2, T]``: independent noise in each channel,
    zero outside the band (the bands leave wide gaps between them)."""
    length = int(seconds * rate)
    generator = torch.Generator().manual_seed(3)
    frequencies = torch.fft.rfftfreq(length, 1 / rate)
    stems = []
    for low, high in bands:
        spectrum = torch.fft.rfft(torch.randn(2, length, generator=generator, dtype=torch.float64))
        spectrum[:, (frequencies < low) | (frequencies > high)] = 0
        stems.append(torch.fft.irfft(spectrum, n=length))
    return torch.stack(stems)


@pytest.mark.parametrize("name", ORACLES)
def test_sources_with_disjoint_spectra_are_recovered(name):
    stems = disjoint_band_noise([(100, 400), (1500, 2500), (5000, 7000), (11000, 14000)])
    estimate = create_model(name)(stems.sum(0, keepdim=True), stems.unsqueeze(0))[0]
    scores = nsdr(estimate[..., 4096:-4096], stems[..., 4096:-4096])
    assert (scores > 30).all(), f"{name}: {scores.tolist()}"


@pytest.mark.parametrize("name", ["irm1", "irm2"])
def test_two_identical_sources_get_a_ratio_mask_of_one_half(name):
    source = coloured_stems(6000)[0]
    stems = torch.stack([source, source])  # 2, C, T
    model = create_model(name, sources=["left", "right"])
    mix_spectra = model.stft.forward(stems.sum(0, keepdim=True))
    estimates = model.separate(mix_spectra, model.stft.forward(stems.unsqueeze(0)))
    nonzero = mix_spectra.abs() > 1e-6
    for index in range(2):
        mask = (estimates[0, index] / mix_spectra[0]).real
        torch.testing.assert_close(mask[nonzero[0]], torch.full_like(mask[nonzero[0]], 0.5))
    estimate = model(stems.sum(0, keepdim=True), stems.unsqueeze(0))[0]
    torch.testing.assert_close(estimate, stems, rtol=0, atol=1e-9)


def test_mix_returns_the_mixture_for_every_source():
    mix = torch.randn(2, 2, 777)
    out = create_model("mix")(mix)
    assert out.shape == (2, 4, 2, 777)
    for index in range(4):
        torch.testing.assert_close(out[:, index], mix, rtol=0, atol=0)


def test_oracles_declare_what_they_need():
    for name in ORACLES:
        cls = get_model_class(name)
        assert cls.domain == "oracle" and cls.needs_references
        assert cls.whole_track == (name == "mwf")
        assert create_model(name).num_parameters() == 0
    assert get_model_class("mix").domain == "oracle" and not get_model_class("mix").needs_references
    assert create_model("irm1").alpha == 1 and create_model("irm2").alpha == 2
    assert create_model("ibm1").alpha == 1 and create_model("ibm2").theta == 0.5


def test_mono_mwf_and_ratio_masks():
    stems = coloured_stems(4000)[:, :1]  # 4, 1, T
    for name in ORACLES:
        model = create_model(name, audio_channels=1)
        estimate = model(stems.sum(0, keepdim=True), stems.unsqueeze(0))[0]
        assert estimate.shape == stems.shape and torch.isfinite(estimate).all()


@pytest.mark.parametrize("name", ORACLES)
def test_an_oracle_without_references_is_a_one_line_error(name):
    model = create_model(name)
    mix = torch.zeros(1, 2, 100)
    with pytest.raises(ValueError, match="needs the reference stems") as info:
        model(mix)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="needs the reference stems"):
        apply_model(model, mix[0])


def test_bad_oracle_settings_fail_when_built():
    with pytest.raises(ValueError, match="hop_length"):
        create_model("irm2", n_fft=1024, hop_length=1024)
    with pytest.raises(ValueError, match="alpha must be positive"):
        create_model("irm2", alpha=0)
    with pytest.raises(ValueError, match="theta"):
        create_model("ibm2", theta=1.5)


def test_separate_refuses_an_oracle(tmp_path, toy_root):
    song = next((toy_root / "test").iterdir()) / "mixture.wav"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sepzoo.cli.main",
            "separate",
            "-n",
            "irm2",
            str(song),
            "-o",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "needs the true stems" in result.stderr and "Traceback" not in result.stderr


def test_on_the_toy_set_irm2_beats_the_mixture_widely_and_irm1(tmp_path, toy_root):
    result = subprocess.run(
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
            str(tmp_path / "irm2"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "nSDR" in result.stdout and "mixture" in result.stdout
    scores = {name: evaluate(name, toy_root, "test", tmp_path / name) for name in ("irm1", "mix")}
    import json

    scores["irm2"] = json.loads((tmp_path / "irm2" / "summary.json").read_text())
    for source in ("drums", "bass", "other", "vocals"):
        irm2, irm1 = scores["irm2"]["nSDR"][source], scores["irm1"]["nSDR"][source]
        mixture = scores["mix"]["nSDR"][source]
        assert mixture == pytest.approx(scores["irm2"]["mixture_nSDR"][source], abs=1e-4)
        assert irm2 - mixture > 10, f"{source}: IRM2 {irm2:.2f} vs MIX {mixture:.2f}"
        assert irm2 >= irm1, f"{source}: IRM2 {irm2:.2f} < IRM1 {irm1:.2f}"
