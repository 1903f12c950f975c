"""MDX23C: the TFC-TDF U-Net v3 of KUIELab, as Music-Source-Separation-Training (MSST) trains and
publishes it.

Kim, Lee & Jung, "Sound Demixing Challenge 2023 Music Demixing Track Technical Report:
TFC-TDF-UNet v3" (2023, arXiv:2306.09382; code at github.com/kuielab/sdx23). sepzoo follows the
implementation that MSST ships as ``models/mdx23c_tfc_tdf_v3.py`` (class ``TFC_TDF_net``), so
that MSST's checkpoints load through :mod:`sepzoo.convert.msst_mdx23c` and give the same output;
where that implementation and the report differ, the implementation wins. The defaults are
MSST's ``configs/config_musdb18_mdx23c.yaml``.

The signal path:

1. A centred STFT (``n_fft``, ``hop_length``, periodic Hann window, reflection padding at the
   ends) of every channel, cut to its lowest ``dim_f`` bins. The real and imaginary parts of each
   channel are stacked as ``2 * audio_channels`` image channels ("complex as channels").
2. The ``dim_f`` bins are cut into ``num_subbands`` equal sub-bands, which are stacked as
   channels too: the network sees ``num_subbands * 2 * audio_channels`` channels of
   ``dim_f / num_subbands`` bins each.
3. A 1x1 convolution to ``num_channels`` channels; its output is kept for step 7.
4. A U-Net over (frames, bins). Each of the ``num_scales`` encoder stages is a TFC-TDF block
   followed by a strided convolution (kernel = stride = ``scale``, ``[time, frequency]``) that
   adds ``growth`` channels; a TFC-TDF block forms the bottleneck; each decoder stage is a
   transposed convolution back up, a concatenation with the encoder stage's output, and a
   TFC-TDF block.
5. A TFC-TDF block holds ``num_blocks_per_scale`` layers. One layer: a 3x3 convolution ("TFC");
   plus, residually, a two-layer bias-free MLP along the frequency axis whose hidden width is the
   number of bins divided by ``bottleneck_factor`` ("TDF", shared by every frame and channel); a
   second 3x3 convolution; and a 1x1 convolution shortcut from the layer's input. Every
   convolution and linear layer is preceded by a norm and an activation (pre-activation).
6. The U-Net's output multiplies the output of step 3 elementwise.
7. The product, concatenated with the sub-band input of step 2, goes through a 1x1 convolution,
   the activation and a 1x1 convolution to ``len(sources)`` times the input's channels: each
   source's sub-band spectrogram, estimated directly (not as a mask).
8. Sub-bands and real/imaginary parts are unfolded again, the bins above ``dim_f`` are set to
   zero, and the inverse STFT gives each source's waveform.

Input lengths (:meth:`MDX23C.valid_length`). The centred STFT of ``L`` samples has
``N = 1 + L // hop_length`` frames, and the inverse STFT of ``N`` frames gives back
``hop_length * (N - 1)`` samples, so ``L`` must be a multiple of ``hop_length``. Each encoder
stage divides the frame axis by ``scale[0]`` and each decoder stage multiplies it back, and the
skip concatenation needs both to agree, so ``N`` must be a multiple of
``D = scale[0] ** num_scales``. The reflection padding of ``n_fft // 2`` samples at each end needs
``L > n_fft // 2``. The valid lengths are thus ``hop_length * (m * D - 1)`` for whole ``m >= 1``,
above ``n_fft // 2``; MSST's ``chunk_size = hop_length * (dim_t - 1)`` (261120 samples, 256
frames) is one of them. :meth:`~MDX23C.forward` pads any other input with zeros at the end up to
the next valid length and cuts the output back, so every length works; the inference engine
asks :meth:`~MDX23C.valid_length` first and pads with real neighbouring audio instead.

The frequency axis has fixed sizes: ``dim_f`` must split into ``num_subbands`` sub-bands whose
bins divide by ``scale[1] ** num_scales``, and the deepest TDF keeps at least one hidden unit.

Norms (``norm``): ``"InstanceNorm"`` (instance norm with a gain and bias per channel),
``"BatchNorm"``, ``"GroupNorm<g>"`` (``g`` groups, e.g. ``"GroupNorm4"``) or ``None`` (none).
Activations (``act``): ``"gelu"``, ``"relu"`` or ``"elu<alpha>"`` (e.g. ``"elu1.0"``; ``"elu"``
alone means alpha 1). Anything else is refused when the model is built.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sepzoo import DEFAULT_SOURCES
from sepzoo.dsp.precision import full_precision
from sepzoo.dsp.stft import STFT
from sepzoo.models import register_model
from sepzoo.models._spectral_export import spectral_export
from sepzoo.models.base import Separator
from sepzoo.models.onnx_core import OnnxExport

NormFactory = Callable[[int], nn.Module]
"""Builds a norm over a given number of channels."""

ActivationFactory = Callable[[], nn.Module]
"""Builds an activation."""

NORM_CHOICES = "'InstanceNorm', 'BatchNorm', 'GroupNorm<groups>' (e.g. 'GroupNorm4') or null"
ACT_CHOICES = "'gelu', 'relu' or 'elu<alpha>' (e.g. 'elu1.0')"


def norm_factory(norm: str | None) -> NormFactory:
    """The norm layers a ``norm`` option stands for, as a function of the channel count.

    Args:
        norm: ``"InstanceNorm"``, ``"BatchNorm"``, ``"GroupNorm<groups>"`` or ``None``.

    Raises:
        ValueError: For any other value; the factory raises it too for a channel count that
            does not split into the groups of a group norm.
    """
    if norm is None:
        return lambda channels: nn.Identity()
    if norm == "InstanceNorm":
        return lambda channels: nn.InstanceNorm2d(channels, affine=True)
    if norm == "BatchNorm":
        return nn.BatchNorm2d
    match = re.fullmatch(r"GroupNorm(\d+)", norm) if isinstance(norm, str) else None
    if match is None or int(match.group(1)) < 1:
        raise ValueError(f"norm must be {NORM_CHOICES}, got {norm!r}")
    groups = int(match.group(1))

    def group_norm(channels: int) -> nn.Module:
        if channels % groups:
            raise ValueError(
                f"norm {norm!r}: a layer's {channels} channels do not split into {groups} groups"
            )
        return nn.GroupNorm(groups, channels)

    return group_norm


def activation_factory(act: str) -> ActivationFactory:
    """The activation an ``act`` option stands for.

    Args:
        act: ``"gelu"``, ``"relu"`` or ``"elu<alpha>"`` (``"elu"`` alone: alpha 1).

    Raises:
        ValueError: For any other value.
    """
    if act == "gelu":
        return nn.GELU
    if act == "relu":
        return nn.ReLU
    if isinstance(act, str) and act.startswith("elu"):
        try:
            alpha = float(act[3:]) if act[3:] else 1.0
        except ValueError:
            alpha = None
        if alpha is not None:
            return lambda: nn.ELU(alpha)
    raise ValueError(f"act must be {ACT_CHOICES}, got {act!r}")


def _pre_activated(
    norm: NormFactory, act: ActivationFactory, channels: int, layer: nn.Module
) -> nn.Sequential:
    """``layer`` preceded by a norm over ``channels`` and the activation."""
    return nn.Sequential(norm(channels), act(), layer)


class TFCTDFLayer(nn.Module):
    """One TFC-TDF layer on ``[B, C, frames, bins]``: a 3x3 convolution, a residual MLP along the
    bins, a second 3x3 convolution, and a 1x1 convolution shortcut around all three.

    Args:
        in_channels: Channels of the input.
        channels: Channels of the output.
        bins: Size of the frequency axis (the last one).
        bottleneck_factor: The MLP's hidden width is ``bins // bottleneck_factor``.
        norm: Builds the norms.
        act: Builds the activations.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        bins: int,
        bottleneck_factor: int,
        norm: NormFactory,
        act: ActivationFactory,
    ) -> None:
        super().__init__()
        hidden = bins // bottleneck_factor
        self.tfc_in = _pre_activated(
            norm, act, in_channels, nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False)
        )
        self.tdf = nn.Sequential(
            *_pre_activated(norm, act, channels, nn.Linear(bins, hidden, bias=False)),
            *_pre_activated(norm, act, channels, nn.Linear(hidden, bins, bias=False)),
        )
        self.tfc_out = _pre_activated(norm, act, channels, nn.Conv2d(channels, channels, 3, 1, 1, bias=False))
        self.shortcut = nn.Conv2d(in_channels, channels, 1, bias=False)

    def forward(self, features: Tensor) -> Tensor:
        """Apply the layer.

        Args:
            features: ``[batch, in_channels, frames, bins]``.
        """
        shortcut = self.shortcut(features)  # B, C, N, F
        features = self.tfc_in(features)  # B, C, N, F
        features = features + self.tdf(features)  # B, C, N, F
        return self.tfc_out(features) + shortcut  # B, C, N, F


class TFCTDFBlock(nn.Module):
    """``num_layers`` TFC-TDF layers in a row; the first maps ``in_channels`` to ``channels``.

    Args:
        in_channels: Channels of the input.
        channels: Channels of every layer's output.
        num_layers: Number of layers.
        bins: Size of the frequency axis.
        bottleneck_factor: The MLPs' hidden width is ``bins // bottleneck_factor``.
        norm: Builds the norms.
        act: Builds the activations.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_layers: int,
        bins: int,
        bottleneck_factor: int,
        norm: NormFactory,
        act: ActivationFactory,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TFCTDFLayer(in_channels if index == 0 else channels, channels, bins, bottleneck_factor, norm, act)
            for index in range(num_layers)
        )

    def forward(self, features: Tensor) -> Tensor:
        """Apply the layers.

        Args:
            features: ``[batch, in_channels, frames, bins]``.
        """
        for layer in self.layers:
            features = layer(features)  # B, C, N, F
        return features


class EncoderStage(nn.Module):
    """A TFC-TDF block, then a strided convolution that shrinks frames and bins by ``scale`` and
    adds ``growth`` channels.

    Args:
        channels: Channels of the input.
        growth: Channels added by the downsampling.
        num_layers: TFC-TDF layers.
        bins: Bins of the input.
        scale: Kernel size and stride of the downsampling, ``[time, frequency]``.
        bottleneck_factor: Of the TDF MLPs.
        norm: Builds the norms.
        act: Builds the activations.
    """

    def __init__(
        self,
        channels: int,
        growth: int,
        num_layers: int,
        bins: int,
        scale: tuple[int, int],
        bottleneck_factor: int,
        norm: NormFactory,
        act: ActivationFactory,
    ) -> None:
        super().__init__()
        self.tfc_tdf = TFCTDFBlock(channels, channels, num_layers, bins, bottleneck_factor, norm, act)
        downsample = nn.Conv2d(channels, channels + growth, scale, scale, bias=False)
        self.downsample = _pre_activated(norm, act, channels, downsample)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """The block's output (for the skip connection) and its downsampled version.

        Args:
            features: ``[batch, channels, frames, bins]``.
        """
        skip = self.tfc_tdf(features)  # B, C, N, F
        return skip, self.downsample(skip)  # B, C + G, N / s_t, F / s_f


class DecoderStage(nn.Module):
    """A transposed convolution that grows frames and bins by ``scale`` and removes ``growth``
    channels, a concatenation with the encoder stage's output, and a TFC-TDF block.

    Args:
        channels: Channels of the input.
        growth: Channels removed by the upsampling.
        num_layers: TFC-TDF layers.
        bins: Bins of the output.
        scale: Kernel size and stride of the upsampling, ``[time, frequency]``.
        bottleneck_factor: Of the TDF MLPs.
        norm: Builds the norms.
        act: Builds the activations.
    """

    def __init__(
        self,
        channels: int,
        growth: int,
        num_layers: int,
        bins: int,
        scale: tuple[int, int],
        bottleneck_factor: int,
        norm: NormFactory,
        act: ActivationFactory,
    ) -> None:
        super().__init__()
        out_channels = channels - growth
        upsample = nn.ConvTranspose2d(channels, out_channels, scale, scale, bias=False)
        self.upsample = _pre_activated(norm, act, channels, upsample)
        self.tfc_tdf = TFCTDFBlock(
            2 * out_channels, out_channels, num_layers, bins, bottleneck_factor, norm, act
        )

    def forward(self, features: Tensor, skip: Tensor) -> Tensor:
        """Upsample ``features`` and merge them with ``skip``.

        Args:
            features: ``[batch, channels, frames, bins]``.
            skip: The matching encoder stage's output, ``[batch, channels - growth, ...]``.
        """
        features = self.upsample(features)  # B, C - G, N * s_t, F * s_f
        return self.tfc_tdf(torch.cat([features, skip], dim=1))  # B, C - G, N * s_t, F * s_f


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def _positive(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


@register_model("mdx23c")
class MDX23C(Separator):
    """TFC-TDF U-Net v3 (Kim, Lee & Jung 2023) as MSST's MDX23C: a U-Net of convolutions and
    frequency MLPs over sub-band complex spectrograms, estimating every source's spectrogram.

    Args:
        sources: Names of the output stems; one name makes a single-target model (MSST's
            ``training.target_instrument``). (Default: ``DEFAULT_SOURCES``)
        n_fft: STFT size and Hann window length. (Default: ``8192``)
        hop_length: STFT hop, at most ``n_fft // 2``. (Default: ``1024``)
        dim_f: Number of STFT bins the network sees, from the lowest; the bins above are
            estimated as zero. (Default: ``4096``)
        num_subbands: Equal sub-bands that ``dim_f`` is cut into and stacked as channels.
            (Default: ``4``)
        num_scales: Encoder and decoder stages. (Default: ``5``)
        scale: Down- and upsampling factor of each stage, ``[time, frequency]``.
            (Default: ``[2, 2]``)
        num_blocks_per_scale: TFC-TDF layers per stage and in the bottleneck. (Default: ``2``)
        num_channels: Channels of the outermost stage. (Default: ``128``)
        growth: Channels added by each downsampling. (Default: ``128``)
        bottleneck_factor: The TDF MLPs' hidden width is the bins divided by it.
            (Default: ``4``)
        norm: ``"InstanceNorm"``, ``"BatchNorm"``, ``"GroupNorm<groups>"`` or ``None``.
            (Default: ``"InstanceNorm"``)
        act: ``"gelu"``, ``"relu"`` or ``"elu<alpha>"``. (Default: ``"gelu"``)
        sample_rate: Sample rate in Hz. (Default: ``44100``)
        audio_channels: Input and output channels. (Default: ``2``)
        segment: Preferred chunk length in seconds. (Default: ``261120 / 44100``, MSST's
            ``chunk_size`` of 261120 samples, 256 frames, about 5.92 s)
    """

    domain = "spectrogram"
    # The instance norms' statistics span the whole chunk, and MSST trains and separates full
    # chunks only, so a short last chunk is widened with real audio rather than run short.
    fixed_chunk_length = True
    test_kwargs = {
        "n_fft": 64,
        "hop_length": 16,
        "dim_f": 32,
        "num_subbands": 2,
        "num_scales": 2,
        "num_blocks_per_scale": 1,
        "num_channels": 4,
        "growth": 2,
        "bottleneck_factor": 2,
    }

    def __init__(
        self,
        sources: Sequence[str] = DEFAULT_SOURCES,
        n_fft: int = 8192,
        hop_length: int = 1024,
        dim_f: int = 4096,
        num_subbands: int = 4,
        num_scales: int = 5,
        scale: Sequence[int] = (2, 2),
        num_blocks_per_scale: int = 2,
        num_channels: int = 128,
        growth: int = 128,
        bottleneck_factor: int = 4,
        norm: str | None = "InstanceNorm",
        act: str = "gelu",
        sample_rate: int = 44100,
        audio_channels: int = 2,
        segment: float | None = 261120 / 44100,
    ) -> None:
        super().__init__(
            sources=list(sources), sample_rate=sample_rate, audio_channels=audio_channels, segment=segment
        )
        _positive(
            n_fft=n_fft,
            hop_length=hop_length,
            dim_f=dim_f,
            num_subbands=num_subbands,
            num_scales=num_scales,
            num_blocks_per_scale=num_blocks_per_scale,
            num_channels=num_channels,
            bottleneck_factor=bottleneck_factor,
        )
        if not isinstance(growth, int) or growth < 0:
            raise ValueError(f"growth must be a non-negative integer, got {growth!r}")
        if len(scale) != 2:
            raise ValueError(f"scale must be [time, frequency], two positive integers, got {list(scale)}")
        _positive(**{"scale[0]": scale[0], "scale[1]": scale[1]})
        self.scale = (int(scale[0]), int(scale[1]))
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.dim_f = dim_f
        self.num_subbands = num_subbands
        self.num_scales = num_scales
        bins = self._check_bins(bottleneck_factor)
        norm_layer = norm_factory(norm)
        act_layer = activation_factory(act)
        self.stft = STFT(n_fft, hop_length, pad_mode="reflect", float32_window=True)

        input_channels = num_subbands * 2 * audio_channels
        self.input_conv = nn.Conv2d(input_channels, num_channels, 1, bias=False)
        channels = num_channels
        self.encoders = nn.ModuleList()
        for _ in range(num_scales):
            self.encoders.append(
                EncoderStage(
                    channels,
                    growth,
                    num_blocks_per_scale,
                    bins,
                    self.scale,
                    bottleneck_factor,
                    norm_layer,
                    act_layer,
                )
            )
            channels += growth
            bins //= self.scale[1]
        self.bottleneck = TFCTDFBlock(
            channels, channels, num_blocks_per_scale, bins, bottleneck_factor, norm_layer, act_layer
        )
        self.decoders = nn.ModuleList()
        for _ in range(num_scales):
            bins *= self.scale[1]
            self.decoders.append(
                DecoderStage(
                    channels,
                    growth,
                    num_blocks_per_scale,
                    bins,
                    self.scale,
                    bottleneck_factor,
                    norm_layer,
                    act_layer,
                )
            )
            channels -= growth
        self.output_conv = nn.Sequential(
            nn.Conv2d(channels + input_channels, channels, 1, bias=False),
            act_layer(),
            nn.Conv2d(channels, len(self.sources) * input_channels, 1, bias=False),
        )

    def _check_bins(self, bottleneck_factor: int) -> int:
        """Check the frequency sizes; return the bins of one sub-band."""
        if self.dim_f > self.n_fft // 2 + 1:
            raise ValueError(
                f"dim_f must be at most n_fft // 2 + 1 = {self.n_fft // 2 + 1}, got {self.dim_f}"
            )
        divisor = self.num_subbands * self.scale[1] ** self.num_scales
        if self.dim_f % divisor:
            raise ValueError(
                f"dim_f must divide by num_subbands * scale[1] ** num_scales = {divisor} (every stage "
                f"divides each sub-band's bins by scale[1]), got {self.dim_f}"
            )
        deepest = self.dim_f // divisor
        if deepest < bottleneck_factor:
            raise ValueError(
                f"bottleneck_factor must be at most {deepest}, the bins at the deepest stage, so that its "
                f"frequency MLP keeps a hidden unit, got {bottleneck_factor}"
            )
        return self.dim_f // self.num_subbands

    def valid_length(self, length: int) -> int:
        """The next length ``hop_length * (m * scale[0] ** num_scales - 1)`` at or above ``length``
        and above ``n_fft // 2`` (see the module's documentation).

        Args:
            length: A number of samples.
        """
        frames_step = self.scale[0] ** self.num_scales
        needed = max(length, self.n_fft // 2 + 1)
        # The fewest frames N = m * D whose hop_length * (N - 1) samples reach `needed`.
        frames = _ceil_div(needed, self.hop_length) + 1
        return self.hop_length * (_ceil_div(frames, frames_step) * frames_step - 1)

    def _to_subbands(self, spectrum: Tensor) -> Tensor:
        """``[B, C, F', N, 2]`` (real and imaginary parts) -> ``[B, C * 2 * K, dim_f / K, N]``."""
        batch, _, _, frames, _ = spectrum.shape
        parts = spectrum[:, :, : self.dim_f].permute(0, 1, 4, 2, 3)  # B, C, 2, F, N
        return parts.reshape(batch, -1, self.dim_f // self.num_subbands, frames)  # B, C*2*K, F/K, N

    @full_precision  # torch.complex takes no half-precision parts
    def _from_subbands(self, estimate: Tensor) -> Tensor:
        """``[B, S * C * 2 * K, dim_f / K, N]`` -> ``[B, S, C, n_fft // 2 + 1, N, 2]`` (real and
        imaginary parts last)."""
        batch, _, _, frames = estimate.shape
        parts = estimate.reshape(batch, len(self.sources), self.audio_channels, 2, self.dim_f, frames)
        parts = F.pad(parts, (0, 0, 0, self.n_fft // 2 + 1 - self.dim_f))  # B, S, C, 2, F', N
        return parts.permute(0, 1, 2, 4, 5, 3)  # B, S, C, F', N, 2

    def _unet(self, mix: Tensor) -> Tensor:
        """Sub-band spectrograms of every source, ``[B, S * C * 2 * K, F / K, N]``, from the
        mixture's ``[B, C * 2 * K, F / K, N]``."""
        first = self.input_conv(mix)  # B, c, F/K, N
        features = first.transpose(-1, -2)  # B, c, N, F/K: the TDF MLPs act on the last axis
        skips = []
        for encoder in self.encoders:
            skip, features = encoder(features)  # B, c + i*g, N / s_t^i, F/K / s_f^i
            skips.append(skip)
        features = self.bottleneck(features)  # B, c + n*g, N / D, F/K / s_f^n
        for decoder in self.decoders:
            features = decoder(features, skips.pop())
        features = features.transpose(-1, -2) * first  # B, c, F/K, N
        return self.output_conv(torch.cat([mix, features], dim=1))  # B, S*C*2*K, F/K, N

    def forward(self, mix: Tensor, references: Tensor | None = None) -> Tensor:
        """Separate ``mix`` (``[B, C, T]``) into stems (``[B, S, C, T]``), for any ``T``.

        Args:
            mix: The mixture, ``[batch, audio_channels, time]``.
            references: Unused; accepted for the common signature. (Default: ``None``)
        """
        self.check_input(mix, references)
        length = mix.shape[-1]
        padded = F.pad(mix, (0, self.valid_length(length) - length))  # B, C, L
        spectrum = self.stft(padded)  # B, C, F', N
        parts = self.spectra(torch.view_as_real(spectrum))  # B, S, C, F', N, 2
        stems = self.stft.inverse(torch.complex(parts[..., 0], parts[..., 1]), padded.shape[-1])  # B, S, C, L
        return stems[..., :length]  # B, S, C, T

    def spectra(self, spectrum: Tensor) -> Tensor:
        """Every source's spectrogram ``[B, S, C, F', N, 2]`` estimated from the mixture's
        ``[B, C, F', N, 2]`` (real and imaginary parts last, all ``n_fft // 2 + 1`` bins; those
        above ``dim_f`` are zero in the estimate): the network without the STFTs, which is what
        an ONNX export traces.

        Args:
            spectrum: The STFT of the padded mixture as real and imaginary parts.
        """
        return self._from_subbands(self._unet(self._to_subbands(spectrum)))

    def onnx_export(self, length: int) -> OnnxExport:
        """The export plan: the zero padding to :meth:`valid_length` and the STFTs stay outside
        the graph, which maps the mixture's spectrum ``[B, C, F, N, 2]`` to the sources' spectra
        ``[B, S, C, F, N, 2]`` (adapter ``"spectral_stems"``).

        Args:
            length: Samples per exported chunk.
        """
        return spectral_export(
            self,
            "spectra",
            masks=False,
            length=length,
            padded_length=self.valid_length(length),
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.n_fft,
            window="hann",
            normalized=False,
            pad_mode="reflect",
        )
