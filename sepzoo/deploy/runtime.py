"""Loading and running an exported folder with NumPy and onnxruntime only (no torch).

An exported folder (``sepzoo export-onnx``) holds the graph (``model.onnx``, and
``model.onnx.data`` for a large one) and the manifest ``sepzoo-onnx.json``, which names the
adapter around the graph, its settings and the sha256 digest of every graph file.
:func:`load_exported` checks every digest before the graph is opened, so a missing or altered
file is refused with one line instead of running a different network.

:meth:`ExportedModel.separate` cuts a track into chunks as the torch engine cuts it for a model
with ``fixed_chunk_length`` (the planning helpers of :mod:`sepzoo.deploy.plan` are shared):
chunks of the export's segment start every ``int((1 - overlap) * segment)`` samples, each is
widened with real neighbouring audio (zeros past the track's ends) to the graph's length, and
the outputs are cropped back and cross-faded with triangular weights. With torch installed,
``sepzoo separate`` runs the same folder through the torch engine
(:class:`sepzoo.models.onnx_model.OnnxSeparator`) and gives the same stems.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sepzoo.deploy.adapters import ADAPTER_MODULES, Adapter, get_adapter
from sepzoo.deploy.plan import left_context, plan_chunks, seconds_to_samples, triangular_weights
from sepzoo.errors import CheckpointError

MANIFEST_NAME = "sepzoo-onnx.json"
"""The manifest's file name in an exported folder."""
MANIFEST_FORMAT = "sepzoo-onnx"
MANIFEST_VERSION = 1
GRAPH_NAME = "model.onnx"
"""The graph's file name in an exported folder (its external data: ``model.onnx.data``)."""

_REQUIRED_KEYS = (
    "format",
    "format_version",
    "sources",
    "sample_rate",
    "audio_channels",
    "segment_samples",
    "segment",
    "adapter",
    "settings",
    "inputs",
    "outputs",
    "files",
)


class ExportedFolderError(CheckpointError):
    """An exported folder is missing, malformed, or does not match its manifest."""


def file_digest(path: str | Path) -> str:
    """The sha256 digest of a file, as hex.

    Args:
        path: The file.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def is_exported_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder with an export manifest.

    Args:
        path: Any path.
    """
    path = Path(path)
    return path.is_dir() and (path / MANIFEST_NAME).is_file()


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest of an exported folder, checked for its format and keys (digests are not
    checked here: see :func:`verify_files`).

    Args:
        folder: The exported folder.

    Raises:
        ExportedFolderError: No manifest, not JSON, another format or version, or a key missing.
    """
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        raise ExportedFolderError(
            f"{folder}: no {MANIFEST_NAME}; not an exported folder (sepzoo export-onnx)"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportedFolderError(f"{path}: cannot be read as JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ExportedFolderError(f"{path}: format {found!r}, expected {MANIFEST_FORMAT!r}")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > MANIFEST_VERSION:
        raise ExportedFolderError(
            f"{path}: format_version {version!r} is not supported "
            f"(this sepzoo reads up to {MANIFEST_VERSION})"
        )
    missing = [key for key in _REQUIRED_KEYS if key not in manifest]
    if missing:
        raise ExportedFolderError(f"{path}: lacks the key(s) {', '.join(missing)}")
    if not isinstance(manifest["files"], dict) or GRAPH_NAME not in manifest["files"]:
        raise ExportedFolderError(f"{path}: 'files' must map {GRAPH_NAME!r} (and its data files) to digests")
    if manifest["adapter"] not in ADAPTER_MODULES:
        raise ExportedFolderError(
            f"{path}: adapter {manifest['adapter']!r} is not known to this sepzoo "
            f"(known: {', '.join(sorted(ADAPTER_MODULES))})"
        )
    return manifest


def verify_files(folder: str | Path, manifest: Mapping[str, Any]) -> None:
    """Check every file the manifest lists against its sha256 digest.

    Args:
        folder: The exported folder.
        manifest: Its manifest.

    Raises:
        ExportedFolderError: A file is missing, named outside the folder, or altered.
    """
    folder = Path(folder)
    for name, expected in manifest["files"].items():
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise ExportedFolderError(
                f"{folder / MANIFEST_NAME}: file name {name!r} is not a plain file name"
            )
        path = folder / name
        if not path.is_file():
            raise ExportedFolderError(f"{path}: missing; the manifest lists it (export the model again)")
        if file_digest(path) != expected:
            raise ExportedFolderError(
                f"{path}: sha256 does not match the manifest; the file was altered or is damaged "
                "(export the model again)"
            )


def default_providers() -> list[str]:
    """onnxruntime's execution providers in the order sepzoo asks for them: CUDA where this
    onnxruntime has it, then the CPU."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    return [name for name in ("CUDAExecutionProvider", "CPUExecutionProvider") if name in available]


def run_session(session: Any, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run an onnxruntime session, returning its outputs by name.

    Args:
        session: An ``onnxruntime.InferenceSession``.
        feeds: Inputs by name.
    """
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, dict(feeds))))


class ExportedModel:
    """An exported folder, opened: its manifest, adapter and onnxruntime session.

    Build it with :func:`load_exported`.

    Args:
        folder: The exported folder.
        manifest: Its (verified) manifest.
        adapter: The adapter the manifest names, with its settings.
        session: The graph's ``onnxruntime.InferenceSession``.
    """

    def __init__(self, folder: Path, manifest: dict[str, Any], adapter: Adapter, session: Any) -> None:
        self.folder = folder
        self.manifest = manifest
        self.adapter = adapter
        self.session = session

    @property
    def sources(self) -> list[str]:
        """The stems, in output order."""
        return list(self.manifest["sources"])

    @property
    def sample_rate(self) -> int:
        """The model's sample rate in Hz."""
        return int(self.manifest["sample_rate"])

    @property
    def audio_channels(self) -> int:
        """Channels of the mixture and of each stem."""
        return int(self.manifest["audio_channels"])

    @property
    def segment_samples(self) -> int:
        """Samples of every chunk the graph takes (its fixed time axis)."""
        return int(self.manifest["segment_samples"])

    @property
    def segment(self) -> float:
        """Seconds of track each chunk stands for, before it is widened to :attr:`segment_samples`."""
        return float(self.manifest["segment"])

    def run(self, chunks: np.ndarray) -> np.ndarray:
        """Stems of mixture chunks of exactly :attr:`segment_samples`: adapter, graph, adapter.

        Args:
            chunks: float32 ``[B, C, segment_samples]``.

        Returns:
            float32 ``[B, S, C, segment_samples]``.
        """
        chunks = np.ascontiguousarray(chunks, dtype=np.float32)
        expected = (self.audio_channels, self.segment_samples)
        if chunks.ndim != 3 or chunks.shape[1:] != expected:
            raise ValueError(
                f"expected chunks of shape [batch, {expected[0]}, {expected[1]}], got {chunks.shape}"
            )
        feeds, state = self.adapter.inputs(chunks)
        stems = self.adapter.outputs(run_session(self.session, feeds), state, chunks)
        return np.asarray(stems, dtype=np.float32)

    def chunk_length(self, segment: float | None = None) -> int:
        """Samples of track per chunk for ``segment`` seconds (default: the export's), checked
        to fit the graph.

        Args:
            segment: Chunk length in seconds, or ``None`` for :attr:`segment`.

        Raises:
            ExportedFolderError: The segment is longer than the graph takes, or not positive.
        """
        seconds = self.segment if segment is None else segment
        length = seconds_to_samples(seconds, self.sample_rate)
        if length is None or length < 1 or length > self.segment_samples:
            raise ExportedFolderError(
                f"segment {seconds:g} s: expected a positive length of at most "
                f"{self.segment_samples / self.sample_rate:g} s, the exported graph's"
            )
        return length

    def separate(
        self,
        mix: np.ndarray,
        *,
        segment: float | None = None,
        overlap: float = 0.25,
        transition_power: float = 1.0,
        batch_size: int = 4,
    ) -> np.ndarray:
        """Separate a track or a batch of tracks of any length, chunk by chunk.

        Args:
            mix: ``[C, T]`` or ``[B, C, T]``.
            segment: Chunk length in seconds, at most the graph's. (Default: the export's)
            overlap: Fraction of each chunk shared with the next, in ``[0, 1)``. (Default: ``0.25``)
            transition_power: Exponent of the triangular cross-fade, ``>= 1``. (Default: ``1.0``)
            batch_size: Chunks run through the graph at once. (Default: ``4``)

        Returns:
            float32 stems ``[S, C, T]`` (or ``[B, S, C, T]``).
        """
        mix = np.asarray(mix, dtype=np.float32)
        batched = mix.ndim == 3
        if mix.ndim == 2:
            mix = mix[None]
        if mix.ndim != 3 or mix.shape[1] != self.audio_channels or mix.shape[-1] == 0:
            raise ValueError(
                f"expected mix of shape [{self.audio_channels}, time] or "
                f"[batch, {self.audio_channels}, time], got {list(mix.shape)}"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if transition_power < 1:
            raise ValueError(f"transition_power must be >= 1, got {transition_power}")
        batch, channels, length = mix.shape
        chunk = self.chunk_length(segment)
        padded = self.segment_samples
        window = triangular_weights(chunk, transition_power)
        total = np.zeros((batch, len(self.sources), channels, length), dtype=np.float32)
        weight_sum = np.zeros(length, dtype=np.float32)
        offsets = plan_chunks(length, chunk, overlap)
        for first in range(0, len(offsets), batch_size):
            group = offsets[first : first + batch_size]
            pieces = []
            for offset in group:
                count = min(chunk, length - offset)
                start = offset - left_context(count, padded)
                inside = mix[..., max(0, start) : min(length, start + padded)]
                pieces.append(
                    np.pad(inside, ((0, 0), (0, 0), (max(0, -start), max(0, start + padded - length))))
                )
            out = self.run(np.concatenate(pieces))  # len(group) * B, S, C, padded
            for index, offset in enumerate(group):
                count = min(chunk, length - offset)
                left = left_context(count, padded)
                piece = out[index * batch : (index + 1) * batch, ..., left : left + count]
                total[..., offset : offset + count] += piece * window[:count]
                weight_sum[offset : offset + count] += window[:count]
        stems = total / weight_sum
        return stems if batched else stems[0]


def load_exported(
    folder: str | Path, providers: Sequence[str] | None = None, threads: int | None = None
) -> ExportedModel:
    """Open an exported folder: read its manifest, check every file's digest, start the session.

    Args:
        folder: The folder ``sepzoo export-onnx`` wrote.
        providers: onnxruntime execution providers, in order of preference. (Default:
            :func:`default_providers`, CUDA first where available, then the CPU)
        threads: onnxruntime's intra-op threads on the CPU. (Default: ``None``, onnxruntime's
            own choice, one per physical core)

    Raises:
        ExportedFolderError: Not an exported folder, or a file missing or altered.
    """
    import onnxruntime

    folder = Path(folder)
    if not folder.is_dir():
        raise ExportedFolderError(f"{folder}: no such folder")
    manifest = read_manifest(folder)
    verify_files(folder, manifest)
    try:
        adapter = get_adapter(manifest["adapter"], manifest["settings"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportedFolderError(f"{folder / MANIFEST_NAME}: adapter settings do not fit ({exc})") from None
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # warnings about provider fallbacks are not the user's problem
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(
        str(folder / GRAPH_NAME), sess_options=options, providers=list(providers or default_providers())
    )
    return ExportedModel(folder, manifest, adapter, session)


__all__ = [
    "GRAPH_NAME",
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "MANIFEST_VERSION",
    "ExportedFolderError",
    "ExportedModel",
    "default_providers",
    "file_digest",
    "is_exported_folder",
    "load_exported",
    "read_manifest",
    "run_session",
    "verify_files",
]
