"""Full precision for signal processing inside mixed-precision training.

Under ``trainer.precision: bf16-mixed`` or ``16-mixed``, autocast runs matrix products and
convolutions in half precision. The signal processing around a network must not follow:
``torch.stft`` takes no half-precision signal on the CPU, ``torch.complex`` no half-precision
parts, a mask rounded to 8 bits of mantissa and multiplied into a spectrogram leaves its
rounding in every stem, and losses and metrics lose whole dB. :func:`full_precision` marks a
function as such a step: it runs with autocast off, on its half-precision arguments cast to
float32. Everything else passes through untouched, so a float32 or float64 call computes
exactly what it computed before, bit for bit.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import torch
from torch.amp.autocast_mode import is_autocast_available

_Params = ParamSpec("_Params")
_Result = TypeVar("_Result")

WIDER: dict[torch.dtype, torch.dtype] = {
    torch.float16: torch.float32,
    torch.bfloat16: torch.float32,
    torch.complex32: torch.complex64,
}
"""The precision a half-precision tensor is computed in by a :func:`full_precision` step."""


def widen(value: Any) -> Any:
    """``value`` in float32 (complex64) if it is a half-precision tensor; otherwise itself.

    Args:
        value: Any argument.
    """
    if isinstance(value, torch.Tensor) and value.dtype in WIDER:
        return value.to(WIDER[value.dtype])
    return value


def full_precision(function: Callable[_Params, _Result]) -> Callable[_Params, _Result]:
    """Run ``function`` with autocast off and its half-precision tensor arguments in float32.

    Tensor arguments (positional or keyword, not inside containers) in ``float16`` or
    ``bfloat16`` become ``float32`` and ``complex32`` becomes ``complex64``; other arguments
    pass as they are. Autocast is turned off for the device of the first tensor argument while
    ``function`` runs, and only when it is on; the results are what ``function`` returns.
    A method is decorated the same way (``self`` passes through).

    Args:
        function: The signal processing step (an STFT, a mask product, a loss, a metric).
    """

    @functools.wraps(function)
    def run(*args: _Params.args, **kwargs: _Params.kwargs) -> _Result:
        args = tuple(widen(value) for value in args)  # type: ignore[assignment]
        kwargs = {key: widen(value) for key, value in kwargs.items()}  # type: ignore[assignment]
        device = _autocast_device(args, kwargs)
        if device is None:
            return function(*args, **kwargs)
        with torch.autocast(device_type=device, enabled=False):
            return function(*args, **kwargs)

    return run


def _autocast_device(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """The device type of the first tensor argument if autocast is on there, else ``None``."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            device = value.device.type
            if is_autocast_available(device) and torch.is_autocast_enabled(device):
                return device
            return None
    return None


__all__ = ["WIDER", "full_precision", "widen"]
