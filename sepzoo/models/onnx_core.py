"""What a model hands the ONNX exporter: a graph-friendly core and the adapter around it.

A separator that can be exported implements :meth:`~sepzoo.models.base.Separator.onnx_export`,
returning an :class:`OnnxExport`: an ``nn.Module`` holding only real-valued tensor arithmetic
(no complex numbers, STFTs, resampling libraries or Wiener filters), the name of the NumPy
:class:`~sepzoo.deploy.adapters.Adapter` that runs the steps around it, and that adapter's
settings. ``adapter.outputs(core(*adapter.inputs(mix)))`` must equal ``model(mix)`` for a mixture
of the exported length.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torch import nn

from sepzoo.errors import SepzooError

if TYPE_CHECKING:
    from sepzoo.models.base import Separator


class ExportUnsupportedError(SepzooError):
    """The model has no ONNX export path."""


@dataclass
class OnnxExport:
    """A model's export plan.

    Args:
        core: The module that becomes the graph: ``core(*inputs)`` takes the adapter's inputs
            in ``input_names`` order (float32 tensors, batch first) and returns one tensor or a
            tuple in ``output_names`` order.
        adapter: The registered name of the NumPy adapter (see
            :data:`sepzoo.deploy.adapters.ADAPTER_MODULES`).
        settings: The adapter's settings: plain JSON values (STFT sizes, hop, window, padding,
            Wiener iterations...), stored in the manifest.
        input_names: The graph's input names.
        output_names: The graph's output names.
    """

    core: nn.Module
    adapter: str
    settings: dict[str, Any] = field(default_factory=dict)
    input_names: list[str] = field(default_factory=lambda: ["mix"])
    output_names: list[str] = field(default_factory=lambda: ["stems"])


def require_valid_length(model: Separator, length: int) -> None:
    """Refuse an export length that ``model`` would pad or trim: the graph's length is fixed.

    Args:
        model: The model being exported.
        length: Samples per exported chunk.

    Raises:
        SepzooError: ``length`` is not one of the model's valid lengths.
    """
    if length < 1 or model.valid_length(length) != length:
        raise SepzooError(
            f"{model.registry_name or type(model).__name__} export length {length} is not a valid "
            f"length (expected e.g. {model.valid_length(max(1, length))})"
        )


__all__ = ["ExportUnsupportedError", "OnnxExport", "require_valid_length"]
