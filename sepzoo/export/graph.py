"""Tracing a model's export core into an ONNX graph and running it back with onnxruntime.

The graph is written with torch's TorchScript-based exporter (``dynamo=False``): it needs no
dependency beyond torch (the dynamo exporter needs ``onnxscript``), it supports every torch
release sepzoo does, and an export core is plain tensor arithmetic with static shapes, which
tracing records exactly.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from sepzoo.deploy.adapters import Adapter, get_adapter
from sepzoo.models.base import Separator
from sepzoo.models.onnx_core import OnnxExport

OPSET = 17
"""The ONNX opset of every exported graph."""


def example_inputs(plan: OnnxExport, mix: np.ndarray) -> tuple[Adapter, dict[str, np.ndarray], Any]:
    """The plan's adapter and the graph inputs it makes of ``mix`` ``[B, C, T]``.

    Args:
        plan: A model's export plan.
        mix: Mixture chunks of the exported length.
    """
    adapter = get_adapter(plan.adapter, plan.settings)
    feeds, state = adapter.inputs(mix)
    return adapter, feeds, state


def graph_bytes(plan: OnnxExport, feeds: Mapping[str, np.ndarray]) -> bytes:
    """Trace ``plan.core`` on ``feeds`` into a serialised ONNX model (opset :data:`OPSET`,
    batch axis dynamic on every input and output).

    Args:
        plan: A model's export plan.
        feeds: Example inputs by name, as the plan's adapter makes them.
    """
    args = tuple(torch.from_numpy(np.ascontiguousarray(feeds[name])) for name in plan.input_names)
    axes = {name: {0: "batch"} for name in [*plan.input_names, *plan.output_names]}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter announces its own deprecation; the choice is deliberate.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            plan.core.eval(),
            args,
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=list(plan.input_names),
            output_names=list(plan.output_names),
            dynamic_axes=axes,
            do_constant_folding=True,
        )
    return buffer.getvalue()


def run_graph(session: Any, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run an onnxruntime session, returning its outputs by name.

    Args:
        session: An ``onnxruntime.InferenceSession``.
        feeds: Inputs by name.
    """
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, dict(feeds))))


def relative_errors(reference: np.ndarray, estimate: np.ndarray) -> list[float]:
    """Relative L2 error of each stem: ``||estimate - reference|| / ||reference||`` over the
    batch, channels and time of stem ``s`` of ``[B, S, C, T]`` arrays (an all-zero reference
    stem compares the absolute error).

    Args:
        reference: The torch model's stems.
        estimate: The exported path's stems.
    """
    reference = np.asarray(reference, dtype=np.float64)
    estimate = np.asarray(estimate, dtype=np.float64)
    errors = []
    for stem in range(reference.shape[1]):
        norm = np.linalg.norm(reference[:, stem])
        difference = np.linalg.norm(estimate[:, stem] - reference[:, stem])
        errors.append(float(difference / norm if norm > 0 else difference))
    return errors


def onnx_parity(model: Separator, length: int, batch: int = 2, seed: int = 0) -> list[float]:
    """Export ``model`` in memory and return the per-stem relative errors of the onnxruntime
    path (adapter, graph, adapter) against ``model(mix)`` on a random mixture of ``length``
    samples.

    Args:
        model: A separator in evaluation mode.
        length: Samples of the mixture, a valid length of the model.
        batch: Mixtures in the batch (the graph's batch axis is dynamic: the example trace uses
            one, the check this many). (Default: ``2``)
        seed: Seed of the random mixture. (Default: ``0``)
    """
    import onnxruntime

    plan = model.onnx_export(length)
    rng = np.random.default_rng(seed)
    mix = (0.3 * rng.standard_normal((batch, model.audio_channels, length))).astype(np.float32)
    adapter, feeds, _ = example_inputs(plan, mix[:1])
    graph = graph_bytes(plan, feeds)
    session = onnxruntime.InferenceSession(graph, providers=["CPUExecutionProvider"])
    feeds, state = adapter.inputs(mix)
    estimate = adapter.outputs(run_graph(session, feeds), state, mix)
    with torch.no_grad():
        reference = model.eval()(torch.from_numpy(mix)).numpy()
    return relative_errors(reference, estimate)


__all__ = ["OPSET", "example_inputs", "graph_bytes", "onnx_parity", "relative_errors", "run_graph"]
