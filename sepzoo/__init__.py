"""sepzoo: a PyTorch Lightning experiment framework and model zoo for music source separation."""

from __future__ import annotations

__version__ = "0.1.0"

DEFAULT_SOURCES: tuple[str, ...] = ("drums", "bass", "other", "vocals")
"""The MUSDB18 stems, in the order sepzoo models output them by default."""
