"""ONNX export of the spectrogram models: the NumPy STFT, the real-valued core graph and the
NumPy masking and inverse STFT against the torch model."""

from __future__ import annotations

import pytest
import torch

from sepzoo.export.graph import onnx_parity
from sepzoo.models import get_model_class

TOLERANCE = 1e-4


def _tiny(name: str, **overrides):
    cls = get_model_class(name)
    torch.manual_seed(0)
    return cls(**{**cls.test_kwargs, **overrides}).eval()


@pytest.mark.parametrize("name", ["bsrnn", "bs_roformer", "mel_band_roformer", "mdx23c"])
def test_onnx_parity(name: str) -> None:
    model = _tiny(name)
    length = model.valid_length(1000)
    errors = onnx_parity(model, length)
    assert max(errors) <= TOLERANCE, errors
