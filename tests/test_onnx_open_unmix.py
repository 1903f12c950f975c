"""Open-Unmix's ONNX export: the graph of masks with the NumPy STFT, Wiener filter and inverse
around it against the torch model."""

from __future__ import annotations

import pytest

from sepzoo.export.graph import onnx_parity
from sepzoo.models.onnx_core import ExportUnsupportedError
from sepzoo.models.open_unmix import OpenUnmix


@pytest.mark.parametrize(
    "wiener",
    [
        {},
        {"wiener_iterations": 1, "wiener_window": 7},
        {"wiener_iterations": 2, "wiener_residual": True, "wiener_window": None},
        {"wiener_softmask": True, "pad_mode": "reflect"},
    ],
    ids=["masks", "wiener-windows", "wiener-residual", "softmask-reflect"],
)
def test_onnx_parity(wiener: dict) -> None:
    model = OpenUnmix(**OpenUnmix.test_kwargs, **wiener).eval()
    length = 200  # 26 frames: the 7-frame Wiener windows leave a shorter last one
    errors = onnx_parity(model, model.valid_length(length))
    assert max(errors) <= 1e-4, errors


def test_one_target_with_residual() -> None:
    model = OpenUnmix(
        **OpenUnmix.test_kwargs,
        sources=["vocals"],
        wiener_iterations=1,
        wiener_residual=True,
        audio_channels=1,
    ).eval()
    assert max(onnx_parity(model, model.valid_length(100))) <= 1e-4


def test_adapter_needs_no_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np\n"
        "from sepzoo.deploy.adapters import get_adapter\n"
        "settings = dict(n_fft=16, hop_length=4, normalized=False, pad_mode='constant', sources=2,\n"
        "    wiener_iterations=1, wiener_softmask=False, wiener_residual=False, wiener_window=3)\n"
        "adapter = get_adapter('open_unmix', settings)\n"
        "mix = np.ones((1, 2, 40), np.float32)\n"
        "feeds, state = adapter.inputs(mix)\n"
        "masks = np.full((1, 2, 2, 9, 11), 0.5, np.float32)\n"
        "print(feeds['spectrum'].shape, adapter.outputs({'masks': masks}, state, mix).shape)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(1, 2, 9, 11, 2) (1, 2, 2, 40)"


def test_reflection_padding_needs_long_chunks() -> None:
    model = OpenUnmix(**OpenUnmix.test_kwargs, pad_mode="reflect")
    with pytest.raises(ExportUnsupportedError, match="more than n_fft // 2 = 16 samples, got 16"):
        model.onnx_export(16)
