"""The contract every separator follows.

A separator maps a mixture ``[B, C, T]`` to stems ``[B, S, C, T]``. Everything the inference
engine, the training task and the evaluator need to know about a model is exposed by the
attributes and methods of :class:`Separator`; nothing else ever asks which architecture it
holds.

Init keyword arguments are recorded automatically (``model.init_kwargs``), so a model is
rebuilt from ``{name, kwargs, state_dict}`` without any hand-kept list of arguments.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, ClassVar, Literal

from torch import Tensor, nn

from sepzoo.deploy.plan import seconds_to_samples
from sepzoo.models.onnx_core import ExportUnsupportedError, OnnxExport

Domain = Literal["waveform", "spectrogram", "hybrid", "oracle"]
DOMAINS: tuple[str, ...] = ("waveform", "spectrogram", "hybrid", "oracle")


def _plain(value: Any) -> Any:
    """Convert a kwarg value to plain Python containers that ``weights_only`` loading accepts."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(
        f"model init argument of type {type(value).__name__} cannot be saved in a model file; "
        "use plain numbers, strings, lists or dicts"
    )


def _variant_init(cls: type) -> Any:
    """An ``__init__`` taking the parent's arguments with ``cls.variant_defaults`` as defaults."""
    parent_init = cls.__mro__[1].__init__
    parent_signature = inspect.signature(parent_init)
    defaults = cls.__dict__["variant_defaults"]
    unknown = sorted(set(defaults) - set(parent_signature.parameters))
    if unknown:
        raise TypeError(f"{cls.__name__}.variant_defaults names unknown arguments: {', '.join(unknown)}")
    parameters = [
        param.replace(default=defaults[name]) if name in defaults else param
        for name, param in parent_signature.parameters.items()
    ]
    signature = parent_signature.replace(parameters=parameters)

    def __init__(self: Separator, *args: Any, **kw: Any) -> None:
        bound = signature.bind(self, *args, **kw)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        arguments.pop(next(iter(signature.parameters)))
        parent_init(self, **arguments)

    __init__.__signature__ = signature  # type: ignore[attr-defined]
    __init__.__annotations__ = dict(getattr(inspect.unwrap(parent_init), "__annotations__", {}))
    # Type hints of the arguments resolve in the module that wrote them.
    __init__.__wrapped__ = inspect.unwrap(parent_init)  # type: ignore[attr-defined]
    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    __init__.__doc__ = cls.__doc__
    return __init__


class Separator(nn.Module):
    """Base class of every registered separator.

    Subclasses set the class attributes below, call ``super().__init__(sources=...,
    sample_rate=..., audio_channels=..., segment=...)`` and implement :meth:`forward`.

    Class attributes:
        domain: ``"waveform"``, ``"spectrogram"``, ``"hybrid"`` or ``"oracle"``.
        needs_references: True when ``forward`` requires the true stems (oracle baselines).
        whole_track: True when the model must see the whole track at once (e.g. an oracle
            whose statistics span the track); the engine then never chunks its input.
        fixed_chunk_length: True when every chunk must reach the model at the full segment
            length; the engine then widens each chunk, the shorter last ones too, with real
            neighbouring audio (zeros past the track's ends) to the segment length.
        test_kwargs: Init arguments for a tiny instance used by the registry-wide tests.
        variant_defaults: Set on a subclass that defines no ``__init__`` to make it a named
            variant of its parent: the same arguments with these defaults.

    Args:
        sources: Names of the stems the model outputs, in output order.
        sample_rate: Sample rate in Hz the model works at.
        audio_channels: Number of input and output channels. (Default: ``2``)
        segment: Preferred length of one chunk in seconds, used for training segments and
            by the inference engine; ``None`` when any length is fine. (Default: ``None``)
    """

    domain: ClassVar[Domain] = "waveform"
    needs_references: ClassVar[bool] = False
    whole_track: ClassVar[bool] = False
    fixed_chunk_length: ClassVar[bool] = False
    registry_name: ClassVar[str | None] = None
    test_kwargs: ClassVar[dict[str, Any]] = {}
    """Tiny settings that build the model in milliseconds; the registry-wide tests use them."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "variant_defaults" in cls.__dict__ and "__init__" not in cls.__dict__:
            cls.__init__ = _variant_init(cls)  # type: ignore[method-assign]
        if "__init__" not in cls.__dict__:
            return
        original = cls.__dict__["__init__"]
        signature = inspect.signature(original)

        @functools.wraps(original)
        def init(self: Separator, *args: Any, **kw: Any) -> None:
            original(self, *args, **kw)
            # Only the most derived __init__ records: it sees the arguments the user gave.
            if type(self).__init__ is init:
                bound = signature.bind(self, *args, **kw)
                bound.apply_defaults()
                recorded = {}
                for name, param in signature.parameters.items():
                    if name == "self":
                        continue
                    if param.kind is inspect.Parameter.VAR_KEYWORD:
                        recorded.update(bound.arguments.get(name, {}))
                    elif param.kind is inspect.Parameter.VAR_POSITIONAL:
                        raise TypeError(f"{cls.__name__}.__init__ must not take *args")
                    else:
                        recorded[name] = bound.arguments[name]
                object.__setattr__(self, "_init_kwargs", _plain(recorded))

        cls.__init__ = init  # type: ignore[method-assign]

    def __init__(
        self,
        sources: list[str],
        sample_rate: int,
        audio_channels: int = 2,
        segment: float | None = None,
    ) -> None:
        super().__init__()
        if not sources:
            raise ValueError("a separator needs at least one source")
        if len(set(sources)) != len(sources):
            raise ValueError(f"source names must be unique, got {list(sources)}")
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        if audio_channels not in (1, 2):
            raise ValueError(f"audio_channels must be 1 or 2, got {audio_channels}")
        if segment is not None and segment <= 0:
            raise ValueError(f"segment must be positive seconds or None, got {segment}")
        self.sources: list[str] = list(sources)
        self.sample_rate: int = int(sample_rate)
        self.audio_channels: int = int(audio_channels)
        self.segment: float | None = None if segment is None else float(segment)

    @property
    def init_kwargs(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this model (plain, saveable values)."""
        return dict(getattr(self, "_init_kwargs", {}))

    @property
    def max_segment(self) -> float | None:
        """Longest chunk in seconds the model accepts (e.g. its training segment), or ``None``."""
        return None

    @property
    def segment_length(self) -> int | None:
        """Preferred chunk length in samples, or ``None``."""
        return seconds_to_samples(self.segment, self.sample_rate)

    def valid_length(self, length: int) -> int:
        """Smallest input length >= ``length`` that the model handles without trimming.

        The inference engine pads each chunk with real neighbouring audio up to this length,
        and crops the output back. Models without a constraint return ``length``.

        Args:
            length: A number of samples.
        """
        return length

    def forward(self, mix: Tensor, references: Tensor | None = None) -> Tensor:
        """Separate ``mix`` (``[B, C, T]``) into stems (``[B, S, C, T]``).

        Every model's ``forward`` has this contract; a model documents its own only where it
        says more (help() and documentation tools show this one for the others).

        Args:
            mix: The mixture, ``[batch, audio_channels, time]``.
            references: The true stems ``[batch, sources, audio_channels, time]``; only models
                with ``needs_references`` use them, the others accept and ignore them.
                (Default: ``None``)
        """
        raise NotImplementedError

    def onnx_export(self, length: int) -> OnnxExport:
        """The plan for exporting this model to ONNX at chunks of ``length`` samples.

        Models that can be exported override this; the default says there is no export path.

        Args:
            length: Samples per exported chunk, a valid length of the model.

        Raises:
            ExportUnsupportedError: The model has no ONNX export path.
        """
        raise ExportUnsupportedError(
            f"{self.registry_name or type(self).__name__} has no ONNX export path"
            + (" (it needs the reference stems)" if self.needs_references else "")
        )

    def check_input(self, mix: Tensor, references: Tensor | None = None) -> None:
        """Raise ``ValueError`` naming the shape when ``mix``/``references`` do not fit.

        Args:
            mix: The mixture, ``[batch, audio_channels, time]``.
            references: The true stems, or ``None``.
        """
        if mix.dim() != 3 or mix.shape[1] != self.audio_channels:
            raise ValueError(
                f"expected mix of shape [batch, {self.audio_channels}, time], got {list(mix.shape)}"
            )
        if self.needs_references:
            if references is None:
                raise ValueError(f"{self.registry_name or type(self).__name__} needs the reference stems")
            expected = [mix.shape[0], len(self.sources), mix.shape[1], mix.shape[2]]
            if list(references.shape) != expected:
                raise ValueError(f"expected references of shape {expected}, got {list(references.shape)}")

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
