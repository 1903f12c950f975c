"""Band-split RoPE transformer (BS-RoFormer): the complex spectrogram is cut into contiguous
bands of bins, each band becomes one feature vector per frame, and blocks of two transformers
with rotary position embeddings alternate between attending along time within each band and
across the bands within each frame; one MLP per band then predicts a complex mask of that
band's bins for each source.

Lu, Wang, Kong & Hung, "Music Source Separation with Band-Split RoPE Transformer" (2023,
arXiv:2309.02612). The paper's 62 bands of an STFT of 2048 bins are the default
``freqs_per_bands``: 24 bands of 2 bins, 12 of 4, 8 of 12, 8 of 24, 8 of 48, then 128 and 129
bins.

Numerics and checkpoints. Where the paper and the implementation that published checkpoints
were trained with differ, this module follows the implementation (the ``BSRoformer`` class of
Music-Source-Separation-Training, MSST, as ``audio-separator`` ships it), so that a converted
MSST checkpoint (:mod:`sepzoo.convert.msst_roformer`) computes what it computed there. That
means: a sigmoid gate per head on the attention output, GLU output layers in the mask MLPs
(``mask_estimator_depth`` linear layers, tanh between them, hidden width
``dim * mlp_expansion_factor``), RMS norms, no norm after each transformer but one after the
last block, the STFT of ``torch.stft`` (centred frames, reflect padding, periodic Hann window of
``stft_win_length``), and the channels of a bin side by side in a band's features.

MSST configuration keys that do not change what the reference computes are not arguments here
(the converter accepts them and leaves them out): ``flash_attn`` (attention always runs through
``scaled_dot_product_attention``), ``zero_dc`` and ``skip_connection`` (stored by the reference
but never used in its forward pass), ``sage_attention``, ``use_torch_checkpoint``,
``dim_freqs_in`` and the ``multi_stft_*`` settings of the reference's training loss (sepzoo's
recipe chooses the loss). ``linear_transformer_depth`` other than 0 (an extra linear-attention
transformer in each block) is not supported and refused by the converter. ``stereo`` and
``num_stems`` are ``audio_channels`` and the number of ``sources`` here.

Any length works: the mixture is zero-padded to whole hops and the output cut back to the
input length. The reference returns only whole hops of output; on inputs of whole hops the two
agree.
"""

from __future__ import annotations

from collections.abc import Sequence

from sepzoo.models import register_model
from sepzoo.models._roformer_layers import BandRoformer, check_positive

PAPER_FREQS_PER_BANDS: tuple[int, ...] = (
    (2,) * 24 + (4,) * 12 + (12,) * 8 + (24,) * 8 + (48,) * 8 + (128, 129)
)
"""The paper's 62 bands of the 1025 bins of a 2048-point STFT, in bins per band."""

MSST_CHUNK_SIZE = 131584
"""Samples per training chunk of MSST's MUSDB18 configuration (about 2.98 s at 44.1 kHz)."""


def contiguous_bands(freqs_per_bands: Sequence[int], n_fft: int) -> list[list[int]]:
    """The bins of each band, for bands of ``freqs_per_bands`` consecutive bins from bin 0.

    Args:
        freqs_per_bands: Bins in each band; they must sum to ``n_fft // 2 + 1``.
        n_fft: FFT size.

    Raises:
        ValueError: Naming ``freqs_per_bands`` when a width is not positive, there are fewer
            than two bands, or the widths do not sum to the number of bins.
    """
    widths = list(freqs_per_bands)
    num_bins = n_fft // 2 + 1
    if any(isinstance(width, bool) or not isinstance(width, int) or width < 1 for width in widths):
        raise ValueError(f"freqs_per_bands must hold positive integers, got {widths}")
    if len(widths) < 2:
        raise ValueError(f"freqs_per_bands needs at least two bands, got {widths}")
    if sum(widths) != num_bins:
        raise ValueError(
            f"freqs_per_bands must sum to the {num_bins} bins of stft_n_fft={n_fft} "
            f"(n_fft // 2 + 1), got {sum(widths)} over {len(widths)} bands"
        )
    bands = []
    start = 0
    for width in widths:
        bands.append(list(range(start, start + width)))
        start += width
    return bands


@register_model("bs_roformer")
class BSRoformer(BandRoformer):
    """BS-RoFormer (Lu et al. 2023): axial RoPE transformers over contiguous frequency bands.

    The defaults are MSST's MUSDB18 configuration (``configs/config_musdb18_bs_roformer.yaml``:
    ``dim`` 192, 6 blocks of one time and one frequency layer, the paper's 62 bands, a
    2048-point STFT with hop 512, one target) with its training chunk of 131584 samples as
    ``segment``.

    Args:
        sources: Names of the output stems; one mask estimator each. (Default: ``["vocals"]``)
        dim: Width of the band features and transformers. (Default: ``192``)
        depth: Axial blocks, each a time and a frequency transformer. (Default: ``6``)
        time_transformer_depth: Layers of each time transformer. (Default: ``1``)
        freq_transformer_depth: Layers of each frequency transformer. (Default: ``1``)
        freqs_per_bands: Bins in each band, from bin 0 up; they must sum to
            ``stft_n_fft // 2 + 1``. (Default: the paper's 62 bands of 1025 bins)
        dim_head: Features per attention head. (Default: ``64``)
        heads: Attention heads. (Default: ``8``)
        attn_dropout: Dropout of the attention blocks. (Default: ``0.1``)
        ff_dropout: Dropout of the feed-forward blocks. (Default: ``0.1``)
        mask_estimator_depth: Linear layers of each band's mask MLP. (Default: ``2``)
        mlp_expansion_factor: Hidden width of the mask MLPs relative to ``dim``. (Default: ``4``)
        stft_n_fft: FFT size. (Default: ``2048``)
        stft_hop_length: Samples between frames, at most ``stft_win_length // 2``.
            (Default: ``512``)
        stft_win_length: Length of the periodic Hann window, at most ``stft_n_fft``.
            (Default: ``2048``)
        stft_normalized: Use ``torch.stft``'s normalised transform. (Default: ``False``)
        sample_rate: Sample rate in Hz. (Default: ``44100``)
        audio_channels: Input and output channels; the reference's ``stereo``. (Default: ``2``)
        segment: Preferred chunk length in seconds. (Default: ``131584 / 44100``, MSST's
            ``chunk_size``)
    """

    test_kwargs = {
        "sources": ["vocals", "drums"],
        "dim": 8,
        "depth": 1,
        "freqs_per_bands": [3, 4, 10],
        "dim_head": 4,
        "heads": 2,
        "mask_estimator_depth": 2,
        "mlp_expansion_factor": 1,
        "stft_n_fft": 32,
        "stft_hop_length": 8,
        "stft_win_length": 32,
    }

    def __init__(
        self,
        sources: Sequence[str] = ("vocals",),
        dim: int = 192,
        depth: int = 6,
        time_transformer_depth: int = 1,
        freq_transformer_depth: int = 1,
        freqs_per_bands: Sequence[int] = PAPER_FREQS_PER_BANDS,
        dim_head: int = 64,
        heads: int = 8,
        attn_dropout: float = 0.1,
        ff_dropout: float = 0.1,
        mask_estimator_depth: int = 2,
        mlp_expansion_factor: int = 4,
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
        check_positive(
            stft_n_fft=stft_n_fft,
            mask_estimator_depth=mask_estimator_depth,
            mlp_expansion_factor=mlp_expansion_factor,
        )
        self.build(
            bands=contiguous_bands(freqs_per_bands, stft_n_fft),
            dim=dim,
            depth=depth,
            time_transformer_depth=time_transformer_depth,
            freq_transformer_depth=freq_transformer_depth,
            dim_head=dim_head,
            heads=heads,
            attn_dropout=attn_dropout,
            ff_dropout=ff_dropout,
            transformer_output_norm=False,
            final_norm=True,
            mask_hidden=dim * mlp_expansion_factor,
            mask_linear_layers=mask_estimator_depth,
            stft_n_fft=stft_n_fft,
            stft_hop_length=stft_hop_length,
            stft_win_length=stft_win_length,
            stft_normalized=stft_normalized,
        )


__all__ = ["PAPER_FREQS_PER_BANDS", "BSRoformer", "contiguous_bands"]
