"""ONNX export of the waveform models: the onnxruntime path against torch, and the export-friendly
replacements of the ops that opset 17 lacks against the ops they replace."""

from __future__ import annotations

import warnings

import julius
import pytest
import torch
import torch.nn.functional as F

from sepzoo.errors import SepzooError
from sepzoo.export.graph import graph_bytes, onnx_parity, relative_errors, run_graph
from sepzoo.models import create_model, get_model_class
from sepzoo.models._demucs_layers import frame_signal, sinc_resample
from sepzoo.models.base import Separator
from sepzoo.models.conv_tasnet import GlobalLayerNorm, SeparableConvBlock, overlap_add
from sepzoo.models.onnx_core import OnnxExport

PARITY = 1e-4
"""Largest relative L2 error of a stem, onnxruntime against torch."""


def build(name: str, seed: int = 0, **overrides) -> Separator:
    torch.manual_seed(seed)
    return create_model(name, **{**get_model_class(name).test_kwargs, **overrides}).eval()


@pytest.mark.parametrize(("size", "hop"), [(4, 2), (20, 10), (5, 2), (7, 3), (6, 1), (3, 3)])
def test_overlap_add_equals_fold(size, hop):
    frames = torch.randn(3, 2, size, 37, generator=torch.Generator().manual_seed(size * 10 + hop))
    length = 36 * hop + size
    expected = F.fold(
        frames.reshape(3, 2 * size, 37), output_size=(1, length), kernel_size=(1, size), stride=(1, hop)
    ).view(3, 2, length)
    assert torch.equal(overlap_add(frames, hop), expected)


@pytest.mark.parametrize(("kernel_size", "dilation"), [(3, 4), (4, 1), (4, 3), (2, 2)])
def test_written_out_same_padding_equals_torch_same(kernel_size, dilation):
    block = SeparableConvBlock(8, 12, kernel_size, dilation=dilation)
    same = torch.nn.Conv1d(12, 12, kernel_size, dilation=dilation, padding="same", groups=12, bias=False)
    same.weight.data.copy_(block.depthwise.weight.data)
    hidden = torch.randn(2, 12, 50, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns that uneven "same" padding copies the input
        expected = same(hidden)
    assert torch.equal(block.depthwise(F.pad(hidden, block.depthwise_pad)), expected)


def test_exported_global_layer_norm_is_accurate_over_long_inputs():
    # A full-size Conv-TasNet normalises 512 channels x 8000 frames; a mean over both axes at
    # once in onnxruntime was 1e-4 off there, enough to fail the export's parity check.
    import onnxruntime

    norm = GlobalLayerNorm(512).eval()
    features = (torch.randn(1, 512, 8000, generator=torch.Generator().manual_seed(0)) + 3).numpy()
    plan = OnnxExport(norm, "waveform", input_names=["mix"], output_names=["stems"])
    session = onnxruntime.InferenceSession(
        graph_bytes(plan, {"mix": features}), providers=["CPUExecutionProvider"]
    )
    estimate = run_graph(session, {"mix": features})["stems"]
    with torch.no_grad():
        expected = norm.double()(torch.from_numpy(features).double()).numpy()
    assert relative_errors(expected[:, None], estimate[:, None])[0] <= 1e-5


@pytest.mark.parametrize(
    "overrides",
    [{}, {"encoder_kernel": 5, "conv_kernel": 4}],
    ids=["test_kwargs", "odd-kernel"],
)
def test_conv_tasnet_onnx_matches_torch(overrides):
    model = build("conv_tasnet", **overrides)
    errors = onnx_parity(model, model.valid_length(1001))
    assert len(errors) == len(model.sources)
    assert max(errors) <= PARITY, errors


def test_conv_tasnet_refuses_an_invalid_export_length():
    model = build("conv_tasnet")  # kernel 4, hop 2: odd lengths are not valid
    with pytest.raises(SepzooError, match="export length 1001 is not a valid length"):
        model.onnx_export(1001)


@pytest.mark.parametrize("length", [1, 2, 3, 50, 4011])
@pytest.mark.parametrize(("old_sr", "new_sr"), [(1, 2), (2, 1)])
def test_sinc_resample_equals_julius(old_sr, new_sr, length):
    signal = torch.randn(2, 3, length, generator=torch.Generator().manual_seed(length))
    assert torch.equal(sinc_resample(signal, old_sr, new_sr), julius.resample_frac(signal, old_sr, new_sr))


@pytest.mark.parametrize("length", [1, 99, 100, 101, 1234])
@pytest.mark.parametrize(("width", "hop"), [(200, 100), (8, 2), (6, 4), (4, 4)])
def test_frame_signal_equals_unfold(width, hop, length):
    signal = torch.randn(2, 3, length, generator=torch.Generator().manual_seed(length))
    frames = -(-length // hop)
    expected = F.pad(signal, (0, (frames - 1) * hop + width - length)).unfold(-1, width, hop)
    assert torch.equal(frame_signal(signal, width, hop), expected)


@pytest.mark.parametrize("name", ["demucs", "demucs_v2"])
def test_demucs_onnx_matches_torch(name):
    # The test_kwargs Demucs has residual branches with windowed LSTMs and local attention,
    # and a BiLSTM bottleneck; demucs_v2 a two-layer BiLSTM bottleneck and GLU rewrites.
    model = build(name)
    errors = onnx_parity(model, model.valid_length(4000))
    assert len(errors) == len(model.sources)
    assert max(errors) <= PARITY, errors


def test_demucs_refuses_an_invalid_export_length():
    model = build("demucs_v2")
    with pytest.raises(SepzooError, match=r"demucs_v2 export length 4000 is not a valid length \(expected"):
        model.onnx_export(4000)
