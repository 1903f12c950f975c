"""The cross-domain transformer at the bottleneck of Hybrid Transformer Demucs.

Rouard, Massa & Défossez, "Hybrid Transformers for Music Source Separation" (2022,
arXiv:2211.08553). The spectrogram branch (``[B, C, Fr, T1]``, flattened to ``T1 * Fr`` tokens)
and the waveform branch (``[B, C, T2]``, ``T2`` tokens) each go through their own stack of
layers. Layers alternate between self-attention within a branch and cross-attention, where each
branch queries the other one; both directions of a cross-attention layer read the inputs of that
layer. The numerics and the checkpoint layout match ``demucs.transformer.CrossTransformerEncoder``
(see :func:`official_transformer_key_map`); its sparse-attention options are not supported.

This module only provides a building block: it registers no model.
"""

from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F
from torch import Tensor, nn

POSITION_EMBEDDINGS: tuple[str, ...] = ("sin", "scaled")
LAYER_SCALE_INIT = 1e-4
NORM_EPS = 1e-5


def sinusoidal_embedding_1d(
    length: int,
    dim: int,
    shift: int = 0,
    max_period: float = 10000.0,
    device: torch.device | str | None = None,
) -> Tensor:
    """Sinusoidal position embedding of a sequence, ``[length, dim]``.

    Channel ``i < dim / 2`` holds ``cos(p / max_period ** (i / (dim / 2 - 1)))`` and channel
    ``dim / 2 + i`` the matching sine, for positions ``p = shift, ..., shift + length - 1``. The
    result has the default floating dtype.

    Args:
        length: Number of positions.
        dim: Number of channels; even and at least 4.
        shift: Offset added to every position. (Default: ``0``)
        max_period: Longest period of the sinusoids. (Default: ``10000.0``)
        device: Device of the result. (Default: ``None``, the default device)
    """
    if dim % 2 != 0 or dim < 4:
        raise ValueError(f"the 1-D sinusoidal embedding needs an even dim >= 4, got {dim}")
    half = dim // 2
    positions = shift + torch.arange(length, device=device)[:, None]  # T, 1
    exponents = torch.arange(half, device=device)[None, :] / (half - 1)  # 1, C/2
    phase = positions / (max_period**exponents)  # T, C/2
    return torch.cat([phase.cos(), phase.sin()], dim=-1)  # T, C


def sinusoidal_embedding_2d(
    dim: int,
    height: int,
    width: int,
    max_period: float = 10000.0,
    device: torch.device | str | None = None,
) -> Tensor:
    """Sinusoidal position embedding of a grid, ``[dim, height, width]``.

    The first half of the channels encodes the column (``width`` axis), the second half the row
    (``height`` axis); within each half, even channels hold sines and odd channels cosines of
    the position times ``max_period ** (-2k / (dim / 2))``. The result has the default floating
    dtype.

    Args:
        dim: Number of channels; a positive multiple of 4.
        height: Number of rows (frequency bins).
        width: Number of columns (time frames).
        max_period: Longest period of the sinusoids. (Default: ``10000.0``)
        device: Device of the result. (Default: ``None``, the default device)
    """
    if dim % 4 != 0 or dim <= 0:
        raise ValueError(f"the 2-D sinusoidal embedding needs dim to be a positive multiple of 4, got {dim}")
    half = dim // 2
    # Built on the CPU and then moved, so the values do not depend on the device's sin/cos.
    frequencies = torch.exp(torch.arange(0.0, half, 2) * -(math.log(max_period) / half))  # C/4

    def encode(count: int) -> Tensor:
        angles = torch.arange(0.0, count)[:, None] * frequencies  # N, C/4
        # Interleaved as sin, cos, sin, cos, ... along the channels.
        return torch.stack([angles.sin(), angles.cos()], dim=-1).reshape(count, half).T  # C/2, N

    columns = encode(width)[:, None, :].expand(half, height, width)  # C/2, Fr, T
    rows = encode(height)[:, :, None].expand(half, height, width)  # C/2, Fr, T
    return torch.cat([columns, rows], dim=0).to(device)  # C, Fr, T


class ChannelLastGroupNorm(nn.GroupNorm):
    """Group normalization of token sequences ``[batch, tokens, channels]``.

    With one group, each item is normalized with a single mean and variance over all its tokens
    and channels, followed by a per-channel gain and bias.

    Args:
        num_channels: Number of channels.
        num_groups: Number of channel groups. (Default: ``1``)
        eps: Added to the variance before the square root. (Default: ``1e-5``)
    """

    def __init__(self, num_channels: int, num_groups: int = 1, eps: float = NORM_EPS) -> None:
        super().__init__(num_groups, num_channels, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        """Normalize ``x`` (``[batch, tokens, channels]``).

        Args:
            x: Token sequences, ``[batch, tokens, channels]``.
        """
        return super().forward(x.transpose(1, 2)).transpose(1, 2)  # B, T, C


class LayerScale(nn.Module):
    """Learned per-channel scale of a residual branch (Touvron et al. 2021), channels last.

    Args:
        dim: Number of channels.
        init: Initial value of every scale. (Default: ``1e-4``)
    """

    def __init__(self, dim: int, init: float = LAYER_SCALE_INIT) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: Tensor) -> Tensor:
        """Scale ``x`` (``[..., dim]``).

        Args:
            x: Features with the channels last.
        """
        return self.scale * x


class ScaledPositionEmbedding(nn.Module):
    """Learned position table, stored divided by ``boost`` and multiplied back when read.

    Storing smaller values makes the optimizer's steps ``boost`` times larger relative to them.

    Args:
        num_positions: Number of positions in the table.
        dim: Number of channels.
        init_scale: Standard deviation of the initial (boosted) embeddings. (Default: ``0.2``)
        boost: Factor applied when reading the table. (Default: ``3.0``)
    """

    def __init__(self, num_positions: int, dim: int, init_scale: float = 0.2, boost: float = 3.0) -> None:
        super().__init__()
        self.table = nn.Embedding(num_positions, dim)
        self.table.weight.data *= init_scale / boost
        self.boost = boost

    def forward(self, positions: Tensor) -> Tensor:
        """Look up the embeddings of ``positions`` (integers, any shape ``[...]``).

        Args:
            positions: Position indices, each below ``num_positions``.
        """
        return self.table(positions) * self.boost  # ..., C


def _make_norm(dim: int, group_norm: bool) -> nn.Module:
    return ChannelLastGroupNorm(dim) if group_norm else nn.LayerNorm(dim, eps=NORM_EPS)


def _make_input_norm(dim: int, norm_in: bool, norm_in_group: bool) -> nn.Module:
    if norm_in:
        return nn.LayerNorm(dim)
    if norm_in_group:
        return ChannelLastGroupNorm(dim)
    return nn.Identity()


class FeedForward(nn.Module):
    """Position-wise feed-forward network: ``Linear -> GELU/ReLU -> Dropout -> Linear -> Dropout``.

    Args:
        dim: Number of input and output channels.
        hidden_dim: Number of hidden channels.
        dropout: Dropout probability after the activation and after the output. (Default: ``0.0``)
        gelu: Use GELU, else ReLU. (Default: ``True``)
    """

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0, gelu: bool = True) -> None:
        super().__init__()
        self.expand = nn.Linear(dim, hidden_dim)
        self.activation = F.gelu if gelu else F.relu
        self.hidden_dropout = nn.Dropout(dropout)
        self.project = nn.Linear(hidden_dim, dim)
        self.output_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the network to ``x`` (``[batch, tokens, dim]``).

        Args:
            x: Token sequences, ``[batch, tokens, dim]``.
        """
        hidden = self.hidden_dropout(self.activation(self.expand(x)))  # B, T, H
        return self.output_dropout(self.project(hidden))  # B, T, C


class _AttentionLayer(nn.Module):
    """What self- and cross-attention layers share: attention, a feed-forward network, their
    normalizations and layer scales.

    Args:
        dim: Number of channels.
        num_heads: Number of attention heads; must divide ``dim``.
        hidden_dim: Hidden width of the feed-forward network.
        dropout: Dropout probability, in attention and in the sub-blocks. (Default: ``0.0``)
        gelu: GELU in the feed-forward network, else ReLU. (Default: ``True``)
        norm_first: Normalize the input of each sub-block (pre-norm) instead of the residual
            sum (post-norm). (Default: ``False``)
        norm_out: With ``norm_first``, end the layer with a one-group
            :class:`ChannelLastGroupNorm`; ignored otherwise. (Default: ``False``)
        group_norm: Use one-group :class:`ChannelLastGroupNorm` instead of ``nn.LayerNorm``.
            (Default: ``False``)
        layer_scale: Scale each sub-block's output by a :class:`LayerScale` initialized to
            ``1e-4``. (Default: ``False``)
    """

    attends_to_context: bool = False
    """Whether the layer attends to a second sequence, which then gets its own normalization."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        hidden_dim: int,
        dropout: float = 0.0,
        gelu: bool = True,
        norm_first: bool = False,
        norm_out: bool = False,
        group_norm: bool = False,
        layer_scale: bool = False,
    ) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.norm_first = norm_first
        self.attention = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.attention_dropout = nn.Dropout(dropout)
        self.feedforward = FeedForward(dim, hidden_dim, dropout=dropout, gelu=gelu)
        self.attention_norm = _make_norm(dim, group_norm)
        self.feedforward_norm = _make_norm(dim, group_norm)
        # The extra normalization only exists in pre-norm layers, where the residual stream is
        # otherwise never normalized.
        self.output_norm = ChannelLastGroupNorm(dim) if norm_first and norm_out else None
        self.attention_scale = LayerScale(dim) if layer_scale else nn.Identity()
        self.feedforward_scale = LayerScale(dim) if layer_scale else nn.Identity()
        if self.attends_to_context:
            self.context_norm = _make_norm(dim, group_norm)
            if not norm_first:
                # Unused parameters that require gradients break DistributedDataParallel.
                self.context_norm.requires_grad_(False)

    def _attend(self, query: Tensor, context: Tensor) -> Tensor:
        # nn.MultiheadAttention's maths on its own parameters, through scaled_dot_product_attention:
        # its fused kernels serve cross-attention too, where the module's fast path falls back to
        # an explicit softmax over the full score matrix.
        attention = self.attention
        dim = query.shape[-1]
        if query is context:
            projected = F.linear(query, attention.in_proj_weight, attention.in_proj_bias)  # B, T, 3C
            queries, keys, values = projected.chunk(3, dim=-1)
        else:
            weight, bias = attention.in_proj_weight, attention.in_proj_bias
            queries = F.linear(query, weight[:dim], bias[:dim])  # B, Tq, C
            keys, values = F.linear(context, weight[dim:], bias[dim:]).chunk(2, dim=-1)  # B, Tk, C
        heads = [t.unflatten(-1, (attention.num_heads, -1)).transpose(1, 2) for t in (queries, keys, values)]
        dropout = attention.dropout if self.training else 0.0
        attended = F.scaled_dot_product_attention(*heads, dropout_p=dropout)  # B, H, Tq, C/H
        return self.attention_dropout(attention.out_proj(attended.transpose(1, 2).flatten(2)))  # B, Tq, C

    def _finish(self, x: Tensor) -> Tensor:
        """Feed-forward half of the layer, given the residual stream after attention."""
        if self.norm_first:
            x = x + self.feedforward_scale(self.feedforward(self.feedforward_norm(x)))  # B, T, C
            if self.output_norm is not None:
                x = self.output_norm(x)  # B, T, C
            return x
        return self.feedforward_norm(x + self.feedforward_scale(self.feedforward(x)))  # B, T, C


class SelfAttentionLayer(_AttentionLayer):
    """Transformer encoder layer over one sequence: self-attention, then a feed-forward network.

    Each sub-block is residual, its output optionally multiplied by a :class:`LayerScale`, and
    normalized before (``norm_first``) or after the residual sum. The arguments are those of
    every attention layer (``dim``, ``num_heads``, ``hidden_dim``, ``dropout``, ``gelu``,
    ``norm_first``, ``norm_out``, ``group_norm``, ``layer_scale``; see :class:`_AttentionLayer`).
    """

    def forward(self, x: Tensor) -> Tensor:
        """Apply the layer to ``x`` (``[batch, tokens, dim]``).

        Args:
            x: Token sequences, ``[batch, tokens, dim]``.
        """
        if self.norm_first:
            normed = self.attention_norm(x)  # B, T, C
            x = x + self.attention_scale(self._attend(normed, normed))  # B, T, C
        else:
            x = self.attention_norm(x + self.attention_scale(self._attend(x, x)))  # B, T, C
        return self._finish(x)  # B, T, C


class CrossAttentionLayer(_AttentionLayer):
    """Transformer layer where one sequence attends to another, then a feed-forward network.

    The queries come from ``query`` and the keys and values from ``context``; the residual
    stream is ``query``'s. In pre-norm mode the context has its own normalization
    (``context_norm``). Post-norm layers never use ``context_norm``: it is kept, frozen, only so
    that checkpoints of the reference implementation (which has it too) load strictly. The
    arguments are those of every attention layer (see :class:`_AttentionLayer`).
    """

    attends_to_context = True

    def forward(self, query: Tensor, context: Tensor) -> Tensor:
        """Let ``query`` (``[batch, tokens, dim]``) attend to ``context`` (``[batch, tokens2, dim]``).

        Args:
            query: The sequences that are updated, ``[batch, tokens, dim]``.
            context: The sequences attended to, ``[batch, tokens2, dim]``.
        """
        if self.norm_first:
            attended = self._attend(self.attention_norm(query), self.context_norm(context))  # B, T, C
            x = query + self.attention_scale(attended)  # B, T, C
        else:
            x = self.attention_norm(query + self.attention_scale(self._attend(query, context)))  # B, T, C
        return self._finish(x)  # B, T, C


class CrossDomainTransformer(nn.Module):
    """Cross-domain transformer of HT Demucs over a spectrogram branch and a waveform branch.

    Each branch is flattened to tokens (the spectrogram time-major: ``T1 * Fr`` tokens),
    optionally normalized, and given a position embedding scaled by ``weight_pos_embed``: a 2-D
    sinusoidal one for the spectrogram branch and, for the waveform branch, a 1-D sinusoidal
    (``emb="sin"``) or learned (``emb="scaled"``) one. Then come ``num_layers`` layers that
    alternate between self-attention within each branch and cross-attention between the branches,
    starting with self-attention unless ``cross_first``. Each branch has its own weights.

    Args:
        dim: Number of channels of both branches; a multiple of 4 and of ``num_heads``.
        emb: Position embedding of the waveform branch, ``"sin"`` or ``"scaled"`` (``"cape"``
            is not supported). (Default: ``"sin"``)
        hidden_scale: Hidden width of the feed-forward networks, as a multiple of ``dim``
            (truncated to an integer). (Default: ``4.0``)
        num_heads: Number of attention heads. (Default: ``8``)
        num_layers: Number of layers in each branch; HT Demucs uses 5. (Default: ``6``)
        cross_first: Start with a cross-attention layer. (Default: ``False``)
        dropout: Dropout probability in all layers. (Default: ``0.0``)
        max_positions: Size of the learned position table (``emb="scaled"`` only): the longest
            waveform-branch sequence. (Default: ``1000``)
        norm_in: ``nn.LayerNorm`` on each branch's tokens before the position embedding.
            (Default: ``True``)
        norm_in_group: Without ``norm_in``, a one-group :class:`ChannelLastGroupNorm` there
            instead. (Default: ``False``)
        group_norm: Use one-group :class:`ChannelLastGroupNorm` instead of ``nn.LayerNorm``
            inside the layers. (Default: ``False``)
        norm_first: Pre-norm layers instead of post-norm. (Default: ``False``)
        norm_out: With ``norm_first``, end every layer with a one-group
            :class:`ChannelLastGroupNorm`. (Default: ``False``)
        max_period: Longest period of the sinusoidal embeddings. (Default: ``10000.0``)
        layer_scale: :class:`LayerScale` (initialized to ``1e-4``) on every attention and
            feed-forward output. (Default: ``False``)
        gelu: GELU in the feed-forward networks, else ReLU. (Default: ``True``)
        sin_random_shift: In training with ``emb="sin"``, shift the waveform positions by a
            random integer in ``[0, sin_random_shift]`` drawn with Python's ``random`` at every
            call; evaluation always uses no shift. (Default: ``0``)
        weight_pos_embed: Factor applied to the position embeddings. (Default: ``1.0``)
    """

    def __init__(
        self,
        dim: int,
        emb: str = "sin",
        hidden_scale: float = 4.0,
        num_heads: int = 8,
        num_layers: int = 6,
        cross_first: bool = False,
        dropout: float = 0.0,
        max_positions: int = 1000,
        norm_in: bool = True,
        norm_in_group: bool = False,
        group_norm: bool = False,
        norm_first: bool = False,
        norm_out: bool = False,
        max_period: float = 10000.0,
        layer_scale: bool = False,
        gelu: bool = True,
        sin_random_shift: int = 0,
        weight_pos_embed: float = 1.0,
    ) -> None:
        super().__init__()
        if emb not in POSITION_EMBEDDINGS:
            raise ValueError(
                f"unsupported position embedding emb={emb!r}; expected one of {POSITION_EMBEDDINGS}"
            )
        if dim <= 0 or dim % 4 != 0:
            raise ValueError(f"dim must be a positive multiple of 4 (2-D sinusoidal embedding), got {dim}")
        if num_heads <= 0 or dim % num_heads != 0:
            raise ValueError(f"num_heads must be positive and divide dim ({dim}), got {num_heads}")
        if num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {num_layers}")
        if sin_random_shift < 0:
            raise ValueError(f"sin_random_shift must be >= 0, got {sin_random_shift}")
        if emb == "scaled" and max_positions <= 0:
            raise ValueError(f"max_positions must be positive, got {max_positions}")

        self.dim = dim
        self.emb = emb
        self.num_layers = num_layers
        self.cross_first = cross_first
        self.max_period = max_period
        self.max_positions = max_positions
        self.sin_random_shift = sin_random_shift
        self.weight_pos_embed = weight_pos_embed

        self.freq_input_norm = _make_input_norm(dim, norm_in, norm_in_group)
        self.time_input_norm = _make_input_norm(dim, norm_in, norm_in_group)
        self.time_position_embedding = (
            ScaledPositionEmbedding(max_positions, dim) if emb == "scaled" else None
        )

        layer_options = {
            "dim": dim,
            "num_heads": num_heads,
            "hidden_dim": int(dim * hidden_scale),
            "dropout": dropout,
            "gelu": gelu,
            "norm_first": norm_first,
            "norm_out": norm_out,
            "group_norm": group_norm,
            "layer_scale": layer_scale,
        }
        self.freq_self_attention_layers = nn.ModuleList()
        self.time_self_attention_layers = nn.ModuleList()
        self.freq_cross_attention_layers = nn.ModuleList()
        self.time_cross_attention_layers = nn.ModuleList()
        # Layers are created in depth order, so the random initialization draws happen in the
        # same order as the reference's.
        for index in range(num_layers):
            if self.is_cross_attention_layer(index):
                self.freq_cross_attention_layers.append(CrossAttentionLayer(**layer_options))
                self.time_cross_attention_layers.append(CrossAttentionLayer(**layer_options))
            else:
                self.freq_self_attention_layers.append(SelfAttentionLayer(**layer_options))
                self.time_self_attention_layers.append(SelfAttentionLayer(**layer_options))

    def is_cross_attention_layer(self, index: int) -> bool:
        """Whether layer ``index`` (0-based depth) is a cross-attention layer.

        Args:
            index: Depth of the layer. Its position in its list is ``index // 2``.
        """
        return index % 2 == (0 if self.cross_first else 1)

    def _time_position_embedding(self, length: int, device: torch.device) -> Tensor:
        if self.time_position_embedding is not None:
            if length > self.max_positions:
                raise ValueError(
                    f"the waveform branch has {length} positions, above max_positions={self.max_positions}"
                )
            return self.time_position_embedding(torch.arange(length, device=device))  # T2, C
        shift = random.randrange(self.sin_random_shift + 1) if self.training and self.sin_random_shift else 0
        return sinusoidal_embedding_1d(
            length, self.dim, shift=shift, max_period=self.max_period, device=device
        )

    def forward(self, freq: Tensor, time: Tensor) -> tuple[Tensor, Tensor]:
        """Mix the spectrogram branch ``freq`` and the waveform branch ``time``.

        Args:
            freq: Spectrogram-branch features, ``[batch, dim, freq_bins, frames]``.
            time: Waveform-branch features, ``[batch, dim, time_steps]``.

        Returns:
            ``(freq, time)`` with the shapes of the inputs.
        """
        if freq.dim() != 4 or freq.shape[1] != self.dim:
            raise ValueError(f"freq must be [batch, {self.dim}, freq_bins, frames], got {list(freq.shape)}")
        if time.dim() != 3 or time.shape[1] != self.dim or time.shape[0] != freq.shape[0]:
            raise ValueError(
                f"time must be [{freq.shape[0]}, {self.dim}, time_steps] like freq, got {list(time.shape)}"
            )
        batch, channels, freq_bins, frames = freq.shape  # B, C, Fr, T1
        time_steps = time.shape[-1]  # T2

        freq_position = sinusoidal_embedding_2d(channels, freq_bins, frames, self.max_period, freq.device)
        freq_position = freq_position.permute(2, 1, 0).reshape(1, frames * freq_bins, channels)  # 1, T1*Fr, C
        freq_tokens = freq.permute(0, 3, 2, 1).reshape(batch, frames * freq_bins, channels)  # B, T1*Fr, C
        freq_tokens = self.freq_input_norm(freq_tokens) + self.weight_pos_embed * freq_position  # B, T1*Fr, C

        time_position = self._time_position_embedding(time_steps, freq.device)  # T2, C
        time_tokens = time.transpose(1, 2)  # B, T2, C
        time_tokens = self.time_input_norm(time_tokens) + self.weight_pos_embed * time_position  # B, T2, C

        for index in range(self.num_layers):
            position = index // 2
            if self.is_cross_attention_layer(index):
                # Both directions read the tokens as they entered this layer.
                freq_in, time_in = freq_tokens, time_tokens
                freq_tokens = self.freq_cross_attention_layers[position](freq_in, time_in)  # B, T1*Fr, C
                time_tokens = self.time_cross_attention_layers[position](time_in, freq_in)  # B, T2, C
            else:
                freq_tokens = self.freq_self_attention_layers[position](freq_tokens)  # B, T1*Fr, C
                time_tokens = self.time_self_attention_layers[position](time_tokens)  # B, T2, C

        freq_out = freq_tokens.reshape(batch, frames, freq_bins, channels).permute(0, 3, 2, 1)  # B, C, Fr, T1
        time_out = time_tokens.transpose(1, 2)  # B, C, T2
        return freq_out, time_out


def official_transformer_key_map(
    num_layers: int,
    *,
    norm_in: bool,
    norm_in_group: bool,
    norm_out: bool,
    norm_first: bool,
    group_norm: bool,
    layer_scale: bool,
    cross_first: bool,
    emb: str,
) -> dict[str, str]:
    """Map the state-dict keys of ``demucs.transformer.CrossTransformerEncoder`` to ours.

    Keys are relative to the module (e.g. ``"layers.0.self_attn.in_proj_weight"``); the values
    are the keys of a :class:`CrossDomainTransformer` built with the same settings. Every key
    of the reference's state dict is covered, and every key of ours is a value.

    Args:
        num_layers: Number of layers in each branch.
        norm_in: Whether the inputs are layer-normalized.
        norm_in_group: Whether the inputs are group-normalized (only without ``norm_in``).
        norm_out: Whether pre-norm layers end with a group normalization.
        norm_first: Whether the layers are pre-norm.
        group_norm: Whether the layers use group normalization; it has the same keys as layer
            normalization, so it does not change the map.
        layer_scale: Whether the layers have layer scales.
        cross_first: Whether the first layer is a cross-attention layer.
        emb: Position embedding, ``"sin"`` or ``"scaled"``.
    """
    del group_norm  # GroupNorm and LayerNorm both hold exactly `weight` and `bias`.
    if emb not in POSITION_EMBEDDINGS:
        raise ValueError(f"unsupported position embedding emb={emb!r}; expected one of {POSITION_EMBEDDINGS}")
    if num_layers < 0:
        raise ValueError(f"num_layers must be >= 0, got {num_layers}")

    mapping: dict[str, str] = {}
    affine = ("weight", "bias")
    if norm_in or norm_in_group:
        for name in affine:
            mapping[f"norm_in.{name}"] = f"freq_input_norm.{name}"
            mapping[f"norm_in_t.{name}"] = f"time_input_norm.{name}"
    if emb == "scaled":
        mapping["position_embeddings.embedding.weight"] = "time_position_embedding.table.weight"

    attention = ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")
    cross_parity = 0 if cross_first else 1
    for index in range(num_layers):
        is_cross = index % 2 == cross_parity
        kind = "cross" if is_cross else "self"
        for theirs_list, branch in (("layers", "freq"), ("layers_t", "time")):
            theirs = f"{theirs_list}.{index}"
            ours = f"{branch}_{kind}_attention_layers.{index // 2}"
            attention_name = "cross_attn" if is_cross else "self_attn"
            for name in attention:
                mapping[f"{theirs}.{attention_name}.{name}"] = f"{ours}.attention.{name}"
            for name in affine:
                mapping[f"{theirs}.linear1.{name}"] = f"{ours}.feedforward.expand.{name}"
                mapping[f"{theirs}.linear2.{name}"] = f"{ours}.feedforward.project.{name}"
            if is_cross and norm_first:
                norms = {"norm1": "attention_norm", "norm2": "context_norm", "norm3": "feedforward_norm"}
            elif is_cross:
                norms = {"norm1": "attention_norm", "norm2": "feedforward_norm", "norm3": "context_norm"}
            else:
                norms = {"norm1": "attention_norm", "norm2": "feedforward_norm"}
            if norm_first and norm_out:
                norms["norm_out"] = "output_norm"
            for their_norm, our_norm in norms.items():
                for name in affine:
                    mapping[f"{theirs}.{their_norm}.{name}"] = f"{ours}.{our_norm}.{name}"
            if layer_scale:
                mapping[f"{theirs}.gamma_1.scale"] = f"{ours}.attention_scale.scale"
                mapping[f"{theirs}.gamma_2.scale"] = f"{ours}.feedforward_scale.scale"
    return mapping
