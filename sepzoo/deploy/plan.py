"""Chunk planning in plain integers and NumPy: which chunks cover a track, and how they are weighed.

The torch engine (:mod:`sepzoo.engine.chunks`, which re-exports these) and the torch-free
runtime of exported models (:mod:`sepzoo.deploy.runtime`) both plan their chunks here, so an
exported model is fed the same chunks, cross-faded with the same weights, either way. Nothing
here imports torch.
"""

from __future__ import annotations

import numpy as np


def seconds_to_samples(seconds: float | None, sample_rate: int) -> int | None:
    """A chunk length in seconds as a whole number of samples (``None`` stays ``None``).

    Truncated, as demucs truncates it (so that chunks, and outputs, match its engine), except
    that a product within 1e-6 of a whole number is that number: a chunk of N samples kept as
    ``N / sample_rate`` seconds comes back as N (``261120 / 44100 * 44100`` is
    ``261119.99999999997``).

    Args:
        seconds: Seconds, or ``None``.
        sample_rate: Samples per second.
    """
    if seconds is None:
        return None
    product = seconds * sample_rate
    nearest = round(product)
    return nearest if abs(product - nearest) < 1e-6 else int(product)


def chunk_stride(chunk_length: int, overlap: float) -> int:
    """Samples between the starts of consecutive chunks: ``int((1 - overlap) * chunk_length)``, at least 1.

    Truncated, as ``demucs.apply.apply_model`` computes it, so that the chunks are the same.

    Args:
        chunk_length: Samples per chunk.
        overlap: Fraction of a chunk shared with the next one, in ``[0, 1)``.
    """
    return max(1, int((1 - overlap) * chunk_length))


def plan_chunks(length: int, chunk_length: int, overlap: float) -> list[int]:
    """Start offsets of overlapping chunks that cover ``length`` samples.

    Consecutive chunks start :func:`chunk_stride` samples apart, from 0 to the last offset
    before ``length``, as ``demucs.apply.apply_model`` plans them; chunks that run past the end
    are cut short there. :class:`~sepzoo.engine.chunks.ChunkPlan` gives the same offsets with
    each chunk's lengths.

    Args:
        length: Number of samples to cover.
        chunk_length: Samples per chunk.
        overlap: Fraction of a chunk shared with the next one, in ``[0, 1)``.
    """
    if length <= 0:
        raise ValueError(f"cannot plan chunks over a signal of length {length}")
    if chunk_length <= 0:
        raise ValueError(f"chunk length must be positive, got {chunk_length}")
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    return list(range(0, length, chunk_stride(chunk_length, overlap)))


def left_context(length: int, padded_length: int) -> int:
    """Samples of context before a chunk of ``length`` widened to ``padded_length``.

    The extra samples are split evenly around the chunk, one more on the right when odd; every
    widening (``extract_chunk``, a stream's input window) and cropping (``center_crop``) uses
    this one split, so outputs land back where their input came from.

    Args:
        length: Samples in the chunk.
        padded_length: Samples the chunk is widened to, ``>= length``.
    """
    return (padded_length - length) // 2


def triangular_weights(length: int, power: float = 1.0) -> np.ndarray:
    """Cross-fade window as float32: a triangle peaking at 1 in the middle, raised to ``power``.

    Every value is positive (the edges are ``(1 / peak) ** power``), so any sample covered by
    a chunk gets a non-zero weight; larger ``power`` makes the transitions between chunks
    sharper.

    Args:
        length: Number of samples.
        power: Exponent applied to the triangle. (Default: ``1.0``)
    """
    if length <= 0:
        raise ValueError(f"window length must be positive, got {length}")
    position = np.arange(length)
    triangle = np.minimum(position + 1, length - position).astype(np.float32)
    return (triangle / triangle.max()) ** np.float32(power)


__all__ = ["chunk_stride", "left_context", "plan_chunks", "seconds_to_samples", "triangular_weights"]
