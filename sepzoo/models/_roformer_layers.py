"""Layers shared by the band-split RoPE transformers (:mod:`sepzoo.models.bs_roformer` and
:mod:`sepzoo.models.mel_band_roformer`), and the separator both are built on.

Both models cut a complex spectrogram into bands of bins, project each band to a feature vector
per frame, alternate transformers along time (within each band) and across the bands (within
each frame), and predict a complex mask for every band's bins with one MLP per band. They
differ only in the bands (contiguous and disjoint for BS-RoFormer, overlapping mel bands for
Mel-RoFormer), where the transformers normalise their output, and the depth of the mask MLPs.

The numerics follow the MSST-format classes that published checkpoints were trained with
(``BSRoformer`` and ``MelBandRoformer`` of ``audio-separator`` 0.47, based on lucidrains'
``BS-RoFormer``), so that a converted checkpoint computes what it computed there:

* RMS norm as ``x / max(||x||, 1e-12) * sqrt(dim) * gain``;
* rotary position embeddings over the whole head (angles in float32 at every precision, the
  pairs ``(x[2i], x[2i+1])`` rotated together), one table for the time transformers and one
  for the frequency transformers, shared by every layer;
* a sigmoid gate per head and position on the attention output, computed from the normalised
  input;
* feed-forward blocks of width ``4 * dim`` with GELU;
* the STFT of ``torch.stft``'s defaults: centred frames with reflect padding, a periodic Hann
  window of ``win_length`` samples; the channels of a bin are neighbours in a band's features
  (bin-major, then channel, then real and imaginary part).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sepzoo.dsp.precision import full_precision
from sepzoo.dsp.stft import hann_window, istft, stft
from sepzoo.models._spectral_export import spectral_export
from sepzoo.models.base import Separator
from sepzoo.models.onnx_core import OnnxExport


class RMSNorm(nn.Module):
    """Scale each vector to unit L2 norm, then by ``sqrt(dim)`` and a learned gain per feature.

    Args:
        dim: Size of the last axis.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = dim**0.5
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        """Normalise the last axis of ``x``.

        Args:
            x: Any shape, features last.
        """
        if x.dtype in (torch.float16, torch.bfloat16):
            normalized = F.normalize(x.float(), dim=-1).to(x.dtype)
        else:
            normalized = F.normalize(x, dim=-1)
        return normalized * self.scale * self.weight


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (Su et al., RoFormer) of attention heads of ``dim_head``
    features: position ``n`` turns the pair ``(x[2i], x[2i + 1])`` by ``n * theta^(-2i / dim_head)``.

    The frequencies are a buffer in the model's state (published checkpoints carry them); the
    angles are computed in float32 whatever the model's precision, and an odd last feature is
    left as it is.

    Args:
        dim_head: Features of one head.
        theta: Base of the frequencies. (Default: ``10000``)
    """

    def __init__(self, dim_head: int, theta: float = 10000.0) -> None:
        super().__init__()
        exponents = torch.arange(0, dim_head, 2)[: dim_head // 2].float() / dim_head
        self.register_buffer("freqs", 1.0 / (theta**exponents))

    def forward(self, x: Tensor) -> Tensor:
        """Rotate queries or keys ``x`` (``[..., positions, dim_head]``) by their positions.

        Args:
            x: Queries or keys, positions on the second-to-last axis.
        """
        positions = torch.arange(x.shape[-2], device=x.device, dtype=torch.float32)
        angles = positions[:, None] * self.freqs.to(device=x.device, dtype=torch.float32)  # N, R/2
        # Each angle twice, as repeat_interleave would; its ONNX symbolic rewrites the shared
        # constant -1 in place, which moved later GLUs' splits to another axis.
        angles = torch.stack((angles, angles), dim=-1).flatten(-2)  # N, R
        rotated_dims = angles.shape[-1]
        pairs, rest = x[..., :rotated_dims], x[..., rotated_dims:]
        even, odd = pairs.unflatten(-1, (-1, 2)).unbind(-1)
        quarter_turn = torch.stack((-odd, even), dim=-1).flatten(-2)  # ..., N, R
        turned = pairs * angles.cos() + quarter_turn * angles.sin()
        if rest.shape[-1] == 0:  # an even head: nothing to append (an ONNX trace refuses empty concats)
            return turned.to(x.dtype)
        return torch.cat((turned, rest), dim=-1).to(x.dtype)


class Attention(nn.Module):
    """Pre-norm multi-head self-attention with rotary positions and a sigmoid gate per head.

    Args:
        dim: Model width.
        heads: Attention heads.
        dim_head: Features per head.
        dropout: Dropout on the attention weights and on the output. (Default: ``0.0``)
    """

    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        inner = heads * dim_head
        self.norm = RMSNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.to_gates = nn.Linear(dim, heads)
        self.to_out = nn.Linear(inner, dim, bias=False)
        self.out_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, rotary: RotaryEmbedding) -> Tensor:
        """The attention update of ``x`` (``[batch, length, dim]``), without the residual.

        Args:
            x: Sequences, ``[batch, length, dim]``.
            rotary: The rotary embedding of this axis.
        """
        x = self.norm(x)
        batch, length, _ = x.shape
        qkv = self.to_qkv(x).view(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)  # 3, B, H, L, E
        query, key, value = rotary(qkv[0]), rotary(qkv[1]), qkv[2]
        dropout = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(query, key, value, dropout_p=dropout)  # B, H, L, E
        gates = self.to_gates(x).transpose(1, 2).unsqueeze(-1).sigmoid()  # B, H, L, 1
        out = (out * gates).transpose(1, 2).reshape(batch, length, -1)  # B, L, H*E
        return self.out_dropout(self.to_out(out))


class FeedForward(nn.Module):
    """Pre-norm feed-forward block: RMS norm, a GELU layer ``mult`` times wider, and back.

    Args:
        dim: Model width.
        mult: Width of the hidden layer relative to ``dim``. (Default: ``4``)
        dropout: Dropout after each layer. (Default: ``0.0``)
    """

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = RMSNorm(dim)
        self.hidden = nn.Linear(dim, dim * mult)
        self.output = nn.Linear(dim * mult, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """The feed-forward update of ``x`` (``[..., dim]``), without the residual.

        Args:
            x: Features last.
        """
        hidden = self.dropout(F.gelu(self.hidden(self.norm(x))))
        return self.dropout(self.output(hidden))


class TransformerLayer(nn.Module):
    """One residual attention block and one residual feed-forward block.

    Args:
        dim: Model width.
        heads: Attention heads.
        dim_head: Features per head.
        attn_dropout: Dropout of the attention block.
        ff_dropout: Dropout of the feed-forward block.
    """

    def __init__(self, dim: int, heads: int, dim_head: int, attn_dropout: float, ff_dropout: float) -> None:
        super().__init__()
        self.attention = Attention(dim, heads, dim_head, attn_dropout)
        self.feed_forward = FeedForward(dim, dropout=ff_dropout)

    def forward(self, x: Tensor, rotary: RotaryEmbedding) -> Tensor:
        """Apply the layer to ``x`` (``[batch, length, dim]``).

        Args:
            x: Sequences, ``[batch, length, dim]``.
            rotary: The rotary embedding of this axis.
        """
        x = x + self.attention(x, rotary)
        return x + self.feed_forward(x)


class Transformer(nn.Module):
    """A stack of :class:`TransformerLayer`, with an optional RMS norm of its output.

    Args:
        dim: Model width.
        depth: Layers.
        heads: Attention heads.
        dim_head: Features per head.
        attn_dropout: Dropout of the attention blocks.
        ff_dropout: Dropout of the feed-forward blocks.
        output_norm: Normalise the output (Mel-RoFormer) or not (BS-RoFormer, which normalises
            once after the last block).
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        heads: int,
        dim_head: int,
        attn_dropout: float,
        ff_dropout: float,
        output_norm: bool,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerLayer(dim, heads, dim_head, attn_dropout, ff_dropout) for _ in range(depth)
        )
        self.norm: nn.Module = RMSNorm(dim) if output_norm else nn.Identity()

    def forward(self, x: Tensor, rotary: RotaryEmbedding) -> Tensor:
        """Apply the stack to ``x`` (``[batch, length, dim]``).

        Args:
            x: Sequences, ``[batch, length, dim]``.
            rotary: The rotary embedding of this axis.
        """
        for layer in self.layers:
            x = layer(x, rotary)
        return self.norm(x)


class AxialBlock(nn.Module):
    """A transformer along time within each band, then one across the bands within each frame.

    Args:
        dim: Model width.
        time_depth: Layers of the time transformer.
        freq_depth: Layers of the frequency transformer.
        heads: Attention heads.
        dim_head: Features per head.
        attn_dropout: Dropout of the attention blocks.
        ff_dropout: Dropout of the feed-forward blocks.
        output_norm: Each transformer normalises its output.
    """

    def __init__(
        self,
        dim: int,
        time_depth: int,
        freq_depth: int,
        heads: int,
        dim_head: int,
        attn_dropout: float,
        ff_dropout: float,
        output_norm: bool,
    ) -> None:
        super().__init__()
        shared = (heads, dim_head, attn_dropout, ff_dropout, output_norm)
        self.time_transformer = Transformer(dim, time_depth, *shared)
        self.freq_transformer = Transformer(dim, freq_depth, *shared)

    def forward(self, x: Tensor, time_rotary: RotaryEmbedding, freq_rotary: RotaryEmbedding) -> Tensor:
        """Apply the block to band features ``x`` (``[B, T', K, D]``).

        Args:
            x: Band features, ``[batch, frames, bands, dim]``.
            time_rotary: Rotary embedding of frame positions.
            freq_rotary: Rotary embedding of band positions.
        """
        batch, frames, bands, dim = x.shape
        along_time = x.transpose(1, 2).reshape(batch * bands, frames, dim)  # B*K, T', D
        along_time = self.time_transformer(along_time, time_rotary)  # B*K, T', D
        across_bands = along_time.view(batch, bands, frames, dim).transpose(1, 2)  # B, T', K, D
        across_bands = across_bands.reshape(batch * frames, bands, dim)  # B*T', K, D
        across_bands = self.freq_transformer(across_bands, freq_rotary)  # B*T', K, D
        return across_bands.view(batch, frames, bands, dim)  # B, T', K, D


class BandSplit(nn.Module):
    """Project each band's slice of the feature vector to ``dim`` features: an RMS norm and a
    linear layer per band.

    Args:
        band_sizes: Input features of each band (``2 * channels * bins``).
        dim: Model width.
    """

    def __init__(self, band_sizes: Sequence[int], dim: int) -> None:
        super().__init__()
        self.band_sizes = [int(size) for size in band_sizes]
        self.projections = nn.ModuleList(
            nn.Sequential(RMSNorm(size), nn.Linear(size, dim)) for size in band_sizes
        )

    def forward(self, x: Tensor) -> Tensor:
        """Band features ``[B, T', K, D]`` from the bands' values ``[B, T', sum(band_sizes)]``.

        Args:
            x: Each frame's band values, band after band.
        """
        bands = x.split(self.band_sizes, dim=-1)
        return torch.stack([project(band) for band, project in zip(bands, self.projections)], dim=-2)


class MaskEstimator(nn.Module):
    """One source's mask: for each band an MLP with tanh hidden layers and a GLU output layer,
    which halves its ``2 * band_size`` outputs (values times sigmoid gates) to ``band_size``.

    Args:
        band_sizes: Mask values of each band (``2 * channels * bins``).
        dim: Model width.
        hidden: Width of the hidden layers.
        linear_layers: Linear layers of each MLP (at least 1; 1 is a single linear layer).
    """

    def __init__(self, band_sizes: Sequence[int], dim: int, hidden: int, linear_layers: int) -> None:
        super().__init__()
        self.band_mlps = nn.ModuleList(self._mlp(dim, size, hidden, linear_layers) for size in band_sizes)

    @staticmethod
    def _mlp(dim: int, size: int, hidden: int, linear_layers: int) -> nn.Sequential:
        widths = [dim] + [hidden] * (linear_layers - 1) + [2 * size]
        layers: list[nn.Module] = []
        for index, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:])):
            if index:
                layers.append(nn.Tanh())
            layers.append(nn.Linear(width_in, width_out))
        layers.append(nn.GLU(dim=-1))
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Mask values ``[B, T', sum(band_sizes)]`` from band features ``[B, T', K, D]``.

        Args:
            x: Band features, ``[batch, frames, bands, dim]``.
        """
        return torch.cat([mlp(band) for band, mlp in zip(x.unbind(dim=-2), self.band_mlps)], dim=-1)


def check_positive(**values: int) -> None:
    """Raise ``ValueError`` naming the first argument that is not a positive integer.

    Args:
        **values: Argument names and values.
    """
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


class BandRoformer(Separator):
    """The separator both RoFormers are: bands of STFT bins (possibly overlapping), axial
    transformers over frames and bands, one mask estimator per source.

    Subclasses build it with :meth:`build` after ``Separator.__init__``. A mask value of a bin
    that lies in several bands is the mean of those bands' values.

    Any input length works: the mixture is padded with zeros to a whole number of hops (and
    past half a window, so that the reflect padding of the STFT has samples to reflect), and
    the output is cut back to the input length. An input of whole hops longer than
    ``n_fft // 2`` is analysed exactly as the reference implementation analyses it.
    """

    domain = "spectrogram"

    def build(
        self,
        bands: Sequence[Sequence[int]],
        dim: int,
        depth: int,
        time_transformer_depth: int,
        freq_transformer_depth: int,
        dim_head: int,
        heads: int,
        attn_dropout: float,
        ff_dropout: float,
        transformer_output_norm: bool,
        final_norm: bool,
        mask_hidden: int,
        mask_linear_layers: int,
        stft_n_fft: int,
        stft_hop_length: int,
        stft_win_length: int,
        stft_normalized: bool,
    ) -> None:
        """Create the layers.

        Args:
            bands: STFT bins of each band, in order; every bin in at least one band.
            dim: Model width.
            depth: Axial blocks.
            time_transformer_depth: Layers of each time transformer.
            freq_transformer_depth: Layers of each frequency transformer.
            dim_head: Features per attention head.
            heads: Attention heads.
            attn_dropout: Dropout of the attention blocks.
            ff_dropout: Dropout of the feed-forward blocks.
            transformer_output_norm: Each transformer normalises its output.
            final_norm: Normalise the output of the last block.
            mask_hidden: Width of the mask MLPs' hidden layers.
            mask_linear_layers: Linear layers of each mask MLP.
            stft_n_fft: FFT size.
            stft_hop_length: Samples between frames.
            stft_win_length: Hann window length, at most ``stft_n_fft``.
            stft_normalized: Multiply the STFT by ``1 / sqrt(win_length)``, as ``torch.stft``'s
                ``normalized`` does.
        """
        check_positive(
            dim=dim,
            depth=depth,
            time_transformer_depth=time_transformer_depth,
            freq_transformer_depth=freq_transformer_depth,
            dim_head=dim_head,
            heads=heads,
            stft_n_fft=stft_n_fft,
            stft_hop_length=stft_hop_length,
            stft_win_length=stft_win_length,
        )
        for name, value in (("attn_dropout", attn_dropout), ("ff_dropout", ff_dropout)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        if stft_win_length > stft_n_fft:
            raise ValueError(f"stft_win_length ({stft_win_length}) must be at most stft_n_fft ({stft_n_fft})")
        if stft_hop_length > stft_win_length // 2:
            # Below half a window of overlap the inverse STFT divides by nearly vanishing sums.
            raise ValueError(
                f"stft_hop_length must be at most stft_win_length // 2 = {stft_win_length // 2}, "
                f"got {stft_hop_length}"
            )
        self.n_fft = stft_n_fft
        self.hop_length = stft_hop_length
        self.win_length = stft_win_length
        self.normalized = stft_normalized
        num_bins = stft_n_fft // 2 + 1
        flat = [int(b) for band in bands for b in band]
        counts = torch.bincount(torch.tensor(flat, dtype=torch.long, device="cpu"), minlength=num_bins)
        self.register_buffer("band_bins", torch.tensor(flat, dtype=torch.long), persistent=False)
        self.register_buffer("bands_per_bin", counts.to(torch.get_default_dtype()), persistent=False)
        band_sizes = [2 * self.audio_channels * len(band) for band in bands]
        self.band_split = BandSplit(band_sizes, dim)
        self.time_rotary = RotaryEmbedding(dim_head)
        self.freq_rotary = RotaryEmbedding(dim_head)
        self.blocks = nn.ModuleList(
            AxialBlock(
                dim,
                time_transformer_depth,
                freq_transformer_depth,
                heads,
                dim_head,
                attn_dropout,
                ff_dropout,
                transformer_output_norm,
            )
            for _ in range(depth)
        )
        self.final_norm: nn.Module = RMSNorm(dim) if final_norm else nn.Identity()
        self.mask_estimators = nn.ModuleList(
            MaskEstimator(band_sizes, dim, mask_hidden, mask_linear_layers) for _ in self.sources
        )

    def padded_length(self, length: int) -> int:
        """The length a mixture of ``length`` samples is zero-padded to before the STFT.

        Args:
            length: Samples of the input.
        """
        shortest = self.n_fft // 2 + 1  # reflect padding needs more samples than it adds
        return math.ceil(max(length, shortest) / self.hop_length) * self.hop_length

    def _window(self, like: Tensor) -> Tensor:
        return hann_window(self.win_length, like)

    def forward(self, mix: Tensor, references: Tensor | None = None) -> Tensor:
        self.check_input(mix, references)
        length = mix.shape[-1]
        padded = F.pad(mix, (0, self.padded_length(length) - length))  # B, C, L
        window = self._window(padded)
        spectrum = stft(
            padded, self.n_fft, self.hop_length, window, self.normalized, "reflect"
        )  # B, C, F, T'
        masks = torch.view_as_complex(self.masks(torch.view_as_real(spectrum)).contiguous())  # B, S, C, F, T'
        stems = spectrum.unsqueeze(1) * masks  # B, S, C, F, T'
        waves = istft(stems, self.n_fft, self.hop_length, window, padded.shape[-1], self.normalized)
        return waves[..., :length]  # B, S, C, T

    def masks(self, spectrum: Tensor) -> Tensor:
        """Every source's complex mask ``[B, S, C, F, T', 2]`` of the mixture's spectrogram
        ``[B, C, F, T', 2]`` (real and imaginary parts last): the network, without the STFTs and
        the complex product, which is what an ONNX export traces.

        Args:
            spectrum: The STFT of the padded mixture as real and imaginary parts.
        """
        features = self.band_split(self._band_values(spectrum))  # B, T', K, D
        for block in self.blocks:
            features = block(features, self.time_rotary, self.freq_rotary)  # B, T', K, D
        features = self.final_norm(features)  # B, T', K, D
        masks = torch.stack([estimator(features) for estimator in self.mask_estimators], dim=1)  # B, S, T', V
        return self._bin_masks(masks)  # B, S, C, F, T', 2

    def onnx_export(self, length: int) -> OnnxExport:
        """The export plan: the zero padding to :meth:`padded_length`, the STFT and the complex
        masking stay outside the graph, which maps the mixture's spectrum ``[B, C, F, N, 2]``
        to the masks ``[B, S, C, F, N, 2]`` (adapter ``"spectral_mask"``).

        Args:
            length: Samples per exported chunk.
        """
        return spectral_export(
            self,
            "masks",
            masks=True,
            length=length,
            padded_length=self.padded_length(length),
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window="hann",
            normalized=self.normalized,
            pad_mode="reflect",
        )

    def _band_values(self, spectrum: Tensor) -> Tensor:
        """The bands' inputs ``[B, T', V]`` of a spectrogram ``[B, C, F, T', 2]``: band after
        band, bin after bin, channel after channel, real and imaginary part."""
        batch, _, _, frames, _ = spectrum.shape
        values = spectrum.permute(0, 3, 2, 1, 4)  # B, T', F, C, 2
        values = values.index_select(2, self.band_bins)  # B, T', F', C, 2
        return values.reshape(batch, frames, -1).to(self.band_split.projections[0][1].weight.dtype)

    @full_precision
    def _bin_masks(self, masks: Tensor) -> Tensor:
        """Complex masks ``[B, S, C, F, T', 2]`` (real and imaginary parts last) from the bands'
        mask values ``[B, S, T', V]``, averaged over the bands that share a bin (in float32
        under mixed precision)."""
        batch, sources, frames, _ = masks.shape
        per_band = masks.view(batch, sources, frames, -1, self.audio_channels, 2)  # B, S, T', F', C, 2
        num_bins = self.bands_per_bin.shape[0]
        summed = per_band.new_zeros(batch, sources, frames, num_bins, self.audio_channels, 2)
        if torch.onnx.is_in_onnx_export():
            # The exporter turns index_add_ into a scatter that keeps one of the values a bin
            # gets from overlapping bands; scatter_add becomes a scatter that adds them.
            index = self.band_bins[:, None, None].expand(per_band.shape[3:])  # F', C, 2
            summed = summed.scatter_add(3, index.expand(per_band.shape), per_band)  # B, S, T', F, C, 2
        else:
            summed.index_add_(3, self.band_bins, per_band)  # B, S, T', F, C, 2
        mean = summed / self.bands_per_bin.to(summed.dtype)[:, None, None]  # B, S, T', F, C, 2
        return mean.permute(0, 1, 4, 3, 2, 5)  # B, S, C, F, T', 2


__all__ = [
    "Attention",
    "AxialBlock",
    "BandRoformer",
    "BandSplit",
    "FeedForward",
    "MaskEstimator",
    "RMSNorm",
    "RotaryEmbedding",
    "Transformer",
    "TransformerLayer",
    "check_positive",
]
