"""Demucs: a waveform U-Net with strided convolutions, a recurrent bottleneck and skip connections.

Défossez, Usunier, Bottou, Bach, "Music Source Separation in the Waveform Domain" (2019,
arXiv:1911.13254), with the options the model gained in Demucs v3 (Défossez 2021,
arXiv:2111.03600): GELU activations, group norms in the deeper layers and the compressed
residual branches with dilated convolutions, LSTMs and local attention. ``demucs`` has the
defaults of the official ``demucs.demucs.Demucs`` class; ``demucs_v2`` is the model of the 2019
paper (ReLU and GLU, a two-layer BiLSTM bottleneck, decoder context 3, no norms, no residual
branches).

Each encoder layer is ``conv(kernel 8, stride 4) -> norm -> activation [-> residual branch]
[-> 1x1 rewrite conv -> norm -> GLU]``; each decoder layer mirrors it with a transposed
convolution, after adding the encoder's output at the same depth (the U-Net skip). The input is
normalised by its standard deviation, padded to a length the strided convolutions tile exactly,
and upsampled x2 (the output downsampled back) with julius's sinc resampler (computed by
:func:`~sepzoo.models._demucs_layers.sinc_resample`, which also exports to ONNX).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sepzoo import DEFAULT_SOURCES
from sepzoo.models import register_model
from sepzoo.models._demucs_layers import (
    BidirectionalLSTM,
    ResidualBranch,
    center_trim,
    check_dconv_mode,
    group_norm,
    rescale_conv_weights,
    residual_options,
    sinc_resample,
    sinc_resample_kernel,
)
from sepzoo.models.base import Separator
from sepzoo.models.onnx_core import OnnxExport, require_valid_length


def _rewrite(
    channels: int, context: int, norm_groups: int | None, glu: bool
) -> tuple[nn.Conv1d, nn.Module, nn.Module]:
    """The rewrite convolution of an encoder or decoder layer (``2 * context + 1`` taps, the
    length kept), its norm and its gate: a GLU, which halves the doubled channels, or ReLU."""
    widening = 2 if glu else 1
    convolution = nn.Conv1d(channels, widening * channels, 2 * context + 1, padding=context)
    return convolution, group_norm(widening * channels, norm_groups), nn.GLU(dim=1) if glu else nn.ReLU()


class DemucsEncoderLayer(nn.Module):
    """One encoder layer: strided convolution, norm, activation, the optional residual branch and
    the optional 1x1 "rewrite" convolution with its gate.

    Args:
        in_channels: Input channels.
        channels: Output channels.
        kernel_size: Kernel of the strided convolution.
        stride: Its stride.
        norm_groups: Groups of the group norms, or ``None`` for none.
        gelu: GELU after the strided convolution, else ReLU.
        glu: Gate the rewrite convolution with a GLU (which halves its doubled channels), else
            ReLU.
        rewrite: Add the 1x1 rewrite convolution.
        residual: Keyword arguments of the :class:`ResidualBranch`, or ``None`` for none.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        kernel_size: int,
        stride: int,
        norm_groups: int | None,
        gelu: bool,
        glu: bool,
        rewrite: bool,
        residual: dict | None,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, channels, kernel_size, stride)
        self.norm = group_norm(channels, norm_groups)
        self.activation = nn.GELU() if gelu else nn.ReLU()
        self.residual = None if residual is None else ResidualBranch(channels, **residual)
        self.rewrite = None
        if rewrite:
            self.rewrite, self.rewrite_norm, self.rewrite_gate = _rewrite(channels, 0, norm_groups, glu)

    def forward(self, x: Tensor) -> Tensor:
        """Encode ``x`` (``[B, C_in, T]``) into ``[B, C, T']``.

        Args:
            x: Features.
        """
        x = self.activation(self.norm(self.conv(x)))  # B, C, T'
        if self.residual is not None:
            x = self.residual(x)
        if self.rewrite is not None:
            x = self.rewrite_gate(self.rewrite_norm(self.rewrite(x)))
        return x


class DemucsDecoderLayer(nn.Module):
    """One decoder layer: the optional rewrite convolution (with ``2 * context + 1`` taps) and its
    gate, the optional residual branch, and the transposed convolution, followed by a norm and
    an activation except in the outermost layer.

    Args:
        channels: Input channels.
        out_channels: Output channels.
        kernel_size: Kernel of the transposed convolution.
        stride: Its stride.
        norm_groups: Groups of the group norms, or ``None`` for none.
        gelu: GELU after the transposed convolution, else ReLU.
        glu: Gate the rewrite convolution with a GLU, else ReLU.
        rewrite: Add the rewrite convolution.
        context: Frames of context on each side of the rewrite convolution.
        residual: Keyword arguments of the :class:`ResidualBranch`, or ``None`` for none.
        last: The outermost layer, which outputs the stems: no norm and no activation.
    """

    def __init__(
        self,
        channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        norm_groups: int | None,
        gelu: bool,
        glu: bool,
        rewrite: bool,
        context: int,
        residual: dict | None,
        last: bool,
    ) -> None:
        super().__init__()
        self.rewrite = None
        if rewrite:
            self.rewrite, self.rewrite_norm, self.rewrite_gate = _rewrite(channels, context, norm_groups, glu)
        self.residual = None if residual is None else ResidualBranch(channels, **residual)
        self.conv_transpose = nn.ConvTranspose1d(channels, out_channels, kernel_size, stride)
        self.last = last
        if not last:
            self.norm = group_norm(out_channels, norm_groups)
            self.activation = nn.GELU() if gelu else nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        """Decode ``x`` (``[B, C, T]``, the skip already added) into ``[B, C_out, T']``.

        Args:
            x: Features.
        """
        if self.rewrite is not None:
            x = self.rewrite_gate(self.rewrite_norm(self.rewrite(x)))
        if self.residual is not None:
            x = self.residual(x)
        x = self.conv_transpose(x)  # B, C_out, T'
        if not self.last:
            x = self.activation(self.norm(x))
        return x


@register_model("demucs")
class Demucs(Separator):
    """The waveform Demucs (v2 architecture with the v3 options); see the module docstring.

    Args:
        sources: Names of the output stems. (Default: ``DEFAULT_SOURCES``)
        audio_channels: Input and output audio channels. (Default: ``2``)
        channels: Channels of the first encoder layer. (Default: ``64``)
        growth: Channel multiplier from one layer to the next. (Default: ``2.0``)
        depth: Number of encoder (and decoder) layers. (Default: ``6``)
        rewrite: Add the rewrite convolutions. (Default: ``True``)
        lstm_layers: Layers of the bidirectional LSTM bottleneck; ``0`` for none.
            (Default: ``0``)
        kernel_size: Kernel of the strided convolutions. (Default: ``8``)
        stride: Their stride. (Default: ``4``)
        context: Frames of context on each side of the decoder's rewrite convolutions.
            (Default: ``1``)
        gelu: GELU activations, else ReLU. (Default: ``True``)
        glu: GLU gates on the rewrite convolutions, else ReLU. (Default: ``True``)
        norm_starts: First layer (counted from the outside, in the encoder and the decoder)
            with group norms. (Default: ``4``)
        norm_groups: Groups of the group norms. (Default: ``4``)
        dconv_mode: Residual branches in the encoder (``1``), the decoder (``2``), both (``3``)
            or neither (``0``). (Default: ``1``)
        dconv_depth: Layers of each residual branch. (Default: ``2``)
        dconv_comp: Channel compression inside the residual branches. (Default: ``4``)
        dconv_attn: First layer whose residual branch has local attention. (Default: ``4``)
        dconv_lstm: First layer whose residual branch has an LSTM. (Default: ``4``)
        dconv_init: Initial layer scale of the residual branches. (Default: ``1e-4``)
        normalize: Standardise the input by the mean and standard deviation of its channel
            average, and undo it on the output. (Default: ``True``)
        resample: Upsample the input x2 and downsample the output back. (Default: ``True``)
        rescale: Reference standard deviation of the weight-rescaling initialisation; ``0``
            turns it off. (Default: ``0.1``)
        sample_rate: Sample rate in Hz. (Default: ``44100``)
        segment: Chunk length in seconds for the inference engine. (Default: ``40.0``)
    """

    domain = "waveform"
    test_kwargs = {
        "channels": 16,
        "depth": 3,
        "lstm_layers": 1,
        "dconv_attn": 2,
        "dconv_lstm": 1,
        "norm_starts": 1,
    }

    def __init__(
        self,
        sources: Sequence[str] = DEFAULT_SOURCES,
        audio_channels: int = 2,
        channels: int = 64,
        growth: float = 2.0,
        depth: int = 6,
        rewrite: bool = True,
        lstm_layers: int = 0,
        kernel_size: int = 8,
        stride: int = 4,
        context: int = 1,
        gelu: bool = True,
        glu: bool = True,
        norm_starts: int = 4,
        norm_groups: int = 4,
        dconv_mode: int = 1,
        dconv_depth: int = 2,
        dconv_comp: float = 4,
        dconv_attn: int = 4,
        dconv_lstm: int = 4,
        dconv_init: float = 1e-4,
        normalize: bool = True,
        resample: bool = True,
        rescale: float = 0.1,
        sample_rate: int = 44100,
        segment: float | None = 40.0,
    ) -> None:
        super().__init__(
            sources=list(sources), sample_rate=sample_rate, audio_channels=audio_channels, segment=segment
        )
        if depth < 1 or channels < 1 or kernel_size < stride or stride < 1:
            raise ValueError(
                f"need depth >= 1, channels >= 1 and kernel_size >= stride >= 1; got depth={depth}, "
                f"channels={channels}, kernel_size={kernel_size}, stride={stride}"
            )
        check_dconv_mode(dconv_mode)
        self.kernel_size = kernel_size
        self.stride = stride
        self.depth = depth
        self.normalize = normalize
        self.resample = resample
        self.encoder = nn.ModuleList()
        self.decoder = nn.ModuleList()
        in_channels = audio_channels
        for index in range(depth):
            groups = norm_groups if index >= norm_starts else None
            encoder_residual, decoder_residual = residual_options(
                dconv_mode, dconv_depth, dconv_comp, dconv_init, index >= dconv_attn, index >= dconv_lstm
            )
            self.encoder.append(
                DemucsEncoderLayer(
                    in_channels, channels, kernel_size, stride, groups, gelu, glu, rewrite, encoder_residual
                )
            )  # fmt: skip
            out_channels = in_channels if index > 0 else len(self.sources) * audio_channels
            self.decoder.insert(
                0,
                DemucsDecoderLayer(
                    channels, out_channels, kernel_size, stride, groups, gelu, glu, rewrite, context,
                    decoder_residual, last=index == 0,
                ),
            )  # fmt: skip
            in_channels = channels
            channels = int(growth * channels)
        self.bottleneck = BidirectionalLSTM(in_channels, lstm_layers) if lstm_layers else None
        if resample:
            # The kernels exist before any tracing, so an exported graph holds them as constants.
            sinc_resample_kernel(1, 2), sinc_resample_kernel(2, 1)
        if rescale:
            rescale_conv_weights(self, reference=rescale)

    def valid_length(self, length: int) -> int:
        """Smallest length >= ``length`` whose strided convolutions leave no sample out.

        Args:
            length: A number of samples.
        """
        if self.resample:
            length = 2 * length
        for _ in range(self.depth):
            length = max(1, math.ceil((length - self.kernel_size) / self.stride) + 1)
        for _ in range(self.depth):
            length = (length - 1) * self.stride + self.kernel_size
        if self.resample:
            length = math.ceil(length / 2)
        return int(length)

    def forward(self, mix: Tensor, references: Tensor | None = None) -> Tensor:
        self.check_input(mix, references)
        length = int(mix.shape[-1])  # a Python integer also while tracing: a static graph
        x, mean, std = self._standardise(mix)  # B, C, T
        excess = self.valid_length(length) - length
        x = F.pad(x, (excess // 2, excess - excess // 2))  # B, C, T_valid
        if self.resample:
            x = sinc_resample(x, 1, 2)  # B, C, 2 T_valid
        skips = []
        for layer in self.encoder:
            x = layer(x)  # B, C_l, T_l
            skips.append(x)
        if self.bottleneck is not None:
            x = self.bottleneck(x)
        for layer in self.decoder:
            skip = skips.pop()
            x = layer(x + center_trim(skip, x.shape[-1]))  # B, C_l-1, T_l-1
        if self.resample:
            x = sinc_resample(x, 2, 1)  # B, S*C, T'
        x = center_trim(x * std + mean, length)  # B, S*C, T
        # In the mixture's precision, also when autocast ran the decoder in half precision.
        return x.view(x.shape[0], len(self.sources), self.audio_channels, length).to(mix.dtype)  # B, S, C, T

    def onnx_export(self, length: int) -> OnnxExport:
        """Export plan: the whole forward (standardisation, x2 sinc resampling, the U-Net) on
        chunks of ``length`` samples, waveform in and out (the ``"waveform"`` adapter). The
        resampling is :func:`~sepzoo.models._demucs_layers.sinc_resample`, julius's computation
        with constant kernels, which forward uses too.

        Args:
            length: Samples per exported chunk; must be a valid length.

        Raises:
            SepzooError: ``length`` is not a valid length.
        """
        require_valid_length(self, length)
        return OnnxExport(core=_ForwardCore(self), adapter="waveform")

    def _standardise(self, mix: Tensor) -> tuple[Tensor, Tensor | float, Tensor | float]:
        if not self.normalize:
            return mix, 0.0, 1.0
        mono = mix.mean(dim=1, keepdim=True)  # B, 1, T
        mean = mono.mean(dim=-1, keepdim=True)
        # The unbiased std, as the published models were trained with; one sample has none.
        std = torch.nan_to_num(mono.std(dim=-1, keepdim=True), nan=0.0) if mix.shape[-1] > 1 else mean * 0
        return (mix - mean) / (1e-5 + std), mean, std


class _ForwardCore(nn.Module):
    """The export core: a model's forward on mixture chunks (waveform in, stems out)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, mix: Tensor) -> Tensor:
        """Stems ``[batch, sources, channels, time]`` of ``mix`` ``[batch, channels, time]``.

        Args:
            mix: Mixture chunks of the exported length.
        """
        return self.model(mix)


@register_model("demucs_v2")
class DemucsV2(Demucs):
    """The model of "Music Source Separation in the Waveform Domain" (Défossez et al., 2019):
    ReLU activations and GLU gates, a two-layer BiLSTM bottleneck, decoder rewrite convolutions
    with 3 frames of context on each side, no group norms, no residual branches, no input
    normalisation. Every argument of :class:`Demucs` is accepted; only the defaults differ.
    """

    variant_defaults = {
        "lstm_layers": 2,
        "context": 3,
        "gelu": False,
        "norm_starts": 1000,
        "dconv_mode": 0,
        "normalize": False,
        "segment": 10.0,
    }
    test_kwargs = {"channels": 4, "depth": 3}
