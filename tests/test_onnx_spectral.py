"""ONNX export of the spectrogram models (BSRNN, BS-RoFormer, Mel-RoFormer, MDX23C, SCNet): the
NumPy STFT, the real-valued core graph and the NumPy masking and inverse STFT of
:mod:`sepzoo.deploy.spectral`, against the torch model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sepzoo.deploy.adapters import get_adapter
from sepzoo.export.graph import onnx_parity
from sepzoo.models import get_model_class
from sepzoo.models.scnet import _dft_matrices

TOLERANCE = 1e-4

ADAPTERS = {
    "bsrnn": "spectral_mask",
    "bs_roformer": "spectral_mask",
    "mel_band_roformer": "spectral_mask",
    "mdx23c": "spectral_stems",
    "scnet": "spectral_stems",
}


def _tiny(name: str, **overrides: object) -> torch.nn.Module:
    cls = get_model_class(name)
    torch.manual_seed(0)
    return cls(**{**cls.test_kwargs, **overrides}).eval()


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_onnx_parity(name: str) -> None:
    model = _tiny(name)
    length = model.valid_length(1000)
    plan = model.onnx_export(length)
    assert plan.adapter == ADAPTERS[name]
    assert plan.settings["length"] == length and plan.settings["sources"] == len(model.sources)
    errors = onnx_parity(model, length)
    assert len(errors) == len(model.sources)
    assert max(errors) <= TOLERANCE, errors


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        # A window shorter than the FFT, a normalised STFT and an odd head (the rotary
        # embedding leaves the last feature as it is); the length needs padding to whole hops.
        (
            "mel_band_roformer",
            {"stft_win_length": 32, "stft_hop_length": 8, "stft_normalized": True, "dim_head": 5},
        ),
        # A non-normalised STFT with a rectangular window shorter than the FFT, and a length that
        # SCNet pads to an even number of frames.
        ("scnet", {"normalized": False, "win_size": 32, "sources": ["vocals"]}),
    ],
)
def test_onnx_parity_of_other_settings(name: str, overrides: dict) -> None:
    model = _tiny(name, **overrides)
    assert max(onnx_parity(model, 333)) <= TOLERANCE


@pytest.mark.parametrize("frames", [2, 8, 26])
def test_dft_matrices_match_torch_fft(frames: int) -> None:
    # SCNet's FFTs along time become these products in an exported graph.
    x = torch.randn(2, 3, frames, dtype=torch.float64)
    cos, sin = _dft_matrices(frames, x)
    spectrum = torch.fft.rfft(x, dim=-1, norm="ortho")
    torch.testing.assert_close(x @ cos, spectrum.real)
    torch.testing.assert_close(-(x @ sin), spectrum.imag)
    bins = torch.randn(2, 3, frames // 2 + 1, dtype=torch.complex128)  # edge bins not real
    icos, isin = _dft_matrices(frames, x, inverse=True)
    expected = torch.fft.irfft(bins, n=frames, dim=-1, norm="ortho")
    torch.testing.assert_close(bins.real @ icos - bins.imag @ isin, expected)


def test_adapter_refuses_incomplete_settings() -> None:
    with pytest.raises(ValueError, match="lack 'hop_length'"):
        get_adapter("spectral_mask", {"n_fft": 64, "win_length": 64, "length": 100, "sources": 1})
    settings = {"n_fft": 64, "hop_length": 16, "win_length": 64, "length": 100, "sources": 1}
    with pytest.raises(ValueError, match="window must be one of"):
        get_adapter("spectral_stems", {**settings, "window": "hamming"})
    adapter = get_adapter("spectral_stems", settings)
    with pytest.raises(ValueError, match="takes 100 samples, got 99"):
        adapter.inputs(np.zeros((1, 2, 99), dtype=np.float32))


def test_spectral_adapters_run_without_torch() -> None:
    # Both adapters of an exported folder in a process where importing torch fails.
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ImportError('torch is blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import numpy as np\n"
        "from sepzoo.deploy.adapters import get_adapter\n"
        "settings = {'n_fft': 64, 'hop_length': 16, 'win_length': 64, 'length': 100,\n"
        "            'padded_length': 112, 'pad_mode': 'reflect', 'sources': 1}\n"
        "mix = np.random.default_rng(0).standard_normal((1, 2, 100)).astype(np.float32)\n"
        "mask = get_adapter('spectral_mask', settings)\n"
        "feeds, state = mask.inputs(mix)\n"
        "ones = np.zeros((1, 1, *feeds['spectrum'].shape[1:]), np.float32)\n"
        "ones[..., 0] = 1\n"
        "stems = mask.outputs({'masks': ones}, state, mix)\n"
        "assert np.abs(stems[:, 0] - mix).max() < 1e-5, np.abs(stems[:, 0] - mix).max()\n"
        "spectra = get_adapter('spectral_stems', settings)\n"
        "feeds, state = spectra.inputs(mix)\n"
        "stems = spectra.outputs({'spectra': feeds['spectrum'][:, None]}, state, mix)\n"
        "assert np.abs(stems[:, 0] - mix).max() < 1e-5\n"
        "assert 'torch' not in sys.modules\n"
    )
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
