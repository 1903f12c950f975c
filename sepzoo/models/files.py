"""Model files, training checkpoints and safe loading.

Every file is read with ``torch.load(..., weights_only=True)``: a checkpoint can never import
a module or run code. Anything pickled beyond tensors and plain containers is refused with a
:class:`~sepzoo.errors.CheckpointError` naming the offending global, unless the caller
allow-lists that name, in which case it loads as a harmless :class:`ForeignClass`
placeholder.

Model file format
-----------------
A model file (suffix ``.sepzoo`` by convention) is ``torch.save`` of a plain dict::

    {
        "format": "sepzoo.model",
        "version": 1,
        "name": str,                 # registry name of the model
        "kwargs": dict,              # init arguments (model.init_kwargs)
        "state_dict": {str: Tensor}, # contiguous CPU tensors
        "sources": [str, ...],
        "sample_rate": int,
        "metadata": dict,            # plain values: provenance, sepzoo version, ...
    }

A bag of models is saved as::

    {
        "format": "sepzoo.bag",
        "version": 1,
        "members": [{"name": str, "kwargs": dict, "state_dict": {str: Tensor}}, ...],
        "weights": [[float, ...], ...],   # members x sources
        "sources": [str, ...],
        "sample_rate": int,
        "metadata": dict,
        "combination": {"mode": str, "domain": str, "n_fft": int, "hop": int},
    }

A bag that is not a weighted mean of waveforms is written as version 2, so that a sepzoo from
before ensemble modes refuses it instead of averaging it; a bag file without ``"combination"``
(every version-1 file) is a weighted mean of waveforms.

Training checkpoints are Lightning ``.ckpt`` files whose ``"sepzoo"`` entry is a plain dict
with ``"format": "sepzoo.train"``, the model's ``{"name", "kwargs"}`` and, when enabled, the
unbiased exponential moving average of what trains (``"ema": {"decay", "count", "state"}``;
``count`` is absent in files written before the average was unbiased, and files written before
it averaged only what trains hold every entry) and, for a LoRA run, where its adapters are
(``"lora": {"rank", "alpha", "weights"}``, see :mod:`sepzoo.models.lora`); the network's
weights are the ``model.``-prefixed entries of ``"state_dict"``. Loading such a checkpoint
(``eval``, ``separate``, ``export``, ``train.init_from``) merges the adapters into plain weights.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sepzoo import __version__
from sepzoo.deploy.runtime import MANIFEST_NAME as EXPORT_MANIFEST
from sepzoo.errors import CheckpointError, SepzooError, closest
from sepzoo.io.atomic import atomic_open
from sepzoo.io.audio import prepare_output
from sepzoo.models import MODELS, get_model_class
from sepzoo.models.bag import BagOfModels, Combination
from sepzoo.models.base import Separator
from sepzoo.models.lora import merge_adapters, restore_adapters

MODEL_FORMAT = "sepzoo.model"
BAG_FORMAT = "sepzoo.bag"
TRAIN_FORMAT = "sepzoo.train"
FORMAT_VERSION = 1
BAG_FORMAT_VERSION = 2  # version 2 adds the members' combination
MODEL_SUFFIX = ".sepzoo"

_MAX_LISTED_KEYS = 5


# ----------------------------------------------------------------------------------------------
# Safe loading


class ForeignClass:
    """Stand-in for a class or function that a foreign checkpoint refers to by name.

    The real object is never imported; only its name is kept. Calling the placeholder (a
    checkpoint that builds an instance of the class) is refused.

    Args:
        module: The module the checkpoint names, e.g. ``"demucs.htdemucs"``.
        name: The qualified name inside the module, e.g. ``"HTDemucs"``.
    """

    def __init__(self, module: str, name: str) -> None:
        self.module = module
        self.name = name

    @property
    def full_name(self) -> str:
        """``module.name``, as written in the checkpoint."""
        return f"{self.module}.{self.name}"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise pickle.UnpicklingError(
            f"the checkpoint builds an object of {self.full_name}; only references to it can be read"
        )

    def __repr__(self) -> str:
        return f"ForeignClass({self.full_name!r})"


def foreign_globals(names: Iterable[str]) -> dict[str, ForeignClass]:
    """Make an allow-list for :func:`safe_load` that maps each name to a placeholder.

    Args:
        names: Fully qualified names such as ``"demucs.htdemucs.HTDemucs"``.
    """
    allowed = {}
    for full_name in names:
        module, dot, name = full_name.rpartition(".")
        if not dot or not module or not name:
            raise ValueError(
                f"expected a fully qualified name like 'package.module.Class', got {full_name!r}"
            )
        allowed[full_name] = ForeignClass(module, name)
    return allowed


_GLOBAL_PATTERNS = (
    re.compile(r"Unsupported global: GLOBAL (\S+) was not an allowed global"),
    re.compile(r"unsupported GLOBAL (\S+) whose module"),
)


def _refused_global(message: str) -> str | None:
    for pattern in _GLOBAL_PATTERNS:
        found = pattern.search(message)
        if found:
            return found.group(1)
    return None


def _reason(exc: BaseException) -> str:
    """The informative part of a torch loading error, as one short line."""
    text = str(exc)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0].split(". ")[0] if lines else ""
    return f"{type(exc).__name__}: {first[:200]}" if first else type(exc).__name__


def safe_load(
    path: str | Path,
    allowed_globals: Mapping[str, object] | None = None,
    map_location: str | torch.device = "cpu",
) -> Any:
    """Load a ``torch.save`` file without ever importing or running anything from it.

    Args:
        path: The file.
        allowed_globals: Fully qualified names (e.g. ``"demucs.htdemucs.HTDemucs"``) that the
            file may refer to, mapped to the objects to put in their place (see
            :func:`foreign_globals`). (Default: ``None``, only tensors and plain containers)
        map_location: Where tensors are loaded. (Default: ``"cpu"``)

    Raises:
        CheckpointError: The file is missing, empty, truncated, not a torch file, or refers
            to a global that is not allowed (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "no such file"
        raise CheckpointError(f"{path}: {what}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: file is empty")
    pairs = [(obj, name) for name, obj in (allowed_globals or {}).items()]
    try:
        with torch.serialization.safe_globals(pairs):
            return torch.load(path, map_location=map_location, weights_only=True)
    except SepzooError:
        raise
    except Exception as exc:  # torch raises many types for damaged files; all mean "unusable"
        refused = _refused_global(str(exc))
        if refused is not None:
            raise CheckpointError(
                f"{path}: refers to {refused}, which is not allowed in a checkpoint (only tensors and "
                "plain values are loaded; nothing is imported or run)"
            ) from None
        raise CheckpointError(
            f"{path}: not a readable checkpoint; corrupt, truncated or not a torch file ({_reason(exc)})"
        ) from None


def _load_dict(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    content = safe_load(path, map_location=map_location)
    if not isinstance(content, dict):
        raise CheckpointError(f"{path}: expected a checkpoint dict, found a {type(content).__name__}")
    return content


# ----------------------------------------------------------------------------------------------
# Packages: {name, kwargs, state_dict}


def package_model(model: Separator) -> dict[str, Any]:
    """The ``{"name", "kwargs", "state_dict"}`` triple that rebuilds ``model``.

    Args:
        model: A registered separator.
    """
    from sepzoo.models.onnx_model import OnnxSeparator

    name = model.registry_name
    if isinstance(model, OnnxSeparator):
        raise CheckpointError(
            f"{name}: an exported (ONNX) model cannot be saved in a model or bag file; "
            "save the model it was exported from"
        )
    if name is None:
        raise ValueError(f"{type(model).__name__} is not a registered model; register it to save it")
    state = {key: value.detach().to("cpu").contiguous() for key, value in model.state_dict().items()}
    return {"name": name, "kwargs": model.init_kwargs, "state_dict": state}


def build_model(name: str, kwargs: Mapping[str, Any], source: str | Path = "") -> Separator:
    """Build the registered model ``name`` from ``kwargs`` with one-line errors.

    Args:
        name: Registry name.
        kwargs: Init arguments.
        source: The file the name comes from, for error messages. (Default: ``""``)
    """
    where = f"{source}: " if source else ""
    if not isinstance(name, str) or name not in MODELS:
        found = closest(str(name), MODELS.names())
        hint = f"; did you mean {' or '.join(repr(f) for f in found)}?" if found else ""
        raise CheckpointError(f"{where}model {name!r} is not registered{hint}")
    if not isinstance(kwargs, Mapping):
        raise CheckpointError(f"{where}model kwargs must be a dict, found a {type(kwargs).__name__}")
    try:
        return get_model_class(name)(**kwargs)
    except SepzooError:
        raise
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}cannot build model {name!r} from its saved kwargs ({exc})") from None


def _describe(value: Any) -> str:
    return str(list(value.shape)) if isinstance(value, Tensor) else f"a {type(value).__name__}"


def load_weights(model: Separator, state: Mapping[str, Any], source: str | Path = "") -> None:
    """Load ``state`` into ``model``, or raise naming the keys that do not fit.

    Args:
        model: The freshly built model.
        state: Its saved ``state_dict``.
        source: The file the state comes from, for error messages. (Default: ``""``)
    """
    where = f"{source}: " if source else ""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {_describe(state[k])} vs {list(expected[k].shape)}"
        for k in expected
        if k in state and (not isinstance(state[k], Tensor) or state[k].shape != expected[k].shape)
    ]
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
        if keys:
            more = f" (+{len(keys) - _MAX_LISTED_KEYS} more)" if len(keys) > _MAX_LISTED_KEYS else ""
            problems.append(f"{label}: {', '.join(keys[:_MAX_LISTED_KEYS])}{more}")
    if problems:
        name = model.registry_name or type(model).__name__
        raise CheckpointError(f"{where}weights do not fit model {name!r}: {'; '.join(problems)}")
    model.load_state_dict(dict(state))


def model_from_package(pkg: Mapping[str, Any], source: str | Path = "") -> Separator:
    """Rebuild a separator from ``{"name", "kwargs", "state_dict"}``.

    Args:
        pkg: The package (see :func:`package_model`).
        source: The file it comes from, for error messages. (Default: ``""``)
    """
    where = f"{source}: " if source else ""
    for key in ("name", "kwargs", "state_dict"):
        if key not in pkg:
            raise CheckpointError(f"{where}model entry lacks the key {key!r}")
    if not isinstance(pkg["state_dict"], Mapping):
        raise CheckpointError(
            f"{where}'state_dict' must be a dict, found a {type(pkg['state_dict']).__name__}"
        )
    model = build_model(pkg["name"], pkg["kwargs"], source)
    load_weights(model, pkg["state_dict"], source)
    return model


# ----------------------------------------------------------------------------------------------
# Model files


def _plain_metadata(value: Any, key: str = "metadata") -> Any:
    """Copy ``value`` as plain containers that ``weights_only`` loading accepts."""
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain_metadata(v, f"{key}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return {str(k): _plain_metadata(v, f"{key}.{k}") for k, v in value.items()}
    raise TypeError(
        f"{key} has a value of type {type(value).__name__}; use plain numbers, strings, lists, dicts"
    )


def _file_content(model: Separator | BagOfModels, metadata: Mapping[str, Any]) -> dict[str, Any]:
    common = {
        "sources": list(model.sources),
        "sample_rate": int(model.sample_rate),
        "metadata": {"sepzoo_version": __version__, **_plain_metadata(dict(metadata))},
    }
    if isinstance(model, BagOfModels):
        members = [package_model(member) for member in model.members]
        weights = [list(map(float, row)) for row in model.weights]
        combination = model.combination
        return {
            "format": BAG_FORMAT,
            "version": FORMAT_VERSION if combination.is_default else BAG_FORMAT_VERSION,
            "members": members,
            "weights": weights,
            "combination": combination.as_dict(),
            **common,
        }
    return {"format": MODEL_FORMAT, "version": FORMAT_VERSION, **package_model(model), **common}


def save_model_file(
    model: Separator | BagOfModels,
    path: str | Path,
    metadata: Mapping[str, Any] | None = None,
    force: bool = False,
) -> Path:
    """Write ``model`` as a model file (see the module docstring for the format).

    The file is written to a temporary name in the same folder and renamed into place, so
    an interrupted save never leaves a half-written model file.

    Args:
        model: A registered separator or a bag of them.
        path: The output file (conventionally ending in ``.sepzoo``).
        metadata: Plain values recorded with the model (provenance, scores...).
            (Default: ``None``)
        force: Replace an existing file. (Default: ``False``)

    Raises:
        OutputExistsError: ``path`` exists and ``force`` is False; the file is left untouched.
    """
    path = prepare_output(path, force)
    content = _file_content(model, metadata or {})
    with atomic_open(path, "wb") as stream:
        torch.save(content, stream)
    return path


def _check_version(kind: str, version: Any, path: Path) -> None:
    newest = BAG_FORMAT_VERSION if kind == BAG_FORMAT else FORMAT_VERSION
    if not isinstance(version, int) or version > newest:
        raise CheckpointError(
            f"{path}: {kind} version {version!r} is not supported (this sepzoo reads up to {newest})"
        )


def _check_format(content: Mapping[str, Any], path: Path) -> str:
    kind = content.get("format")
    if kind not in (MODEL_FORMAT, BAG_FORMAT):
        if _is_training_checkpoint(content):
            raise CheckpointError(f"{path}: is a training checkpoint, not a model file; export it first")
        raise CheckpointError(f"{path}: not a sepzoo model file (format {kind!r})")
    _check_version(kind, content.get("version"), path)
    return kind


def model_from_file_content(content: Mapping[str, Any], path: str | Path) -> Separator | BagOfModels:
    """Rebuild the model or bag held by a loaded model file.

    Args:
        content: What :func:`safe_load` returned for the file.
        path: The file, for error messages.
    """
    path = Path(path)
    if _check_format(content, path) == MODEL_FORMAT:
        return model_from_package(content, path)
    members = content.get("members")
    if not isinstance(members, list) or not members:
        raise CheckpointError(f"{path}: a bag file needs a non-empty list of 'members'")
    models = []
    for index, member in enumerate(members):
        if not isinstance(member, Mapping):
            raise CheckpointError(f"{path}: bag member {index} is a {type(member).__name__}, not a dict")
        models.append(model_from_package(member, f"{path} (bag member {index})"))
    settings = content.get("combination", {})
    if not isinstance(settings, Mapping) or set(settings) - {"mode", "domain", "n_fft", "hop"}:
        raise CheckpointError(
            f"{path}: a bag's 'combination' must be a dict of mode, domain, n_fft and hop, got {settings!r}"
        )
    try:
        combination = Combination(**settings)
        return BagOfModels(models, content.get("weights"), content.get("sources"), combination)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def load_model_file(path: str | Path) -> Separator | BagOfModels:
    """Load a model file written by :func:`save_model_file`.

    Args:
        path: The ``.sepzoo`` file.
    """
    path = Path(path)
    return model_from_file_content(_load_dict(path), path)


# ----------------------------------------------------------------------------------------------
# Training checkpoints and run directories


def _is_training_checkpoint(content: Mapping[str, Any]) -> bool:
    info = content.get("sepzoo")
    return isinstance(info, Mapping) and info.get("format") == TRAIN_FORMAT


def find_run_checkpoint(run_dir: str | Path) -> Path:
    """The checkpoint a run directory stands for: ``best.ckpt``, else ``last.ckpt``.

    Args:
        run_dir: A run directory (with a ``checkpoints/`` folder).
    """
    run_dir = Path(run_dir)
    for name in ("best.ckpt", "last.ckpt"):
        candidate = run_dir / "checkpoints" / name
        if candidate.is_file():
            return candidate
    raise CheckpointError(
        f"{run_dir}: no checkpoints/best.ckpt or checkpoints/last.ckpt in this run directory"
    )


def training_state(content: Mapping[str, Any], path: str | Path) -> tuple[dict[str, Tensor], bool]:
    """The network weights of a training checkpoint and whether they are the EMA weights.

    The ``model.``-prefixed entries of ``state_dict`` are taken, and the EMA state (when the
    run kept one) replaces the entries it covers.

    Args:
        content: The loaded Lightning checkpoint.
        path: The checkpoint file, for error messages.
    """
    info = content["sepzoo"]
    state_dict = content.get("state_dict")
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"{path}: training checkpoint has no 'state_dict'")
    prefix = "model."
    state = {key[len(prefix) :]: value for key, value in state_dict.items() if key.startswith(prefix)}
    ema = info.get("ema")
    if ema is None:
        return state, False
    if not isinstance(ema, Mapping) or not isinstance(ema.get("state"), Mapping):
        raise CheckpointError(f"{path}: 'sepzoo.ema' must be None or a dict with a 'state' dict")
    state.update(ema["state"])
    return state, True


def _model_from_training(content: Mapping[str, Any], path: Path) -> tuple[Separator, bool]:
    """The network of a training checkpoint, with the EMA weights where it kept them; LoRA
    adapters (``sepzoo.lora``) are merged into plain weights."""
    spec = content["sepzoo"].get("model")
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise CheckpointError(f"{path}: training checkpoint lacks 'sepzoo.model' with a 'name'")
    _check_version(TRAIN_FORMAT, content["sepzoo"].get("version"), path)
    state, used_ema = training_state(content, path)
    model = build_model(spec["name"], spec.get("kwargs", {}), path)
    layout = content["sepzoo"].get("lora")
    if layout is not None:
        try:
            restore_adapters(model, layout)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: 'sepzoo.lora' does not fit the model ({exc})") from None
    load_weights(model, state, path)
    if layout is not None:
        merge_adapters(model)
        # A fresh model keeps its state dict in the usual order (merging appends each weight).
        merged, model = model.state_dict(), build_model(spec["name"], spec.get("kwargs", {}), path)
        model.load_state_dict(merged)
    return model, used_ema


def _load_file(path: Path) -> Separator | BagOfModels:
    """Load a model file or a training checkpoint."""
    content = _load_dict(path)
    if _is_training_checkpoint(content):
        return _model_from_training(content, path)[0]
    if "format" in content:
        return model_from_file_content(content, path)
    raise CheckpointError(
        f"{path}: neither a sepzoo model file nor a training checkpoint (no 'format' or 'sepzoo' entry)"
    )


def _model_by_name(name: str) -> Separator:
    model_class = get_model_class(name)
    try:
        model = model_class()
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{name} cannot be built without arguments ({exc})") from None
    if model.num_parameters() > 0:
        raise CheckpointError(
            f"{name} is a trainable model: pass a model file, a training checkpoint or a run directory"
        )
    return model


def model_source_path(spec: str | Path) -> Path | None:
    """The file :func:`load_separator` reads for ``spec``: the file itself, or a run directory's
    checkpoint (see :func:`find_run_checkpoint`); ``None`` for anything else (a registry name,
    an exported folder, a path that does not exist).

    Args:
        spec: What a command was given as a model.
    """
    path = Path(spec)
    if path.is_dir():
        if (path / EXPORT_MANIFEST).is_file():
            return None
        return find_run_checkpoint(path)
    return path if path.is_file() else None


def load_separator(spec: str | Path, map_location: str = "cpu") -> Separator | BagOfModels:
    """Resolve what a command was given as a model.

    Accepted, in this order: an exported folder (``sepzoo export-onnx``; it runs with
    onnxruntime, see :class:`~sepzoo.models.onnx_model.OnnxSeparator`), a model file or a
    training checkpoint (a file), a run directory (its ``checkpoints/best.ckpt``, else
    ``checkpoints/last.ckpt``), or the registry name of a model without trainable parameters
    (an oracle).

    Args:
        spec: A file, a run directory or a registry name.
        map_location: Device to put the model on. (Default: ``"cpu"``)
    """
    path = Path(spec)
    if path.is_dir() and (path / EXPORT_MANIFEST).is_file():
        from sepzoo.models.onnx_model import OnnxSeparator

        return OnnxSeparator.from_folder(path)
    path = model_source_path(spec) or path
    if path.is_file():
        model = _load_file(path)
    elif str(spec) in MODELS:
        model = _model_by_name(str(spec))
    else:
        found = closest(str(spec), MODELS.names())
        hint = f"; did you mean {' or '.join(repr(f) for f in found)}?" if found else ""
        raise CheckpointError(f"{spec}: no such file or run directory, and not a registered model name{hint}")
    return model.to(map_location)


def export_model_file(run_or_ckpt: str | Path, out: str | Path, force: bool = False) -> tuple[Path, bool]:
    """Write a model file from a training checkpoint or a run directory.

    The EMA weights are used when the run kept them. The file's metadata records the source
    checkpoint, its global step (when present) and whether EMA weights were used.

    Args:
        run_or_ckpt: A training checkpoint or a run directory.
        out: The model file to write.
        force: Replace an existing ``out``. (Default: ``False``)

    Returns:
        The written path and whether the EMA weights were used.
    """
    source = Path(run_or_ckpt)
    if source.is_dir():
        source = find_run_checkpoint(source)
    prepare_output(out, force)  # refuse before the (possibly slow) load
    content = _load_dict(source)
    if not _is_training_checkpoint(content):
        raise CheckpointError(
            f"{source}: not a sepzoo training checkpoint (no 'sepzoo' entry of {TRAIN_FORMAT!r})"
        )
    model, used_ema = _model_from_training(content, source)
    metadata: dict[str, Any] = {"source_checkpoint": str(source), "ema": used_ema}
    if isinstance(content.get("global_step"), int):
        metadata["global_step"] = content["global_step"]
    ema = content["sepzoo"].get("ema")
    if used_ema and isinstance(ema.get("decay"), (int, float)):
        metadata["ema_decay"] = float(ema["decay"])
    if content["sepzoo"].get("lora") is not None:
        metadata["lora"] = content["sepzoo"]["lora"]  # merged: the file holds plain weights
    return save_model_file(model, out, metadata=metadata, force=force), used_ema


__all__ = [
    "BAG_FORMAT",
    "FORMAT_VERSION",
    "MODEL_FORMAT",
    "MODEL_SUFFIX",
    "TRAIN_FORMAT",
    "ForeignClass",
    "build_model",
    "export_model_file",
    "find_run_checkpoint",
    "foreign_globals",
    "load_model_file",
    "load_separator",
    "load_weights",
    "model_source_path",
    "model_from_file_content",
    "model_from_package",
    "package_model",
    "safe_load",
    "save_model_file",
    "training_state",
]
