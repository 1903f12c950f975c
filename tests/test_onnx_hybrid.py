"""ONNX export of Hybrid Demucs and HT Demucs: the NumPy STFT and padding, the graph of both
branches and the NumPy stems' spectra (complex as channels, the mixture's phase or the Wiener
filter), inverse STFT and sum of the branches of :mod:`sepzoo.deploy.hybrid`, against the torch
model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sepzoo.deploy.adapters import get_adapter
from sepzoo.deploy.hybrid import pad_reflect as numpy_pad_reflect
from sepzoo.export.graph import onnx_parity, relative_errors
from sepzoo.models import get_model_class
from sepzoo.models.hybrid_demucs import pad_reflect

TOLERANCE = 1e-4


def _tiny(name: str, **overrides: object) -> torch.nn.Module:
    cls = get_model_class(name)
    torch.manual_seed(0)
    return cls(**{**cls.test_kwargs, **overrides}).eval()


def _length(model: torch.nn.Module) -> int:
    # HT Demucs's tiny segment (0.05 s); Hybrid Demucs's 40 s would be slow, so a short chunk.
    if model.registry_name == "htdemucs":
        return model.valid_length(model.segment_length)
    return model.valid_length(2000)


@pytest.mark.parametrize("name", ["hdemucs", "htdemucs"])
def test_onnx_parity_complex_as_channels(name: str) -> None:
    model = _tiny(name)
    length = _length(model)
    plan = model.onnx_export(length)
    assert plan.adapter == "hybrid_demucs"
    assert plan.input_names == ["mix", "spec"] and plan.output_names == ["time", "freq"]
    assert json.loads(json.dumps(plan.settings)) == plan.settings
    assert plan.settings["cac"] is True and plan.settings["nfft"] == model.nfft
    errors = onnx_parity(model, length)
    assert len(errors) == len(model.sources)
    assert max(errors) <= TOLERANCE, errors


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("hdemucs", {"cac": False, "wiener_iters": -1, "end_iters": -1}),
        ("hdemucs", {"cac": False, "wiener_iters": 2, "end_iters": 2}),
        ("htdemucs", {"cac": False, "wiener_iters": 1, "end_iters": 1}),
        (
            "hdemucs",
            {"cac": False, "hybrid": False, "wiener_iters": 1, "end_iters": 0, "wiener_residual": True},
        ),
    ],
)
def test_onnx_parity_magnitudes(name: str, overrides: dict) -> None:
    model = _tiny(name, **overrides)
    length = _length(model)
    plan = model.onnx_export(length)
    assert plan.settings["cac"] is False
    assert plan.settings["wiener_iters"] == overrides["wiener_iters"]
    assert max(onnx_parity(model, length)) <= TOLERANCE


@pytest.mark.parametrize(
    ("name", "overrides", "length"),
    [
        # Zero padding and misaligned inverse STFT of the challenge models, frequency bands.
        ("hdemucs", {"hybrid_old": True, "multi_freqs": [0.25, 0.5], "multi_freqs_depth": 2}, 1500),
        # Spectrogram only, shorter than half a frame: forward pads it, so does the adapter.
        ("hdemucs", {"hybrid": False, "audio_channels": 1, "sources": ["a", "b"]}, 100),
        # A chunk shorter than the training segment, zero-padded to it.
        ("htdemucs", {}, 1500),
        # Any length, a learned time embedding and a group norm at the transformer's input.
        (
            "htdemucs",
            {"use_train_segment": False, "t_emb": "scaled", "t_norm_in": False, "t_norm_in_group": True},
            3000,
        ),
    ],
)
def test_onnx_parity_of_other_settings(name: str, overrides: dict, length: int) -> None:
    model = _tiny(name, **overrides)
    plan = model.onnx_export(length)
    assert plan.settings["length"] == length
    assert plan.settings["padded_length"] == model.network_length(length)
    assert max(onnx_parity(model, length)) <= TOLERANCE


def test_onnx_parity_with_windowed_lstm() -> None:
    # Residual LSTMs on more than 200 frames run in half-overlapping windows.
    model = _tiny(
        "hdemucs", nfft=64, stride=2, kernel_size=4, time_stride=4, depth=5, dconv_lstm=0, dconv_attn=5,
        norm_starts=3,
    )  # fmt: skip
    assert max(onnx_parity(model, 1000)) <= TOLERANCE


def test_forward_and_the_export_core_share_the_network() -> None:
    model = _tiny("hdemucs")
    mix = torch.randn(1, 2, 1000)
    spectrum = model._spectrogram(mix)
    plan = model.onnx_export(1000)
    with torch.no_grad():
        time, freq = plan.core(mix, model._network_input(spectrum))
        stems = model._waveform(model._stem_spectrograms(spectrum, freq), 1000) + time
        torch.testing.assert_close(stems, model(mix), rtol=0, atol=0)


@pytest.mark.parametrize("length", [3, 40, 97])
def test_numpy_reflect_padding_matches_torch(length: int) -> None:
    x = np.random.default_rng(length).standard_normal((2, length))
    for left, right in ((0, 0), (5, 9), (96, 120), (50, 3)):
        expected = pad_reflect(torch.from_numpy(x), left, right).numpy()
        np.testing.assert_array_equal(numpy_pad_reflect(x, left, right), expected)


def test_adapter_refuses_bad_settings_and_inputs() -> None:
    settings = _tiny("hdemucs").onnx_export(1000).settings
    with pytest.raises(ValueError, match="lack 'wiener_window'"):
        get_adapter("hybrid_demucs", {k: v for k, v in settings.items() if k != "wiener_window"})
    with pytest.raises(ValueError, match="pad_mode must be 'reflect'"):
        get_adapter("hybrid_demucs", {**settings, "pad_mode": "constant"})
    adapter = get_adapter("hybrid_demucs", settings)
    with pytest.raises(ValueError, match=r"takes \[batch, 2, 1000\], got \[1, 2, 999\]"):
        adapter.inputs(np.zeros((1, 2, 999), dtype=np.float32))


# The NumPy steps in a process where torch cannot be imported; the graph's outputs are made up
# (seeded), so that the test compares the adapter alone with the model's torch steps.
_TORCH_FREE = """
import sys, json
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == 'torch' or name.startswith('torch.'):
            raise ImportError('torch is blocked')
sys.meta_path.insert(0, Block())
import numpy as np
from sepzoo.deploy.adapters import get_adapter
plans, mix, out = json.loads(sys.argv[1]), np.load(sys.argv[2]), sys.argv[3]
arrays = {}
for index, settings in enumerate(plans):
    adapter = get_adapter('hybrid_demucs', settings)
    feeds, state = adapter.inputs(mix)
    rng = np.random.default_rng(index)
    spec = feeds['spec']
    results = {'freq': np.abs(rng.standard_normal((len(mix), settings['sources'], *spec.shape[1:])))}
    if settings['hybrid']:
        results['time'] = rng.standard_normal((len(mix), settings['sources'], *feeds['mix'].shape[1:]))
    results = {key: value.astype(np.float32) for key, value in results.items()}
    stems = adapter.outputs(results, state, mix)
    arrays.update({f'{index}-{key}': value for key, value in {**feeds, **results, 'stems': stems}.items()})
np.savez(out, **arrays)
assert not [m for m in sys.modules if m == 'torch' or m.startswith('torch.')]
"""


def test_adapter_runs_without_torch_as_the_model_computes(tmp_path: Path) -> None:
    settings = [
        {},
        {"hybrid_old": True},
        {"cac": False, "wiener_iters": -1, "end_iters": -1},
        {"hybrid": False, "cac": False, "wiener_iters": -1, "end_iters": 0},
        {"cac": False, "wiener_iters": 1, "end_iters": 1, "wiener_residual": True},
    ]
    models = [_tiny("hdemucs", **overrides) for overrides in settings]
    length = 20000  # 313 frames: the Wiener filter runs on two windows of frames
    mix = (0.3 * np.random.default_rng(0).standard_normal((2, 2, length))).astype(np.float32)
    np.save(tmp_path / "mix.npy", mix)
    plans = json.dumps([model.onnx_export(length).settings for model in models])
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-c", _TORCH_FREE, plans, str(tmp_path / "mix.npy"), str(tmp_path / "out.npz")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    arrays = np.load(tmp_path / "out.npz")
    for index, model in enumerate(models):
        spectrum = model._spectrogram(torch.from_numpy(mix))
        spec = arrays[f"{index}-spec"]
        torch.testing.assert_close(
            torch.from_numpy(spec), model._network_input(spectrum), atol=1e-5, rtol=1e-5
        )
        freq = torch.from_numpy(arrays[f"{index}-freq"])
        with torch.no_grad():
            expected = model._waveform(model._stem_spectrograms(spectrum, freq), length)
        if model.hybrid:
            expected = torch.from_numpy(arrays[f"{index}-time"]) + expected
        errors = relative_errors(expected.numpy(), arrays[f"{index}-stems"])
        assert max(errors) <= TOLERANCE, (settings[index], errors)
