"""HT Demucs: Hybrid Demucs whose innermost layers are a cross-domain transformer.

Rouard, Massa, Défossez, "Hybrid Transformers for Music Source Separation" (2022,
arXiv:2211.08553). The temporal and spectral encoders of Hybrid Demucs stay separate (four
layers each); their outputs go through a transformer whose layers alternate self-attention
within each branch and cross-attention between them, with sinusoidal 1-D (time) and 2-D
(frequency x time) positional embeddings, layer scale and the paper's norms; the decoders start
from the transformer's outputs. The defaults are those of the published ``htdemucs`` model
(7.8-second training segment, 512 transformer channels, five layers, eight heads). List six
sources (``[drums, bass, other, vocals, guitar, piano]``) for the 6-source configuration.

The model is trained on segments of one length (``segment``), which it records: at evaluation
shorter inputs are zero-padded to it and longer ones are separated in chunks of it by the
inference engine. The engine presents every chunk, the last ones too, at the full chunk length
(real audio around it, zeros past the track's ends), as the official engine does; a chunk length
above the training segment is refused.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torch.nn import functional as F

from sepzoo import DEFAULT_SOURCES
from sepzoo.models import register_model
from sepzoo.models._cross_transformer import CrossDomainTransformer
from sepzoo.models.base import seconds_to_samples
from sepzoo.models.hybrid_demucs import HybridDemucs


@register_model("htdemucs")
class HTDemucs(HybridDemucs):
    """Hybrid Transformer Demucs (v4); see the module docstring.

    Args:
        sources: Names of the output stems. (Default: ``DEFAULT_SOURCES``)
        audio_channels: Input and output audio channels. (Default: ``2``)
        channels: Channels of the first layer of each branch. (Default: ``48``)
        channels_time: Channels of the first temporal layer; ``None`` for ``channels``.
            (Default: ``None``)
        growth: Channel multiplier from one layer to the next. (Default: ``2.0``)
        nfft: STFT size; the hop is ``nfft // 4``. (Default: ``4096``)
        wiener_iters: With ``cac=False``, the Wiener filter's EM iterations at evaluation.
            (Default: ``0``)
        end_iters: The same during training; must equal ``wiener_iters``. (Default: ``0``)
        wiener_residual: Give the Wiener filter an extra source. (Default: ``False``)
        cac: Complex as channels in the frequency branch; else magnitudes. (Default: ``True``)
        depth: Number of encoder (and decoder) layers per branch. (Default: ``4``)
        rewrite: Add the rewrite convolutions. (Default: ``True``)
        multi_freqs: Split the outermost frequency layers into bands ending at these fractions
            of the frequencies; ``None`` or empty for no split. (Default: ``None``)
        multi_freqs_depth: Number of outermost layers split into bands. (Default: ``3``)
        freq_emb: Weight of the frequency embedding added after the first layer; ``0`` for
            none. (Default: ``0.2``)
        emb_scale: Learning-rate multiplier of the frequency embedding. (Default: ``10.0``)
        emb_smooth: Start the frequency embedding smooth along frequency. (Default: ``True``)
        kernel_size: Kernel of the strided convolutions. (Default: ``8``)
        time_stride: Stride of time layers after a merge of the branches. (Default: ``2``)
        stride: Stride of the strided convolutions. (Default: ``4``)
        context: Context on each side of the decoders' rewrite convolutions. (Default: ``1``)
        context_enc: Context on each side of the encoders' rewrite convolutions.
            (Default: ``0``)
        norm_starts: First layer (counted from the outside) with group norms. (Default: ``4``)
        norm_groups: Groups of the group norms. (Default: ``4``)
        dconv_mode: Residual branches in the encoders (``1``), the decoders (``2``), both
            (``3``) or neither (``0``). (Default: ``1``)
        dconv_depth: Layers of each residual branch. (Default: ``2``)
        dconv_comp: Channel compression inside the residual branches. (Default: ``8``)
        dconv_init: Initial layer scale of the residual branches. (Default: ``1e-3``)
        bottom_channels: Channels of the transformer, reached by 1x1 convolutions from the
            innermost encoders' channels; ``0`` keeps those. (Default: ``512``)
        t_layers: Transformer layers. (Default: ``5``)
        t_emb: Positional embedding: ``"sin"`` or ``"scaled"``. (Default: ``"sin"``)
        t_hidden_scale: Width of the feed-forward networks relative to the channels.
            (Default: ``4.0``)
        t_heads: Attention heads. (Default: ``8``)
        t_dropout: Dropout in the transformer. (Default: ``0.0``)
        t_max_positions: Positions of the ``"scaled"`` embedding. (Default: ``10000``)
        t_norm_in: Layer norm before adding the positional embeddings. (Default: ``True``)
        t_norm_in_group: Make that norm a group norm over all time steps. (Default: ``False``)
        t_group_norm: Group norms over all time steps inside the layers. (Default: ``False``)
        t_norm_first: Norms before attention and feed-forward (pre-norm). (Default: ``True``)
        t_norm_out: A group norm at the end of each layer. (Default: ``True``)
        t_max_period: Longest period of the sinusoidal embeddings. (Default: ``10000.0``)
        t_layer_scale: Layer scale on attention and feed-forward outputs. (Default: ``True``)
        t_gelu: GELU in the feed-forward networks, else ReLU. (Default: ``True``)
        t_weight_pos_embed: Weight of the positional embeddings. (Default: ``1.0``)
        t_sin_random_shift: Largest random shift of the time positions during training.
            (Default: ``0``)
        t_cross_first: Start with cross-attention rather than self-attention.
            (Default: ``False``)
        rescale: Reference standard deviation of the weight-rescaling initialisation; ``0``
            turns it off. (Default: ``0.1``)
        sample_rate: Sample rate in Hz. (Default: ``44100``)
        segment: The training segment in seconds, the length the model sees at evaluation.
            (Default: ``7.8``)
        use_train_segment: Evaluate on the training segment (pad shorter inputs, chunk longer
            ones); ``False`` runs any length as is. (Default: ``True``)
    """

    domain = "hybrid"
    branches_merge = False
    fixed_chunk_length = True
    test_kwargs = {
        "channels": 8,
        "depth": 3,
        "nfft": 512,
        "norm_starts": 2,
        "dconv_mode": 3,
        "bottom_channels": 16,
        "t_layers": 2,
        "t_heads": 2,
        "segment": 0.05,
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
        depth: int = 4,
        rewrite: bool = True,
        multi_freqs: Sequence[float] | None = None,
        multi_freqs_depth: int = 3,
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
        dconv_comp: float = 8,
        dconv_init: float = 1e-3,
        bottom_channels: int = 512,
        t_layers: int = 5,
        t_emb: str = "sin",
        t_hidden_scale: float = 4.0,
        t_heads: int = 8,
        t_dropout: float = 0.0,
        t_max_positions: int = 10000,
        t_norm_in: bool = True,
        t_norm_in_group: bool = False,
        t_group_norm: bool = False,
        t_norm_first: bool = True,
        t_norm_out: bool = True,
        t_max_period: float = 10000.0,
        t_layer_scale: bool = True,
        t_gelu: bool = True,
        t_weight_pos_embed: float = 1.0,
        t_sin_random_shift: int = 0,
        t_cross_first: bool = False,
        rescale: float = 0.1,
        sample_rate: int = 44100,
        segment: float = 7.8,
        use_train_segment: bool = True,
    ) -> None:
        if segment is None or segment <= 0:
            raise ValueError(f"HT Demucs needs its training segment in seconds, got {segment!r}")
        if wiener_iters != end_iters:
            raise ValueError(f"wiener_iters ({wiener_iters}) must equal end_iters ({end_iters})")
        # The residual branches of HT Demucs have neither LSTMs nor attention.
        super().__init__(
            sources=sources, audio_channels=audio_channels, channels=channels, channels_time=channels_time,
            growth=growth, nfft=nfft, wiener_iters=wiener_iters, end_iters=end_iters,
            wiener_residual=wiener_residual, cac=cac, depth=depth, rewrite=rewrite, hybrid=True,
            hybrid_old=False, multi_freqs=multi_freqs, multi_freqs_depth=multi_freqs_depth, freq_emb=freq_emb,
            emb_scale=emb_scale, emb_smooth=emb_smooth, kernel_size=kernel_size, time_stride=time_stride,
            stride=stride, context=context, context_enc=context_enc, norm_starts=norm_starts,
            norm_groups=norm_groups, dconv_mode=dconv_mode, dconv_depth=dconv_depth, dconv_comp=dconv_comp,
            dconv_attn=depth, dconv_lstm=depth, dconv_init=dconv_init, rescale=rescale,
            sample_rate=sample_rate, segment=segment,
        )  # fmt: skip
        self.use_train_segment = use_train_segment
        # Created after the weight rescaling of the convolutions, which they do not get.
        inner_channels = int(channels * growth ** (depth - 1))
        self.freq_to_transformer = self.transformer_to_freq = None
        self.time_to_transformer = self.transformer_to_time = None
        width = inner_channels
        if bottom_channels:
            self.freq_to_transformer = nn.Conv1d(inner_channels, bottom_channels, 1)
            self.transformer_to_freq = nn.Conv1d(bottom_channels, inner_channels, 1)
            self.time_to_transformer = nn.Conv1d(inner_channels, bottom_channels, 1)
            self.transformer_to_time = nn.Conv1d(bottom_channels, inner_channels, 1)
            width = bottom_channels
        self.transformer = None
        if t_layers:
            self.transformer = CrossDomainTransformer(
                dim=width, emb=t_emb, hidden_scale=t_hidden_scale, num_heads=t_heads, num_layers=t_layers,
                cross_first=t_cross_first, dropout=t_dropout, max_positions=t_max_positions,
                norm_in=t_norm_in, norm_in_group=t_norm_in_group, group_norm=t_group_norm,
                norm_first=t_norm_first, norm_out=t_norm_out, max_period=t_max_period,
                layer_scale=t_layer_scale, gelu=t_gelu, sin_random_shift=t_sin_random_shift,
                weight_pos_embed=t_weight_pos_embed,
            )  # fmt: skip

    @property
    def training_length(self) -> int:
        """The training segment in samples."""
        return seconds_to_samples(self.segment, self.sample_rate)

    @property
    def max_segment(self) -> float | None:
        """The training segment: the longest chunk the model evaluates."""
        return self.segment if self.use_train_segment else None

    def forward(self, mix: Tensor, references: Tensor | None = None) -> Tensor:
        """Separate ``mix`` (``[B, C, T]``) into stems (``[B, S, C, T]``).

        In training, any length runs as is. In evaluation, inputs shorter than the training
        segment are zero-padded to it, and longer ones are refused: the engine
        (:func:`sepzoo.engine.apply.apply_model`) cuts long tracks into chunks of the training
        segment, as :attr:`max_segment` asks it to.

        Args:
            mix: The mixture, ``[batch, audio_channels, time]``.
            references: Unused; accepted for the common signature. (Default: ``None``)
        """
        self.check_input(mix, references)
        length = mix.shape[-1]
        if self.training or not self.use_train_segment:
            return super().forward(mix)
        padded = F.pad(mix, (0, self.network_length(length) - length))  # B, C, T_train
        return super().forward(padded)[..., :length]  # B, S, C, T

    def network_length(self, length: int) -> int:
        """The training segment in evaluation (with ``use_train_segment``), else ``length``.

        Args:
            length: Samples of the input.

        Raises:
            ValueError: ``length`` is above the training segment.
        """
        if self.training or not self.use_train_segment:
            return length
        if length > self.training_length:
            raise ValueError(
                f"htdemucs evaluates at most {self.training_length} samples at once (its training "
                f"segment), got {length}; separate longer inputs with sepzoo.engine.apply.apply_model"
            )
        return self.training_length

    def _bottleneck(self, freq: Tensor, time: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """Run the innermost encodings of both branches through the cross-domain transformer."""
        if self.transformer is None:
            return freq, time
        if time is None:
            raise RuntimeError("HT Demucs is always hybrid: the temporal branch is missing")
        freq, time = _project(self.freq_to_transformer, self.time_to_transformer, freq, time)  # B, D, ...
        freq, time = self.transformer(freq, time)
        return _project(self.transformer_to_freq, self.transformer_to_time, freq, time)  # B, C, ...


def _project(
    freq_projection: nn.Module | None, time_projection: nn.Module | None, freq: Tensor, time: Tensor
) -> tuple[Tensor, Tensor]:
    """Change the channels of both branches with their 1x1 convolutions (none: as they are).

    Args:
        freq_projection: Convolution over the frequency branch's ``[B, C, Fr * N]``.
        time_projection: Convolution over the temporal branch's ``[B, C, T]``.
        freq: Frequency features, ``[B, C, Fr, N]``.
        time: Temporal features, ``[B, C, T]``.
    """
    if freq_projection is None or time_projection is None:
        return freq, time
    batch, _, frequencies, frames = freq.shape
    freq = freq_projection(freq.flatten(2)).view(batch, -1, frequencies, frames)  # B, C', Fr, N
    return freq, time_projection(time)  # B, C', T


__all__ = ["HTDemucs"]
