"""Conv-TasNet's temporal convolutional network against an independent implementation.

``torchaudio.models.ConvTasNet`` shares the dilated depthwise-separable block with global layer
norm (its ``ConvBlock``) and the way the blocks stack (dilations ``1 .. 2^(X-1)``, repeated ``R``
times, each block's residual added to the running features). Its skip paths, input norm, sigmoid
mask and transposed-convolution decoder are not part of the music variant and are not compared.
"""

from __future__ import annotations

import pytest
import torch
from torchaudio.models.conv_tasnet import ConvBlock, MaskGenerator

from sepzoo.models.conv_tasnet import MaskEstimator, SeparableConvBlock

BLOCK_KEYS: dict[str, str] = {
    "conv_layers.0": "expand",
    "conv_layers.1": "expand_activation",
    "conv_layers.2": "expand_norm",
    "conv_layers.3": "depthwise",
    "conv_layers.4": "depthwise_activation",
    "conv_layers.5": "depthwise_norm",
    "res_out": "project",
}
"""torchaudio ``ConvBlock`` module -> sepzoo ``SeparableConvBlock`` module (same parameter names)."""

CONVOLUTIONS = ("expand", "depthwise", "project")


def block_state(torchaudio_block: ConvBlock, with_bias: bool = True) -> dict[str, torch.Tensor]:
    """The sepzoo state dict for the weights of a torchaudio block, through :data:`BLOCK_KEYS`.

    Without biases, the convolutions' biases (which must be zero) are left out.
    """
    state = {}
    for key, value in torchaudio_block.state_dict().items():
        module, _, parameter = key.rpartition(".")
        if module == "skip_out":
            continue  # the music variant has no skip paths
        if parameter == "bias" and BLOCK_KEYS[module] in CONVOLUTIONS and not with_bias:
            assert not value.any(), f"{key} must be zero to map onto a bias-free convolution"
            continue
        state[f"{BLOCK_KEYS[module]}.{parameter}"] = value
    return state


def redraw(module: torch.nn.Module, seed: int, conv_bias: bool = True) -> None:
    """Random values in every parameter (norm gains and PReLU slopes included); zero biases in
    the convolutions unless ``conv_bias``."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(0.3 * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
        for layer in module.modules():
            if isinstance(layer, torch.nn.Conv1d) and layer.bias is not None and not conv_bias:
                layer.bias.zero_()


@pytest.mark.parametrize(("kernel_size", "dilation"), [(3, 1), (3, 4), (5, 2), (3, 64)])
def test_block_matches_torchaudio_residual_path(kernel_size, dilation):
    torchaudio_block = ConvBlock(
        8, 12, kernel_size, padding=(kernel_size - 1) * dilation // 2, dilation=dilation
    )
    redraw(torchaudio_block, seed=kernel_size + dilation)
    block = SeparableConvBlock(8, 12, kernel_size, dilation=dilation, bias=True)
    block.load_state_dict(block_state(torchaudio_block), strict=True)
    features = torch.randn(3, 8, 301, generator=torch.Generator().manual_seed(1))
    residual, _ = torchaudio_block(features)
    torch.testing.assert_close(block(features), features + residual, rtol=1e-5, atol=1e-6)
    torchaudio_block.double(), block.double()
    residual, _ = torchaudio_block(features.double())
    torch.testing.assert_close(block(features.double()), features.double() + residual, rtol=0, atol=1e-12)


def test_mapping_covers_every_shared_tensor():
    torchaudio_block = ConvBlock(8, 12, 3, padding=1)
    block = SeparableConvBlock(8, 12, 3, bias=True)
    assert set(block_state(torchaudio_block)) == set(block.state_dict())


def test_block_stack_matches_torchaudio_mask_generator():
    blocks_per_repeat, repeats = 3, 2
    generator = MaskGenerator(
        input_dim=16,
        num_sources=4,
        kernel_size=3,
        num_feats=8,
        num_hidden=12,
        num_layers=blocks_per_repeat,
        num_stacks=repeats,
        msk_activate="relu",
    )
    redraw(generator, seed=5, conv_bias=False)  # the music variant's convolutions have no biases
    estimator = MaskEstimator(4, 16, 8, 12, 3, blocks_per_repeat, repeats, input_norm="global")
    torchaudio_blocks = list(generator.conv_layers)
    for block, torchaudio_block in zip(estimator.blocks, torchaudio_blocks):
        if torchaudio_block.res_out is None:
            continue  # torchaudio's last block feeds only the skip sum
        block.load_state_dict(block_state(torchaudio_block, with_bias=False), strict=True)
    features = torch.randn(2, 8, 257, generator=torch.Generator().manual_seed(2))
    expected = features
    for torchaudio_block in torchaudio_blocks[:-1]:
        residual, _ = torchaudio_block(expected)
        expected = expected + residual
    ours = features
    for block in list(estimator.blocks)[:-1]:
        ours = block(ours)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    dilations = [block.depthwise.dilation[0] for block in estimator.blocks]
    assert dilations == [b.conv_layers[3].dilation[0] for b in torchaudio_blocks] == [1, 2, 4, 1, 2, 4]
