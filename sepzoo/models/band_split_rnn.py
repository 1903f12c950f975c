"""Band-split RNN (BSRNN): the complex spectrogram is cut into sub-bands whose widths follow the
target instrument, each band becomes one feature vector per frame, and residual BLSTMs alternate
between modelling each band along time and modelling each frame across the bands; a small MLP
per band then predicts a complex mask of that band's bins.

Luo & Yu, "Music Source Separation with Band-split RNN" (2022, arXiv:2209.15174; IEEE/ACM TASLP
2023). The defaults are those of Section IV-A-4: a 2048-point STFT with hop 512 and a Hann
window, feature size ``N = 128``, 12 band-and-sequence modules (24 residual BLSTM layers) with
``2N = 256`` hidden units, mask MLPs with ``4N = 512`` hidden units, tanh, and a GLU output layer.
Section IV-A-2 trains on 3-second chunks, the default ``segment``.

Band schemes (``band_scheme``). The paper trains one model per target, each with its own
split (Section V-A):

* ``"vocals"``: the paper's "V7": 100 Hz bands up to 1 kHz, 250 Hz up to 4 kHz, 500 Hz up to
  8 kHz, 1 kHz up to 16 kHz, 2 kHz up to 20 kHz, the rest as one band (41 bands);
* ``"bass"``: 50 Hz bands up to 500 Hz, 100 Hz up to 1 kHz, 500 Hz up to 4 kHz, 1 kHz up to
  8 kHz, 2 kHz up to 16 kHz, the rest as one band (30 bands);
* ``"drums"``: 50 Hz bands up to 1 kHz, 100 Hz up to 2 kHz, 250 Hz up to 4 kHz, 500 Hz up to
  8 kHz, 1 kHz up to 16 kHz, the rest as one band (55 bands);
* ``"other"``: the vocals scheme, as the paper states.

A recipe can also give ``{"steps": [[width_hz, up_to_hz], ...]}`` (bands of ``width_hz`` from
the previous step's end up to ``up_to_hz``, the last one narrower when the width does not divide
the range; the rest up to Nyquist as one band) or ``{"bands": [[low_hz, high_hz], ...]}``
(explicit bands; a ``high_hz`` of ``null`` means Nyquist).

Hertz to bins. A band ``[low_hz, high_hz)`` holds the STFT bins ``[edge(low_hz),
edge(high_hz))`` with ``edge(f) = floor(f * n_fft / sample_rate + 0.5)`` (round half up), except
that Nyquist maps to ``n_fft // 2 + 1``, so that the last band includes the Nyquist bin. After
rounding, the bands must tile the bins exactly; a scheme that leaves a gap, overlaps, reaches
beyond Nyquist, or has a band that no bin falls in (an ``n_fft`` too small for it) is refused
when the model is built, in one line naming the band and its Hz and bin values
(:func:`band_bins`).

Stereo. The paper describes one spectrogram and does not say how channels are handled; the
authors' Sound Demixing Challenge 2023 baseline (below) separates each channel on its own. Here
the real and imaginary parts of every channel of a band are concatenated into that band's input
vector (``2 * channels * bins`` numbers), so that the BLSTMs see the stereo image (where a
source sits between the speakers is a strong cue to which bins are its own), and each band's
MLP outputs a separate complex mask for every channel's bins, which multiplies that channel's
own spectrum. The BLSTM stack then runs once per stereo item rather than once per channel.

Normalisation. Section II names layer norm for the band split and the mask estimation, and
group norm for the BLSTMs. The BSRNN baseline the authors published for the Sound Demixing
Challenge 2023 (gitlab.aicrowd.com/Tomasyu/sdx-2023-music-demixing-track-starter-kit) computes
every one of them as a group norm with one group: one mean and variance per item over the
features and the modelled axis, with a gain and bias per feature. That is what
:class:`SequenceNorm` does here: a band's statistics span the whole chunk (its frames), or, in
the band BLSTM, all the bands of one frame. Unlike a norm of each frame alone, it keeps how a
band's loudness changes over time.

Several ``sources`` share the band split and the BLSTM stack and get one mask estimator each;
they then share one band scheme.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sepzoo.dsp.precision import widen
from sepzoo.dsp.stft import STFT
from sepzoo.errors import suggestion
from sepzoo.models import register_model
from sepzoo.models._spectral_export import spectral_export
from sepzoo.models.base import Separator
from sepzoo.models.onnx_core import OnnxExport

BandScheme = str | dict[str, list[list[float | None]]] | None
"""A scheme name, ``{"steps": ...}``, ``{"bands": ...}``, or ``None`` for the default."""

_VOCALS_STEPS: list[list[float]] = [[100, 1000], [250, 4000], [500, 8000], [1000, 16000], [2000, 20000]]

NAMED_BAND_SCHEMES: dict[str, dict[str, list[list[float]]]] = {
    "vocals": {"steps": _VOCALS_STEPS},
    "bass": {"steps": [[50, 500], [100, 1000], [500, 4000], [1000, 8000], [2000, 16000]]},
    "drums": {"steps": [[50, 1000], [100, 2000], [250, 4000], [500, 8000], [1000, 16000]]},
    "other": {"steps": _VOCALS_STEPS},
}
"""The per-target schemes of Luo & Yu (2022), Section V-A, as ``[width_hz, up_to_hz]`` steps."""

DEFAULT_BAND_SCHEME = "vocals"
"""The scheme of a model whose target has no named scheme, or that has several targets."""


def default_band_scheme(sources: Sequence[str]) -> str:
    """The scheme ``band_scheme=None`` stands for: the target's own scheme for a model with one
    target that has one, else the vocals scheme.

    Args:
        sources: The model's targets.
    """
    if len(sources) == 1 and sources[0] in NAMED_BAND_SCHEMES:
        return sources[0]
    return DEFAULT_BAND_SCHEME


def _hz(value: float) -> str:
    return f"{value:g} Hz"


def band_edges_hz(scheme: BandScheme, sample_rate: int) -> list[tuple[float, float]]:
    """The bands of a scheme in Hz, ``(low, high)`` each, in the order given.

    Args:
        scheme: A name in :data:`NAMED_BAND_SCHEMES`, ``{"steps": [[width_hz, up_to_hz], ...]}``
            or ``{"bands": [[low_hz, high_hz], ...]}`` (``high_hz`` may be ``None`` for Nyquist).
        sample_rate: Sample rate in Hz; Nyquist is half of it.

    Raises:
        ValueError: For an unknown name, a malformed scheme, a band that is empty or reversed
            in Hz, or a frequency beyond Nyquist.
    """
    nyquist = sample_rate / 2
    if isinstance(scheme, str):
        if scheme not in NAMED_BAND_SCHEMES:
            names = sorted(NAMED_BAND_SCHEMES)
            hint = suggestion(scheme, names)
            raise ValueError(f"unknown band scheme {scheme!r}{hint} (named schemes: {', '.join(names)})")
        scheme = NAMED_BAND_SCHEMES[scheme]
    if not isinstance(scheme, dict) or len(scheme) != 1 or next(iter(scheme)) not in ("steps", "bands"):
        raise ValueError(
            "band_scheme must be a scheme name, {'steps': [[width_hz, up_to_hz], ...]} or "
            f"{{'bands': [[low_hz, high_hz], ...]}}, got {scheme!r}"
        )
    kind, rows = next(iter(scheme.items()))
    if not isinstance(rows, (list, tuple)) or not rows:
        raise ValueError(f"band_scheme {kind} must be a non-empty list of pairs, got {rows!r}")
    for index, row in enumerate(rows):
        if not isinstance(row, (list, tuple)) or len(row) != 2:
            raise ValueError(f"band_scheme {kind}[{index}] must be a pair of frequencies in Hz, got {row!r}")
    if kind == "steps":
        return _bands_from_steps(rows, nyquist)
    return _explicit_bands(rows, nyquist)


def _bands_from_steps(steps: Sequence[Sequence[float | None]], nyquist: float) -> list[tuple[float, float]]:
    bands: list[tuple[float, float]] = []
    start = 0.0
    for index, (width, up_to) in enumerate(steps):
        where = f"band_scheme steps[{index}] [{width}, {up_to}]"
        if width is None or up_to is None or width <= 0:
            raise ValueError(f"{where}: expected a positive width and an upper frequency in Hz")
        if up_to > nyquist:
            raise ValueError(f"{where}: {_hz(up_to)} is beyond Nyquist ({_hz(nyquist)})")
        if up_to <= start:
            raise ValueError(f"{where}: {_hz(up_to)} is not above the previous step's end ({_hz(start)})")
        # Edges by index rather than by repeated addition, so that a width such as 1000/3 does
        # not leave a sliver band from rounding error.
        count = math.ceil((up_to - start) / width - 1e-9)
        edges = [start + i * width for i in range(count)] + [float(up_to)]
        bands.extend(zip(edges[:-1], edges[1:]))
        start = float(up_to)
    if start < nyquist:
        bands.append((start, nyquist))
    return bands


def _explicit_bands(rows: Sequence[Sequence[float | None]], nyquist: float) -> list[tuple[float, float]]:
    bands: list[tuple[float, float]] = []
    for index, (low, high) in enumerate(rows):
        where = f"band_scheme bands[{index}] [{low}, {high}]"
        if low is None:
            raise ValueError(f"{where}: the low edge must be a frequency in Hz")
        high = nyquist if high is None else high
        if max(low, high) > nyquist:
            raise ValueError(f"{where}: {_hz(max(low, high))} is beyond Nyquist ({_hz(nyquist)})")
        if high <= low:
            raise ValueError(f"{where}: the high edge must be above the low edge")
        bands.append((float(low), float(high)))
    return bands


def hz_to_edge_bin(frequency: float, n_fft: int, sample_rate: int) -> int:
    """The first STFT bin at or above a band edge: ``floor(f * n_fft / sample_rate + 0.5)``,
    and ``n_fft // 2 + 1`` (one past the last bin) for Nyquist.

    Args:
        frequency: A band edge in Hz, at most Nyquist.
        n_fft: STFT size.
        sample_rate: Sample rate in Hz.
    """
    if frequency >= sample_rate / 2:
        return n_fft // 2 + 1
    return math.floor(frequency * n_fft / sample_rate + 0.5)


def band_bins(scheme: BandScheme, n_fft: int, sample_rate: int) -> list[tuple[int, int]]:
    """The STFT bins ``[start, end)`` of each band of a scheme; together they tile all
    ``n_fft // 2 + 1`` bins.

    Args:
        scheme: A scheme as :func:`band_edges_hz` takes it (not ``None``).
        n_fft: STFT size.
        sample_rate: Sample rate in Hz.

    Raises:
        ValueError: One line naming the band(s) with their Hz and bin values, when the rounded
            bands leave a gap, overlap, or hold no bin (``n_fft`` too small for the scheme), or
            when the scheme itself is invalid.
    """
    if n_fft < 2:
        raise ValueError(f"n_fft must be at least 2, got {n_fft}")
    bands_hz = band_edges_hz(scheme, sample_rate)
    num_bins = n_fft // 2 + 1
    bins: list[tuple[int, int]] = []
    covered = 0
    previous = "the start of the spectrum (0 Hz)"
    for index, (low, high) in enumerate(bands_hz):
        start = hz_to_edge_bin(low, n_fft, sample_rate)
        end = hz_to_edge_bin(high, n_fft, sample_rate)
        band = f"band {index} [{_hz(low)}, {_hz(high)}] (bins [{start}, {end}))"
        if start > covered:
            raise ValueError(
                f"band scheme leaves a gap: bins [{covered}, {start}) between {previous} and {band} "
                f"belong to no band at n_fft={n_fft}"
            )
        if start < covered:
            raise ValueError(
                f"band scheme overlaps: {band} starts below bin {covered}, where {previous} ends, "
                f"at n_fft={n_fft}"
            )
        if end <= start:
            raise ValueError(
                f"n_fft={n_fft} is too small for the band scheme: {band} holds no STFT bin "
                f"(bins are {sample_rate / n_fft:g} Hz apart); use a larger n_fft or wider bands"
            )
        bins.append((start, end))
        covered = end
        previous = band
    if covered < num_bins:
        raise ValueError(
            f"band scheme leaves a gap: bins [{covered}, {num_bins}) above {previous} belong to no band "
            f"(the last bin is {num_bins - 1}; Nyquist is {_hz(sample_rate / 2)}) at n_fft={n_fft}"
        )
    return bins


class SequenceNorm(nn.Module):
    """Group norm with one group over ``[batch, length, features]``: one mean and variance per
    item over the whole sequence and every feature, then a gain and bias per feature.

    Args:
        features: Size of the feature axis.
        eps: Added to the variance before the square root. (Default: ``1e-5``)
    """

    def __init__(self, features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(features))
        self.bias = nn.Parameter(torch.zeros(features))

    def forward(self, sequences: Tensor) -> Tensor:
        """Normalise ``sequences`` (``[batch, length, features]``).

        Args:
            sequences: ``[batch, length, features]``.
        """
        # A layer norm over the last two axes computes the one-group statistics in place, where
        # nn.GroupNorm would need the features first and two transposed copies.
        # Plain ints: an ONNX trace needs the normalised shape as constants (the length is fixed
        # in an exported graph; only the batch varies).
        shape = (int(sequences.shape[-2]), int(sequences.shape[-1]))
        normalized = F.layer_norm(sequences, shape, eps=self.eps)  # batch, L, N
        return normalized * self.weight + self.bias  # batch, L, N


class BandSplit(nn.Module):
    """Turn each band of a complex spectrogram into one feature vector per frame: the real and
    imaginary parts of every channel's bins, normalised over the band's frames, and a linear
    layer to ``N`` features.

    Args:
        bands: STFT bins ``[start, end)`` of each band, tiling the spectrum.
        audio_channels: Channels of the spectrogram.
        feature_size: Size ``N`` of each band's feature vector.
    """

    def __init__(self, bands: Sequence[tuple[int, int]], audio_channels: int, feature_size: int) -> None:
        super().__init__()
        self.bands = [tuple(band) for band in bands]
        self.projections = nn.ModuleList(
            nn.Sequential(
                SequenceNorm(2 * audio_channels * (end - start)),
                nn.Linear(2 * audio_channels * (end - start), feature_size),
            )
            for start, end in self.bands
        )

    def forward(self, spectrum: Tensor) -> Tensor:
        """Features ``[B, K, T', N]`` of a spectrogram ``[B, C, F, T', 2]`` (real and imaginary
        parts last).

        Args:
            spectrum: The mixture's STFT, ``[batch, channels, bins, frames, 2]``.
        """
        batch, _, _, frames, _ = spectrum.shape
        parts = spectrum.permute(0, 3, 1, 2, 4)  # B, T', C, F, 2
        features = [
            projection(parts[:, :, :, start:end].reshape(batch, frames, -1))  # B, T', N
            for (start, end), projection in zip(self.bands, self.projections)
        ]
        return torch.stack(features, dim=1)  # B, K, T', N


class ResidualBLSTM(nn.Module):
    """A :class:`SequenceNorm`, a bidirectional LSTM along the sequence, and a linear layer back
    to the input size, added to the input.

    Args:
        feature_size: Size of the input and output vectors.
        hidden_size: Hidden units of each LSTM direction.
    """

    def __init__(self, feature_size: int, hidden_size: int) -> None:
        super().__init__()
        self.norm = SequenceNorm(feature_size)
        self.lstm = nn.LSTM(feature_size, hidden_size, batch_first=True, bidirectional=True)
        self.projection = nn.Linear(2 * hidden_size, feature_size)

    def forward(self, sequences: Tensor) -> Tensor:
        """Model ``sequences`` (``[batch, length, features]``) along ``length``.

        Args:
            sequences: ``[batch, length, features]``.
        """
        hidden, _ = self.lstm(self.norm(sequences))  # batch, L, 2H
        return sequences + self.projection(hidden)  # batch, L, N


class BandSequenceBlock(nn.Module):
    """One band-and-sequence module: a residual BLSTM along time within each band (shared by all
    bands), then a residual BLSTM across the bands within each frame.

    Args:
        feature_size: Size ``N`` of each band's feature vector.
        hidden_size: Hidden units of each LSTM direction.
    """

    def __init__(self, feature_size: int, hidden_size: int) -> None:
        super().__init__()
        self.sequence_rnn = ResidualBLSTM(feature_size, hidden_size)
        self.band_rnn = ResidualBLSTM(feature_size, hidden_size)

    def forward(self, features: Tensor) -> Tensor:
        """Apply the module to ``features`` (``[B, K, T', N]``).

        Args:
            features: Band features, ``[batch, bands, frames, N]``.
        """
        batch, bands, frames, size = features.shape
        along_time = self.sequence_rnn(features.reshape(batch * bands, frames, size))  # B*K, T', N
        by_frame = along_time.view(batch, bands, frames, size).transpose(1, 2)  # B, T', K, N
        across_bands = self.band_rnn(by_frame.reshape(batch * frames, bands, size))  # B*T', K, N
        return across_bands.view(batch, frames, bands, size).transpose(1, 2)  # B, K, T', N


class MaskEstimator(nn.Module):
    """One source's complex mask: for each band, a :class:`SequenceNorm` over the frames, an MLP
    with one tanh hidden layer, and a GLU output layer giving the real and imaginary mask of every
    channel's bins.

    Args:
        bands: STFT bins ``[start, end)`` of each band.
        audio_channels: Channels to mask.
        feature_size: Size ``N`` of each band's feature vector.
        hidden_size: Hidden units of the MLPs.
    """

    def __init__(
        self, bands: Sequence[tuple[int, int]], audio_channels: int, feature_size: int, hidden_size: int
    ) -> None:
        super().__init__()
        self.bands = [tuple(band) for band in bands]
        self.audio_channels = audio_channels
        self.band_mlps = nn.ModuleList(
            nn.Sequential(
                SequenceNorm(feature_size),
                nn.Linear(feature_size, hidden_size),
                nn.Tanh(),
                # The GLU halves its input: values and gates for 2 * channels * bins numbers.
                nn.Linear(hidden_size, 2 * 2 * audio_channels * (end - start)),
                nn.GLU(dim=-1),
            )
            for start, end in self.bands
        )

    def forward(self, features: Tensor) -> Tensor:
        """The complex mask ``[B, C, F, T', 2]`` (real and imaginary parts last) from band
        features ``[B, K, T', N]``.

        Args:
            features: Output of the band-and-sequence modules, ``[batch, bands, frames, N]``.
        """
        batch, _, frames, _ = features.shape
        masks = [
            mlp(features[:, index]).view(batch, frames, self.audio_channels, end - start, 2)  # B, T', C, G, 2
            for index, ((start, end), mlp) in enumerate(zip(self.bands, self.band_mlps))
        ]
        return torch.cat(masks, dim=3).permute(0, 2, 3, 1, 4)  # B, C, F, T', 2


@register_model("bsrnn")
class BandSplitRNN(Separator):
    """Band-split RNN (Luo & Yu 2022): complex masks estimated band by band, with the bands'
    widths chosen for the target.

    The STFT is centred with zero padding and the inverse STFT is cut to the input length, so
    any length works, down to one sample.

    Args:
        sources: Names of the output stems. One name builds the paper's model, which extracts
            one target; several share the band split and BLSTMs, with one mask estimator each.
            (Default: ``["vocals"]``, the paper's vocals model)
        band_scheme: A scheme name (``"vocals"``, ``"bass"``, ``"drums"``, ``"other"``),
            ``{"steps": [[width_hz, up_to_hz], ...]}`` or ``{"bands": [[low_hz, high_hz], ...]}``;
            ``None`` takes the target's own scheme for a single named target and the vocals
            scheme otherwise. (Default: ``None``)
        n_fft: STFT size; the window is a Hann window of this length. (Default: ``2048``)
        hop_length: STFT hop, at most ``n_fft // 2``. (Default: ``512``)
        feature_size: Size ``N`` of each band's feature vector. (Default: ``128``)
        num_blocks: Band-and-sequence modules, each with two residual BLSTMs. (Default: ``12``)
        lstm_hidden_size: Hidden units of each LSTM direction. (Default: ``256``)
        mask_hidden_size: Hidden units of the mask MLPs. (Default: ``512``)
        sample_rate: Sample rate in Hz. (Default: ``44100``)
        audio_channels: Input and output audio channels. (Default: ``2``)
        segment: Preferred chunk length in seconds; the paper trains and separates 3-second
            chunks. (Default: ``3.0``)
    """

    domain = "spectrogram"
    test_kwargs = {
        "band_scheme": {"steps": [[2000, 8000]]},  # 5 bands at n_fft 64: bins 0-3-6-9-12-33
        "n_fft": 64,
        "hop_length": 16,
        "feature_size": 8,
        "num_blocks": 1,
        "lstm_hidden_size": 6,
        "mask_hidden_size": 12,
    }

    def __init__(
        self,
        sources: Sequence[str] = ("vocals",),
        band_scheme: BandScheme = None,
        n_fft: int = 2048,
        hop_length: int = 512,
        feature_size: int = 128,
        num_blocks: int = 12,
        lstm_hidden_size: int = 256,
        mask_hidden_size: int = 512,
        sample_rate: int = 44100,
        audio_channels: int = 2,
        segment: float | None = 3.0,
    ) -> None:
        super().__init__(
            sources=list(sources), sample_rate=sample_rate, audio_channels=audio_channels, segment=segment
        )
        for name, value in [
            ("feature_size", feature_size),
            ("num_blocks", num_blocks),
            ("lstm_hidden_size", lstm_hidden_size),
            ("mask_hidden_size", mask_hidden_size),
        ]:
            if value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        if not 1 <= hop_length <= n_fft // 2:
            # The inverse STFT divides by the summed squared windows, which nearly vanishes
            # between frames that overlap by less than half.
            raise ValueError(f"hop_length must be in [1, n_fft // 2 = {n_fft // 2}], got {hop_length}")
        self.band_scheme = default_band_scheme(self.sources) if band_scheme is None else band_scheme
        self.bands = band_bins(self.band_scheme, n_fft, sample_rate)
        self.n_fft = n_fft
        self.hop_length = hop_length
        # The float32 window in every precision: a model run in float64 computes the function
        # it was trained with in float32.
        self.stft = STFT(n_fft, hop_length, float32_window=True)
        self.band_split = BandSplit(self.bands, audio_channels, feature_size)
        self.band_sequence = nn.Sequential(
            *[BandSequenceBlock(feature_size, lstm_hidden_size) for _ in range(num_blocks)]
        )
        self.mask_estimators = nn.ModuleList(
            MaskEstimator(self.bands, audio_channels, feature_size, mask_hidden_size) for _ in self.sources
        )

    def forward(self, mix: Tensor, references: Tensor | None = None) -> Tensor:
        self.check_input(mix, references)
        spectrum = self.stft(mix)  # B, C, F, T'
        masks = self.masks(torch.view_as_real(spectrum))  # B, S, C, F, T', 2
        # A half-precision mask (mixed precision) is widened first, so that the masking and the
        # inverse STFT run in complex64, not complex32.
        masks = torch.view_as_complex(widen(masks).contiguous())  # B, S, C, F, T'
        stems = masks * spectrum.unsqueeze(1)  # B, S, C, F, T'
        return self.stft.inverse(stems, mix.shape[-1])  # B, S, C, T

    def masks(self, spectrum: Tensor) -> Tensor:
        """Every source's complex mask ``[B, S, C, F, T', 2]`` of the mixture's spectrogram
        ``[B, C, F, T', 2]`` (real and imaginary parts last): the network, without the STFTs and
        the complex product, which is what an ONNX export traces.

        Args:
            spectrum: The mixture's STFT as real and imaginary parts.
        """
        features = self.band_split(spectrum)  # B, K, T', N
        features = self.band_sequence(features)  # B, K, T', N
        return torch.stack([estimator(features) for estimator in self.mask_estimators], dim=1)

    def onnx_export(self, length: int) -> OnnxExport:
        """The export plan: the STFT and the complex masking stay outside the graph, which maps
        the mixture's spectrum ``[B, C, F, N, 2]`` to the masks ``[B, S, C, F, N, 2]``
        (adapter ``"spectral_mask"``).

        Args:
            length: Samples per exported chunk.
        """
        return spectral_export(
            self,
            "masks",
            masks=True,
            length=length,
            padded_length=length,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.n_fft,
            window="hann",
            normalized=False,
            pad_mode="constant",
        )
