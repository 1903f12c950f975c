"""Building blocks shared by the Demucs family: the compressed residual branch of each encoder
layer (dilated convolutions with optional bidirectional LSTM and local attention), layer scale,
and the weight-rescaling initialisation.

They compute exactly what the corresponding blocks of the official ``demucs`` package compute,
so that its checkpoints load through a key mapping (:mod:`sepzoo.convert`); the module names are
our own.
"""

from __future__ import annotations

import functools
import math

import julius
import torch
from torch import Tensor, nn
from torch.nn import functional as F


class ChannelScale(nn.Module):
    """Learned per-channel scale of a residual branch's output ("layer scale", Touvron et al. 2021),
    started close to zero so that each branch begins as an identity.

    Args:
        channels: Number of channels.
        init: Initial value of every scale. (Default: ``0.0``)
        channel_last: ``True`` for ``[..., C]`` inputs, ``False`` for ``[B, C, T]``.
            (Default: ``False``)
    """

    def __init__(self, channels: int, init: float = 0.0, channel_last: bool = False) -> None:
        super().__init__()
        self.channel_last = channel_last
        self.scale = nn.Parameter(torch.full((channels,), float(init)))

    def forward(self, x: Tensor) -> Tensor:
        """Scale ``x`` channel by channel.

        Args:
            x: ``[B, C, T]`` (or ``[..., C]`` when ``channel_last``).
        """
        if self.channel_last:
            return self.scale * x
        return self.scale[:, None] * x


def frame_signal(x: Tensor, width: int, hop: int) -> Tensor:
    """Overlapping frames ``[..., frames, width]`` of ``x`` (``[..., T]``), ``ceil(T / hop)`` of
    them, zero-padding the end so that the last frame is complete.

    Args:
        x: The signal, time last.
        width: Frame length.
        hop: Distance between frame starts.
    """
    # A Python integer also while tracing, where sizes are tensors: a padding computed in the
    # graph leaves the exporter without the static length that unfold needs.
    length = int(x.shape[-1])
    frames = math.ceil(length / hop)
    padded = F.pad(x, (0, (frames - 1) * hop + width - length))
    if width % hop:
        return padded.unfold(-1, width, hop)
    # Hop-long blocks, each frame the concatenation of width / hop consecutive ones: the same
    # values as unfold, in ops an exported graph has (the ONNX exporter's unfold needs sizes that
    # its shape inference does not always keep).
    pieces = width // hop
    blocks = padded.reshape(*padded.shape[:-1], frames + pieces - 1, hop)  # ..., N + P - 1, hop
    return torch.cat([blocks[..., piece : piece + frames, :] for piece in range(pieces)], dim=-1)


class BidirectionalLSTM(nn.Module):
    """A bidirectional LSTM over time whose two directions are projected back to ``dim`` channels.

    With ``max_steps``, long inputs are cut into half-overlapping windows of ``max_steps`` frames
    that are processed independently; each window keeps its central part (the first keeps its
    start and the last its end), which bounds the memory on long tracks.

    Args:
        dim: Channels of the input and output (and hidden units per direction).
        layers: Number of stacked LSTM layers. (Default: ``1``)
        max_steps: Window length for long inputs, a multiple of 4; ``None`` runs the whole input
            at once. (Default: ``None``)
        skip: Add the input to the output. (Default: ``False``)
    """

    def __init__(self, dim: int, layers: int = 1, max_steps: int | None = None, skip: bool = False) -> None:
        super().__init__()
        if max_steps is not None and max_steps % 4:
            raise ValueError(f"max_steps must be a multiple of 4, got {max_steps}")
        self.max_steps = max_steps
        self.skip = skip
        self.lstm = nn.LSTM(input_size=dim, hidden_size=dim, num_layers=layers, bidirectional=True)
        self.projection = nn.Linear(2 * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """Run the LSTM over ``x`` (``[B, C, T]``).

        Args:
            x: Features, ``[B, C, T]``.
        """
        batch, channels, length = x.shape
        windowed = self.max_steps is not None and length > self.max_steps
        if windowed:
            width, hop = self.max_steps, self.max_steps // 2
            frames = frame_signal(x, width, hop)  # B, C, N, W
            count = frames.shape[2]
            sequence = frames.permute(0, 2, 1, 3).reshape(-1, channels, width)  # B*N, C, W
        else:
            sequence = x
        hidden = self.lstm(sequence.permute(2, 0, 1))[0]  # T, B, 2C
        out = self.projection(hidden).permute(1, 2, 0)  # B, C, T
        if windowed:
            out = self._join_windows(out.reshape(batch, count, channels, width), hop)[..., :length]
        return x + out if self.skip else out

    @staticmethod
    def _join_windows(windows: Tensor, hop: int) -> Tensor:
        """Keep the centre of each half-overlapping window (``[B, N, C, W]``) and concatenate."""
        trim = hop // 2
        count = windows.shape[1]
        parts = []
        for index in range(count):
            start = 0 if index == 0 else trim
            end = windows.shape[-1] if index == count - 1 else windows.shape[-1] - trim
            parts.append(windows[:, index, :, start:end])
        return torch.cat(parts, dim=-1)  # B, C, T'


class LocalAttention(nn.Module):
    """Self-attention over time without positional embeddings, where each head learns how fast
    its attention decays with the distance between frames; a frame never attends to itself.

    Args:
        channels: Channels of the input and output; a multiple of ``heads``.
        heads: Number of attention heads. (Default: ``4``)
        decay_rates: Number of distance-decay terms per head. (Default: ``4``)
    """

    def __init__(self, channels: int, heads: int = 4, decay_rates: int = 4) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be a multiple of heads ({heads})")
        self.heads = heads
        self.decay_rates = decay_rates
        self.content = nn.Conv1d(channels, channels, 1)
        self.query = nn.Conv1d(channels, channels, 1)
        self.key = nn.Conv1d(channels, channels, 1)
        if decay_rates:
            self.decay_query = nn.Conv1d(channels, heads * decay_rates, 1)
            # Decays start near zero (after the sigmoid, 1/2 * sigmoid(-2)): the widest window.
            self.decay_query.weight.data *= 0.01
            self.decay_query.bias.data[:] = -2
        self.output = nn.Conv1d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Attend over the frames of ``x`` (``[B, C, T]``) and add the result to it.

        Args:
            x: Features, ``[B, C, T]``.
        """
        batch, channels, length = x.shape
        positions = torch.arange(length, device=x.device, dtype=x.dtype)
        distance = positions[:, None] - positions[None, :]  # T (keys), T (queries)
        queries = self.query(x).view(batch, self.heads, -1, length)  # B, H, C/H, T
        keys = self.key(x).view(batch, self.heads, -1, length)  # B, H, C/H, T
        scores = torch.einsum("bhck,bhcq->bhkq", keys, queries) / keys.shape[2] ** 0.5  # B, H, T, T
        if self.decay_rates:
            rates = torch.arange(1, self.decay_rates + 1, device=x.device, dtype=x.dtype)
            decay_weights = torch.sigmoid(self.decay_query(x).view(batch, self.heads, -1, length)) / 2
            penalty = -rates.view(-1, 1, 1) * distance.abs() / self.decay_rates**0.5  # D, T, T
            scores = scores + torch.einsum("dkq,bhdq->bhkq", penalty, decay_weights)
        # The diagonal as ``distance == 0`` rather than a boolean eye, which onnxruntime lacks.
        scores = scores.masked_fill(distance == 0, -100)
        weights = torch.softmax(scores, dim=2)  # normalised over keys
        content = self.content(x).view(batch, self.heads, -1, length)  # B, H, C/H, T
        attended = torch.einsum("bhkq,bhck->bhcq", weights, content).reshape(batch, channels, length)
        return x + self.output(attended)


class _BranchLayer(nn.Module):
    """One layer of :class:`ResidualBranch`: dilated convolution, norm, activation, optional
    LSTM and attention, 1x1 expansion to twice the channels, norm, GLU, layer scale."""

    def __init__(
        self,
        channels: int,
        hidden: int,
        kernel: int,
        dilation: int,
        norm: bool,
        gelu: bool,
        lstm: bool,
        attention: bool,
        heads: int,
        decay_rates: int,
        init: float,
    ) -> None:
        super().__init__()
        self.dilated_conv = nn.Conv1d(
            channels, hidden, kernel, dilation=dilation, padding=dilation * (kernel // 2)
        )
        self.dilated_norm = nn.GroupNorm(1, hidden) if norm else nn.Identity()
        self.activation = nn.GELU() if gelu else nn.ReLU()
        self.lstm = BidirectionalLSTM(hidden, layers=2, max_steps=200, skip=True) if lstm else None
        self.attention = LocalAttention(hidden, heads=heads, decay_rates=decay_rates) if attention else None
        self.expand = nn.Conv1d(hidden, 2 * channels, 1)
        self.expand_norm = nn.GroupNorm(1, 2 * channels) if norm else nn.Identity()
        self.scale = ChannelScale(channels, init)

    def forward(self, x: Tensor) -> Tensor:
        y = self.activation(self.dilated_norm(self.dilated_conv(x)))  # B, H, T
        if self.lstm is not None:
            y = self.lstm(y)
        if self.attention is not None:
            y = self.attention(y)
        y = F.glu(self.expand_norm(self.expand(y)), dim=1)  # B, C, T
        return self.scale(y)


class ResidualBranch(nn.Module):
    """The compressed residual branches ("DConv") added to each encoder layer from Demucs v3 on:
    ``depth`` layers, each adding to its input a projection to ``channels / compress``
    channels, a convolution dilated by ``2^layer``, and the way back through a GLU.

    Args:
        channels: Channels of the input and output.
        compress: Compression of the channels inside the branch. (Default: ``4``)
        depth: Number of layers; a negative value gives ``|depth|`` layers without dilation.
            (Default: ``2``)
        init: Initial layer scale. (Default: ``1e-4``)
        norm: Use group norms (one group). (Default: ``True``)
        attention: Add local attention to each layer. (Default: ``False``)
        heads: Heads of the local attention. (Default: ``4``)
        decay_rates: Distance-decay terms of the local attention. (Default: ``4``)
        lstm: Add a bidirectional LSTM (two layers, 200-frame windows) to each layer.
            (Default: ``False``)
        gelu: GELU activations, else ReLU. (Default: ``True``)
        kernel: Kernel size of the dilated convolutions, odd. (Default: ``3``)
    """

    def __init__(
        self,
        channels: int,
        compress: float = 4,
        depth: int = 2,
        init: float = 1e-4,
        norm: bool = True,
        attention: bool = False,
        heads: int = 4,
        decay_rates: int = 4,
        lstm: bool = False,
        gelu: bool = True,
        kernel: int = 3,
    ) -> None:
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"the residual branch kernel must be odd, got {kernel}")
        hidden = int(channels / compress)
        dilate = depth > 0
        self.layers = nn.ModuleList(
            _BranchLayer(
                channels,
                hidden,
                kernel,
                dilation=2**index if dilate else 1,
                norm=norm,
                gelu=gelu,
                lstm=lstm,
                attention=attention,
                heads=heads,
                decay_rates=decay_rates,
                init=init,
            )
            for index in range(abs(depth))
        )

    def forward(self, x: Tensor) -> Tensor:
        """Add each layer's output to its input.

        Args:
            x: Features, ``[B, C, T]``.
        """
        for layer in self.layers:
            x = x + layer(x)
        return x


_CONVOLUTIONS = (nn.Conv1d, nn.ConvTranspose1d, nn.Conv2d, nn.ConvTranspose2d)


def rescale_conv_weights(module: nn.Module, reference: float) -> None:
    """Divide each convolution's weight and bias by ``sqrt(std(weight) / reference)``.

    The Demucs papers found this initialisation (which brings the weights' standard deviation
    closer to ``reference``) to help; it is applied once, at construction.

    Args:
        module: The model; every (transposed) convolution inside it is rescaled.
        reference: The target standard deviation.
    """
    for sub in module.modules():
        # A model on the meta device (built to count parameters) has no values to rescale.
        if isinstance(sub, _CONVOLUTIONS) and not sub.weight.is_meta:
            scale = (sub.weight.std().detach() / reference) ** 0.5
            sub.weight.data /= scale
            if sub.bias is not None:
                sub.bias.data /= scale


def group_norm(channels: int, groups: int | None) -> nn.Module:
    """A group norm with ``groups`` groups over ``channels``, or an identity where ``groups`` is
    ``None`` (the outer layers of a Demucs, before ``norm_starts``).

    Args:
        channels: Channels of the input.
        groups: Number of groups, or ``None`` for no norm.
    """
    return nn.GroupNorm(groups, channels) if groups else nn.Identity()


DCONV_MODES: tuple[int, ...] = (0, 1, 2, 3)
"""Where a Demucs has residual branches: bit 1 in the encoder, bit 2 in the decoder."""


def check_dconv_mode(mode: int) -> None:
    """Raise ``ValueError`` unless ``mode`` is one of :data:`DCONV_MODES`.

    Args:
        mode: The model's ``dconv_mode``.
    """
    if mode not in DCONV_MODES:
        raise ValueError(f"dconv_mode must be 0, 1, 2 or 3, got {mode}")


def residual_options(
    mode: int, depth: int, compress: float, init: float, attention: bool, lstm: bool
) -> tuple[dict | None, dict | None]:
    """Keyword arguments of the :class:`ResidualBranch` of one depth's encoder layer and decoder
    layer, ``None`` for a layer that ``mode`` leaves without one.

    Args:
        mode: The model's ``dconv_mode`` (see :data:`DCONV_MODES`).
        depth: Layers of the branch.
        compress: Channel compression inside it.
        init: Its initial layer scale.
        attention: Whether it has local attention.
        lstm: Whether it has an LSTM.
    """
    options = {"depth": depth, "compress": compress, "init": init, "attention": attention, "lstm": lstm}
    return (options if mode & 1 else None), (options if mode & 2 else None)


@functools.cache
def sinc_resample_kernel(old_sr: int, new_sr: int) -> tuple[Tensor, int]:
    """The windowed-sinc kernels ``[new_sr, 1, taps]`` (float32, CPU) of
    ``julius.resample_frac(x, old_sr, new_sr)`` with julius's default zeros and roll-off, and
    the padding ``width`` on each side. Computed once per pair by julius itself and never
    modified, so the constant an exported graph holds is the kernel julius applies.

    Args:
        old_sr: Input rate, in lowest terms with ``new_sr``.
        new_sr: Output rate.
    """
    with torch.no_grad():
        resampler = julius.ResampleFrac(old_sr, new_sr)
    return resampler.kernel.detach(), int(resampler._width)


def sinc_resample(x: Tensor, old_sr: int, new_sr: int) -> Tensor:
    """Resample ``x`` (``[B, C, T]``) from ``old_sr`` to ``new_sr``: what
    ``julius.resample_frac(x, old_sr, new_sr)`` computes, step for step (edge padding, a strided
    convolution with one kernel per output phase, the phases interleaved, the output floored to
    ``T * new_sr // old_sr`` samples), with the sizes as Python integers and the kernels as
    constants, so that it traces into opset-17 ONNX (Pad in edge mode, Conv, Transpose, Reshape,
    Slice) with a static time axis.

    Args:
        x: Signal, ``[B, C, T]``.
        old_sr: Input rate, in lowest terms with ``new_sr``.
        new_sr: Output rate.
    """
    kernel, width = sinc_resample_kernel(old_sr, new_sr)
    channels, length = int(x.shape[1]), int(x.shape[2])
    padded = F.pad(x.reshape(-1, 1, length), (width, width + old_sr), mode="replicate")  # B*C, 1, T+
    phases = F.conv1d(padded, kernel.to(x), stride=old_sr)  # B*C, new_sr, T'
    y = phases.transpose(1, 2).reshape(-1, channels, phases.shape[-1] * new_sr)  # B, C, new_sr * T'
    return y[..., : new_sr * length // old_sr]


def center_trim(x: Tensor, length: int) -> Tensor:
    """Keep the central ``length`` samples of ``x`` (time last); an odd excess is taken more from
    the right.

    Args:
        x: Tensor with time last, at least ``length`` long.
        length: Samples to keep.
    """
    # Python integers also while tracing, so that the exported graph slices a static range.
    excess = int(x.shape[-1]) - int(length)
    if excess < 0:
        raise ValueError(f"cannot trim {x.shape[-1]} samples to {length}")
    return x[..., excess // 2 : excess // 2 + length]


__all__ = [
    "BidirectionalLSTM",
    "ChannelScale",
    "LocalAttention",
    "ResidualBranch",
    "DCONV_MODES",
    "center_trim",
    "check_dconv_mode",
    "frame_signal",
    "group_norm",
    "rescale_conv_weights",
    "residual_options",
    "sinc_resample",
    "sinc_resample_kernel",
]
