"""SCNet: a U-Net over the complex spectrogram whose encoder compresses each frequency band by
its own ratio (low frequencies kept at full resolution, high ones squeezed hardest), with a stack
of dual-path BLSTMs (across frequency, then along time) at the bottom.

Tong, Zhu, Chen, Kang, Jiang, Li, Wu & Meng, "SCNet: Sparse Compression Network for Music Source
Separation" (ICASSP 2024, arXiv:2401.13276). The structure, hyperparameters and defaults follow
the authors' public code (github.com/starrytong/SCNet, ``scnet/SCNet.py``, ``scnet/separation.py``
and ``conf/config.yaml``), whose option names sepzoo keeps:

* STFT (``nfft``, ``hop_size``, ``win_size``, ``normalized``): centred, reflection-padded,
  with a *rectangular* window of ``win_size`` samples (the authors call ``torch.stft`` without a
  window), scaled by ``1 / sqrt(nfft)`` when ``normalized``. The real and imaginary parts of each
  audio channel are the ``2 * audio_channels = dims[0]`` input channels.
* Encoder: ``len(dims) - 1`` sparse down-sampling blocks. Each cuts the frequency axis into bands
  holding the fractions ``band_SR`` of its bins (low, mid, high; the split points are
  ``ceil(F * cumulative fraction)``), and compresses band ``b`` with a ``(band_kernel[b], 1)``
  convolution of stride ``band_stride[b]`` along frequency (a stride-1 band is padded to keep its
  size, a strided one padded to a whole number of strides). Band ``b`` then goes through
  ``conv_depths[b]`` residual convolution layers along time (group norm, a gated convolution to
  ``dims / compress`` channels, a depthwise convolution, group norm, swish, a pointwise
  convolution back) and a GELU. The bands are concatenated again, and a 3x3 convolution over the
  full band makes the block's output; its input (the concatenated bands) is the skip connection.
* Separation network: ``num_dplayer`` dual-path layers. Each normalises the whole feature map
  (group norm, one group), runs a residual BLSTM across frequency in every frame and then, after
  another norm, one along time in every frequency row (hidden size ``expand`` times the width,
  projected back by a linear layer). Between layers the feature map moves in and out of the
  Fourier domain along time: after every even-numbered layer an orthonormal real FFT over the
  frames (real and imaginary parts stacked as twice the channels, about half the frames), after
  every odd-numbered one its inverse, so odd-numbered layers are twice as wide and
  ``num_dplayer`` must be even.
* Decoder: per block, from the innermost out, a fusion layer (the skip added, the channels
  doubled by repetition, a 3x3 convolution and a GLU) and a sparse up-sampling layer (band by
  band, the transposed convolution of the encoder's band, trimmed symmetrically to the band's
  size before compression). The last one outputs the real and imaginary parts of every channel
  of every source, ``dims[0] * len(sources)`` channels, which the inverse STFT turns into
  waveforms: the spectrogram is estimated directly, not as a mask.

The paper's configurations (Section 3.1): SCNet, ``dims = [4, 32, 64, 128]`` and
``band_SR = [0.175, 0.392, 0.433]`` (the defaults); SCNet-large, ``dims = [4, 64, 128, 256]``
and ``band_SR = [0.225, 0.372, 0.403]`` (:data:`LARGE_CONFIG`, the authors' large
configuration). Both use strides ``[1, 4, 16]``, kernels ``[3, 4, 16]``, conv depths
``[3, 2, 1]``, compression 4, six dual-path layers and 11-second training segments.

Length. The input is padded at the end with zeros to a whole number of hops such that the STFT
has an even number of frames (the FFT along time needs it), always by at least one sample, as
the authors do; the output is cut back to the input length, so any length works. Inputs too
short for the reflection padding of the STFT (at most ``nfft // 2`` samples once padded) get two
more hops of zeros at a time until they are long enough; longer inputs are padded exactly as the
authors pad them.

Input normalisation (``normalize_input``). The authors' current code standardises the stacked
real and imaginary spectrogram of each item by its mean and standard deviation, and undoes it
on the estimate, which their README says stabilises training; MSST's copy of the model
(ZFTurbo/Music-Source-Separation-Training, ``models/scnet/scnet.py``) does not, so its
checkpoints need ``normalize_input=False`` (:func:`sepzoo.convert.msst_scnet.kwargs_from_msst`
sets it). With it, a model's output scales with its input.

There is no installable reference implementation, so no test compares this module's numbers with
the authors'; the tests check the structure (every checkpoint key and shape of MSST's layout,
the paper's parameter counts) and that the model trains.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sepzoo import DEFAULT_SOURCES
from sepzoo.dsp.precision import full_precision
from sepzoo.dsp.stft import istft, stft
from sepzoo.models import register_model
from sepzoo.models._spectral_export import spectral_export
from sepzoo.models.base import Separator
from sepzoo.models.onnx_core import OnnxExport

LARGE_CONFIG: dict[str, Any] = {"dims": [4, 64, 128, 256], "band_SR": [0.225, 0.372, 0.403]}
"""The init arguments of SCNet-large that differ from the defaults (the base SCNet)."""


class BandPlan:
    """Where one sparse down-sampling layer cuts the frequency axis and what each band becomes.

    Args:
        num_bins: Frequency rows entering the layer.
        fractions: Share of the rows in each band, low to high; the last band takes the rest.
        strides: Compression stride of each band along frequency.
        kernels: Kernel size of each band's compressing convolution.
        block: Index of the encoder block, for error messages. (Default: ``0``)

    Raises:
        ValueError: When a band would hold no rows, or its convolution would leave none.
    """

    def __init__(
        self,
        num_bins: int,
        fractions: Sequence[float],
        strides: Sequence[int],
        kernels: Sequence[int],
        block: int = 0,
    ) -> None:
        edges = [0]
        cumulative = 0.0
        for fraction in fractions[:-1]:
            cumulative += fraction
            edges.append(math.ceil(num_bins * cumulative))
        edges.append(num_bins)
        self.num_bins = num_bins
        self.sizes = [end - start for start, end in zip(edges[:-1], edges[1:])]
        self.pads: list[tuple[int, int]] = []
        self.compressed: list[int] = []
        for band, (size, stride, kernel) in enumerate(zip(self.sizes, strides, kernels)):
            where = f"band {band} of the {num_bins} frequency rows entering encoder block {block}"
            if size < 1:
                raise ValueError(
                    f"{where} holds no rows (band_SR {list(fractions)}); use a larger nfft or fewer layers"
                )
            # A stride-1 band keeps its size; a strided one is padded to a whole number of strides.
            total = kernel - 1 if stride == 1 else -size % stride
            compressed = (size + total - kernel) // stride + 1
            if compressed < 1 or (compressed - 1) * stride + kernel < size:
                raise ValueError(
                    f"{where} has {size} rows, which band_kernel {kernel} with band_stride {stride} "
                    "cannot compress and restore; use a larger nfft or a kernel of at least the stride"
                )
            self.pads.append((total // 2, total - total // 2))
            self.compressed.append(compressed)

    @property
    def num_compressed(self) -> int:
        """Frequency rows leaving the layer: the compressed bands' sizes summed."""
        return sum(self.compressed)


class ConvLayer(nn.Module):
    """One residual branch of a band's convolution module, along time.

    Group norm, a convolution to twice ``hidden`` channels with a GLU, a depthwise convolution,
    group norm, swish and a pointwise convolution back to ``channels``.

    Args:
        channels: Input and output channels.
        hidden: Channels inside the branch.
        kernel: Odd kernel size of the two convolutions along time.
    """

    def __init__(self, channels: int, hidden: int, kernel: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(1, channels)
        self.gated_conv = nn.Conv1d(channels, 2 * hidden, kernel, padding=kernel // 2)
        self.depthwise_conv = nn.Conv1d(hidden, hidden, kernel, padding=kernel // 2, groups=hidden)
        self.hidden_norm = nn.GroupNorm(1, hidden)
        self.output_conv = nn.Conv1d(hidden, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """The branch's output, ``[N, channels, T]``, to add to ``x``.

        Args:
            x: ``[N, channels, T]``.
        """
        h = F.glu(self.gated_conv(self.norm(x)), dim=1)  # N, H, T
        h = F.silu(self.hidden_norm(self.depthwise_conv(h)))  # N, H, T
        return self.output_conv(h)  # N, C, T


class ConvModule(nn.Module):
    """A stack of residual :class:`ConvLayer` along time, applied to every frequency row of a band.

    Args:
        channels: Channels of the band.
        depth: Number of residual layers.
        compress: The layers work on ``int(channels / compress)`` channels.
        kernel: Odd kernel size along time.
    """

    def __init__(self, channels: int, depth: int, compress: float, kernel: int) -> None:
        super().__init__()
        hidden = int(channels / compress)
        self.layers = nn.ModuleList(ConvLayer(channels, hidden, kernel) for _ in range(depth))

    def forward(self, band: Tensor) -> Tensor:
        """Apply the layers to ``band`` (``[B, C, f, T]``), each row along time.

        Args:
            band: ``[batch, channels, rows, frames]``.
        """
        batch, channels, rows, frames = band.shape
        x = band.transpose(1, 2).reshape(batch * rows, channels, frames)  # B*f, C, T
        for layer in self.layers:
            x = x + layer(x)  # B*f, C, T
        return x.view(batch, rows, channels, frames).transpose(1, 2)  # B, C, f, T


class SparseDownsample(nn.Module):
    """Cut the frequency axis into bands and compress each with its own strided convolution.

    Args:
        channels_in: Input channels.
        channels_out: Output channels.
        plan: Where the bands lie and how they are padded.
        strides: Stride of each band along frequency.
        kernels: Kernel size of each band along frequency.
    """

    def __init__(
        self,
        channels_in: int,
        channels_out: int,
        plan: BandPlan,
        strides: Sequence[int],
        kernels: Sequence[int],
    ) -> None:
        super().__init__()
        self.plan = plan
        self.convs = nn.ModuleList(
            nn.Conv2d(channels_in, channels_out, (kernel, 1), (stride, 1))
            for stride, kernel in zip(strides, kernels)
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        """The compressed bands, ``[B, C_out, f_b, T]`` each, of ``x`` (``[B, C_in, F, T]``).

        Args:
            x: ``[batch, channels_in, rows, frames]``.
        """
        bands = torch.split(x, self.plan.sizes, dim=2)  # b x (B, C_in, f, T)
        return [
            conv(F.pad(band, (0, 0, *pad)))  # B, C_out, f_b, T
            for conv, band, pad in zip(self.convs, bands, self.plan.pads)
        ]


class SparseUpsample(nn.Module):
    """Undo :class:`SparseDownsample`: a transposed convolution per band, each trimmed
    symmetrically to its size before compression.

    Args:
        channels_in: Input channels.
        channels_out: Output channels.
        plan: The band plan of the matching down-sampling layer.
        strides: Stride of each band along frequency.
        kernels: Kernel size of each band along frequency.
    """

    def __init__(
        self,
        channels_in: int,
        channels_out: int,
        plan: BandPlan,
        strides: Sequence[int],
        kernels: Sequence[int],
    ) -> None:
        super().__init__()
        self.plan = plan
        self.convs = nn.ModuleList(
            nn.ConvTranspose2d(channels_in, channels_out, (kernel, 1), (stride, 1))
            for stride, kernel in zip(strides, kernels)
        )

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C_out, F, T]`` from the compressed bands ``x`` (``[B, C_in, F', T]``).

        Args:
            x: ``[batch, channels_in, compressed rows, frames]``.
        """
        bands = torch.split(x, self.plan.compressed, dim=2)  # b x (B, C_in, f_b, T)
        restored = []
        for conv, band, size in zip(self.convs, bands, self.plan.sizes):
            wide = conv(band)  # B, C_out, >= f, T
            start = (wide.shape[2] - size) // 2
            restored.append(wide[:, :, start : start + size])  # B, C_out, f, T
        return torch.cat(restored, dim=2)  # B, C_out, F, T


class SparseDownBlock(nn.Module):
    """One encoder block: sparse down-sampling, a convolution module and GELU per band, then a
    3x3 convolution over the full band.

    Args:
        channels_in: Input channels.
        channels_out: Output channels.
        plan: Where the bands lie.
        strides: Stride of each band along frequency.
        kernels: Kernel size of each band along frequency.
        depths: Residual layers of each band's convolution module.
        compress: Channel compression inside the convolution modules.
        conv_kernel: Kernel size along time inside the convolution modules.
    """

    def __init__(
        self,
        channels_in: int,
        channels_out: int,
        plan: BandPlan,
        strides: Sequence[int],
        kernels: Sequence[int],
        depths: Sequence[int],
        compress: float,
        conv_kernel: int,
    ) -> None:
        super().__init__()
        self.downsample = SparseDownsample(channels_in, channels_out, plan, strides, kernels)
        self.band_convs = nn.ModuleList(
            ConvModule(channels_out, depth, compress, conv_kernel) for depth in depths
        )
        self.full_band_conv = nn.Conv2d(channels_out, channels_out, 3, padding=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The block's output and its skip connection, both ``[B, C_out, F', T]``.

        Args:
            x: ``[batch, channels_in, rows, frames]``.
        """
        bands = self.downsample(x)  # b x (B, C_out, f_b, T)
        bands = [F.gelu(conv(band)) for conv, band in zip(self.band_convs, bands)]
        skip = torch.cat(bands, dim=2)  # B, C_out, F', T
        return self.full_band_conv(skip), skip


class FusionLayer(nn.Module):
    """The skip added, the channels doubled by repetition, a 3x3 convolution and a GLU.

    Args:
        channels: Input and output channels.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2 * channels, 2 * channels, 3, padding=1)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        """Fuse ``x`` with the encoder's ``skip`` (both ``[B, C, F, T]``).

        Args:
            x: The decoder's features.
            skip: The matching encoder block's skip connection.
        """
        x = (x + skip).repeat(1, 2, 1, 1)  # B, 2C, F, T
        return F.glu(self.conv(x), dim=1)  # B, C, F, T


class SparseUpBlock(nn.Module):
    """One decoder block: a :class:`FusionLayer` and a :class:`SparseUpsample`.

    Args:
        channels_in: Input channels (those of the matching encoder block's output).
        channels_out: Output channels.
        plan: The band plan of the matching encoder block.
        strides: Stride of each band along frequency.
        kernels: Kernel size of each band along frequency.
    """

    def __init__(
        self,
        channels_in: int,
        channels_out: int,
        plan: BandPlan,
        strides: Sequence[int],
        kernels: Sequence[int],
    ) -> None:
        super().__init__()
        self.fusion = FusionLayer(channels_in)
        self.upsample = SparseUpsample(channels_in, channels_out, plan, strides, kernels)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        """``[B, C_out, F, T]`` from ``x`` and ``skip`` (``[B, C_in, F', T]``).

        Args:
            x: The decoder's features.
            skip: The matching encoder block's skip connection.
        """
        return self.upsample(self.fusion(x, skip))


class PathRNN(nn.Module):
    """Group norm over the whole feature map, a BLSTM along one axis, a linear layer back to the
    width, added to the input.

    Args:
        channels: Width of the feature map.
        hidden: Hidden units of each LSTM direction.
        axis: ``"freq"`` (sequences across frequency, one per frame) or ``"time"`` (sequences
            along time, one per frequency row).
    """

    def __init__(self, channels: int, hidden: int, axis: str) -> None:
        super().__init__()
        self.axis = axis
        self.norm = nn.GroupNorm(1, channels)
        self.lstm = nn.LSTM(channels, hidden, batch_first=True, bidirectional=True)
        self.projection = nn.Linear(2 * hidden, channels)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the residual BLSTM to ``x`` (``[B, C, F, T]``).

        Args:
            x: ``[batch, channels, rows, frames]``.
        """
        batch, channels, rows, frames = x.shape
        if self.axis == "freq":
            sequences = self.norm(x).permute(0, 3, 2, 1)  # B, T, F, C: one sequence per frame
        else:
            sequences = self.norm(x).permute(0, 2, 3, 1)  # B, F, T, C: one sequence per row
        outer, length = sequences.shape[1], sequences.shape[2]
        hidden, _ = self.lstm(sequences.reshape(batch * outer, length, channels))  # B*outer, L, 2H
        out = self.projection(hidden).view(batch, outer, length, channels)  # B, outer, L, C
        if self.axis == "freq":
            return x + out.permute(0, 3, 2, 1)  # B, C, F, T
        return x + out.permute(0, 3, 1, 2)  # B, C, F, T


class DualPathLayer(nn.Module):
    """A residual BLSTM across frequency, then one along time.

    Args:
        channels: Width of the feature map.
        expand: Hidden units of each LSTM direction, as a multiple of ``channels``.
    """

    def __init__(self, channels: int, expand: int) -> None:
        super().__init__()
        self.freq_path = PathRNN(channels, channels * expand, "freq")
        self.time_path = PathRNN(channels, channels * expand, "time")

    def forward(self, x: Tensor) -> Tensor:
        """Apply both paths to ``x`` (``[B, C, F, T]``).

        Args:
            x: ``[batch, channels, rows, frames]``.
        """
        return self.time_path(self.freq_path(x))


class DualPathNetwork(nn.Module):
    """Dual-path layers that alternate between the frames and their Fourier transform along time.

    After each even-numbered layer the feature map becomes its orthonormal real FFT over the
    frames, real and imaginary parts stacked along the channels; after each odd-numbered layer it
    comes back. Odd-numbered layers are therefore twice as wide.

    Args:
        channels: Width of the feature map.
        num_layers: Number of dual-path layers; even.
        expand: Hidden units of each LSTM direction, as a multiple of the layer's width.
    """

    def __init__(self, channels: int, num_layers: int, expand: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            DualPathLayer(channels * (2 if index % 2 else 1), expand) for index in range(num_layers)
        )

    def forward(self, x: Tensor) -> Tensor:
        """Apply the layers to ``x`` (``[B, C, F, T]``, ``T`` even).

        Args:
            x: ``[batch, channels, rows, frames]``.
        """
        frames = x.shape[-1]
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index % 2 == 0:
                x = self._to_frequency(x)  # B, 2C, F, T/2 + 1
            else:
                x = self._to_time(x, frames)  # B, C, F, T
        return x

    @staticmethod
    @full_precision  # half-precision FFTs need power-of-two lengths on CUDA; the LSTMs take float32 anyway
    def _to_frequency(x: Tensor) -> Tensor:
        if torch.onnx.is_in_onnx_export():
            # ONNX has no FFT that the exporter writes from torch.fft: the same transform as
            # products with the DFT's cosines and sines.
            cos, sin = _dft_matrices(x.shape[-1], x)  # T, T/2 + 1 each
            return torch.cat([x @ cos, -(x @ sin)], dim=1)  # B, 2C, F, T/2 + 1
        spectrum = torch.fft.rfft(x, dim=-1, norm="ortho")  # B, C, F, T/2 + 1
        return torch.cat([spectrum.real, spectrum.imag], dim=1)  # B, 2C, F, T/2 + 1

    @staticmethod
    @full_precision
    def _to_time(x: Tensor, frames: int) -> Tensor:
        real, imag = x.chunk(2, dim=1)  # B, C, F, T/2 + 1 each
        if torch.onnx.is_in_onnx_export():
            cos, sin = _dft_matrices(frames, x, inverse=True)  # T/2 + 1, T each
            return real @ cos - imag @ sin  # B, C, F, T
        return torch.fft.irfft(torch.complex(real, imag), n=frames, dim=-1, norm="ortho")  # B, C, F, T


def _dft_matrices(frames: int, like: Tensor, inverse: bool = False) -> tuple[Tensor, Tensor]:
    """The orthonormal real DFT along time (``T = frames``, even) as two matrix products:
    ``cos(2 pi t k / T) / sqrt(T)`` and the sines, ``[T, T / 2 + 1]``; made in float64 and cast
    to ``like``'s dtype on its device.

    Args:
        frames: The transform's length ``T``.
        like: A tensor whose dtype and device the matrices take.
        inverse: The matrices of the inverse, ``[T / 2 + 1, T]``: transposed, and the bins
            between DC and Nyquist counted twice (Hermitian symmetry); the imaginary parts of
            those two bins drop out, as in ``irfft``, because their sines are zero.
            (Default: ``False``)
    """
    time = torch.arange(frames, dtype=torch.float64)
    bins = torch.arange(frames // 2 + 1, dtype=torch.float64)
    angles = 2 * math.pi * torch.outer(time, bins).remainder(frames) / frames  # T, T/2 + 1
    weights = torch.full_like(bins, frames**-0.5)  # T/2 + 1
    if inverse:
        weights[1:-1] *= 2
    cos, sin = angles.cos() * weights, angles.sin() * weights  # T, T/2 + 1
    if inverse:
        cos, sin = cos.T, sin.T  # T/2 + 1, T
    return cos.to(dtype=like.dtype, device=like.device), sin.to(dtype=like.dtype, device=like.device)


def _check_band_options(
    band_SR: Sequence[float],
    band_stride: Sequence[int],
    band_kernel: Sequence[int],
    conv_depths: Sequence[int],
) -> None:
    count = len(band_SR)
    if count < 1:
        raise ValueError("band_SR must list the share of at least one band, got []")
    for name, values in [
        ("band_stride", band_stride),
        ("band_kernel", band_kernel),
        ("conv_depths", conv_depths),
    ]:
        if len(values) != count:
            raise ValueError(f"{name} must have one entry per band of band_SR ({count}), got {list(values)}")
    if any(fraction <= 0 for fraction in band_SR) or abs(sum(band_SR) - 1) > 1e-4:
        raise ValueError(f"band_SR must be positive shares of the bins that sum to 1, got {list(band_SR)}")
    if any(stride < 1 for stride in band_stride):
        raise ValueError(f"band_stride must be positive integers, got {list(band_stride)}")
    if any(kernel < 1 for kernel in band_kernel):
        raise ValueError(f"band_kernel must be positive integers, got {list(band_kernel)}")
    if any(depth < 0 for depth in conv_depths):
        raise ValueError(f"conv_depths must be non-negative integers, got {list(conv_depths)}")


@register_model("scnet")
class SCNet(Separator):
    """SCNet (Tong et al., ICASSP 2024): a band-wise sparsely compressing U-Net on the complex
    spectrogram with dual-path BLSTMs at its bottom. The defaults are the paper's SCNet; the
    paper's SCNet-large sets :data:`LARGE_CONFIG`.

    Args:
        sources: Names of the output stems. (Default: ``DEFAULT_SOURCES``)
        audio_channels: Input and output audio channels. (Default: ``2``)
        dims: Channels of the spectrogram (``2 * audio_channels``) and of each encoder block's
            output; ``len(dims) - 1`` blocks. (Default: ``[4, 32, 64, 128]``)
        nfft: FFT size of the STFT. (Default: ``4096``)
        hop_size: STFT hop in samples, at most ``win_size``. (Default: ``1024``)
        win_size: Length of the rectangular window, at most ``nfft``. (Default: ``4096``)
        normalized: Scale the STFT by ``1 / sqrt(nfft)``. (Default: ``True``)
        band_SR: Share of the frequency rows in each band, low to high, summing to 1; the split
            points are ``ceil(F * cumulative share)``. (Default: ``[0.175, 0.392, 0.433]``)
        band_stride: Compression stride of each band along frequency. (Default: ``[1, 4, 16]``)
        band_kernel: Kernel size of each band's compressing convolution. (Default: ``[3, 4, 16]``)
        conv_depths: Residual convolution layers of each band's convolution module.
            (Default: ``[3, 2, 1]``)
        compress: Channel compression inside the convolution modules. (Default: ``4``)
        conv_kernel: Odd kernel size along time inside the convolution modules. (Default: ``3``)
        num_dplayer: Dual-path layers; even, as the FFT along time must be undone. (Default: ``6``)
        expand: Hidden units of each LSTM direction, as a multiple of the layer's width.
            (Default: ``1``)
        normalize_input: Standardise each item's spectrogram by its mean and standard deviation
            and undo it on the estimate, as the authors' current code does; ``False`` for MSST
            checkpoints. (Default: ``True``)
        sample_rate: Sample rate in Hz. (Default: ``44100``)
        segment: Preferred chunk length in seconds; the paper trains on 11-second segments.
            (Default: ``11.0``)
    """

    domain = "spectrogram"
    test_kwargs = {
        "dims": [4, 8, 8],
        "nfft": 64,
        "hop_size": 16,
        "win_size": 64,
        "band_stride": [1, 2, 4],
        "band_kernel": [3, 2, 4],
        "conv_depths": [1, 1, 1],
        "num_dplayer": 2,
    }

    def __init__(
        self,
        sources: Sequence[str] = DEFAULT_SOURCES,
        audio_channels: int = 2,
        dims: Sequence[int] = (4, 32, 64, 128),
        nfft: int = 4096,
        hop_size: int = 1024,
        win_size: int = 4096,
        normalized: bool = True,
        band_SR: Sequence[float] = (0.175, 0.392, 0.433),
        band_stride: Sequence[int] = (1, 4, 16),
        band_kernel: Sequence[int] = (3, 4, 16),
        conv_depths: Sequence[int] = (3, 2, 1),
        compress: float = 4,
        conv_kernel: int = 3,
        num_dplayer: int = 6,
        expand: int = 1,
        normalize_input: bool = True,
        sample_rate: int = 44100,
        segment: float | None = 11.0,
    ) -> None:
        super().__init__(
            sources=list(sources), sample_rate=sample_rate, audio_channels=audio_channels, segment=segment
        )
        dims = [int(d) for d in dims]
        if len(dims) < 2 or dims[0] != 2 * audio_channels:
            raise ValueError(
                f"dims must start with 2 * audio_channels = {2 * audio_channels} (real and imaginary "
                f"parts) and name at least one encoder block, got {dims}"
            )
        if any(d < 1 for d in dims):
            raise ValueError(f"dims must be positive, got {dims}")
        if nfft < 2 or not 0 < hop_size <= win_size <= nfft:
            raise ValueError(
                f"the STFT needs 0 < hop_size <= win_size <= nfft, got hop_size={hop_size}, "
                f"win_size={win_size}, nfft={nfft}"
            )
        _check_band_options(band_SR, band_stride, band_kernel, conv_depths)
        if compress <= 0 or any(int(d / compress) < 1 for d in dims[1:]):
            raise ValueError(
                f"compress must leave at least one channel of every width in {dims[1:]}, got {compress}"
            )
        if conv_kernel < 1 or conv_kernel % 2 == 0:
            raise ValueError(
                f"conv_kernel must be odd so that convolutions keep the length, got {conv_kernel}"
            )
        if num_dplayer < 0 or num_dplayer % 2:
            raise ValueError(
                f"num_dplayer must be even (the next layer undoes each FFT along time), got {num_dplayer}"
            )
        if expand < 1:
            raise ValueError(f"expand must be a positive integer, got {expand}")
        self.dims = dims
        self.nfft = nfft
        self.hop_size = hop_size
        self.win_size = win_size
        self.normalized = normalized
        self.normalize_input = normalize_input

        plans = []
        num_bins = nfft // 2 + 1
        for block in range(len(dims) - 1):
            plans.append(BandPlan(num_bins, band_SR, band_stride, band_kernel, block))
            num_bins = plans[-1].num_compressed
        self.encoder = nn.ModuleList(
            SparseDownBlock(
                dims[i], dims[i + 1], plan, band_stride, band_kernel, conv_depths, compress, conv_kernel
            )
            for i, plan in enumerate(plans)
        )
        self.dual_path = DualPathNetwork(dims[-1], num_dplayer, expand)
        # Decoder blocks in the order they run, from the innermost out.
        self.decoder = nn.ModuleList(
            SparseUpBlock(
                dims[i + 1],
                dims[i] * (len(self.sources) if i == 0 else 1),
                plans[i],
                band_stride,
                band_kernel,
            )
            for i in reversed(range(len(plans)))
        )

    def padded_length(self, length: int) -> int:
        """The length the input is padded to: a whole number of hops, at least one sample more
        than ``length``, giving an even number of STFT frames, and longer than ``nfft // 2``.

        Args:
            length: Samples of the input.
        """
        padded = (length // self.hop_size + 1) * self.hop_size
        if (padded // self.hop_size) % 2 == 0:
            padded += self.hop_size
        while padded <= self.nfft // 2:
            padded += 2 * self.hop_size
        return padded

    def _window(self, like: Tensor) -> Tensor:
        return torch.ones(self.win_size, dtype=like.real.dtype, device=like.device)

    def forward(self, mix: Tensor, references: Tensor | None = None) -> Tensor:
        self.check_input(mix, references)
        batch, channels, length = mix.shape
        padded = self.padded_length(length)
        signal = F.pad(mix, (0, padded - length))  # B, C, L
        window = self._window(signal)
        spectrum = stft(signal, self.nfft, self.hop_size, window, self.normalized, "reflect")  # B, C, F, N
        x = self.spectra(torch.view_as_real(spectrum))  # B, S, C, F, N, 2
        estimate = torch.view_as_complex(x.to(mix.dtype).contiguous())  # B, S, C, F, N
        stems = istft(estimate, self.nfft, self.hop_size, window, padded, self.normalized)  # B, S, C, L
        return stems[..., :length]  # B, S, C, T

    def spectra(self, spectrum: Tensor) -> Tensor:
        """Every source's spectrogram ``[B, S, C, F, N, 2]`` estimated from the mixture's
        ``[B, C, F, N, 2]`` (real and imaginary parts last): the network without the STFTs,
        which is what an ONNX export traces.

        Args:
            spectrum: The STFT of the padded mixture as real and imaginary parts.
        """
        batch, channels, bins, frames, _ = spectrum.shape
        x = spectrum.permute(0, 1, 4, 2, 3).reshape(batch, 2 * channels, bins, frames)  # B, 2C, F, N
        if self.normalize_input:
            mean = x.mean(dim=(1, 2, 3), keepdim=True)  # B, 1, 1, 1
            std = x.std(dim=(1, 2, 3), keepdim=True)  # B, 1, 1, 1
            x = (x - mean) / (1e-5 + std)  # B, 2C, F, N

        skips = []
        for block in self.encoder:
            x, skip = block(x)  # B, D_i, F_i, N
            skips.append(skip)
        x = self.dual_path(x)  # B, D, F_last, N
        for block, skip in zip(self.decoder, reversed(skips)):
            x = block(x, skip)  # B, D_(i-1), F_(i-1), N

        if self.normalize_input:
            x = x * std + mean  # B, S*2C, F, N
        # Output channels are ordered (source, channel, real/imaginary).
        return x.view(batch, len(self.sources), channels, 2, bins, frames).permute(0, 1, 2, 4, 5, 3)

    def onnx_export(self, length: int) -> OnnxExport:
        """The export plan: the zero padding to :meth:`padded_length` and the STFTs stay outside
        the graph, which maps the mixture's spectrum ``[B, C, F, N, 2]`` to the sources' spectra
        ``[B, S, C, F, N, 2]`` (adapter ``"spectral_stems"``); the FFTs along time inside the
        network become products with DFT matrices.

        Args:
            length: Samples per exported chunk.
        """
        return spectral_export(
            self,
            "spectra",
            masks=False,
            length=length,
            padded_length=self.padded_length(length),
            n_fft=self.nfft,
            hop_length=self.hop_size,
            win_length=self.win_size,
            window="rectangular",
            normalized=self.normalized,
            pad_mode="reflect",
        )


__all__ = ["LARGE_CONFIG", "SCNet"]
