"""Hybrid Demucs: two U-Nets, one over the spectrogram and one over the waveform, that meet in
their innermost layers.

Défossez, "Hybrid Spectrogram and Waveform Source Separation" (2021, arXiv:2111.03600), the
model that won the Music Demixing Challenge 2021 (Demucs v3). ``hdemucs`` has the options and
defaults of the official ``demucs.hdemucs.HDemucs`` class and computes what it computes, so that
its checkpoints load through a key mapping (:mod:`sepzoo.convert.demucs`).

The frequency branch reads the STFT (complex values as two channels, or magnitudes), and its
encoder layers convolve along frequency only (kernel 8, stride 4), while the residual branches
of each layer look along time, one frequency row at a time. A learned frequency embedding is
added after the first layer, because convolutions along frequency are otherwise blind to the
absolute frequency. Once a single frequency row is left, the temporal branch, whose encoder
strides by the same factors along time, is added to it, and the deeper layers are shared
convolutions over time. The decoders mirror the encoders with U-Net skips; the two branches
split again at the same depth, the frequency branch's output goes through the inverse STFT and
the two outputs are summed. With ``hybrid=False`` only the frequency branch exists.

The STFT has size ``nfft`` and a hop of ``nfft / 4``. In hybrid mode the signal is reflect-padded
so that the spectrogram has exactly ``ceil(length / hop)`` frames, aligned with the temporal
branch; the top frequency bin is dropped, leaving ``nfft / 2`` bins for the strides to divide. Without
complex-as-channels (``cac=False``) the network predicts magnitudes, and the complex stems come
from the mixture's phase, refined by the multichannel Wiener filter of Open-Unmix when
``wiener_iters >= 0`` (Nugraha, Liutkus & Vincent 2016).

``forward`` is the STFT, :meth:`HybridDemucs.network` (both branches, real arithmetic only: the
mixture and the spectrum's real and imaginary channels or magnitudes in, the temporal stems and
the frequency branch's output out), the stems' complex spectra (with the Wiener filter) and the
inverse STFT plus the temporal stems. An ONNX export traces ``network``; the steps around it run
in NumPy (:mod:`sepzoo.deploy.hybrid`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sepzoo import DEFAULT_SOURCES
from sepzoo.dsp.precision import full_precision
from sepzoo.dsp.stft import STFT
from sepzoo.dsp.wiener import demucs_wiener
from sepzoo.models import register_model
from sepzoo.models._demucs_layers import (
    ResidualBranch,
    check_dconv_mode,
    group_norm,
    rescale_conv_weights,
    residual_options,
)
from sepzoo.models.base import Separator
from sepzoo.models.onnx_core import OnnxExport

WIENER_WINDOW = 300
"""Frames the Wiener filter handles at once; its statistics are those of each window."""


def pad_reflect(x: Tensor, left: int, right: int) -> Tensor:
    """Reflect-pad the last axis of ``x``, even when it is shorter than the padding.

    A reflection cannot be longer than the signal; the missing part is first filled with zeros
    on the right (on the left when the right padding is too small for them), so that the
    original samples keep their place.

    Args:
        x: Signal, time last.
        left: Samples to add on the left.
        right: Samples to add on the right.
    """
    length = x.shape[-1]
    if length <= max(left, right):
        missing = max(left, right) - length + 1
        zeros_right = min(right, missing)
        zeros_left = missing - zeros_right
        x = F.pad(x, (zeros_left, zeros_right))
        left, right = left - zeros_left, right - zeros_right
    return F.pad(x, (left, right), mode="reflect")


def _fast_layout(x: Tensor) -> Tensor:
    """Frequency-branch features in channels-last memory order, in which the CPU's 2-D
    convolutions over ``[B, C, Fr, T]`` run about twice as fast; other tensors as they are."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def _per_frequency(branch: nn.Module, x: Tensor) -> Tensor:
    """Run a time-axis module on every frequency row of ``x`` (``[B, C, Fr, T]``) separately."""
    batch, channels, frequencies, frames = x.shape
    rows = x.permute(0, 2, 1, 3).reshape(batch * frequencies, channels, frames)  # B*Fr, C, T
    rows = branch(rows)
    return rows.view(batch, frequencies, channels, frames).permute(0, 2, 1, 3)  # B, C, Fr, T


class FrequencyEmbedding(nn.Module):
    """One learned vector per frequency row, added to the features so that the frequency
    convolutions can tell low from high frequencies (Isik et al. 2020, arXiv:2008.04470).

    The table is stored divided by ``scale`` and multiplied back when read, which multiplies its
    effective learning rate by ``scale``; with ``smooth`` its initial rows are a normalised
    running sum of Gaussian draws, so that neighbouring frequencies start with similar vectors.

    Args:
        frequencies: Number of frequency rows.
        channels: Size of each vector.
        scale: Learning-rate multiplier. (Default: ``10.0``)
        smooth: Start from a smooth table. (Default: ``True``)
    """

    def __init__(self, frequencies: int, channels: int, scale: float = 10.0, smooth: bool = True) -> None:
        super().__init__()
        self.embedding = nn.Embedding(frequencies, channels)
        self.scale = scale
        table = self.embedding.weight
        if table.is_meta:  # built to count parameters: there are no values to shape
            return
        with torch.no_grad():
            if smooth:
                # A sum of n unit Gaussians has standard deviation sqrt(n).
                counts = torch.arange(1, frequencies + 1, dtype=table.dtype).sqrt()[:, None]
                table.copy_(torch.cumsum(table, dim=0) / counts)
            table.div_(scale)

    def forward(self, frequencies: int) -> Tensor:
        """The vectors of the first ``frequencies`` rows, ``[channels, frequencies]``.

        Args:
            frequencies: Number of rows.
        """
        rows = torch.arange(frequencies, device=self.embedding.weight.device)
        return (self.embedding(rows) * self.scale).t()  # C, Fr


class HybridEncoderLayer(nn.Module):
    """One encoder layer of either branch: strided convolution (along frequency in the frequency
    branch, along time otherwise), group norm, GELU, the optional residual branch and the
    optional rewrite convolution with its GLU.

    A time layer first pads its input on the right to a multiple of the stride; with ``pad``, the
    convolution pads ``kernel_size // 4`` on each side, so that the output is the input length
    divided by the stride.

    Args:
        in_channels: Input channels.
        channels: Output channels.
        kernel_size: Kernel of the strided convolution.
        stride: Its stride.
        frequency: Convolve along frequency (``[B, C, Fr, T]`` features), else along time.
        pad: Pad the strided convolution by ``kernel_size // 4``.
        norm_groups: Groups of the group norms, or ``None`` for none.
        rewrite: Add the rewrite convolution.
        context: Context on each side of the rewrite convolution (on both axes for a frequency
            layer).
        residual: Keyword arguments of the :class:`ResidualBranch`, or ``None`` for none.
        conv_only: Keep only the strided convolution; the temporal branch's last layer is one,
            its output being added to the frequency branch's. (Default: ``False``)
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        kernel_size: int,
        stride: int,
        frequency: bool,
        pad: bool,
        norm_groups: int | None,
        rewrite: bool,
        context: int,
        residual: dict | None,
        conv_only: bool = False,
    ) -> None:
        super().__init__()
        self.frequency = frequency
        self.kernel_size = kernel_size
        self.stride = stride
        self.conv_only = conv_only
        padding = kernel_size // 4 if pad else 0
        if frequency:
            self.conv = nn.Conv2d(in_channels, channels, (kernel_size, 1), (stride, 1), (padding, 0))
        else:
            self.conv = nn.Conv1d(in_channels, channels, kernel_size, stride, padding)
        if conv_only:
            return
        self.norm = group_norm(channels, norm_groups)
        self.rewrite = None
        if rewrite:
            convolution = nn.Conv2d if frequency else nn.Conv1d
            self.rewrite = convolution(channels, 2 * channels, 2 * context + 1, padding=context)
            self.rewrite_norm = group_norm(2 * channels, norm_groups)
        self.residual = None if residual is None else ResidualBranch(channels, **residual)

    def forward(self, x: Tensor, inject: Tensor | None = None) -> Tensor:
        """Encode ``x`` (``[B, C_in, Fr, T]`` or ``[B, C_in, T]``).

        Args:
            x: Features; a time layer also accepts a single frequency row ``[B, C_in, 1, T]``.
            inject: The temporal branch's features ``[B, C, T']``, added after the strided
                convolution where the two branches meet. (Default: ``None``)
        """
        if not self.frequency:
            if x.dim() == 4:
                x = x.flatten(1, 2)  # B, C_in, T
            x = F.pad(x, (0, -x.shape[-1] % self.stride))
        y = self.conv(_fast_layout(x))  # B, C, Fr', T  or  B, C, T'
        if self.conv_only:
            return y
        if inject is not None:
            if inject.shape[-1] != y.shape[-1]:
                raise ValueError(f"the temporal branch has {inject.shape[-1]} frames, not {y.shape[-1]}")
            y = y + (inject[:, :, None] if y.dim() == 4 else inject)
        y = F.gelu(self.norm(y))
        if self.residual is not None:
            y = _per_frequency(self.residual, y) if self.frequency else self.residual(y)
        if self.rewrite is not None:
            y = F.glu(self.rewrite_norm(self.rewrite(_fast_layout(y))), dim=1)
        return y


class HybridDecoderLayer(nn.Module):
    """One decoder layer of either branch: the skip is added, then the optional rewrite
    convolution and its GLU, the optional residual branch, the transposed convolution and its
    group norm, the padding of the encoder removed, and GELU except in the outermost layer.

    Args:
        channels: Input channels.
        out_channels: Output channels.
        kernel_size: Kernel of the transposed convolution.
        stride: Its stride.
        frequency: Convolve along frequency, else along time.
        pad: Remove ``kernel_size // 4`` rows on each side of a frequency output (a time output
            is always cut to the encoder's input length).
        norm_groups: Groups of the group norms, or ``None`` for none.
        rewrite: Add the rewrite convolution.
        context: Context on each side of the rewrite convolution.
        residual: Keyword arguments of the :class:`ResidualBranch`, or ``None`` for none.
        last: The outermost layer: no GELU at the end.
        context_freq: A frequency layer's rewrite convolution also has context along frequency.
            (Default: ``True``)
        conv_only: Keep only the transposed convolution and its norm (the temporal branch's
            innermost layer, which starts from the frequency branch's features).
            (Default: ``False``)
    """

    def __init__(
        self,
        channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        frequency: bool,
        pad: bool,
        norm_groups: int | None,
        rewrite: bool,
        context: int,
        residual: dict | None,
        last: bool,
        context_freq: bool = True,
        conv_only: bool = False,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.frequency = frequency
        self.stride = stride
        self.trim = kernel_size // 4 if pad else 0
        self.last = last
        self.conv_only = conv_only
        if frequency:
            self.conv_transpose = nn.ConvTranspose2d(channels, out_channels, (kernel_size, 1), (stride, 1))
        else:
            self.conv_transpose = nn.ConvTranspose1d(channels, out_channels, kernel_size, stride)
        self.norm = group_norm(out_channels, norm_groups)
        if conv_only:
            return
        self.rewrite = None
        if rewrite:
            taps = 2 * context + 1
            if not frequency:
                self.rewrite = nn.Conv1d(channels, 2 * channels, taps, padding=context)
            elif context_freq:
                self.rewrite = nn.Conv2d(channels, 2 * channels, taps, padding=context)
            else:
                self.rewrite = nn.Conv2d(channels, 2 * channels, (1, taps), padding=(0, context))
            self.rewrite_norm = group_norm(2 * channels, norm_groups)
        self.residual = None if residual is None else ResidualBranch(channels, **residual)

    def forward(self, x: Tensor, skip: Tensor | None, length: int) -> tuple[Tensor, Tensor]:
        """Decode ``x``; returns the output and the features before the transposed convolution.

        Args:
            x: Features, ``[B, C, Fr, T]`` or ``[B, C, T]`` (a frequency layer also accepts
                ``[B, C, T]`` as a single frequency row).
            skip: The encoder's output at this depth, or ``None`` for a ``conv_only`` layer.
            length: The encoder's input length (frames), to which a time output is cut.
        """
        if self.frequency and x.dim() == 3:
            x = x.view(x.shape[0], self.channels, -1, x.shape[-1])  # B, C, 1, T
        if self.conv_only:
            y = x
        else:
            y = x + skip
            if self.rewrite is not None:
                y = F.glu(self.rewrite_norm(self.rewrite(_fast_layout(y))), dim=1)
            if self.residual is not None:
                y = _per_frequency(self.residual, y) if self.frequency else self.residual(y)
        z = self.norm(self.conv_transpose(_fast_layout(y)))  # B, C_out, Fr', T  or  B, C_out, T'
        if self.frequency:
            if self.trim:
                z = z[..., self.trim : -self.trim, :]
        else:
            z = z[..., self.trim : self.trim + length]
            if z.shape[-1] != length:
                raise ValueError(f"a time decoder layer gave {z.shape[-1]} frames instead of {length}")
        if not self.last:
            z = F.gelu(z)
        return z, y


class BandSplitEncoderLayer(nn.Module):
    """A frequency encoder layer replaced by one independent copy per frequency band (the
    ``multi_freqs`` option). Bands overlap by the convolution's receptive field, so that with
    equal weights the result is that of a single layer over all frequencies.

    Args:
        ratios: Upper edge of each band but the last, as a fraction of the frequency rows.
        **layer: Arguments of each band's :class:`HybridEncoderLayer`; it must have padding and
            no norm.
    """

    def __init__(self, ratios: Sequence[float], **layer: object) -> None:
        super().__init__()
        self.ratios = [float(r) for r in ratios]
        self.kernel_size = int(layer["kernel_size"])
        self.stride = int(layer["stride"])
        self.edge = self.kernel_size // 4
        # The bands pad themselves at the two outer edges only.
        layer = {**layer, "pad": False}
        self.bands = nn.ModuleList(HybridEncoderLayer(**layer) for _ in range(len(self.ratios) + 1))

    def forward(self, x: Tensor, inject: Tensor | None = None) -> Tensor:
        """Encode ``x`` (``[B, C_in, Fr, T]``) band by band.

        Args:
            x: Features.
            inject: Must be ``None``: bands never sit where the branches meet.
                (Default: ``None``)
        """
        if inject is not None:
            raise ValueError("a band-split layer cannot take the temporal branch's features")
        rows = int(x.shape[2])  # a Python integer also while tracing, for the band edges
        start = 0
        outputs = []
        for ratio, band in zip([*self.ratios, None], self.bands):
            if ratio is None:
                end = rows
            else:
                # Stop the band where a whole number of strides ends, nearest to its ratio.
                span = int(round(rows * ratio)) - start + (self.edge if start == 0 else 0)
                steps = round((span - self.kernel_size) / self.stride + 1)
                end = start + (steps - 1) * self.stride + self.kernel_size - (self.edge if start == 0 else 0)
            if not 0 < end - start or end > rows:
                raise ValueError(f"frequency band [{start}, {end}) does not fit in {rows} rows")
            y = x[:, :, start:end]
            y = F.pad(y, (0, 0, self.edge if start == 0 else 0, self.edge if ratio is None else 0))
            outputs.append(band(y))  # B, C, Fr_band, T
            # The next band starts where the next stride of the convolution would.
            start = end - self.kernel_size + self.stride
        return torch.cat(outputs, dim=2)  # B, C, Fr', T


class BandSplitDecoderLayer(nn.Module):
    """A frequency decoder layer replaced by one independent copy per frequency band, the
    counterpart of :class:`BandSplitEncoderLayer`: the bands' transposed convolutions overlap by
    one stride, where their outputs are summed (their bias counted once).

    Args:
        ratios: Upper edge of each band but the last, as a fraction of the frequency rows.
        last: The outermost layer: no GELU at the end.
        **layer: Arguments of each band's :class:`HybridDecoderLayer`; it must have padding, no
            norm and no context along frequency.
    """

    def __init__(self, ratios: Sequence[float], last: bool, **layer: object) -> None:
        super().__init__()
        self.ratios = [float(r) for r in ratios]
        self.stride = int(layer["stride"])
        self.last = last
        layer = {**layer, "pad": False, "last": True}
        self.bands = nn.ModuleList(HybridDecoderLayer(**layer) for _ in range(len(self.ratios) + 1))

    def forward(self, x: Tensor, skip: Tensor, length: int) -> tuple[Tensor, None]:
        """Decode ``x`` (``[B, C, Fr, T]``) band by band; the second output is always ``None``.

        Args:
            x: Features.
            skip: The encoder's output at this depth.
            length: Unused (frequency layers keep their time length).
        """
        rows = int(x.shape[2])  # a Python integer also while tracing, for the band edges
        # The outer edges lose half a stride each, rounded down at the start and up at the end.
        head, tail = self.stride // 2, -(-self.stride // 2)
        start = 0
        outputs: list[Tensor] = []
        for ratio, band in zip([*self.ratios, None], self.bands):
            end = rows if ratio is None else int(round(rows * ratio))
            out, _ = band(x[:, :, start:end], skip[:, :, start:end], length)  # B, C_out, Fr_band, T
            if outputs:
                bias = band.conv_transpose.bias.view(1, -1, 1, 1)
                previous = outputs[-1]
                overlap = previous[:, :, -self.stride :] + out[:, :, : self.stride] - bias
                outputs[-1] = torch.cat([previous[:, :, : -self.stride], overlap], dim=2)
                out = out[:, :, self.stride :]
            if ratio is None:
                out = out[:, :, : out.shape[2] - tail]
            if start == 0:
                out = out[:, :, head:]
            outputs.append(out)
            start = end
        out = torch.cat(outputs, dim=2)  # B, C_out, Fr', T
        return (out if self.last else F.gelu(out)), None


class HybridCore(nn.Module):
    """:meth:`HybridDemucs.network` as a module of its own (the model's layers, no copies): the
    graph of an ONNX export.

    Its inputs are ``mix`` ``[B, C, T]`` and ``spec`` ``[B, C', Fr, N]`` (``spec`` alone without
    the temporal branch); its outputs ``time`` ``[B, S, C, T]`` and ``freq``
    ``[B, S, C', Fr, N]`` (``freq`` alone without the temporal branch).

    Args:
        model: The Hybrid (or HT) Demucs.
    """

    def __init__(self, model: HybridDemucs) -> None:
        super().__init__()
        self.model = model

    def forward(self, *inputs: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        """The branches' outputs for their inputs.

        Args:
            *inputs: ``mix`` and ``spec``, or ``spec`` alone without the temporal branch.
        """
        if not self.model.hybrid:
            return self.model.network(None, *inputs)[1]
        time, freq = self.model.network(*inputs)
        return time, freq


@dataclass(frozen=True)
class LayerPlan:
    """The shape of one depth of :class:`HybridDemucs`.

    Args:
        frequency: The frequency branch convolves along frequency here (else along time, with
            the temporal branch merged into it).
        last_frequency: The layer that reduces the frequencies to a single row; in hybrid mode
            the temporal branch ends here and is added to the frequency branch.
        kernel_size: Kernel of the frequency branch's (transposed) convolution.
        stride: Its stride.
        pad: It pads by ``kernel_size // 4``.
    """

    frequency: bool
    last_frequency: bool
    kernel_size: int
    stride: int
    pad: bool


def plan_layers(nfft: int, depth: int, kernel_size: int, stride: int, time_stride: int) -> list[LayerPlan]:
    """The shape of each depth of a :class:`HybridDemucs` with these arguments.

    Args:
        nfft: STFT size; the frequency branch starts with ``nfft // 2`` rows.
        depth: Number of layers.
        kernel_size: Kernel of the frequency layers.
        stride: Their stride.
        time_stride: Stride of the time layers after the frequencies are reduced to one row.
    """
    plans = []
    rows = nfft // 2
    for _ in range(depth):
        if rows > kernel_size:
            plans.append(LayerPlan(True, False, kernel_size, stride, True))
            rows //= stride
        elif rows > 1:
            # The last frequency layer spans every remaining row at once.
            plans.append(LayerPlan(True, True, rows, stride, False))
            rows = 1
        elif rows == 1:
            plans.append(LayerPlan(False, False, 2 * time_stride, time_stride, True))
        else:
            raise ValueError(
                f"nfft={nfft} with kernel_size={kernel_size} and stride={stride} leaves no frequency row"
            )
    return plans


@register_model("hdemucs")
class HybridDemucs(Separator):
    """Hybrid (spectrogram and waveform) Demucs, v3; see the module docstring.

    Args:
        sources: Names of the output stems. (Default: ``DEFAULT_SOURCES``)
        audio_channels: Input and output audio channels. (Default: ``2``)
        channels: Channels of the first frequency layer. (Default: ``48``)
        channels_time: Channels of the first temporal layer; ``None`` for ``channels``. The
            branches meet with the larger of the two widths. (Default: ``None``)
        growth: Channel multiplier from one layer to the next. (Default: ``2.0``)
        nfft: STFT size; the hop is ``nfft // 4``. In hybrid mode ``stride`` to the power of the
            number of frequency layers must equal the hop. (Default: ``4096``)
        wiener_iters: With ``cac=False``, the Wiener filter's EM iterations at evaluation; a
            negative value applies the magnitudes to the mixture's phase. (Default: ``0``)
        end_iters: The same during training; must equal ``wiener_iters`` in hybrid mode.
            (Default: ``0``)
        wiener_residual: Give the Wiener filter an extra source, the mixture minus the others.
            (Default: ``False``)
        cac: Complex as channels: the frequency branch reads and writes the real and imaginary
            parts of the STFT; else magnitudes. (Default: ``True``)
        depth: Number of encoder (and decoder) layers. (Default: ``6``)
        rewrite: Add the rewrite convolutions. (Default: ``True``)
        hybrid: Add the temporal branch; else a spectrogram-only model. (Default: ``True``)
        hybrid_old: Zero-pad instead of reflect-pad before the STFT and misalign the inverse STFT,
            as some models of the Music Demixing Challenge were trained. (Default: ``False``)
        multi_freqs: Split the outermost frequency layers into independent bands ending at these
            fractions of the frequencies; ``None`` or empty for no split. (Default: ``None``)
        multi_freqs_depth: Number of outermost layers split into bands. (Default: ``2``)
        freq_emb: Weight of the frequency embedding added after the first layer; ``0`` for
            none. (Default: ``0.2``)
        emb_scale: Learning-rate multiplier of the frequency embedding. (Default: ``10.0``)
        emb_smooth: Start the frequency embedding smooth along frequency. (Default: ``True``)
        kernel_size: Kernel of the strided convolutions. (Default: ``8``)
        time_stride: Stride of the time layers after the branches meet (kernel twice that).
            (Default: ``2``)
        stride: Stride of the other strided convolutions. (Default: ``4``)
        context: Context on each side of the decoders' rewrite convolutions. (Default: ``1``)
        context_enc: Context on each side of the encoders' rewrite convolutions.
            (Default: ``0``)
        norm_starts: First layer (counted from the outside) with group norms. (Default: ``4``)
        norm_groups: Groups of the group norms. (Default: ``4``)
        dconv_mode: Residual branches in the encoders (``1``), the decoders (``2``), both
            (``3``) or neither (``0``). (Default: ``1``)
        dconv_depth: Layers of each residual branch. (Default: ``2``)
        dconv_comp: Channel compression inside the residual branches. (Default: ``4``)
        dconv_attn: First layer whose residual branches have local attention. (Default: ``4``)
        dconv_lstm: First layer whose residual branches have an LSTM. (Default: ``4``)
        dconv_init: Initial layer scale of the residual branches. (Default: ``1e-4``)
        rescale: Reference standard deviation of the weight-rescaling initialisation; ``0``
            turns it off. (Default: ``0.1``)
        sample_rate: Sample rate in Hz. (Default: ``44100``)
        segment: Chunk length in seconds for the inference engine. (Default: ``40.0``)
    """

    domain = "hybrid"
    branches_merge: ClassVar[bool] = True
    """Whether the two branches must merge into shared innermost layers (HT Demucs joins them
    with a transformer instead)."""
    test_kwargs = {
        "channels": 8,
        "depth": 4,
        "nfft": 256,
        "norm_starts": 2,
        "dconv_mode": 3,
        "dconv_attn": 2,
        "dconv_lstm": 3,
    }

    def __init__(
        self,
        sources: Sequence[str] = DEFAULT_SOURCES,
        audio_channels: int = 2,
        channels: int = 48,
        channels_time: int | None = None,
        growth: float = 2.0,
        nfft: int = 4096,
        wiener_iters: int = 0,
        end_iters: int = 0,
        wiener_residual: bool = False,
        cac: bool = True,
        depth: int = 6,
        rewrite: bool = True,
        hybrid: bool = True,
        hybrid_old: bool = False,
        multi_freqs: Sequence[float] | None = None,
        multi_freqs_depth: int = 2,
        freq_emb: float = 0.2,
        emb_scale: float = 10.0,
        emb_smooth: bool = True,
        kernel_size: int = 8,
        time_stride: int = 2,
        stride: int = 4,
        context: int = 1,
        context_enc: int = 0,
        norm_starts: int = 4,
        norm_groups: int = 4,
        dconv_mode: int = 1,
        dconv_depth: int = 2,
        dconv_comp: float = 4,
        dconv_attn: int = 4,
        dconv_lstm: int = 4,
        dconv_init: float = 1e-4,
        rescale: float = 0.1,
        sample_rate: int = 44100,
        segment: float | None = 40.0,
    ) -> None:
        super().__init__(
            sources=list(sources), sample_rate=sample_rate, audio_channels=audio_channels, segment=segment
        )
        self._check_arguments(
            channels, channels_time, nfft, depth, kernel_size, stride, time_stride, dconv_mode,
            hybrid, hybrid_old, cac, wiener_iters, end_iters,
        )  # fmt: skip
        self.nfft = nfft
        self.hop = nfft // 4
        # Demucs's window is computed in float32 and then cast, even in float64.
        self.stft = STFT(nfft, self.hop, normalized=True, pad_mode="reflect", float32_window=True)
        self.cac = cac
        self.hybrid = hybrid
        self.hybrid_old = hybrid_old
        self.wiener_iters = wiener_iters
        self.end_iters = end_iters
        self.wiener_residual = wiener_residual
        self.depth = depth

        plans = plan_layers(nfft, depth, kernel_size, stride, time_stride)
        self._check_plans(plans, hybrid, stride, nfft, multi_freqs, multi_freqs_depth, norm_starts)
        self.freq_encoder = nn.ModuleList()
        self.freq_decoder = nn.ModuleList()
        self.time_encoder = nn.ModuleList()
        self.time_decoder = nn.ModuleList()
        # Both decoder lists are indexed by depth, like the encoders: decoder i undoes encoder i.
        spectral_factor = 2 if cac else 1
        in_time, in_freq = audio_channels, audio_channels * spectral_factor
        out_time, out_freq = channels_time or channels, channels
        self.freq_embedding = None
        self.freq_emb = float(freq_emb)
        for index, plan in enumerate(plans):
            if plan.last_frequency:
                out_freq = out_time = max(out_time, out_freq)
            encoder_residual, decoder_residual = residual_options(
                dconv_mode, dconv_depth, dconv_comp, dconv_init, index >= dconv_attn, index >= dconv_lstm
            )
            common = {
                "norm_groups": norm_groups if index >= norm_starts else None,
                "rewrite": rewrite,
            }
            band_split = bool(multi_freqs) and index < multi_freqs_depth
            encoder = {
                **common, "in_channels": in_freq, "channels": out_freq, "kernel_size": plan.kernel_size,
                "stride": plan.stride, "frequency": plan.frequency, "pad": plan.pad, "context": context_enc,
                "residual": encoder_residual,
            }  # fmt: skip
            self.freq_encoder.append(
                BandSplitEncoderLayer(multi_freqs, **encoder) if band_split else HybridEncoderLayer(**encoder)
            )
            has_time_layer = hybrid and plan.frequency
            if has_time_layer:
                self.time_encoder.append(
                    HybridEncoderLayer(
                        in_time, out_time, kernel_size, stride, frequency=False, pad=True,
                        context=context_enc, residual=encoder_residual,
                        conv_only=plan.last_frequency, **common,
                    )
                )  # fmt: skip
            if index == 0:
                in_time = len(self.sources) * audio_channels
                in_freq = in_time * spectral_factor
            decoder = {
                **common, "channels": out_freq, "out_channels": in_freq, "kernel_size": plan.kernel_size,
                "stride": plan.stride, "frequency": plan.frequency, "pad": plan.pad, "context": context,
                "residual": decoder_residual, "last": index == 0,
            }  # fmt: skip
            if band_split:
                self.freq_decoder.append(BandSplitDecoderLayer(multi_freqs, context_freq=False, **decoder))
            else:
                self.freq_decoder.append(HybridDecoderLayer(**decoder))
            if has_time_layer:
                self.time_decoder.append(
                    HybridDecoderLayer(
                        out_time, in_time, kernel_size, stride, frequency=False, pad=True, context=context,
                        residual=decoder_residual, last=index == 0,
                        conv_only=plan.last_frequency, **common,
                    )
                )  # fmt: skip
            in_time, in_freq = out_time, out_freq
            out_time, out_freq = int(growth * out_time), int(growth * out_freq)
            if index == 0 and freq_emb:
                rows = 1 if plan.last_frequency else nfft // 2 // stride
                self.freq_embedding = FrequencyEmbedding(rows, in_freq, scale=emb_scale, smooth=emb_smooth)
        if rescale:
            rescale_conv_weights(self, reference=rescale)

    @staticmethod
    def _check_arguments(
        channels: int,
        channels_time: int | None,
        nfft: int,
        depth: int,
        kernel_size: int,
        stride: int,
        time_stride: int,
        dconv_mode: int,
        hybrid: bool,
        hybrid_old: bool,
        cac: bool,
        wiener_iters: int,
        end_iters: int,
    ) -> None:
        if depth < 1 or channels < 1 or (channels_time is not None and channels_time < 0):
            raise ValueError(
                f"need depth >= 1, channels >= 1 and channels_time >= 0 or None; got depth={depth}, "
                f"channels={channels}, channels_time={channels_time}"
            )
        if nfft < 8 or nfft % 4:
            raise ValueError(f"nfft must be a multiple of 4 and at least 8, got {nfft}")
        if stride < 1 or kernel_size < stride or time_stride < 1:
            raise ValueError(
                f"need kernel_size >= stride >= 1 and time_stride >= 1; got kernel_size={kernel_size}, "
                f"stride={stride}, time_stride={time_stride}"
            )
        check_dconv_mode(dconv_mode)
        if hybrid_old and not hybrid:
            raise ValueError("hybrid_old=True needs hybrid=True")
        if hybrid and not cac and wiener_iters != end_iters:
            raise ValueError(
                "a hybrid model without cac needs wiener_iters == end_iters, "
                f"got {wiener_iters} and {end_iters}"
            )

    def _check_plans(
        self,
        plans: list[LayerPlan],
        hybrid: bool,
        stride: int,
        nfft: int,
        multi_freqs: Sequence[float] | None,
        multi_freqs_depth: int,
        norm_starts: int,
    ) -> None:
        if hybrid and self.branches_merge:
            merges = [index for index, plan in enumerate(plans) if plan.last_frequency]
            if not merges:
                raise ValueError(
                    "with hybrid=True the frequency branch must reach a single row within "
                    f"depth={len(plans)} layers (nfft={nfft}); raise depth or lower nfft"
                )
            # The temporal branch must stride its way to the STFT's hop by the merge.
            if stride ** (merges[0] + 1) != nfft // 4:
                raise ValueError(
                    f"with hybrid=True, stride ** {merges[0] + 1} (the frequency layers) must equal the "
                    f"hop nfft // 4; got stride={stride}, nfft={nfft}"
                )
        if multi_freqs:
            for index, plan in enumerate(plans[:multi_freqs_depth]):
                if not plan.frequency or plan.last_frequency:
                    raise ValueError(
                        f"multi_freqs_depth={multi_freqs_depth} reaches layer {index}, which is not a "
                        "padded frequency layer"
                    )
                if index >= norm_starts:
                    raise ValueError(
                        f"multi_freqs needs layers without norms: norm_starts={norm_starts} must be at least "
                        f"multi_freqs_depth={multi_freqs_depth}"
                    )

    def forward(self, mix: Tensor, references: Tensor | None = None) -> Tensor:
        self.check_input(mix, references)
        length = mix.shape[-1]
        padded_length = self.network_length(length)
        if padded_length != length:
            return self.forward(F.pad(mix, (0, padded_length - length)))[..., :length]
        spectrum = self._spectrogram(mix)  # B, C, Fr, N (complex)
        time, freq = self.network(mix if self.hybrid else None, self._network_input(spectrum))
        stems = self._stem_spectrograms(spectrum, freq)  # B, S, C, Fr, N (complex)
        out = self._waveform(stems, length)  # B, S, C, T
        return out if time is None else time + out

    def network(self, mix: Tensor | None, spec: Tensor) -> tuple[Tensor | None, Tensor]:
        """The two branches, from their inputs to their outputs, in real arithmetic only: what
        :meth:`forward` runs between the STFT and the inverse STFT, and what an ONNX export
        traces.

        Args:
            mix: The mixture ``[B, C, T]``, input of the temporal branch; ``None`` without one
                (``hybrid=False``).
            spec: The frequency branch's input ``[B, C', Fr, N]``: the STFT's real and imaginary
                parts as channels (``C' = 2C``, channel ``2c + k`` holds part ``k`` of channel
                ``c``) with ``cac``, else its magnitudes (``C' = C``).

        Returns:
            ``(time, freq)``: the temporal branch's stems ``[B, S, C, T]`` (``None`` without
            it) and the frequency branch's output ``[B, S, C', Fr, N]`` in the layout of
            ``spec``, both in the scale of the inputs.
        """
        batch, sources = spec.shape[0], len(self.sources)
        # Standardised per item (unbiased standard deviation, as trained).
        mean = spec.mean(dim=(1, 2, 3), keepdim=True)
        std = spec.std(dim=(1, 2, 3), keepdim=True)
        x = (spec - mean) / (1e-5 + std)
        xt = None
        if mix is not None:
            length = mix.shape[-1]
            time_mean = mix.mean(dim=(1, 2), keepdim=True)
            # One mono sample has no standard deviation; it is then taken as zero.
            time_std = torch.nan_to_num(mix.std(dim=(1, 2), keepdim=True), nan=0.0)
            xt = (mix - time_mean) / (1e-5 + time_std)  # B, C, T

        skips, lengths, time_skips, time_lengths = [], [], [], []
        for index, encoder in enumerate(self.freq_encoder):
            lengths.append(x.shape[-1])
            inject = None
            if index < len(self.time_encoder):
                time_lengths.append(xt.shape[-1])
                time_layer = self.time_encoder[index]
                xt = time_layer(xt)  # B, Ct, T'
                if time_layer.conv_only:
                    inject = xt
                else:
                    time_skips.append(xt)
            x = encoder(x, inject)  # B, C_l, Fr_l, N  or  B, C_l, N_l
            if index == 0 and self.freq_embedding is not None:
                x = x + self.freq_emb * self.freq_embedding(x.shape[-2])[None, :, :, None]
            skips.append(x)

        x, xt = self._bottleneck(x, xt)
        for index in reversed(range(self.depth)):
            x, before = self.freq_decoder[index](x, skips.pop(), lengths.pop())  # B, C_l-1, Fr, N
            if index < len(self.time_decoder):
                time_layer = self.time_decoder[index]
                if time_layer.conv_only:
                    xt, _ = time_layer(before[:, :, 0], None, time_lengths.pop())  # B, Ct_l-1, T_l-1
                else:
                    xt, _ = time_layer(xt, time_skips.pop(), time_lengths.pop())

        frequencies, frames = spec.shape[-2:]
        x = x.view(batch, sources, -1, frequencies, frames)  # B, S, C', Fr, N
        freq = x * std[:, None] + mean[:, None]
        if mix is None:
            return None, freq
        xt = xt.view(batch, sources, -1, length)  # B, S, C, T
        return xt * time_std[:, None] + time_mean[:, None], freq

    def network_length(self, length: int) -> int:
        """Samples the network runs on for an input of ``length`` samples: ``forward`` pads the
        input with zeros at the end to this length and cuts its stems back.

        Args:
            length: Samples of the input.
        """
        if not self.hybrid and length <= self.nfft // 2:
            # The STFT's own reflect padding needs more samples than half a frame.
            return self.nfft // 2 + 1
        return length

    def onnx_export(self, length: int) -> OnnxExport:
        """The export plan: the zero padding to :meth:`network_length`, the STFT, the Wiener
        filter (``cac=False``), the inverse STFT and the sum of the branches stay outside the
        graph, which is :meth:`network` (adapter ``"hybrid_demucs"`` of
        :mod:`sepzoo.deploy.hybrid`).

        Args:
            length: Samples per exported chunk.
        """
        hybrid = self.hybrid
        settings = {
            "length": int(length),
            "padded_length": int(self.network_length(length)),
            "sources": len(self.sources),
            "audio_channels": self.audio_channels,
            "nfft": self.nfft,
            "hop": self.hop,
            "window": "hann",
            "normalized": True,
            "pad_mode": "reflect",
            "hybrid": hybrid,
            "hybrid_old": self.hybrid_old,
            "cac": self.cac,
            "wiener_iters": self.wiener_iters,
            "wiener_residual": self.wiener_residual,
            "wiener_window": WIENER_WINDOW,
            "spec_layout": "B,C*2,Fr,N" if self.cac else "B,C,Fr,N",
            "freq_layout": "B,S,C*2,Fr,N" if self.cac else "B,S,C,Fr,N",
        }
        return OnnxExport(
            core=HybridCore(self),
            adapter="hybrid_demucs",
            settings=settings,
            input_names=["mix", "spec"] if hybrid else ["spec"],
            output_names=["time", "freq"] if hybrid else ["freq"],
        )

    def _bottleneck(self, freq: Tensor, time: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """What the decoders start from, given the innermost encodings of both branches.

        Hybrid Demucs starts from zeros: the signal reaches the decoders through the skips.
        """
        return torch.zeros_like(freq), time

    def _spectrogram(self, mix: Tensor) -> Tensor:
        """The STFT ``[B, C, nfft / 2, N]`` of ``mix`` without its top bin."""
        length = mix.shape[-1]
        x = mix
        if self.hybrid:
            # Pad by 1.5 hops (plus the rounding up) so that, after dropping two frames on each
            # side, frame n is centred on sample n * hop: ceil(length / hop) frames, the same
            # grid as the temporal branch.
            frames = math.ceil(length / self.hop)
            side = self.hop // 2 * 3
            right = side + frames * self.hop - length
            x = F.pad(mix, (side, right)) if self.hybrid_old else pad_reflect(mix, side, right)
        spectrum = self.stft(x)[..., :-1, :]  # B, C, Fr, N
        if self.hybrid:
            spectrum = spectrum[..., 2 : 2 + frames]
        return spectrum

    def _waveform(self, stems: Tensor, length: int) -> Tensor:
        """The inverse of :meth:`_spectrogram` for ``stems`` (``[B, S, C, Fr, N]``)."""
        z = F.pad(stems, (0, 0, 0, 1))  # B, S, C, Fr + 1, N
        total = length
        if self.hybrid:
            z = F.pad(z, (2, 2))
            side = self.hop // 2 * 3
            total = self.hop * math.ceil(length / self.hop) + (0 if self.hybrid_old else 2 * side)
        signal = self.stft.inverse(z, total)  # B, S, C, T'
        if self.hybrid and not self.hybrid_old:
            return signal[..., side : side + length]
        # hybrid_old models were trained with this misalignment (no removal of the padding).
        return signal[..., :length]

    def _network_input(self, spectrum: Tensor) -> Tensor:
        """Real and imaginary parts as channels (``[B, 2C, Fr, N]``), or magnitudes."""
        if not self.cac:
            return spectrum.abs()
        batch, channels, frequencies, frames = spectrum.shape
        parts = torch.view_as_real(spectrum).permute(0, 1, 4, 2, 3)  # B, C, 2, Fr, N
        return parts.reshape(batch, 2 * channels, frequencies, frames)

    @full_precision
    def _stem_spectrograms(self, spectrum: Tensor, estimate: Tensor) -> Tensor:
        """Complex stems ``[B, S, C, Fr, N]`` from the network's output ``[B, S, C', Fr, N]``
        (in float32 under mixed precision)."""
        if self.cac:
            batch, sources, channels, frequencies, frames = estimate.shape
            parts = estimate.view(batch, sources, -1, 2, frequencies, frames).permute(0, 1, 2, 4, 5, 3)
            return torch.view_as_complex(parts.contiguous())
        iterations = self.end_iters if self.training else self.wiener_iters
        if iterations < 0:
            return spectrum[:, None] / (1e-8 + spectrum.abs()[:, None]) * estimate
        frames = spectrum.shape[-1]
        items = []
        for item in range(spectrum.shape[0]):
            windows = [
                demucs_wiener(
                    estimate[item, ..., start : start + WIENER_WINDOW],
                    spectrum[item, ..., start : start + WIENER_WINDOW],
                    iterations,
                    residual=self.wiener_residual,
                )[: estimate.shape[1]]
                for start in range(0, frames, WIENER_WINDOW)
            ]
            items.append(torch.cat(windows, dim=-1))  # S, C, Fr, N
        return torch.stack(items)  # B, S, C, Fr, N


__all__ = [
    "BandSplitDecoderLayer",
    "BandSplitEncoderLayer",
    "FrequencyEmbedding",
    "HybridDecoderLayer",
    "HybridCore",
    "HybridDemucs",
    "HybridEncoderLayer",
    "LayerPlan",
    "pad_reflect",
    "plan_layers",
]
