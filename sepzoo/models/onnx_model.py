"""An exported folder as a :class:`~sepzoo.models.base.Separator`, run by onnxruntime.

:func:`sepzoo.models.files.load_separator` returns an :class:`OnnxSeparator` for a folder that
``sepzoo export-onnx`` wrote, so ``sepzoo separate``, ``sepzoo eval`` and comparison recipes
take exported folders as they take model files, through the same engine: chunking, shifts and
streaming happen in torch as for any model, and each chunk goes through the NumPy adapter and
the onnxruntime graph of :mod:`sepzoo.deploy.runtime`.

The graph's time axis is fixed, so the separator has ``fixed_chunk_length``: every chunk,
the short last ones too, is widened with real neighbouring audio to the graph's length, as the
torch-free :meth:`~sepzoo.deploy.runtime.ExportedModel.separate` widens it.

It is deliberately not registered: it has no weights to train or save, and it is built only
from a folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sepzoo.deploy.runtime import ExportedModel, is_exported_folder, load_exported
from sepzoo.errors import SepzooError
from sepzoo.models.base import Domain, Separator


class OnnxSeparator(Separator):
    """The separator of an exported folder.

    Args:
        folder: The folder ``sepzoo export-onnx`` wrote; its files' digests are checked.
        providers: onnxruntime execution providers, in order of preference. (Default: ``None``,
            CUDA where this onnxruntime has it, then the CPU)
    """

    fixed_chunk_length = True

    def __init__(self, folder: str, providers: list[str] | None = None) -> None:
        exported = load_exported(folder, providers)
        manifest = exported.manifest
        super().__init__(
            sources=list(manifest["sources"]),
            sample_rate=int(manifest["sample_rate"]),
            audio_channels=int(manifest["audio_channels"]),
            segment=float(manifest["segment"]),
        )
        self.exported: ExportedModel = exported
        self.manifest: dict[str, Any] = manifest
        self.source_digest: str = str(manifest.get("source", {}).get("sha256", ""))
        self.graph_length: int = int(manifest["segment_samples"])

    @classmethod
    def from_folder(cls, folder: str | Path, providers: Sequence[str] | None = None) -> OnnxSeparator:
        """Open an exported folder (its digests are checked).

        Args:
            folder: The folder ``sepzoo export-onnx`` wrote.
            providers: onnxruntime execution providers. (Default: CUDA where available, then CPU)
        """
        return cls(str(folder), None if providers is None else list(providers))

    @property
    def domain(self) -> Domain:  # type: ignore[override]
        """The domain of the model that was exported."""
        return self.manifest.get("domain", "waveform")

    @property
    def registry_name(self) -> str:  # type: ignore[override]
        """``onnx:<architecture>``, for messages and records."""
        return f"onnx:{self.manifest.get('architecture') or 'model'}"

    @property
    def max_segment(self) -> float:
        """The graph's length in seconds: no chunk can be longer."""
        return self.graph_length / self.sample_rate

    def valid_length(self, length: int) -> int:
        """The graph's length, for any chunk that fits in it.

        Args:
            length: A number of samples.
        """
        if length > self.graph_length:
            raise SepzooError(
                f"{self.exported.folder}: a chunk of {length} samples does not fit the exported graph "
                f"({self.graph_length} samples); pass a --segment of at most {self.max_segment:g} s"
            )
        return self.graph_length

    def forward(self, mix: Tensor, references: Tensor | None = None) -> Tensor:
        """Run chunks of the graph's length through the adapter and the onnxruntime graph.

        Args:
            mix: ``[batch, audio_channels, graph length]``.
            references: Ignored. (Default: ``None``)
        """
        self.check_input(mix)
        chunks = mix.detach().to("cpu", torch.float32).numpy()
        stems = self.exported.run(np.ascontiguousarray(chunks))
        return torch.from_numpy(stems).to(mix.device)


BACKENDS = ("auto", "torch", "onnxruntime")
"""What ``--backend`` of ``separate`` and ``eval`` accepts."""


def check_backend(spec: str | Path, backend: str) -> None:
    """Refuse a model that the requested backend cannot run.

    ``auto`` runs exported folders with onnxruntime and everything else with torch;
    ``onnxruntime`` needs an exported folder, ``torch`` anything but one.

    Args:
        spec: What the command was given as a model.
        backend: ``"auto"``, ``"torch"`` or ``"onnxruntime"``.

    Raises:
        SepzooError: The backend does not fit the model.
    """
    if backend not in BACKENDS:
        raise SepzooError(f"--backend {backend}: expected one of {', '.join(BACKENDS)}")
    exported = is_exported_folder(spec)
    if backend == "onnxruntime" and not exported:
        raise SepzooError(f"{spec}: --backend onnxruntime needs an exported folder (sepzoo export-onnx)")
    if backend == "torch" and exported:
        raise SepzooError(
            f"{spec}: is an exported folder, which runs with onnxruntime; --backend torch needs a model "
            "file, training checkpoint or run directory"
        )


__all__ = ["BACKENDS", "OnnxSeparator", "check_backend"]
