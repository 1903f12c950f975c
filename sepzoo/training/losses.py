"""Training losses for source separation.

Every loss maps estimated and true stems (``[B, S, C, T]``) to one scalar to minimise and a
per-source breakdown for logging. Per-source weights let a recipe emphasise some stems
(e.g. ``{vocals: 2.0}``); the total is the weighted mean of the per-source losses, so the
scale of the loss does not change when weights are scaled together.

Losses are chosen in recipes by their registered name (``"l1"``, ``"mse"``, ``"mrstft"``,
``"neg_sisdr"``, ``"complex_spec_l1"`` (Band-split RNN's), ``"magnitude_mse"`` (Open-Unmix's))
through :func:`build_loss`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from sepzoo.dsp.precision import full_precision
from sepzoo.dsp.stft import hann_window, stft
from sepzoo.errors import ConfigError, suggestion
from sepzoo.registry import Registry

LOSSES: Registry[type[SeparationLoss]] = Registry("loss")


def register_loss(name: str):  # noqa: ANN201 - decorator factory
    """Register a :class:`SeparationLoss` subclass under a stable name.

    Args:
        name: The name recipes use to pick the loss.
    """
    decorate = LOSSES.register(name)

    def decorator(cls: type[SeparationLoss]) -> type[SeparationLoss]:
        if not (isinstance(cls, type) and issubclass(cls, SeparationLoss)):
            raise TypeError(f"@register_loss({name!r}) must decorate a SeparationLoss subclass")
        return decorate(cls)

    return decorator


def list_losses() -> list[str]:
    """Names of every registered loss, sorted."""
    return LOSSES.names()


def build_loss(name: str, sources: list[str], **kwargs: Any) -> SeparationLoss:
    """Build the loss registered under ``name``.

    Args:
        name: A registered loss name.
        sources: Names of the stems, in the order of the ``S`` axis.
        **kwargs: Init arguments of the loss (e.g. ``weights``, ``fft_sizes``).

    Raises:
        UnknownNameError: If ``name`` is not registered (with the closest names).
        ConfigError: If an argument is invalid.
    """
    return LOSSES.get(name)(sources=sources, **kwargs)


class SeparationLoss(nn.Module):
    """Base class of the registered losses: weighted mean of per-source losses.

    Subclasses implement :meth:`per_source`, which returns one value per source averaged
    over the batch and channels. :meth:`forward` checks the shapes, computes in float32 with
    autocast disabled (reduced precision makes spectral and logarithmic losses unstable) and
    combines the sources as ``sum_s w_s * l_s / sum_s w_s``.

    Args:
        sources: Names of the stems, in the order of the ``S`` axis.
        weights: Weight of each named source; sources not named get ``1.0``. Weights must be
            non-negative and not all zero. (Default: ``None``, every source weighs ``1.0``)
    """

    def __init__(self, sources: list[str], weights: dict[str, float] | None = None) -> None:
        super().__init__()
        sources = list(sources)
        if not sources:
            raise ConfigError("loss: sources must name at least one stem")
        if len(set(sources)) != len(sources):
            raise ConfigError(f"loss: source names must be unique, got {sources}")
        self.sources: list[str] = sources
        values = _source_weights(sources, weights or {})
        # Not persistent: the weights come from the recipe, not from the checkpoint, and the
        # training checkpoint's state_dict must hold only the model.
        self.register_buffer("weights", torch.tensor(values, dtype=torch.float32), persistent=False)

    @property
    def weight_dict(self) -> dict[str, float]:
        """The weight of every source, by name."""
        return {name: float(w) for name, w in zip(self.sources, self.weights.tolist())}

    @full_precision
    def forward(self, estimate: Tensor, reference: Tensor) -> tuple[Tensor, Tensor]:
        """Compute the weighted total and the per-source losses.

        Args:
            estimate: Estimated stems, ``[batch, sources, channels, time]``.
            reference: True stems, same shape as ``estimate``.

        Returns:
            The scalar total (differentiable) and the per-source values ``[sources]``
            (detached, for logging).
        """
        if estimate.shape != reference.shape:
            raise ValueError(
                f"estimate and reference shapes differ: {list(estimate.shape)} vs {list(reference.shape)}"
            )
        if estimate.dim() != 4 or estimate.shape[1] != len(self.sources):
            raise ValueError(
                f"expected stems of shape [batch, {len(self.sources)}, channels, time], "
                f"got {list(estimate.shape)}"
            )
        per_source = self.per_source(estimate.float(), reference.float())  # S
        weights = self.weights.to(device=per_source.device, dtype=per_source.dtype)
        total = (weights * per_source).sum() / weights.sum()
        return total, per_source.detach()

    def per_source(self, estimate: Tensor, reference: Tensor) -> Tensor:
        """Loss of each source, averaged over batch and channels.

        Args:
            estimate: Estimated stems, ``[batch, sources, channels, time]``, float32.
            reference: True stems, same shape.

        Returns:
            ``[sources]``.
        """
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"sources={self.sources}, weights={self.weight_dict}"


def _source_weights(sources: list[str], weights: Mapping[str, float]) -> list[float]:
    """Validate recipe weights and expand them to one value per source (missing ones are 1)."""
    if not isinstance(weights, Mapping):
        raise ConfigError(f"loss.weights must map source names to numbers, got {weights!r}")
    for name, value in weights.items():
        if name not in sources:
            raise ConfigError(
                f"loss.weights: unknown source {name!r}{suggestion(str(name), sources)}"
                f" (sources: {', '.join(sources)})"
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"loss.weights.{name} must be a finite number, got {value!r}")
        if value < 0:
            raise ConfigError(f"loss.weights.{name} must be >= 0, got {value}")
    values = [float(weights.get(name, 1.0)) for name in sources]
    if sum(values) == 0:
        raise ConfigError(f"loss.weights are all zero ({dict(weights)}); at least one source must count")
    return values


class _SampleLoss(SeparationLoss):
    """Mean over samples of a pointwise distance between waveforms; subclasses give the distance."""

    def per_source(self, estimate: Tensor, reference: Tensor) -> Tensor:
        # B, S, C, T -> S
        return self.distance(estimate - reference).mean(dim=(0, 2, 3))

    def distance(self, difference: Tensor) -> Tensor:
        """The loss of each sample.

        Args:
            difference: Estimate minus reference, ``[batch, sources, channels, time]``.
        """
        raise NotImplementedError


@register_loss("l1")
class L1Loss(_SampleLoss):
    """Mean absolute error between waveforms.

    Args:
        sources: Names of the stems, in the order of the ``S`` axis.
        weights: Weight of each named source; others get ``1.0``. (Default: ``None``)
    """

    def distance(self, difference: Tensor) -> Tensor:
        return difference.abs()


@register_loss("mse")
class MSELoss(_SampleLoss):
    """Mean squared error between waveforms.

    Args:
        sources: Names of the stems, in the order of the ``S`` axis.
        weights: Weight of each named source; others get ``1.0``. (Default: ``None``)
    """

    def distance(self, difference: Tensor) -> Tensor:
        return difference.square()


# The resolutions of Yamamoto et al. 2020 (Parallel WaveGAN), the usual defaults.
DEFAULT_FFT_SIZES: tuple[int, ...] = (1024, 2048, 512)
DEFAULT_HOP_SIZES: tuple[int, ...] = (120, 240, 50)
DEFAULT_WIN_LENGTHS: tuple[int, ...] = (600, 1200, 240)


@register_loss("mrstft")
class MultiResolutionSTFTLoss(SeparationLoss):
    """Multi-resolution STFT loss (Yamamoto et al. 2020, "Parallel WaveGAN").

    For each resolution, the loss is ``factor_sc * SC + factor_mag * LogMag`` with the
    spectral convergence ``SC = || |Y| - |X| ||_F / || |Y| ||_F`` and the log-magnitude
    distance ``LogMag = mean | log|Y| - log|X| |`` (``Y`` the reference's STFT, ``X`` the
    estimate's); the resolutions are averaged. Per source, the Frobenius norms run over the
    whole batch, both channels and every time-frequency bin, as in the original, so one silent
    example in a batch does not dominate. Magnitudes are floored at ``sqrt(1e-7)`` to keep the
    logarithm and the ratio finite on silence; a source that is silent in every example of a
    batch still gets a large spectral convergence (any energy in its estimate is divided by
    the floor), so small batches of often-silent stems call for ``factor_sc`` below 1.
    Hann windows; the signal is zero-padded by half a window at both ends (``center=True``),
    so any segment length works.

    Args:
        sources: Names of the stems, in the order of the ``S`` axis.
        weights: Weight of each named source; others get ``1.0``. (Default: ``None``)
        fft_sizes: FFT size of each resolution. (Default: ``[1024, 2048, 512]``)
        hop_sizes: Hop size of each resolution. (Default: ``[120, 240, 50]``)
        win_lengths: Hann window length of each resolution, at most its FFT size.
            (Default: ``[600, 1200, 240]``)
        factor_sc: Weight of the spectral convergence term. (Default: ``1.0``)
        factor_mag: Weight of the log-magnitude term. (Default: ``1.0``)
    """

    MAGNITUDE_FLOOR = 1e-7
    """Lower bound of the squared magnitude, before the square root."""

    def __init__(
        self,
        sources: list[str],
        weights: dict[str, float] | None = None,
        fft_sizes: list[int] | None = None,
        hop_sizes: list[int] | None = None,
        win_lengths: list[int] | None = None,
        factor_sc: float = 1.0,
        factor_mag: float = 1.0,
    ) -> None:
        super().__init__(sources, weights)
        self.fft_sizes = _int_list("fft_sizes", fft_sizes, DEFAULT_FFT_SIZES)
        self.hop_sizes = _int_list("hop_sizes", hop_sizes, DEFAULT_HOP_SIZES)
        self.win_lengths = _int_list("win_lengths", win_lengths, DEFAULT_WIN_LENGTHS)
        counts = {len(self.fft_sizes), len(self.hop_sizes), len(self.win_lengths)}
        if len(counts) != 1:
            raise ConfigError(
                "loss: fft_sizes, hop_sizes and win_lengths must have the same length, got "
                f"{self.fft_sizes}, {self.hop_sizes}, {self.win_lengths}"
            )
        for fft, hop, win in zip(self.fft_sizes, self.hop_sizes, self.win_lengths):
            if win > fft:
                raise ConfigError(f"loss: window length {win} exceeds its FFT size {fft}")
            if hop > win:
                raise ConfigError(
                    f"loss: hop size {hop} exceeds its window length {win}; frames would skip samples"
                )
        for key, value in (("factor_sc", factor_sc), ("factor_mag", factor_mag)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ConfigError(f"loss.{key} must be a number >= 0, got {value!r}")
        if factor_sc == 0 and factor_mag == 0:
            raise ConfigError("loss: factor_sc and factor_mag are both zero; at least one term must count")
        self.factor_sc = float(factor_sc)
        self.factor_mag = float(factor_mag)

    def per_source(self, estimate: Tensor, reference: Tensor) -> Tensor:
        # Both signals go through one STFT call per resolution.
        signals = torch.stack([estimate, reference])  # 2, B, S, C, T
        total = estimate.new_zeros(estimate.shape[1])
        for fft, hop, win in zip(self.fft_sizes, self.hop_sizes, self.win_lengths):
            spec = stft(signals, fft, hop, hann_window(win, signals))  # 2, B, S, C, F, N
            power = spec.real.square() + spec.imag.square()
            est_mag, ref_mag = power.clamp(min=self.MAGNITUDE_FLOOR).sqrt()  # B, S, C, F, N
            dims = (0, 2, 3, 4)
            convergence = _frobenius(ref_mag - est_mag, dims) / _frobenius(ref_mag, dims)  # S
            log_distance = (ref_mag.log() - est_mag.log()).abs().mean(dim=dims)  # S
            total = total + self.factor_sc * convergence + self.factor_mag * log_distance
        return total / len(self.fft_sizes)


def _frobenius(x: Tensor, dims: tuple[int, ...]) -> Tensor:
    return x.square().sum(dim=dims).sqrt()


def _int_list(key: str, value: list[int] | None, default: tuple[int, ...]) -> list[int]:
    if value is None:
        return list(default)
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ConfigError(f"loss.{key} must be a list of positive integers, got {value!r}")
    values = list(value)
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in values):
        raise ConfigError(f"loss.{key} must be a non-empty list of positive integers, got {values!r}")
    return values


@register_loss("neg_sisdr")
class NegativeSISDRLoss(SeparationLoss):
    """Negative scale-invariant SDR (Le Roux et al. 2019), in dB.

    Each channel of each example is a separate signal: both signals are made zero-mean, the
    reference is scaled to best fit the estimate (``alpha = <x, y> / ||y||^2``), and
    ``SI-SDR = 10 log10(||alpha y||^2 / ||alpha y - x||^2)``. The loss is minus its mean over
    batch and channels. ``eps`` is added to the scaling denominator and to both energies, so
    silent signals give finite values and gradients; a perfect estimate gives
    ``-10 log10(||y||^2 / eps)`` rather than minus infinity.

    Args:
        sources: Names of the stems, in the order of the ``S`` axis.
        weights: Weight of each named source; others get ``1.0``. (Default: ``None``)
        eps: Stabiliser of the divisions and logarithm. (Default: ``1e-8``)
        zero_mean: Remove each signal's mean first, as the definition assumes. (Default: ``True``)
    """

    def __init__(
        self,
        sources: list[str],
        weights: dict[str, float] | None = None,
        eps: float = 1e-8,
        zero_mean: bool = True,
    ) -> None:
        super().__init__(sources, weights)
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
            raise ConfigError(f"loss.eps must be a positive number, got {eps!r}")
        self.eps = float(eps)
        self.zero_mean = bool(zero_mean)

    def per_source(self, estimate: Tensor, reference: Tensor) -> Tensor:
        if self.zero_mean:
            estimate = estimate - estimate.mean(dim=-1, keepdim=True)
            reference = reference - reference.mean(dim=-1, keepdim=True)
        dot = (estimate * reference).sum(dim=-1, keepdim=True)  # B, S, C, 1
        alpha = dot / (reference.square().sum(dim=-1, keepdim=True) + self.eps)
        target = alpha * reference  # B, S, C, T
        noise = estimate - target
        ratio = (target.square().sum(dim=-1) + self.eps) / (noise.square().sum(dim=-1) + self.eps)  # B, S, C
        return -10 * torch.log10(ratio).mean(dim=(0, 2))


def _check_stft_settings(n_fft: int, hop_length: int) -> tuple[int, int]:
    """Refuse an STFT size or hop that is not a positive integer, or a hop that skips samples."""
    for key, value in (("n_fft", n_fft), ("hop_length", hop_length)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"loss.{key} must be a positive integer, got {value!r}")
    if hop_length > n_fft:
        raise ConfigError(f"loss: hop_length {hop_length} exceeds n_fft {n_fft}; frames would skip samples")
    return n_fft, hop_length


@register_loss("complex_spec_l1")
class ComplexSpectrogramL1Loss(SeparationLoss):
    """L1 distance between complex spectrograms plus L1 distance between waveforms.

    The training objective of band-split RNN (Luo & Yu 2022, arXiv:2209.15174, eq. 1):
    ``sum |Re S - Re S'| + sum |Im S - Im S'| + sum |s - s'|``, with ``S`` and ``S'`` the STFTs
    of the estimated and true stems and ``s``, ``s'`` the waveforms. The sums run over bins,
    frames and samples as in the paper, and are divided by the number of waveform samples
    (batch x channels x time), which keeps the paper's balance between the terms while making
    the value independent of the segment length and batch size. The STFT is centred with zero
    padding and a Hann window; it should match the model's own (the paper's: 2048 and 512).
    Both terms are computed on waveforms, so a spectrogram model's estimate is compared through
    the STFT of its inverse STFT.

    Args:
        sources: Names of the stems, in the order of the ``S`` axis.
        weights: Weight of each named source; others get ``1.0``. (Default: ``None``)
        n_fft: STFT size. (Default: ``2048``)
        hop_length: STFT hop, at most ``n_fft``. (Default: ``512``)
    """

    def __init__(
        self,
        sources: list[str],
        weights: dict[str, float] | None = None,
        n_fft: int = 2048,
        hop_length: int = 512,
    ) -> None:
        super().__init__(sources, weights)
        self.n_fft, self.hop_length = _check_stft_settings(n_fft, hop_length)

    def per_source(self, estimate: Tensor, reference: Tensor) -> Tensor:
        batch, num_sources, channels, length = estimate.shape
        difference = estimate - reference  # B, S, C, T
        # The STFT is linear, so the difference of the spectrograms is the spectrogram of the
        # difference.
        window = hann_window(self.n_fft, difference)
        spectrum = stft(difference, self.n_fft, self.hop_length, window)  # B, S, C, F, N
        parts = torch.view_as_real(spectrum).abs().reshape(batch, num_sources, -1)  # B, S, C*F*N*2
        waveform = difference.abs().reshape(batch, num_sources, -1)  # B, S, C*T
        total = parts.sum(dim=(0, 2)) + waveform.sum(dim=(0, 2))  # S
        return total / (batch * channels * length)


@register_loss("magnitude_mse")
class MagnitudeMSELoss(SeparationLoss):
    """Mean squared error between STFT magnitudes.

    The training objective of Open-Unmix (Stöter et al. 2019; ``scripts/train.py`` of
    sigsep/open-unmix-pytorch): ``mean (|S'| - |S|)^2`` over batch, channels, bins and frames,
    with ``S'`` and ``S`` the STFTs of the estimated and true stems. The STFT is centred with
    zero padding and a Hann window, and should match the model's own (Open-Unmix's: 4096 and
    1024). Both are computed from waveforms, so a spectrogram model's estimate is compared
    through the STFT of its inverse STFT.

    Args:
        sources: Names of the stems, in the order of the ``S`` axis.
        weights: Weight of each named source; others get ``1.0``. (Default: ``None``)
        n_fft: STFT size. (Default: ``4096``)
        hop_length: STFT hop, at most ``n_fft``. (Default: ``1024``)
    """

    def __init__(
        self,
        sources: list[str],
        weights: dict[str, float] | None = None,
        n_fft: int = 4096,
        hop_length: int = 1024,
    ) -> None:
        super().__init__(sources, weights)
        self.n_fft, self.hop_length = _check_stft_settings(n_fft, hop_length)

    def per_source(self, estimate: Tensor, reference: Tensor) -> Tensor:
        signals = torch.stack([estimate, reference])  # 2, B, S, C, T
        spectrum = stft(signals, self.n_fft, self.hop_length, hann_window(self.n_fft, signals))
        magnitude = spectrum.abs().flatten(start_dim=3)  # 2, B, S, C*F*N
        return (magnitude[0] - magnitude[1]).square().mean(dim=(0, 2))  # S


__all__ = [
    "LOSSES",
    "ComplexSpectrogramL1Loss",
    "L1Loss",
    "MSELoss",
    "MagnitudeMSELoss",
    "MultiResolutionSTFTLoss",
    "NegativeSISDRLoss",
    "SeparationLoss",
    "build_loss",
    "list_losses",
    "register_loss",
]
