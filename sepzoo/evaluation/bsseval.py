"""BSSEval v4 (museval's ``v4`` mode) in torch: SDR, ISR, SIR and SAR per source and frame.

The definition (Vincent et al., BSS Eval; Stöter, Liutkus & Ito, SiSEC 2018): each estimate is
projected, by least squares, onto delayed copies (lags ``0 .. filters_len - 1``) of

* its own reference, all channels (the filtered true source, ``s_true + e_spat``), and
* every reference, all channels (adding the interference ``e_interf``);

what neither projection explains is the artifacts ``e_artif``. In version 4 the distortion
filters are time-invariant: they are solved once over the whole track, then applied to each
frame (window and hop of one second at 44.1 kHz by default), and the energy ratios are taken per
frame. A frame where any reference or any estimate is silent (its channels sum to zero at every
sample) is NaN for every source, as museval reports it.

How it is computed, in float64 throughout:

1. The least-squares problems only need correlations at lags below ``filters_len``, so they are
   accumulated block by block (:func:`_lagged_correlations`): short FFTs of every block, one
   batched matrix product per frequency summing the cross-spectra over blocks, one short
   inverse FFT per signal pair. That costs a few short FFTs per sample instead of one FFT of
   the whole track per pair of signals.
2. The Gram matrix of the delayed references is block Toeplitz and is filled from those
   correlations. One Cholesky factorisation serves every estimate's filters onto all
   references; the filters onto an estimate's own reference solve with a diagonal block.
3. Every frame is filtered in the frequency domain, and the energies of the projections and of
   their differences are read off the spectra by Parseval's theorem, so no projection is ever
   brought back to the time domain. The SDR needs no projection and is taken on the samples.

Spectra are laid out frequency-major (``[F, ...]``), as the per-frequency matrix products want
them, and work is done in steps small enough for the intermediate arrays to stay in the
processor's caches, with work spaces reused from step to step: on long tracks, memory traffic
costs more than the arithmetic.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft
import scipy.linalg
import torch
from torch import Tensor

EPS = float(torch.finfo(torch.float64).eps)
"""Ridge added to the correlation matrices before solving for the filters (museval's)."""
SINGULAR_LOADING = 1e-10
"""Added to the diagonal of a singular correlation matrix, relative to its largest entry, before
solving it again (see :func:`_solve`)."""

# Step sizes, measured on 3-minute tracks of four stereo sources: large enough for the matrix
# products to be efficient, small enough for each step's arrays to stay in cache (the
# frequency steps) or to be reused by the allocator rather than mapped afresh from the system
# at every step (the frame steps: their spectra take 23 MB).
BLOCKS_PER_STEP = 8
"""Blocks transformed together while correlating."""

FRAMES_PER_STEP = 4
"""Frames transformed together while filtering."""

FREQUENCIES_PER_STEP = 1024
"""Frequencies filtered together within a step of frames."""


def _fft_size(n: int) -> int:
    """The smallest even ``2^a 3^b 5^c >= n``: sizes every FFT library transforms quickly."""
    best = 1 << max(1, math.ceil(math.log2(max(n, 1))))
    power_of_five = 1
    while power_of_five < best:
        power_of_three = power_of_five
        while power_of_three < best:
            best = min(best, power_of_three << max(1, math.ceil(math.log2(n / power_of_three))))
            power_of_three *= 3
        power_of_five *= 5
    return best


def _on_cpu(tensor: Tensor) -> bool:
    """Whether scipy can work on the tensor's memory (elsewhere, torch does the work)."""
    return tensor.device.type == "cpu"


def _rfft_along_time(signals: Tensor, n_fft: int) -> Tensor:
    """Real FFT along the last (time) axis, zero-padded to ``n_fft``: ``[..., W]`` to a
    contiguous frequency-major ``[F, ...]``.

    torch's FFT always lays the transformed axis out last, and reordering its output costs more
    than the transform; on the CPU, scipy's reads the time axis of any strided view and writes
    the frequency-major layout directly.
    """
    if _on_cpu(signals):
        spectra = scipy.fft.rfft(
            signals.numpy().transpose(-1, *range(signals.dim() - 1)),
            n=n_fft,
            axis=0,
            workers=torch.get_num_threads(),
        )
        return torch.from_numpy(spectra)
    return torch.fft.rfft(signals, n=n_fft).movedim(-1, 0).contiguous()


def _segment(signals: Tensor, start: int, stop: int) -> Tensor:
    """``signals[..., start:stop]``, taken as zero outside their samples."""
    length = signals.shape[-1]
    inside = signals[..., max(start, 0) : min(stop, length)]
    if start >= 0 and stop <= length:
        return inside
    return torch.nn.functional.pad(inside, (max(0, -start), max(0, stop - length)))


def _lagged_correlations(references: Tensor, estimates: Tensor, max_lag: int) -> Tensor:
    """``out[p, q, max_lag + k] = sum_t references[p, t + k] * others[q, t]`` for
    ``|k| <= max_lag``, where ``others`` are the references then the estimates, all taken as zero
    outside their samples.

    The others are cut into blocks; each block is correlated with the stretch of the references
    that covers it plus ``max_lag`` samples on either side, by FFTs as long as that stretch, so
    that nothing wraps around. The cross-spectra of all blocks add up to the spectrum of the
    whole-track correlations at those lags.

    Args:
        references: ``[P, T]``.
        estimates: ``[P, T]``.
        max_lag: Largest lag, in samples.

    Returns:
        ``[P, 2P, 2 * max_lag + 1]``, lags ``-max_lag .. max_lag``.
    """
    count, length = references.shape
    # Blocks several times longer than the margins keep the overlap (and so the FFT work per
    # sample) small; a short signal is one block.
    n_fft = min(_fft_size(max(16 * max_lag, 4096)), _fft_size(length + 2 * max_lag))
    block = n_fft - 2 * max_lag
    blocks = -(-length // block)
    # The blocks of the references and estimates, zero-padded to n_fft: the padding is written
    # once.
    padded = references.new_zeros(2, count, BLOCKS_PER_STEP, n_fft)
    spectrum = torch.zeros(
        n_fft // 2 + 1, count, 2 * count, dtype=torch.complex128, device=references.device
    )  # F, P, 2P
    for first in range(0, blocks, BLOCKS_PER_STEP):
        step = min(BLOCKS_PER_STEP, blocks - first)
        start, stop = first * block, (first + step) * block
        covered = _segment(references, start - max_lag, stop + max_lag)
        stretches = covered.unfold(-1, n_fft, block)  # P, b, n_fft (overlapping views)
        for index, signals in enumerate((references, estimates)):
            padded[index, :, :step, :block] = _segment(signals, start, stop).unflatten(-1, (step, block))
        stretch_spectra = _rfft_along_time(stretches, n_fft)  # F, P, b
        other_spectra = _rfft_along_time(padded[:, :, :step], n_fft).flatten(1, 2)  # F, 2P, b
        # Summed over blocks, one matrix product per frequency: X(f) conj(Y(f)).
        spectrum.baddbmm_(stretch_spectra, other_spectra.mH)
    return torch.fft.irfft(spectrum.permute(1, 2, 0), n=n_fft)[..., : 2 * max_lag + 1]


def _gram_matrix(correlations: Tensor, filters_len: int) -> Tensor:
    """The Gram matrix of the references delayed by ``0 .. L-1``, plus museval's ridge.

    Args:
        correlations: ``<r_p shifted by k, r_q>`` for lags ``-(L-1) .. L-1``, ``[P, P, 2L-1]``.
        filters_len: ``L``.

    Returns:
        ``[P*L, P*L]``, rows and columns ordered (reference, delay).
    """
    count = correlations.shape[0]
    size = count * filters_len
    # <r_p delayed by a, r_q delayed by b> = corr_pq[b - a]: the matrix is block Toeplitz.
    if _on_cpu(correlations):
        # A view that reads lag b - a at [p, a, q, b] (a negative stride along a, which numpy
        # allows and torch does not), copied in one pass: six times faster than one strided
        # copy per delay once the memory is mapped.
        lags = correlations.numpy()
        along_p, along_q, along_lag = lags.strides
        toeplitz = np.lib.stride_tricks.as_strided(
            lags[:, :, filters_len - 1 :],
            shape=(count, filters_len, count, filters_len),
            strides=(along_p, -along_lag, along_q, along_lag),
            writeable=False,
        )
        gram = torch.from_numpy(np.ascontiguousarray(toeplitz).reshape(size, size))
    else:
        gram = correlations.new_empty(count, filters_len, count, filters_len)
        # The row of delay a holds lags -a .. L-1-a, which is window L-1-a of these.
        windows = correlations.unfold(-1, filters_len, 1)  # P, P, L, L: window i holds lags i-L+1 .. i
        for delay in range(filters_len):
            gram[:, delay] = windows[:, :, filters_len - 1 - delay]
        gram = gram.reshape(size, size)
    gram.diagonal().add_(EPS)
    return gram


def _solve(gram: Tensor, right: Tensor) -> Tensor:
    """``gram^-1 right`` for the symmetric positive (semi-)definite ``gram``: by Cholesky, which
    serves every right-hand side at once, or by LU where the factorisation fails.

    A singular ``gram`` comes from references that repeat one another, such as a mono source
    up-mixed to two equal channels. Every solution of the normal equations then gives the same
    projections (they differ by filters that the references map to zero), so where LU finds
    ``gram`` singular a solution with a slightly loaded diagonal is taken; museval takes the
    least-squares one.

    On the CPU, LAPACK is called directly: the matrix is symmetric, so its row-major storage is
    also the column-major matrix LAPACK expects, and torch's reordering copy of the matrix and
    its clearing of the factor's other triangle, which together cost as much as the
    factorisation, are spared.
    """
    solution = _cholesky_solve(gram, right)
    if solution is not None:
        return solution
    try:
        return torch.linalg.solve(gram, right)
    except torch.linalg.LinAlgError:
        load = SINGULAR_LOADING * gram.diagonal().max()
        loaded = gram + load * torch.eye(len(gram), dtype=gram.dtype, device=gram.device)
        solution = _cholesky_solve(loaded, right)
        if solution is None:  # on the CPU: CUDA's least squares needs a full-rank matrix
            solution = torch.linalg.lstsq(loaded.cpu(), right.cpu()).solution.to(gram.device)
        return solution


def _cholesky_solve(gram: Tensor, right: Tensor) -> Tensor | None:
    """``gram^-1 right`` by Cholesky, or ``None`` where ``gram`` is not positive definite."""
    if _on_cpu(gram):
        factor, info = scipy.linalg.lapack.dpotrf(gram.numpy().T, lower=1, clean=0)
        if info == 0:
            return torch.from_numpy(scipy.linalg.lapack.dpotrs(factor, right.numpy(), lower=1)[0])
        return None
    factor, info = torch.linalg.cholesky_ex(gram)
    return torch.cholesky_solve(right, factor) if int(info) == 0 else None


def _distortion_filters(references: Tensor, estimates: Tensor, filters_len: int) -> tuple[Tensor, Tensor]:
    """The least-squares filters of every estimate channel onto all references, and onto its
    own source's reference only.

    Args:
        references: ``[S, C, T]``.
        estimates: ``[S, C, T]``.
        filters_len: Taps ``L`` of the filters.

    Returns:
        ``every[p, s*C + c, m]``, ``[S*C, S*C, L]``: tap ``m`` from reference channel ``p`` to
        channel ``c`` of estimate ``s``; ``own[s, c', c, m]``, ``[S, C, C, L]``: tap ``m`` from
        channel ``c'`` of reference ``s`` to channel ``c`` of estimate ``s``.
    """
    sources, channels, length = references.shape
    count = sources * channels
    max_lag = filters_len - 1
    correlations = _lagged_correlations(
        references.reshape(count, length), estimates.reshape(count, length), max_lag
    )  # P, 2P, 2L-1
    gram = _gram_matrix(correlations[:, :count], filters_len)  # P*L, P*L
    # <r_p delayed by m, e_q> = corr_pq[-m], m = 0 .. L-1
    cross = correlations[:, count:, : max_lag + 1].flip(-1)  # P, P(estimates), L
    cross = cross.permute(0, 2, 1).reshape(count * filters_len, count)  # P*L, P

    every = _solve(gram, cross).reshape(count, filters_len, count)
    block = channels * filters_len
    own = []
    for source in range(sources):
        rows = slice(source * block, (source + 1) * block)
        columns = slice(source * channels, (source + 1) * channels)
        own.append(_solve(gram[rows, rows], cross[rows, columns]))  # C*L, C
    own = torch.stack(own).reshape(sources, channels, filters_len, channels)
    return every.transpose(1, 2), own.transpose(2, 3)


def _filter_spectra(every: Tensor, own: Tensor, n_fft: int) -> Tensor:
    """Real FFTs of all filters as one ``[P, 2*S*C]`` matrix per frequency, ``[F, P, 2*S*C]``.

    Column ``s*C + c`` holds the filters of estimate ``s``, channel ``c``, onto all references;
    column ``S*C + s*C + c`` its filters onto its own reference (zero from the others'), so
    that one matrix product gives both projections.

    Args:
        every: ``[P, S*C, L]`` (see :func:`_distortion_filters`).
        own: ``[S, C, C, L]``.
        n_fft: FFT size.
    """
    sources, channels, _, filters_len = own.shape
    count = sources * channels
    own_block_diagonal = every.new_zeros(sources, channels, sources, channels, filters_len)
    for source in range(sources):
        own_block_diagonal[source, :, source] = own[source]
    filters = torch.cat([every, own_block_diagonal.reshape(count, count, filters_len)], dim=1)  # P, 2P, L
    return _rfft_along_time(filters, n_fft)  # F, P, 2P


def _projection_energies(true: Tensor, estimate: Tensor, filter_spectra: Tensor) -> Tensor:
    """Energies of the projections of some frames and of their differences, by Parseval.

    Args:
        true: Real FFTs (size ``n_fft``) of the reference frames, ``[F, N, P]`` (any strides),
            with the DC and Nyquist bins scaled by ``sqrt(1/2)``: every other bin stands for
            itself and its mirror image, so the energies are then ``2 / n_fft`` times the plain
            sums of squared magnitudes.
        estimate: The same of the estimate frames.
        filter_spectra: ``[F, P, 2P]``, from :func:`_filter_spectra`.

    Returns:
        ``[5, N, P]``: the energies, per frame and estimate channel, of ``own - true``,
        ``own``, ``every - own``, ``every`` and ``estimate - every``, where ``own`` and
        ``every`` are the projections onto the own reference and onto all references.
    """
    bins, count, signals = true.shape
    n_fft = 2 * (bins - 1)
    energies = true.new_zeros(5, count, signals, dtype=torch.float64)
    terms = true.new_empty(5, FREQUENCIES_PER_STEP, count, signals)
    for first in range(0, bins, FREQUENCIES_PER_STEP):
        step = slice(first, first + FREQUENCIES_PER_STEP)
        projections = torch.matmul(true[step], filter_spectra[step])  # f, N, 2P
        every, own = projections[..., :signals], projections[..., signals:]
        used = terms[:, : projections.shape[0]]  # 5, f, N, P
        torch.sub(own, true[step], out=used[0])
        used[1] = own
        torch.sub(every, own, out=used[2])
        used[3] = every
        torch.sub(estimate[step], every, out=used[4])
        # One reduction axis at a time: torch is far slower reducing two axes at once here.
        energies += torch.view_as_real(used).square_().sum(dim=1).sum(dim=-1)
    return energies * (2 / n_fft)


def _frame_scores(
    reference_frames: Tensor, estimate_frames: Tensor, filter_spectra: Tensor, padded: Tensor
) -> dict[str, Tensor]:
    """SDR, ISR, SIR and SAR of some frames, NaN where a frame is silent.

    A frame's projections are its reference samples (zero outside the frame) convolved with the
    filters, ``W + L - 1`` samples long as in museval. With FFTs at least that long, products
    of spectra are those convolutions exactly, and Parseval's theorem gives their energies (and
    those of their differences) from the spectra.

    Args:
        reference_frames: ``[S, C, N, W]``.
        estimate_frames: ``[S, C, N, W]``.
        filter_spectra: ``[F, S*C, 2*S*C]``, from :func:`_filter_spectra`.
        padded: Work space ``[2, S, C, N or more, n_fft]``, zero from sample ``W`` on.

    Returns:
        ``{"SDR", "ISR", "SIR", "SAR"}``, each ``[S, N]``.
    """
    sources, channels, count, length = reference_frames.shape
    padded = padded[:, :, :, :count]
    padded[0, ..., :length] = reference_frames
    padded[1, ..., :length] = estimate_frames
    frames = padded[..., :length]  # 2, S, C, N, W
    channel_sums = sum(frames.unbind(dim=2))  # 2, S, N, W
    silent = (channel_sums.abs().amax(dim=-1) == 0).flatten(end_dim=1).any(dim=0)  # N
    # The SDR compares the estimate with the reference itself: no filter is involved.
    true_energy = torch.linalg.vecdot(frames[0], frames[0]).sum(dim=1)  # S, N
    error = frames[1] - frames[0]
    sdr = _decibels(true_energy, torch.linalg.vecdot(error, error).sum(dim=1))

    n_fft = 2 * (filter_spectra.shape[0] - 1)
    spectra = _rfft_along_time(padded, n_fft)  # F, 2, S, C, N
    spectra[0] *= math.sqrt(0.5)
    spectra[-1] *= math.sqrt(0.5)
    true, estimate = spectra.flatten(2, 3).mT.unbind(dim=1)  # F, N, P each
    energies = _projection_energies(true, estimate, filter_spectra)  # 5, N, P
    energies = energies.unflatten(-1, (sources, channels)).sum(dim=-1).mT  # 5, S, N
    own_error, own, interference, every, artifacts = energies
    scores = {
        "SDR": sdr,
        "ISR": _decibels(true_energy, own_error),
        "SIR": _decibels(own, interference),
        "SAR": _decibels(every, artifacts),
    }
    return {
        name: torch.where(silent, torch.full_like(values, math.nan), values)
        for name, values in scores.items()
    }


def _decibels(numerator: Tensor, denominator: Tensor) -> Tensor:
    ratio = 10 * torch.log10(numerator / denominator)
    return torch.where(denominator == 0, torch.full_like(ratio, math.inf), ratio)


def bss_eval_v4(
    references: Tensor,
    estimates: Tensor,
    window: int = 44100,
    hop: int = 44100,
    filters_len: int = 512,
) -> dict[str, Tensor]:
    """SDR, ISR, SIR and SAR of every source and frame, as ``museval.evaluate(mode="v4")``.

    Runs on the device of the inputs. Frames are museval's: whole windows only, or one frame of
    the whole track when the window is longer than the track. museval's ISR, SIR and SAR can
    depend on the order of the sources where its projections are ill-conditioned; to compare
    with published museval results, pass the sources in museval's order (musdb's
    ``track.targets``: vocals, drums, bass, other). Where museval refuses a track because a
    reference or an estimate is silent throughout, every frame holds a silent source and is NaN
    here.

    Args:
        references: True stems ``[S, C, T]``.
        estimates: Estimated stems, same shape.
        window: Frame length in samples. (Default: ``44100``)
        hop: Hop between frames in samples. (Default: ``44100``)
        filters_len: Taps of the distortion filters. (Default: ``512``)

    Returns:
        ``{"SDR", "ISR", "SIR", "SAR"}``, each ``[S, frames]`` float64, NaN on silent frames.
    """
    if references.shape != estimates.shape or references.dim() != 3:
        raise ValueError(
            f"references and estimates must both be [sources, channels, time], got {list(references.shape)} "
            f"and {list(estimates.shape)}"
        )
    references, estimates = references.detach().double(), estimates.detach().double()
    every, own = _distortion_filters(references, estimates, filters_len)
    frame_length = min(window, references.shape[-1])
    filter_spectra = _filter_spectra(every, own, _fft_size(frame_length + filters_len - 1))
    # [S, C, N, W] views: frame n is samples n*hop .. n*hop + W - 1.
    reference_frames = references.unfold(-1, frame_length, hop)
    estimate_frames = estimates.unfold(-1, frame_length, hop)
    # One work space for every step: fresh large arrays cost page faults on every step.
    n_fft = 2 * (filter_spectra.shape[0] - 1)
    padded = references.new_zeros(2, *references.shape[:2], FRAMES_PER_STEP, n_fft)
    steps = [
        _frame_scores(
            reference_frames[:, :, first : first + FRAMES_PER_STEP],
            estimate_frames[:, :, first : first + FRAMES_PER_STEP],
            filter_spectra,
            padded,
        )
        for first in range(0, reference_frames.shape[2], FRAMES_PER_STEP)
    ]
    return {name: torch.cat([step[name] for step in steps], dim=1) for name in ("SDR", "ISR", "SIR", "SAR")}
