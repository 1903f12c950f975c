"""Conv-TasNet for music: a learned filterbank, a dilated temporal convolutional network that
predicts one mask per source, and a linear overlap-add decoder.

Luo & Mesgarani, "Conv-TasNet: Surpassing Ideal Time-Frequency Magnitude Masking for Speech
Separation" (2019), adapted to stereo 44.1 kHz music with four sources as compared by Défossez
et al., "Music Source Separation in the Waveform Domain" (2019, arXiv:1911.13254). The defaults
are the configuration of that comparison: N=256, L=20, B=256, H=512, P=3, X=10, R=4, no biases
in the convolutions, ReLU masks, and training segments of 80000 samples.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sepzoo import DEFAULT_SOURCES
from sepzoo.models import register_model
from sepzoo.models.base import Separator
from sepzoo.models.onnx_core import OnnxExport, require_valid_length

INPUT_NORMS: tuple[str, ...] = ("channel", "global")


class _LayerNorm(nn.Module):
    """Layer normalization over ``reduce_dims`` of ``[batch, channels, time]`` features, with a
    gain and bias per channel."""

    reduce_dims: tuple[int, ...] = (1, 2)

    def __init__(self, channels: int, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def _mean(self, x: Tensor) -> Tensor:
        if not torch.onnx.is_in_onnx_export():
            return x.mean(dim=self.reduce_dims, keepdim=True)
        # In an exported graph one axis at a time, time first: onnxruntime's mean over several
        # axes at once sums naively (relative errors of 1e-4 over 512 channels x 8000 frames,
        # 2e-3 at 44100), while its mean over one axis is as accurate as torch's. Forward keeps
        # torch's joint mean, which model files' outputs are pinned to bit for bit.
        for dim in sorted(self.reduce_dims, reverse=True):
            x = x.mean(dim=dim, keepdim=True)
        return x

    def forward(self, x: Tensor) -> Tensor:
        """Normalize ``x`` (``[batch, channels, time]``).

        Args:
            x: Features, ``[batch, channels, time]``.
        """
        if x.dim() != 3:
            raise ValueError(f"expected [batch, channels, time], got {list(x.shape)}")
        mean = self._mean(x)
        variance = self._mean((x - mean).pow(2))
        normalized = (x - mean) / torch.sqrt(variance + self.eps)
        return normalized * self.weight[:, None] + self.bias[:, None]


class GlobalLayerNorm(_LayerNorm):
    """Global layer normalization (gLN): one mean and variance per item over channels and time.

    Equivalent to ``nn.GroupNorm(1, channels)``; the per-channel gain and bias have the same
    ``[channels]`` layout, so weights transfer between the two.

    Args:
        channels: Number of channels.
        eps: Added to the variance before the square root. (Default: ``1e-8``)
    """

    reduce_dims = (1, 2)  # B, 1, 1 statistics


class ChannelwiseLayerNorm(_LayerNorm):
    """Channel-wise layer normalization (cLN): a mean and variance per item and time step.

    Args:
        channels: Number of channels.
        eps: Added to the variance before the square root. (Default: ``1e-8``)
    """

    reduce_dims = (1,)  # B, 1, T statistics


class SeparableConvBlock(nn.Module):
    """One residual block of the temporal convolutional network.

    ``1x1 conv (B -> H) -> PReLU -> gLN -> depthwise conv (kernel P, dilation d) -> PReLU -> gLN
    -> 1x1 conv (H -> B)``, added to the input. The layers mirror
    ``torchaudio.models.conv_tasnet.ConvBlock`` (its residual branch), except that the
    convolutions have no bias unless ``bias=True``.

    Args:
        io_channels: Channels of the input and output (the bottleneck width ``B``).
        hidden_channels: Channels inside the block (``H``).
        kernel_size: Kernel size of the depthwise convolution (``P``).
        dilation: Dilation of the depthwise convolution. (Default: ``1``)
        bias: Whether the convolutions have a bias. (Default: ``False``)
    """

    def __init__(
        self,
        io_channels: int,
        hidden_channels: int,
        kernel_size: int,
        dilation: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.expand = nn.Conv1d(io_channels, hidden_channels, kernel_size=1, bias=bias)
        self.expand_activation = nn.PReLU()
        self.expand_norm = GlobalLayerNorm(hidden_channels)
        # "Same" padding keeps the frame count, so blocks stack and the residual lines up. It is
        # written out (half the reach on each side, the odd sample at the end, as torch's "same"
        # pads) because ONNX runtimes refuse a dilated convolution with automatic same padding.
        reach = dilation * (kernel_size - 1)
        self.depthwise_pad = (0, 0) if reach % 2 == 0 else (reach // 2, reach - reach // 2)
        self.depthwise = nn.Conv1d(
            hidden_channels,
            hidden_channels,
            kernel_size=kernel_size,
            dilation=dilation,
            padding=reach // 2 if reach % 2 == 0 else 0,
            groups=hidden_channels,
            bias=bias,
        )
        self.depthwise_activation = nn.PReLU()
        self.depthwise_norm = GlobalLayerNorm(hidden_channels)
        self.project = nn.Conv1d(hidden_channels, io_channels, kernel_size=1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block to ``x`` (``[batch, io_channels, frames]``).

        Args:
            x: Features, ``[batch, io_channels, frames]``.
        """
        hidden = self.expand_norm(self.expand_activation(self.expand(x)))  # B, H, K
        if self.depthwise_pad != (0, 0):
            hidden = F.pad(hidden, self.depthwise_pad)
        hidden = self.depthwise_norm(self.depthwise_activation(self.depthwise(hidden)))  # B, H, K
        return x + self.project(hidden)  # B, B_io, K


class MaskEstimator(nn.Module):
    """Temporal convolutional network mapping encoder features to one mask per source.

    ``norm -> 1x1 conv (N -> B) -> R x [X dilated SeparableConvBlocks, dilations 1..2^(X-1)]
    -> 1x1 conv (B -> S*N) -> ReLU``.

    Args:
        num_sources: Number of masks to predict (``S``).
        feature_channels: Channels of the encoder features (``N``).
        bottleneck_channels: Width of the residual path (``B``).
        hidden_channels: Width inside each block (``H``).
        kernel_size: Depthwise kernel size (``P``).
        blocks_per_repeat: Blocks with growing dilation in one repeat (``X``).
        repeats: Number of repeats (``R``).
        input_norm: ``"channel"`` (cLN) or ``"global"`` (gLN) for the input normalization.
            (Default: ``"channel"``)
    """

    def __init__(
        self,
        num_sources: int,
        feature_channels: int,
        bottleneck_channels: int,
        hidden_channels: int,
        kernel_size: int,
        blocks_per_repeat: int,
        repeats: int,
        input_norm: str = "channel",
    ) -> None:
        super().__init__()
        self.num_sources = num_sources
        norm_class = ChannelwiseLayerNorm if input_norm == "channel" else GlobalLayerNorm
        self.input_norm = norm_class(feature_channels)
        self.bottleneck = nn.Conv1d(feature_channels, bottleneck_channels, kernel_size=1, bias=False)
        self.blocks = nn.Sequential(
            *[
                SeparableConvBlock(bottleneck_channels, hidden_channels, kernel_size, dilation=2**index)
                for _ in range(repeats)
                for index in range(blocks_per_repeat)
            ]
        )
        self.mask_conv = nn.Conv1d(
            bottleneck_channels, num_sources * feature_channels, kernel_size=1, bias=False
        )

    def forward(self, features: Tensor) -> Tensor:
        """Predict masks ``[batch, sources, N, frames]`` from features ``[batch, N, frames]``.

        Args:
            features: Encoder output, ``[batch, N, frames]``.
        """
        batch, channels, frames = features.shape
        hidden = self.blocks(self.bottleneck(self.input_norm(features)))  # B, Bn, K
        logits = self.mask_conv(hidden)  # B, S*N, K
        return F.relu(logits.view(batch, self.num_sources, channels, frames))  # B, S, N, K


class WaveformEncoder(nn.Module):
    """Learned analysis filterbank: strided 1-D convolution with 50% overlap, then ReLU.

    Args:
        audio_channels: Input audio channels.
        filters: Number of filters (``N``).
        kernel_size: Filter length in samples (``L``); the hop is ``L // 2``.
    """

    def __init__(self, audio_channels: int, filters: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(audio_channels, filters, kernel_size, stride=kernel_size // 2, bias=False)

    def forward(self, audio: Tensor) -> Tensor:
        """Encode ``audio`` (``[batch, channels, time]``) into ``[batch, N, frames]``.

        Args:
            audio: Waveform, ``[batch, channels, time]``.
        """
        return F.relu(self.conv(audio))


def overlap_add(frames: Tensor, hop: int) -> Tensor:
    """Overlap-add frames ``[batch, channels, size, frames]`` with hop ``hop`` into
    ``[batch, channels, (frames - 1) * hop + size]``.

    The result equals ``F.fold`` with a ``(1, size)`` kernel and stride ``(1, hop)``, but it is
    made of padding, reshapes and additions, which ONNX opset 17 has (``F.fold`` becomes col2im,
    which it lacks). Each frame is cut into ``ceil(size / hop)`` hop-long pieces (the last one
    zero-padded); piece ``j`` of frame ``k`` lands on hop block ``k + j``. The pieces are added in
    order of their offset in the frame, the order in which ``F.fold`` accumulates on the CPU, so
    the sums round the same way.

    Args:
        frames: Frames, ``[batch, channels, size, frames]``.
        hop: Samples between the starts of consecutive frames, at most ``size``.
    """
    # Python integers (also while tracing, where sizes are tensors): the exported graph's time
    # axis is fixed, and the piece count must not become integer arithmetic in the graph.
    channels, size, count = (int(value) for value in frames.shape[1:])
    if not 1 <= hop <= size:
        raise ValueError(f"hop must be between 1 and the frame size {size}, got {hop}")
    pieces = -(-size // hop)
    frames = F.pad(frames, (0, 0, 0, pieces * hop - size))  # B, C, P*hop, K
    frames = frames.reshape(-1, channels, pieces, hop, count)  # B, C, P, hop, K
    blocks = F.pad(frames[:, :, 0], (0, pieces - 1))  # B, C, hop, K + P - 1
    for piece in range(1, pieces):
        blocks = blocks + F.pad(frames[:, :, piece], (piece, pieces - 1 - piece))
    audio = blocks.transpose(2, 3).reshape(-1, channels, (count + pieces - 1) * hop)  # B, C, T''
    return audio[..., : (count - 1) * hop + size]  # B, C, T


class OverlapAddDecoder(nn.Module):
    """Learned synthesis: each frame's features map linearly to ``L`` samples per audio
    channel, and frames are overlap-added with hop ``L // 2``.

    Args:
        filters: Number of input features per frame (``N``).
        kernel_size: Frame length in samples (``L``).
        audio_channels: Output audio channels.
    """

    def __init__(self, filters: int, kernel_size: int, audio_channels: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.hop = kernel_size // 2
        self.audio_channels = audio_channels
        self.basis = nn.Linear(filters, audio_channels * kernel_size, bias=False)

    def forward(self, features: Tensor) -> Tensor:
        """Decode ``[batch, sources, N, frames]`` into ``[batch, sources, channels, time]``.

        Args:
            features: Masked encoder features, ``[batch, sources, N, frames]``.
        """
        _, sources, _, frames = features.shape
        samples = self.basis(features.transpose(2, 3))  # B, S, K, C*L
        samples = samples.reshape(-1, frames, self.audio_channels, self.kernel_size)  # B*S, K, C, L
        audio = overlap_add(samples.permute(0, 2, 3, 1), self.hop)  # B*S, C, T
        return audio.reshape(-1, sources, self.audio_channels, audio.shape[-1])  # B, S, C, T


@register_model("conv_tasnet")
class ConvTasNet(Separator):
    """Conv-TasNet adapted to multi-channel music, as compared in the Demucs paper.

    The input is zero-padded at the end to :meth:`valid_length`, so that encoder frames tile
    it exactly, and the output is cropped back to the input length: any length works.

    Args:
        sources: Names of the output stems. (Default: ``DEFAULT_SOURCES``)
        encoder_filters: Number of learned filters ``N``. (Default: ``256``)
        encoder_kernel: Filter length ``L`` in samples; the hop is ``L // 2``. (Default: ``20``)
        bottleneck_channels: Width ``B`` of the residual path. (Default: ``256``)
        hidden_channels: Width ``H`` inside each convolutional block. (Default: ``512``)
        conv_kernel: Depthwise kernel size ``P``. (Default: ``3``)
        blocks_per_repeat: Blocks ``X`` per repeat, with dilations ``1 .. 2^(X-1)``.
            (Default: ``10``)
        repeats: Number of repeats ``R``. (Default: ``4``)
        input_norm: Normalization of the encoder output before the bottleneck: ``"channel"``
            (cLN, as in the implementation the Demucs paper evaluated) or ``"global"`` (gLN).
            (Default: ``"channel"``)
        sample_rate: Sample rate in Hz. (Default: ``44100``)
        audio_channels: Input and output audio channels. (Default: ``2``)
        segment: Preferred chunk length in seconds; the paper trained on 80000 samples.
            (Default: ``80000 / 44100``)
    """

    domain = "waveform"
    test_kwargs = {
        "encoder_filters": 8,
        "encoder_kernel": 4,
        "bottleneck_channels": 8,
        "hidden_channels": 12,
        "blocks_per_repeat": 2,
        "repeats": 1,
    }

    def __init__(
        self,
        sources: Sequence[str] = DEFAULT_SOURCES,
        encoder_filters: int = 256,
        encoder_kernel: int = 20,
        bottleneck_channels: int = 256,
        hidden_channels: int = 512,
        conv_kernel: int = 3,
        blocks_per_repeat: int = 10,
        repeats: int = 4,
        input_norm: str = "channel",
        sample_rate: int = 44100,
        audio_channels: int = 2,
        segment: float | None = 80000 / 44100,
    ) -> None:
        super().__init__(
            sources=list(sources), sample_rate=sample_rate, audio_channels=audio_channels, segment=segment
        )
        if encoder_kernel < 2:
            raise ValueError(f"encoder_kernel must be at least 2 (the hop is half), got {encoder_kernel}")
        if input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm must be one of {INPUT_NORMS}, got {input_norm!r}")
        for name, value in [
            ("encoder_filters", encoder_filters),
            ("bottleneck_channels", bottleneck_channels),
            ("hidden_channels", hidden_channels),
            ("conv_kernel", conv_kernel),
            ("blocks_per_repeat", blocks_per_repeat),
            ("repeats", repeats),
        ]:
            if value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        self.encoder_kernel = encoder_kernel
        self.hop = encoder_kernel // 2
        self.encoder = WaveformEncoder(audio_channels, encoder_filters, encoder_kernel)
        self.mask_estimator = MaskEstimator(
            num_sources=len(self.sources),
            feature_channels=encoder_filters,
            bottleneck_channels=bottleneck_channels,
            hidden_channels=hidden_channels,
            kernel_size=conv_kernel,
            blocks_per_repeat=blocks_per_repeat,
            repeats=repeats,
            input_norm=input_norm,
        )
        self.decoder = OverlapAddDecoder(encoder_filters, encoder_kernel, audio_channels)
        self._initialize()

    def _initialize(self) -> None:
        # Xavier-normal on every weight matrix/kernel, as in the evaluated implementation;
        # PReLU slopes and normalization gains keep their defaults.
        for parameter in self.parameters():
            if parameter.dim() > 1:
                nn.init.xavier_normal_(parameter)

    def valid_length(self, length: int) -> int:
        """Smallest length >= ``length`` whose encoder frames tile the signal exactly.

        Args:
            length: A number of samples.
        """
        if length <= self.encoder_kernel:
            return self.encoder_kernel
        hops = -(-(length - self.encoder_kernel) // self.hop)
        return self.encoder_kernel + hops * self.hop

    def forward(self, mix: Tensor, references: Tensor | None = None) -> Tensor:
        self.check_input(mix, references)
        length = mix.shape[-1]
        padded = F.pad(mix, (0, self.valid_length(length) - length))  # B, C, T'
        stems = self.separate_valid(padded)  # B, S, C, T'
        # In the mixture's precision, also when autocast ran the decoder in half precision.
        return stems[..., :length].to(mix.dtype)  # B, S, C, T

    def separate_valid(self, mix: Tensor) -> Tensor:
        """The stems ``[batch, sources, channels, time]`` of a mixture whose length is valid
        (see :meth:`valid_length`): the network without the padding and cropping around it, and
        the core of the ONNX export.

        Args:
            mix: Mixture, ``[batch, channels, time]`` with a valid ``time``.
        """
        features = self.encoder(mix)  # B, N, K
        masks = self.mask_estimator(features)  # B, S, N, K
        return self.decoder(features.unsqueeze(1) * masks)  # B, S, C, T

    def onnx_export(self, length: int) -> OnnxExport:
        """Export plan: the network on chunks of ``length`` samples, waveform in and out (the
        ``"waveform"`` adapter).

        Args:
            length: Samples per exported chunk; must be a valid length.

        Raises:
            SepzooError: ``length`` is not a valid length.
        """
        require_valid_length(self, length)
        return OnnxExport(core=_ValidLengthCore(self), adapter="waveform")


class _ValidLengthCore(nn.Module):
    """The export core: a model's ``separate_valid`` (waveform in, stems out)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, mix: Tensor) -> Tensor:
        """Stems ``[batch, sources, channels, time]`` of ``mix`` ``[batch, channels, time]``.

        Args:
            mix: Mixture chunks of the exported length.
        """
        return self.model.separate_valid(mix)
