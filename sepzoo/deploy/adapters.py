"""Adapters: the steps around an exported graph, in NumPy.

An exported model is a graph plus an *adapter*: :meth:`Adapter.inputs` turns a batch of
mixture chunks into the graph's inputs (e.g. the STFT's real and imaginary parts), and
:meth:`Adapter.outputs` turns the graph's outputs back into stems (e.g. complex masking and
the inverse STFT). The manifest of an exported folder names the adapter and holds its
settings, so the folder runs without the Python class that was exported.

Each family of models registers its adapter in its own module, listed in
:data:`ADAPTER_MODULES`; only the module an exported folder names is imported.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

ADAPTER_MODULES: dict[str, str] = {
    "open_unmix": "sepzoo.deploy.umx",
    "waveform": "sepzoo.deploy.adapters",
    "spectral_mask": "sepzoo.deploy.spectral",
    "spectral_stems": "sepzoo.deploy.spectral",
    "hybrid_demucs": "sepzoo.deploy.hybrid",
}
"""Adapter name -> the module that registers it."""

_ADAPTERS: dict[str, type[Adapter]] = {}


class Adapter:
    """The NumPy steps before and after one family's graph.

    Args:
        settings: The adapter's settings, as the manifest stores them (plain JSON values).
    """

    name: str = ""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = dict(settings)

    def inputs(self, mix: np.ndarray) -> tuple[dict[str, np.ndarray], Any]:
        """The graph's inputs for a batch of mixture chunks, and what :meth:`outputs` needs
        to finish (e.g. the mixture's spectrogram).

        Args:
            mix: Mixture chunks, float32 ``[B, C, T]`` with ``T`` the exported segment.

        Returns:
            ``({input name: float32 array}, state)``.
        """
        raise NotImplementedError

    def outputs(self, results: Mapping[str, np.ndarray], state: Any, mix: np.ndarray) -> np.ndarray:
        """The stems ``[B, S, C, T]`` (float32) from the graph's outputs.

        Args:
            results: The graph's outputs by name.
            state: What :meth:`inputs` returned beside the inputs.
            mix: The mixture chunks :meth:`inputs` was given.
        """
        raise NotImplementedError


def register_adapter(name: str) -> Callable[[type[Adapter]], type[Adapter]]:
    """Class decorator registering an :class:`Adapter` under ``name``.

    Args:
        name: The adapter's name, as manifests store it; also listed in :data:`ADAPTER_MODULES`.
    """

    def decorator(cls: type[Adapter]) -> type[Adapter]:
        if name in _ADAPTERS and _ADAPTERS[name] is not cls:
            raise ValueError(f"adapter {name!r} is registered twice")
        cls.name = name
        _ADAPTERS[name] = cls
        return cls

    return decorator


def get_adapter(name: str, settings: Mapping[str, Any]) -> Adapter:
    """The adapter registered under ``name``, built with ``settings``.

    Args:
        name: An adapter name from :data:`ADAPTER_MODULES`.
        settings: Its settings.

    Raises:
        KeyError: ``name`` is not a known adapter.
    """
    if name not in ADAPTER_MODULES:
        raise KeyError(f"unknown adapter {name!r} (known: {', '.join(sorted(ADAPTER_MODULES))})")
    importlib.import_module(ADAPTER_MODULES[name])
    return _ADAPTERS[name](settings)


@register_adapter("waveform")
class WaveformAdapter(Adapter):
    """A graph from waveforms to waveforms: input ``mix`` ``[B, C, T]``, output ``stems``
    ``[B, S, C, T]``; nothing happens outside it."""

    def inputs(self, mix: np.ndarray) -> tuple[dict[str, np.ndarray], Any]:
        return {"mix": np.ascontiguousarray(mix, dtype=np.float32)}, None

    def outputs(self, results: Mapping[str, np.ndarray], state: Any, mix: np.ndarray) -> np.ndarray:
        return np.asarray(results["stems"], dtype=np.float32)


def complex_to_channels(spectrum: np.ndarray) -> np.ndarray:
    """A complex array as float32 with a last axis of size 2 (real, imaginary).

    Args:
        spectrum: Any complex array.
    """
    return np.ascontiguousarray(np.stack([spectrum.real, spectrum.imag], axis=-1), dtype=np.float32)


def channels_to_complex(values: np.ndarray) -> np.ndarray:
    """The inverse of :func:`complex_to_channels` (complex128).

    Args:
        values: An array whose last axis holds the real and imaginary parts.
    """
    values = np.asarray(values)
    if values.dtype == np.float32 and values.flags.c_contiguous:
        # The two parts side by side are already complex64's layout: no copy until the widening.
        return values.view(np.complex64)[..., 0].astype(np.complex128)
    values = values.astype(np.float64)
    return values[..., 0] + 1j * values[..., 1]


__all__ = [
    "ADAPTER_MODULES",
    "Adapter",
    "WaveformAdapter",
    "channels_to_complex",
    "complex_to_channels",
    "get_adapter",
    "register_adapter",
]
