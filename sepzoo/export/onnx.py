"""``sepzoo export-onnx``: a model as a verified, self-describing ONNX folder.

:func:`export_onnx` loads a model (a model file, a training checkpoint, a run directory or a
converted checkpoint), asks it for its export plan at the chunk length the engine feeds it
(``model.valid_length`` of the segment), traces the plan's core into an ONNX graph, checks it
with ``onnx.checker``, and compares onnxruntime (adapter, graph, adapter) with the torch model
on a seeded random mixture: an fp32 export that differs by more than the tolerance (relative L2
per stem) is refused. A quantised export (``quantize="int8"``, onnxruntime's dynamic
quantisation of the weights) records its measured errors instead of being refused on them;
its cost in quality is measured by ``sepzoo compare``.

The folder is written beside ``out`` under a temporary name and renamed into place when
everything is checked, so a failed export leaves no ``out`` behind.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sepzoo import __version__
from sepzoo.deploy.adapters import get_adapter
from sepzoo.deploy.plan import seconds_to_samples
from sepzoo.deploy.runtime import (
    GRAPH_NAME,
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    MANIFEST_VERSION,
    file_digest,
    run_session,
)
from sepzoo.errors import OutputExistsError, SepzooError
from sepzoo.export.graph import OPSET, graph_bytes, relative_errors
from sepzoo.io.atomic import atomic_folder, make_writable_folder, write_json_atomic
from sepzoo.models.bag import BagOfModels
from sepzoo.models.base import Separator
from sepzoo.models.onnx_core import ExportUnsupportedError

log = logging.getLogger(__name__)

EXTERNAL_DATA_BYTES = 1_500_000_000
"""Graphs larger than this keep their weights in ``model.onnx.data`` (protobuf stops at 2 GB)."""
DATA_NAME = GRAPH_NAME + ".data"
QUANTIZE_MODES = ("int8",)
PARITY_SEED = 0
PARITY_BATCH = 2


def _check_request(out: Path, force: bool, quantize: str | None, tolerance: float) -> None:
    if quantize is not None and quantize not in QUANTIZE_MODES:
        raise SepzooError(f"--quantize {quantize}: expected one of {', '.join(QUANTIZE_MODES)}")
    if not tolerance > 0:
        raise SepzooError(f"tolerance {tolerance}: expected a positive relative error")
    if out.exists() and not force:
        raise OutputExistsError(f"{out}: already exists; pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise SepzooError(f"{out}: is a file; an export writes a folder")
    make_writable_folder(out.parent, "output folder")


def _exportable(spec: str | Path) -> tuple[Separator, Path | None]:
    """The model ``spec`` names and the file it was read from."""
    from sepzoo.models.files import load_separator, model_source_path
    from sepzoo.models.onnx_model import OnnxSeparator

    model = load_separator(spec)
    if isinstance(model, BagOfModels):
        raise SepzooError(f"{spec}: a bag of models has no ONNX export path; export its members one by one")
    if isinstance(model, OnnxSeparator):
        raise SepzooError(f"{spec}: is an exported folder already; export the model it came from")
    if model.needs_references or model.domain == "oracle":
        name = model.registry_name or type(model).__name__
        where = "" if str(spec) == name else f"{spec}: "
        raise ExportUnsupportedError(
            f"{where}{name} is an oracle baseline (it needs the true stems) and has no ONNX export path"
        )
    return model.eval(), model_source_path(spec)


def _segment_seconds(model: Separator, spec: str | Path, segment: float | None) -> float:
    seconds = segment if segment is not None else model.segment
    name = model.registry_name or type(model).__name__
    if seconds is None:
        raise SepzooError(f"{spec}: {name} has no segment of its own; pass --segment SECONDS")
    if not seconds > 0:
        raise SepzooError(f"--segment {seconds}: expected positive seconds")
    if model.max_segment is not None and seconds > model.max_segment:
        raise SepzooError(
            f"--segment {seconds:g}: longer than {name} accepts "
            f"({model.max_segment:g} s, its training segment)"
        )
    return float(seconds)


def _write_graph(graph: bytes, folder: Path) -> None:
    """Write the graph as one file, or with its weights in ``model.onnx.data`` when large."""
    path = folder / GRAPH_NAME
    if len(graph) <= EXTERNAL_DATA_BYTES:
        path.write_bytes(graph)
        return
    import onnx

    proto = onnx.load_model_from_string(graph)
    onnx.save_model(
        proto,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=DATA_NAME,
        size_threshold=0,
    )


def _quantize(folder: Path) -> None:
    """Replace the fp32 graph in ``folder`` with onnxruntime's dynamic int8 quantisation (QInt8
    weights); a graph with external data keeps it in ``model.onnx.data``."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source = folder / GRAPH_NAME
    external = (folder / DATA_NAME).exists()
    work = folder / "quantize"
    work.mkdir()
    target = work / GRAPH_NAME
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # onnxruntime suggests its pre-processing on the root logger
    try:
        quantize_dynamic(
            str(source), str(target), weight_type=QuantType.QInt8, use_external_data_format=external
        )
    finally:
        root.setLevel(level)
    source.unlink()
    (folder / DATA_NAME).unlink(missing_ok=True)
    if external:  # saved again so that the graph names its data file as the manifest does
        onnx.save_model(
            onnx.load(str(target)),
            str(source),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=DATA_NAME,
            size_threshold=0,
        )
    else:
        target.replace(source)
    shutil.rmtree(work)


def _graph_errors(folder: Path, plan: Any, mix: np.ndarray, reference: np.ndarray) -> list[float]:
    """Relative L2 per stem of the onnxruntime path (adapter, graph in ``folder``, adapter)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(folder / GRAPH_NAME), providers=["CPUExecutionProvider"])
    adapter = get_adapter(plan.adapter, plan.settings)
    feeds, state = adapter.inputs(mix)
    estimate = adapter.outputs(run_session(session, feeds), state, mix)
    return relative_errors(reference, estimate)


def export_onnx(
    spec: str | Path,
    out: str | Path,
    *,
    segment: float | None = None,
    quantize: str | None = None,
    force: bool = False,
    tolerance: float = 1e-4,
) -> dict[str, Any]:
    """Export a model to an ONNX folder ``out`` (graph and ``sepzoo-onnx.json`` manifest).

    Args:
        spec: A model file, training checkpoint, run directory or converted checkpoint.
        out: The folder to write; it must not exist unless ``force``.
        segment: Seconds of track per chunk. (Default: ``None``, the model's own segment)
        quantize: ``"int8"`` for onnxruntime's dynamic quantisation of the weights.
            (Default: ``None``, fp32)
        force: Replace an existing ``out``. (Default: ``False``)
        tolerance: Largest relative L2 error per stem an fp32 export may have against torch.
            (Default: ``1e-4``)

    Returns:
        The manifest written to ``out/sepzoo-onnx.json``.

    Raises:
        SepzooError: The model has no export path or no segment, the output exists, or the
            fp32 graph differs from torch by more than ``tolerance``; nothing is written.
    """
    import onnx

    out = Path(out)
    _check_request(out, force, quantize, tolerance)
    model, source = _exportable(spec)
    name = model.registry_name or type(model).__name__
    seconds = _segment_seconds(model, spec, segment)
    chunk = seconds_to_samples(seconds, model.sample_rate)
    assert chunk is not None
    length = model.valid_length(max(1, chunk))
    try:
        plan = model.onnx_export(length)
    except ExportUnsupportedError as exc:
        raise ExportUnsupportedError(f"{spec}: {exc}") from None
    rng = np.random.default_rng(PARITY_SEED)
    mix = (0.3 * rng.standard_normal((PARITY_BATCH, model.audio_channels, length))).astype(np.float32)
    adapter = get_adapter(plan.adapter, plan.settings)
    feeds, _ = adapter.inputs(mix[:1])
    graph = graph_bytes(plan, feeds)
    with torch.no_grad():
        reference = model(torch.from_numpy(mix)).numpy()
    with atomic_folder(out) as folder:
        _write_graph(graph, folder)
        try:
            onnx.checker.check_model(str(folder / GRAPH_NAME))
        except onnx.checker.ValidationError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SepzooError(f"{spec}: the traced graph of {name} fails onnx.checker ({first})") from None
        errors = _graph_errors(folder, plan, mix, reference)
        worst = int(np.argmax(errors))
        if not errors[worst] <= tolerance:
            raise SepzooError(
                f"{spec}: the ONNX graph of {name} differs from torch on {model.sources[worst]!r} by "
                f"{errors[worst]:.3g} relative L2 (tolerance {tolerance:g}); nothing was written"
            )
        parity: dict[str, Any] = {
            "relative_l2": dict(zip(model.sources, errors)),
            "tolerance": tolerance,
            "seed": PARITY_SEED,
            "batch": PARITY_BATCH,
        }
        if quantize == "int8":
            _quantize(folder)
            quantized = _graph_errors(folder, plan, mix, reference)
            parity = {**parity, "fp32_relative_l2": parity["relative_l2"]}
            parity["relative_l2"] = dict(zip(model.sources, quantized))
        files = {
            path.name: file_digest(path)
            for path in sorted(folder.iterdir())
            if path.name in (GRAPH_NAME, DATA_NAME)
        }
        manifest: dict[str, Any] = {
            "format": MANIFEST_FORMAT,
            "format_version": MANIFEST_VERSION,
            "sepzoo_version": __version__,
            "architecture": model.registry_name,
            "domain": model.domain,
            "sources": list(model.sources),
            "sample_rate": int(model.sample_rate),
            "audio_channels": int(model.audio_channels),
            "segment_samples": int(length),
            "segment": seconds,
            "opset": OPSET,
            "adapter": plan.adapter,
            "settings": plan.settings,
            "inputs": list(plan.input_names),
            "outputs": list(plan.output_names),
            "quantize": quantize,
            "source": {
                "path": str(source if source is not None else spec),
                "sha256": file_digest(source) if source is not None else None,
            },
            "files": files,
            "parity": parity,
        }
        write_json_atomic(folder / MANIFEST_NAME, manifest)
    log.debug("exported %s to %s", spec, out)
    return manifest


__all__ = ["EXTERNAL_DATA_BYTES", "QUANTIZE_MODES", "export_onnx"]
