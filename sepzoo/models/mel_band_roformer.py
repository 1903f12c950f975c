"""Mel-band RoPE transformer (Mel-RoFormer): BS-RoFormer's axial transformers over overlapping
bands laid out on the mel scale instead of hand-chosen contiguous ones.

Wang, Lu & Won, "Mel-Band RoFormer for Music Source Separation" (2023, arXiv:2310.01809).

Bands. Band ``k`` holds the STFT bins where the ``k``-th triangular filter of a Slaney-style
mel filterbank (``librosa.filters.mel(sr=sample_rate, n_fft=stft_n_fft, n_mels=num_bands)``:
fmin 0, fmax Nyquist, Slaney mel scale and area normalisation) is positive, with bin 0 added to
the first band and the last bin to the last band (the two edge filters are zero there). Neighbouring
bands share bins; a bin's mask is the mean of the values its bands predict for it.
:func:`mel_bands` computes the filterbank with numpy, step for step as librosa 0.11 does (in
float64, stored in float32), so that the bands are exactly those of the reference
implementation without librosa at run time.

Numerics and checkpoints follow the ``MelBandRoformer`` class of Music-Source-Separation-Training
(MSST) as ``audio-separator`` ships it, so that a converted MSST checkpoint
(:mod:`sepzoo.convert.msst_roformer`) computes what it computed there: as in
:mod:`sepzoo.models.bs_roformer`, plus an RMS norm at the end of every transformer and no norm
after the last block, and mask MLPs of ``mask_estimator_depth + 1`` linear layers whose hidden
width is always ``4 * dim``: the reference stores ``mlp_expansion_factor`` but never passes it to
its mask estimators, so it is not an argument here. The converter also accepts and leaves out
``flash_attn``, ``sage_attention``, ``use_torch_checkpoint``, ``dim_freqs_in``,
``match_input_audio_length`` (sepzoo always returns the input's length), ``zero_dc``,
``skip_connection`` and the ``multi_stft_*`` loss settings.

Any length works: the mixture is zero-padded to whole hops and the output cut back to the input
length.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sepzoo.models import register_model
from sepzoo.models._roformer_layers import BandRoformer, check_positive

MSST_CHUNK_SIZE = 131584
"""Samples per training chunk of MSST's MUSDB18 configuration (about 2.98 s at 44.1 kHz)."""

_SLANEY_LINEAR_STEP = 200.0 / 3  # Hz per mel below 1 kHz
_SLANEY_LOG_START_HZ = 1000.0
_SLANEY_LOG_START_MEL = _SLANEY_LOG_START_HZ / _SLANEY_LINEAR_STEP
_SLANEY_LOG_STEP = np.log(6.4) / 27.0


def _hz_to_slaney_mel(hz: float) -> float:
    if hz >= _SLANEY_LOG_START_HZ:
        return _SLANEY_LOG_START_MEL + np.log(hz / _SLANEY_LOG_START_HZ) / _SLANEY_LOG_STEP
    return hz / _SLANEY_LINEAR_STEP


def _slaney_mel_to_hz(mels: np.ndarray) -> np.ndarray:
    hz = _SLANEY_LINEAR_STEP * mels
    log_part = mels >= _SLANEY_LOG_START_MEL
    hz[log_part] = _SLANEY_LOG_START_HZ * np.exp(_SLANEY_LOG_STEP * (mels[log_part] - _SLANEY_LOG_START_MEL))
    return hz


def slaney_mel_filterbank(sample_rate: int, n_fft: int, num_bands: int) -> np.ndarray:
    """The Slaney-style mel filterbank ``[num_bands, n_fft // 2 + 1]`` (float32) from 0 Hz to
    Nyquist with area normalisation: ``librosa.filters.mel(sr=sample_rate, n_fft=n_fft,
    n_mels=num_bands)``, computed in the same order of operations.

    Args:
        sample_rate: Sample rate in Hz.
        n_fft: FFT size.
        num_bands: Mel filters.
    """
    bin_hz = np.fft.rfftfreq(n=n_fft, d=1.0 / sample_rate)
    edge_mels = np.linspace(_hz_to_slaney_mel(0.0), _hz_to_slaney_mel(float(sample_rate) / 2), num_bands + 2)
    edges_hz = _slaney_mel_to_hz(edge_mels)
    widths = np.diff(edges_hz)
    offsets = np.subtract.outer(edges_hz, bin_hz)
    weights = np.zeros((num_bands, bin_hz.shape[0]), dtype=np.float32)
    for band in range(num_bands):
        rising = -offsets[band] / widths[band]
        falling = offsets[band + 2] / widths[band + 1]
        weights[band] = np.maximum(0, np.minimum(rising, falling))
    weights *= (2.0 / (edges_hz[2 : num_bands + 2] - edges_hz[:num_bands]))[:, np.newaxis]
    return weights


def mel_bands(sample_rate: int, n_fft: int, num_bands: int) -> list[list[int]]:
    """The bins of each mel band: where its filter of :func:`slaney_mel_filterbank` is positive,
    with bin 0 in the first band and the last bin in the last band.

    Args:
        sample_rate: Sample rate in Hz.
        n_fft: FFT size.
        num_bands: Mel bands.

    Raises:
        ValueError: Naming ``num_bands`` when a band holds no bin (too many bands for
            ``n_fft``) or a bin lies in no band.
    """
    check_positive(num_bands=num_bands, stft_n_fft=n_fft)
    weights = slaney_mel_filterbank(sample_rate, n_fft, num_bands)
    weights[0, 0] = 1.0
    weights[-1, -1] = 1.0
    in_band = weights > 0
    empty = np.flatnonzero(~in_band.any(axis=1))
    if empty.size:
        raise ValueError(
            f"num_bands={num_bands} is too many for stft_n_fft={n_fft} at {sample_rate} Hz: "
            f"mel band {int(empty[0])} holds no STFT bin ({empty.size} empty bands); use fewer bands "
            "or a larger stft_n_fft"
        )
    uncovered = np.flatnonzero(~in_band.any(axis=0))
    if uncovered.size:
        raise ValueError(
            f"num_bands={num_bands} leaves STFT bin {int(uncovered[0])} in no mel band at "
            f"stft_n_fft={n_fft} and {sample_rate} Hz"
        )
    return [np.flatnonzero(row).tolist() for row in in_band]


@register_model("mel_band_roformer")
class MelBandRoformer(BandRoformer):
    """Mel-RoFormer (Wang et al. 2023): axial RoPE transformers over overlapping mel bands.

    The defaults are MSST's MUSDB18 configuration
    (``configs/config_musdb18_mel_band_roformer.yaml``: ``dim`` 192, 8 blocks of one time and one
    frequency layer, 60 mel bands, a 2048-point STFT with hop 512, one target) with its training
    chunk of 131584 samples as ``segment``.

    Args:
        sources: Names of the output stems; one mask estimator each. (Default: ``["vocals"]``)
        dim: Width of the band features and transformers. (Default: ``192``)
        depth: Axial blocks, each a time and a frequency transformer. (Default: ``8``)
        time_transformer_depth: Layers of each time transformer. (Default: ``1``)
        freq_transformer_depth: Layers of each frequency transformer. (Default: ``1``)
        num_bands: Mel bands; they depend on ``sample_rate`` and ``stft_n_fft``. (Default: ``60``)
        dim_head: Features per attention head. (Default: ``64``)
        heads: Attention heads. (Default: ``8``)
        attn_dropout: Dropout of the attention blocks. (Default: ``0.1``)
        ff_dropout: Dropout of the feed-forward blocks. (Default: ``0.1``)
        mask_estimator_depth: Hidden layers of each band's mask MLP, of width ``4 * dim``; 0 is a
            single linear layer. (Default: ``2``)
        stft_n_fft: FFT size. (Default: ``2048``)
        stft_hop_length: Samples between frames, at most ``stft_win_length // 2``.
            (Default: ``512``)
        stft_win_length: Length of the periodic Hann window, at most ``stft_n_fft``.
            (Default: ``2048``)
        stft_normalized: Use ``torch.stft``'s normalised transform. (Default: ``False``)
        sample_rate: Sample rate in Hz; it also places the mel bands. (Default: ``44100``)
        audio_channels: Input and output channels; the reference's ``stereo``. (Default: ``2``)
        segment: Preferred chunk length in seconds. (Default: ``131584 / 44100``, MSST's
            ``chunk_size``)
    """

    test_kwargs = {
        "sources": ["vocals", "drums"],
        "dim": 8,
        "depth": 1,
        "num_bands": 6,
        "dim_head": 4,
        "heads": 2,
        "mask_estimator_depth": 1,
        "stft_n_fft": 64,
        "stft_hop_length": 16,
        "stft_win_length": 64,
    }

    def __init__(
        self,
        sources: Sequence[str] = ("vocals",),
        dim: int = 192,
        depth: int = 8,
        time_transformer_depth: int = 1,
        freq_transformer_depth: int = 1,
        num_bands: int = 60,
        dim_head: int = 64,
        heads: int = 8,
        attn_dropout: float = 0.1,
        ff_dropout: float = 0.1,
        mask_estimator_depth: int = 2,
        stft_n_fft: int = 2048,
        stft_hop_length: int = 512,
        stft_win_length: int = 2048,
        stft_normalized: bool = False,
        sample_rate: int = 44100,
        audio_channels: int = 2,
        segment: float | None = MSST_CHUNK_SIZE / 44100,
    ) -> None:
        super().__init__(
            sources=list(sources), sample_rate=sample_rate, audio_channels=audio_channels, segment=segment
        )
        if (
            isinstance(mask_estimator_depth, bool)
            or not isinstance(mask_estimator_depth, int)
            or mask_estimator_depth < 0
        ):
            raise ValueError(
                f"mask_estimator_depth must be a non-negative integer, got {mask_estimator_depth!r}"
            )
        self.build(
            bands=mel_bands(sample_rate, stft_n_fft, num_bands),
            dim=dim,
            depth=depth,
            time_transformer_depth=time_transformer_depth,
            freq_transformer_depth=freq_transformer_depth,
            dim_head=dim_head,
            heads=heads,
            attn_dropout=attn_dropout,
            ff_dropout=ff_dropout,
            transformer_output_norm=True,
            final_norm=False,
            mask_hidden=4 * dim,
            mask_linear_layers=mask_estimator_depth + 1,
            stft_n_fft=stft_n_fft,
            stft_hop_length=stft_hop_length,
            stft_win_length=stft_win_length,
            stft_normalized=stft_normalized,
        )


__all__ = ["MelBandRoformer", "mel_bands", "slaney_mel_filterbank"]
