"""Open-Unmix: one recurrent network per target that masks the mixture's magnitude spectrogram,
optionally refined by a multichannel Wiener filter.

Stöter, Uhlich, Liutkus & Mitsufuji, "Open-Unmix - A Reference Implementation for Music Source
Separation" (JOSS 2019, doi:10.21105/joss.01667). The architecture and its defaults follow the
reference implementation, sigsep/open-unmix-pytorch:

* ``openunmix/model.py`` (class ``OpenUnmix``, one per target): the magnitudes of the bins up to
  ``max_bin`` are shifted and scaled per bin by learned vectors (initialised to 0 and 1), then a
  bias-free fully connected layer maps all channels and bins of a frame to ``hidden_size``,
  followed by batch norm and tanh; a 3-layer bidirectional LSTM with ``hidden_size // 2`` units
  per direction and dropout 0.4 between layers; the LSTM output concatenated with its input
  (skip connection); a bias-free fully connected layer back to ``hidden_size`` with batch norm
  and ReLU; a bias-free fully connected layer to all ``n_fft // 2 + 1`` bins of every channel
  with batch norm; a learned per-bin output scale and offset (both initialised to 1); a ReLU,
  and the result multiplies the mixture's magnitude.
* ``openunmix/model.py`` (class ``Separator``): STFT of size 4096 with hop 1024 and a Hann
  window, centred; stems are synthesised with the inverse STFT and the mixture's phase, or
  through the Wiener filter of ``openunmix/filtering.py`` (a port of norbert), applied to
  windows of 300 frames.
* ``scripts/train.py``: 16 kHz bandwidth (``max_bin`` = the number of bins at or below it,
  ``openunmix/utils.py: bandwidth_to_max_bin``, 1487 of 2049 at 44.1 kHz), hidden size 512,
  stereo, 6-second training segments; the input shift and scale start from the training set's
  per-bin mean and standard deviation (``get_statistics``), see
  :meth:`OpenUnmix.set_input_statistics`.
* ``openunmix/utils.py`` (``load_separator``): one Wiener iteration at inference.

Open-Unmix trains one model per target; here the one separator holds one independent network per
entry of ``sources``, so ``sources=["vocals"]`` is a one-target model.

Differences from the reference: by default the STFT pads with zeros rather than by reflection, so
that inputs of any length, down to one sample, work (the output is cropped back to the input
length); ``pad_mode="reflect"``, which models converted from ``openunmix`` folders use
(:mod:`sepzoo.convert.openunmix`), pads as the reference does;
the Wiener filter, when enabled, runs in evaluation mode only, since Open-Unmix trains its targets
on magnitudes without it and filters only when separating.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sepzoo import DEFAULT_SOURCES
from sepzoo.dsp.precision import full_precision
from sepzoo.dsp.stft import STFT
from sepzoo.dsp.wiener import wiener_filter
from sepzoo.models import register_model
from sepzoo.models.base import Separator
from sepzoo.models.onnx_core import ExportUnsupportedError, OnnxExport

STD_FLOOR = 1e-4
"""Smallest input standard deviation, relative to the largest one, in
:meth:`OpenUnmix.set_input_statistics` (as Open-Unmix's ``get_statistics`` floors it)."""


def bandwidth_to_max_bin(sample_rate: int, n_fft: int, bandwidth: float | None) -> int:
    """Number of STFT bins whose centre frequency is at most ``bandwidth`` Hz.

    Args:
        sample_rate: Sample rate in Hz.
        n_fft: FFT size; there are ``n_fft // 2 + 1`` bins, ``sample_rate / n_fft`` Hz apart.
        bandwidth: Highest frequency in Hz, or ``None`` for every bin.
    """
    bins = n_fft // 2 + 1
    if bandwidth is None:
        return bins
    if bandwidth < 0:
        raise ValueError(f"bandwidth must be >= 0 Hz or None, got {bandwidth}")
    return min(bins, int(bandwidth * n_fft // sample_rate) + 1)


class TargetNetwork(nn.Module):
    """The network of one target: a mask for every channel and bin of the mixture's magnitude.

    ``shift and scale the bins below max_bin -> linear (C * max_bin -> H) -> batch norm -> tanh
    -> LSTM -> concatenate with its input -> linear (2H -> H) -> batch norm -> ReLU -> linear
    (H -> C * F) -> batch norm -> per-bin scale and offset -> ReLU``.

    Open-Unmix's names of the layers: ``fc1``/``bn1`` are ``encoder``/``encoder_norm``,
    ``fc2``/``bn2`` are ``hidden_layer``/``hidden_norm``, ``fc3``/``bn3`` are
    ``decoder``/``decoder_norm``, ``input_mean`` is ``input_shift`` and ``output_mean`` is
    ``output_shift``.

    Args:
        channels: Audio channels ``C``.
        bins: Frequency bins ``F`` of the STFT (``n_fft // 2 + 1``).
        max_bin: Bins the network reads (the lowest ones).
        hidden_size: Width ``H`` of the fully connected layers and of the LSTM output.
        lstm_layers: Stacked LSTM layers.
        bidirectional: Bidirectional LSTM with ``H / 2`` units per direction; else ``H`` units
            forward only.
        lstm_dropout: Dropout between LSTM layers (none with one layer).
    """

    def __init__(
        self,
        channels: int,
        bins: int,
        max_bin: int,
        hidden_size: int,
        lstm_layers: int,
        bidirectional: bool,
        lstm_dropout: float,
    ) -> None:
        super().__init__()
        self.max_bin = max_bin
        self.input_shift = nn.Parameter(torch.zeros(max_bin))
        self.input_scale = nn.Parameter(torch.ones(max_bin))
        self.encoder = nn.Linear(channels * max_bin, hidden_size, bias=False)
        self.encoder_norm = nn.BatchNorm1d(hidden_size)
        self.lstm = nn.LSTM(
            input_size=hidden_size,
            hidden_size=hidden_size // 2 if bidirectional else hidden_size,
            num_layers=lstm_layers,
            bidirectional=bidirectional,
            batch_first=True,
            dropout=lstm_dropout if lstm_layers > 1 else 0.0,
        )
        self.hidden_layer = nn.Linear(2 * hidden_size, hidden_size, bias=False)
        self.hidden_norm = nn.BatchNorm1d(hidden_size)
        self.decoder = nn.Linear(hidden_size, channels * bins, bias=False)
        self.decoder_norm = nn.BatchNorm1d(channels * bins)
        self.output_scale = nn.Parameter(torch.ones(bins))
        self.output_shift = nn.Parameter(torch.ones(bins))

    def forward(self, magnitude: Tensor) -> Tensor:
        """The target's mask, ``[B, C, F, N]``, from the mixture's magnitude ``[B, C, F, N]``.

        Args:
            magnitude: Magnitude spectrogram of the mixture, ``[batch, channels, bins, frames]``.
        """
        batch, channels, bins, frames = magnitude.shape
        x = magnitude[:, :, : self.max_bin].permute(0, 3, 1, 2)  # B, N, C, Fm
        x = (x + self.input_shift) * self.input_scale  # B, N, C, Fm
        x = self.encoder(x.reshape(batch * frames, -1))  # B*N, H
        x = torch.tanh(self.encoder_norm(x)).view(batch, frames, -1)  # B, N, H
        recurrent, _ = self.lstm(x)  # B, N, H
        x = torch.cat([x, recurrent], dim=-1).reshape(batch * frames, -1)  # B*N, 2H
        x = F.relu(self.hidden_norm(self.hidden_layer(x)))  # B*N, H
        x = self.decoder_norm(self.decoder(x)).view(batch, frames, channels, bins)  # B, N, C, F
        x = x * self.output_scale + self.output_shift  # B, N, C, F
        return F.relu(x).permute(0, 2, 3, 1)  # B, C, F, N


class OpenUnmixCore(nn.Module):
    """The exported graph of :class:`OpenUnmix`: the masks ``[B, S, C, F, N]`` from the mixture's
    spectrogram as real and imaginary parts ``[B, C, F, N, 2]``, through the model's own
    :meth:`OpenUnmix.masks` (no copied weights).

    Args:
        model: The model to export.
    """

    def __init__(self, model: OpenUnmix) -> None:
        super().__init__()
        self.model = model

    def forward(self, spectrum: Tensor) -> Tensor:
        """The masks of every target.

        Args:
            spectrum: The mixture's STFT, real and imaginary parts last, ``[B, C, F, N, 2]``.
        """
        magnitude = spectrum.square().sum(dim=-1).sqrt()  # B, C, F, N
        return self.model.masks(magnitude)


@register_model("open_unmix")
class OpenUnmix(Separator):
    """Open-Unmix (UMX): per target, a BiLSTM predicts a magnitude mask; stems take the mixture's
    phase, optionally refined by a multichannel Wiener filter.

    The input scaling of every target starts at shift 0 and scale 1; Open-Unmix starts it from
    the training mixtures' per-bin statistics, which :meth:`input_statistics` and
    :meth:`set_input_statistics` compute and set before training.

    The Wiener filter (``wiener_iterations > 0`` or ``wiener_softmask``) runs in evaluation
    mode only; in training mode the stems are always the masked mixture. It is applied to
    windows of ``wiener_window`` frames, each with its own spatial statistics, and needs at
    least two sources to separate, so a one-target model needs ``wiener_residual``: the residual
    source then takes part in the filter and is dropped from the output.

    Args:
        sources: Names of the targets; each gets its own network. (Default: ``DEFAULT_SOURCES``)
        n_fft: FFT and Hann window size. (Default: ``4096``)
        hop_length: STFT hop in samples. (Default: ``1024``)
        hidden_size: Width of the fully connected layers and of the LSTM output; even when the
            LSTM is bidirectional. (Default: ``512``)
        lstm_layers: Stacked LSTM layers. (Default: ``3``)
        bidirectional: Bidirectional LSTM; ``False`` gives Open-Unmix's causal variant.
            (Default: ``True``)
        lstm_dropout: Dropout between LSTM layers. (Default: ``0.4``)
        bandwidth: Highest frequency in Hz the networks read; they predict masks for every
            bin. ``None`` reads every bin. (Default: ``16000.0``)
        wiener_iterations: Expectation-maximisation rounds of the Wiener filter in evaluation
            mode; Open-Unmix separates with ``1``. (Default: ``0``, masks only)
        wiener_softmask: Start the filter from soft masks (ratios of the target magnitudes)
            instead of the magnitudes with the mixture's phase. (Default: ``False``)
        wiener_residual: Give the filter an extra source, the mixture minus the targets.
            (Default: ``False``)
        wiener_window: Frames filtered together, or ``None`` for the whole input.
            (Default: ``300``)
        pad_mode: How the centred STFT pads half a frame at each end: ``"constant"`` (zeros,
            any input length) or ``"reflect"``, as the ``openunmix`` package pads (inputs
            longer than ``n_fft // 2`` samples). (Default: ``"constant"``)
        sample_rate: Sample rate in Hz. (Default: ``44100``)
        audio_channels: Input and output channels. (Default: ``2``)
        segment: Preferred chunk length in seconds; Open-Unmix trains on 6-second excerpts.
            (Default: ``6.0``)
    """

    domain = "spectrogram"
    test_kwargs = {"n_fft": 32, "hop_length": 8, "hidden_size": 6, "lstm_layers": 1}

    def __init__(
        self,
        sources: Sequence[str] = DEFAULT_SOURCES,
        n_fft: int = 4096,
        hop_length: int = 1024,
        hidden_size: int = 512,
        lstm_layers: int = 3,
        bidirectional: bool = True,
        lstm_dropout: float = 0.4,
        bandwidth: float | None = 16000.0,
        wiener_iterations: int = 0,
        wiener_softmask: bool = False,
        wiener_residual: bool = False,
        wiener_window: int | None = 300,
        pad_mode: str = "constant",
        sample_rate: int = 44100,
        audio_channels: int = 2,
        segment: float | None = 6.0,
    ) -> None:
        super().__init__(
            sources=list(sources), sample_rate=sample_rate, audio_channels=audio_channels, segment=segment
        )
        for name, value in [
            ("n_fft", n_fft),
            ("hop_length", hop_length),
            ("hidden_size", hidden_size),
            ("lstm_layers", lstm_layers),
        ]:
            if value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        if hop_length > n_fft // 2:
            # Longer hops leave the last samples of some lengths outside every centred frame.
            raise ValueError(f"hop_length must be at most n_fft // 2 = {n_fft // 2}, got {hop_length}")
        if bidirectional and hidden_size % 2:
            raise ValueError(
                f"a bidirectional LSTM splits hidden_size in two; it must be even, got {hidden_size}"
            )
        if not 0 <= lstm_dropout < 1:
            raise ValueError(f"lstm_dropout must be in [0, 1), got {lstm_dropout}")
        if wiener_iterations < 0:
            raise ValueError(f"wiener_iterations must be >= 0, got {wiener_iterations}")
        if wiener_window is not None and wiener_window < 1:
            raise ValueError(
                f"wiener_window must be a positive number of frames or None, got {wiener_window}"
            )
        if wiener_iterations > 0 and len(self.sources) == 1 and not wiener_residual:
            raise ValueError(
                f"the Wiener filter needs two sources; with the single target {self.sources[0]!r}, "
                "set wiener_residual=True or wiener_iterations=0"
            )
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.max_bin = bandwidth_to_max_bin(sample_rate, n_fft, bandwidth)
        self.wiener_iterations = wiener_iterations
        self.wiener_softmask = wiener_softmask
        self.wiener_residual = wiener_residual
        self.wiener_window = wiener_window
        # Open-Unmix's float32 window in every precision: a model run in float64 computes the
        # function it was trained with in float32.
        self.stft = STFT(n_fft, hop_length, pad_mode=pad_mode, float32_window=True)
        self.target_networks = nn.ModuleDict(
            {
                name: TargetNetwork(
                    channels=audio_channels,
                    bins=n_fft // 2 + 1,
                    max_bin=self.max_bin,
                    hidden_size=hidden_size,
                    lstm_layers=lstm_layers,
                    bidirectional=bidirectional,
                    lstm_dropout=lstm_dropout,
                )
                for name in self.sources
            }
        )

    def forward(self, mix: Tensor, references: Tensor | None = None) -> Tensor:
        self.check_input(mix, references)
        if self.stft.pad_mode == "reflect" and mix.shape[-1] <= self.n_fft // 2:
            raise ValueError(
                f"reflection padding needs more than n_fft // 2 = {self.n_fft // 2} samples, got "
                f"{mix.shape[-1]}"
            )
        mix_stft = self.stft(mix)  # B, C, F, N
        masks = self.masks(mix_stft.abs())  # B, S, C, F, N
        stems_stft = self.stem_spectrograms(masks, mix_stft)  # B, S, C, F, N
        return self.istft(stems_stft, mix.shape[-1])  # B, S, C, T

    def masks(self, magnitude: Tensor) -> Tensor:
        """Every target's mask, ``[B, S, C, F, N]``, from the mixture's magnitude: the network part
        of :meth:`forward`, which the exported graph runs too.

        Args:
            magnitude: Magnitude spectrogram of the mixture, ``[batch, channels, bins, frames]``.
        """
        masks = [network(magnitude) for network in self.target_networks.values()]  # S x (B, C, F, N)
        return torch.stack(masks, dim=1)  # B, S, C, F, N

    def onnx_export(self, length: int) -> OnnxExport:
        """The export plan: the graph maps the mixture's spectrogram (real and imaginary parts
        in a last axis of size 2, ``[B, C, F, N, 2]``) to the masks ``[B, S, C, F, N]``; the
        ``open_unmix`` adapter (:mod:`sepzoo.deploy.umx`) computes the STFT, applies the masks
        or the Wiener filter as :meth:`stem_spectrograms` does in evaluation mode, and inverts.

        Args:
            length: Samples per exported chunk.
        """
        if self.stft.pad_mode == "reflect" and length <= self.n_fft // 2:
            raise ExportUnsupportedError(
                f"reflection padding needs chunks of more than n_fft // 2 = {self.n_fft // 2} samples, "
                f"got {length}"
            )
        settings = {
            "n_fft": self.n_fft,
            "hop_length": self.hop_length,
            "normalized": self.stft.normalized,
            "pad_mode": self.stft.pad_mode,
            "sources": len(self.sources),
            "wiener_iterations": self.wiener_iterations,
            "wiener_softmask": self.wiener_softmask,
            "wiener_residual": self.wiener_residual,
            "wiener_window": self.wiener_window,
        }
        return OnnxExport(
            core=OpenUnmixCore(self),
            adapter="open_unmix",
            settings=settings,
            input_names=["spectrum"],
            output_names=["masks"],
        )

    def istft(self, spectrum: Tensor, length: int) -> Tensor:
        """The inverse of :attr:`stft` (the model's :class:`~sepzoo.dsp.stft.STFT`, centred with
        zero padding), ``[..., F, N]`` to ``[..., length]``.

        Args:
            spectrum: Complex spectrograms, frequency and frames last.
            length: Samples of the output.
        """
        return self.stft.inverse(spectrum, length)

    @full_precision
    def stem_spectrograms(self, masks: Tensor, mix_stft: Tensor) -> Tensor:
        """Complex stems ``[B, S, C, F, N]``: the masked mixture, or in evaluation mode with the
        Wiener filter enabled, its refinement; in float32 under mixed precision.

        Args:
            masks: Non-negative masks, ``[B, S, C, F, N]``.
            mix_stft: The mixture's STFT, ``[B, C, F, N]``.
        """
        if self.training or (self.wiener_iterations == 0 and not self.wiener_softmask):
            return masks * mix_stft[:, None]  # B, S, C, F, N
        magnitudes = masks * mix_stft.abs()[:, None]  # B, S, C, F, N
        frames = mix_stft.shape[-1]
        window = self.wiener_window or frames
        filtered = [
            wiener_filter(
                magnitudes[..., start : start + window],
                mix_stft[..., start : start + window],
                self.wiener_iterations,
                softmask=self.wiener_softmask,
                residual=self.wiener_residual,
            )[:, : len(self.sources)]
            for start in range(0, frames, window)
        ]
        return torch.cat(filtered, dim=-1)  # B, S, C, F, N

    @torch.no_grad()
    def input_statistics(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        """Per-bin mean and standard deviation of the magnitude spectrogram of ``audio``, averaged
        over channels, as Open-Unmix computes them over its training mixtures.

        Args:
            audio: Mixtures, ``[C, T]`` or ``[B, C, T]`` (e.g. training tracks cut to one
                length, or concatenated along time).

        Returns:
            The mean and the standard deviation, each ``[n_fft // 2 + 1]``.
        """
        if audio.dim() == 2:
            audio = audio[None]
        self.check_input(audio)
        magnitude = self.stft(audio).abs().mean(dim=1)  # B, F, N
        frames = magnitude.permute(1, 0, 2).flatten(1)  # F, B*N
        return frames.mean(dim=1), frames.std(dim=1, correction=0)

    @torch.no_grad()
    def set_input_statistics(self, mean: Tensor, std: Tensor) -> None:
        """Start every target's input scaling from data statistics: shift ``-mean`` and scale
        ``1 / std``, with ``std`` floored at ``1e-4`` times its largest value.

        Args:
            mean: Per-bin mean magnitude, ``[n_fft // 2 + 1]`` (or at least ``max_bin`` bins).
            std: Per-bin standard deviation, same shape.
        """
        if mean.shape != std.shape or mean.dim() != 1 or mean.shape[0] < self.max_bin:
            raise ValueError(
                f"expected mean and std of shape [>= {self.max_bin}], "
                f"got {list(mean.shape)} and {list(std.shape)}"
            )
        floored = torch.clamp(std, min=STD_FLOOR * float(std.max()))[: self.max_bin]
        for network in self.target_networks.values():
            network.input_shift.copy_(-mean[: self.max_bin])
            network.input_scale.copy_(1 / floored)


__all__ = ["OpenUnmix", "OpenUnmixCore", "TargetNetwork", "bandwidth_to_max_bin"]
