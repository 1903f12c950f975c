"""Import of checkpoints trained with Music-Source-Separation-Training (MSST) and shared in its
format: a state dict and the YAML config it was trained with.

The config says what to build:

* ``audio.sample_rate`` and ``audio.num_channels``; ``audio.chunk_size`` (samples) becomes the
  converted model's segment, ``chunk_size / sample_rate`` seconds, which the engine turns back
  into exactly ``chunk_size`` samples;
* ``audio.n_fft``, ``audio.hop_length`` and ``audio.dim_f`` (MDX23C's STFT);
* ``model.*`` (for MSST's HT Demucs, the ``htdemucs`` section), the architecture;
* ``training.instruments`` and ``training.target_instrument``: a model with a target instrument
  estimates that one stem.

Each model type has its own module of argument and key mappings (:mod:`sepzoo.convert.msst_roformer`,
:mod:`sepzoo.convert.msst_mdx23c`, :mod:`sepzoo.convert.msst_scnet`; MSST's HT Demucs is the
official demucs class, converted by :mod:`sepzoo.convert.demucs`). A ``model.*`` key that the
type does not know, and a state-dict key that does not map, are refused by name.

The weights are read without running anything from the file: a plain state dict, or one under a
``state_dict``, ``model_state_dict`` or ``model`` key. Config YAML is read with a safe loader that
also knows the ``!!python/tuple`` tag MSST's configs use.
"""

from __future__ import annotations

import hashlib
import importlib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from torch import Tensor

from sepzoo.convert import rename_state
from sepzoo.errors import CheckpointError, ConfigError, closest
from sepzoo.models import create_model
from sepzoo.models.base import Separator
from sepzoo.models.files import safe_load

MODEL_TYPES = ("bs_roformer", "mel_band_roformer", "mdx23c", "htdemucs", "scnet")
"""MSST's ``--model_type`` names that convert; each is also the name of the sepzoo model."""

_MAPPING_MODULES = {
    "bs_roformer": "sepzoo.convert.msst_roformer",
    "mel_band_roformer": "sepzoo.convert.msst_roformer",
    "mdx23c": "sepzoo.convert.msst_mdx23c",
    "scnet": "sepzoo.convert.msst_scnet",
}
_WRAPPERS = ("state_dict", "model_state_dict", "model")


class _ConfigLoader(yaml.SafeLoader):
    """YAML's safe loader plus ``!!python/tuple``, which MSST's configs use for band lists, and
    floats written without a decimal point (``1e-3``), which YAML 1.1 reads as strings but
    OmegaConf, through which MSST reads HT Demucs configs, reads as numbers."""


_ConfigLoader.add_constructor(
    "tag:yaml.org,2002:python/tuple", lambda loader, node: tuple(loader.construct_sequence(node))
)
_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def read_config(path: str | Path) -> dict[str, Any]:
    """Read an MSST config file.

    Args:
        path: The YAML file.

    Raises:
        ConfigError: The file is missing, not YAML or not a mapping.
    """
    path = Path(path)
    try:
        content = yaml.load(path.read_text(), Loader=_ConfigLoader)  # noqa: S506 (a safe loader)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{path}: not a readable YAML file ({reason})") from None
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: expected an MSST config (a mapping with audio, model, training)")
    return content


def read_state(path: str | Path) -> dict[str, Tensor]:
    """Read MSST weights: a state dict, bare or under one of the usual wrapper keys.

    Args:
        path: The checkpoint.

    Raises:
        CheckpointError: The file is unreadable or holds no state dict.
    """
    content = safe_load(path)
    for key in _WRAPPERS:
        if isinstance(content, Mapping) and isinstance(content.get(key), Mapping):
            content = content[key]
            break
    if (
        not isinstance(content, Mapping)
        or not content
        or not all(isinstance(value, Tensor) for value in content.values())
    ):
        raise CheckpointError(f"{path}: expected a state dict (names to tensors), bare or under 'state_dict'")
    return dict(content)


def config_section(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """One section of an MSST config as a dict; an absent section is empty.

    Args:
        config: The config (a mapping, or an object with ``get`` and ``items`` such as an
            ``ml_collections.ConfigDict``).
        name: ``"audio"``, ``"model"``, ``"training"``, ...

    Raises:
        ValueError: The section is not a mapping.
    """
    section = config.get(name)
    if section is None:
        return {}
    if not hasattr(section, "items"):
        raise ValueError(f"{name}: expected a section (a mapping of keys), got {type(section).__name__}")
    return dict(section.items())


def check_model_keys(model: Mapping[str, Any], valid: Iterable[str], model_type: str) -> None:
    """Refuse a ``model.<key>`` that ``model_type`` does not take, naming the closest valid key
    (one that differs only in case first, as in ``band_sr`` for ``band_SR``).

    Args:
        model: The config's ``model`` section.
        valid: The keys the type takes.
        model_type: MSST's name of the type, for the message.

    Raises:
        ValueError: Naming the first unknown key.
    """
    valid = list(valid)
    for key in model:
        if key in valid:
            continue
        hint = [name for name in valid if name.lower() == str(key).lower()] or closest(str(key), valid, n=1)
        suggestion = f"; did you mean 'model.{hint[0]}'?" if hint else ""
        raise ValueError(f"unknown key model.{key} for {model_type}{suggestion}")


def output_stems(training: Mapping[str, Any], count: int | None = None, count_key: str = "") -> list[str]:
    """The stems a model estimates: ``training.target_instrument`` when set (MSST then trains one
    output), else ``training.instruments``.

    Args:
        training: The config's ``training`` section.
        count: The number of outputs the model section declares, if it declares one.
            (Default: ``None``)
        count_key: The key that declares it, for the message, e.g. ``"model.num_stems"``.
            (Default: ``""``)

    Raises:
        ValueError: No stems are named, or their number differs from ``count``.
    """
    target = training.get("target_instrument")
    if target:
        names, origin = [str(target)], "training.target_instrument"
    else:
        instruments = training.get("instruments")
        if not instruments or isinstance(instruments, str):
            raise ValueError(
                "training.instruments must list the stems (or training.target_instrument name one), "
                f"got {instruments!r}"
            )
        names, origin = [str(name) for name in instruments], "training.instruments"
    if count is not None and len(names) != count:
        raise ValueError(f"{origin} names {len(names)} stem(s) {names}, but {count_key} is {count}")
    return names


def _section(config: Mapping[str, Any], name: str, source: Path) -> dict[str, Any]:
    try:
        return config_section(config, name)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _htdemucs(config: Mapping[str, Any], state: Mapping[str, Tensor], source: Path, ckpt: Path) -> Separator:
    from sepzoo.convert.demucs import model_from_arguments

    if not isinstance(config.get("htdemucs"), Mapping):
        raise ConfigError(f"{source}: htdemucs: missing; MSST builds its HT Demucs from this section")
    arguments = _section(config, "htdemucs", source)
    training = _section(config, "training", source)
    subbands = arguments.pop("num_subbands", 1)
    if subbands != 1:
        raise ConfigError(f"{source}: htdemucs.num_subbands: only 1 converts, got {subbands!r}")
    for key in ("instruments", "channels", "samplerate", "segment"):
        if key not in training:
            raise ConfigError(f"{source}: training.{key}: missing; MSST's HT Demucs is built from it")
    arguments.update(
        sources=list(training["instruments"]),
        audio_channels=training["channels"],
        samplerate=training["samplerate"],
        segment=training["segment"],
    )
    return model_from_arguments("htdemucs", [], arguments, state, ckpt, arguments_source=source)


def convert_checkpoint(
    checkpoint: str | Path, config_path: str | Path, model_type: str
) -> tuple[Separator, dict[str, Any]]:
    """Convert MSST weights and their config into a sepzoo model.

    Args:
        checkpoint: The weights (``.ckpt``, ``.pth``, ``.th``).
        config_path: The YAML config they were trained with.
        model_type: MSST's model type, one of :data:`MODEL_TYPES`.

    Returns:
        The model, and provenance to record in its model file: the model type and the SHA-256
        of the config file.

    Raises:
        ConfigError: A config key is missing, unknown or out of range.
        CheckpointError: The weights are unreadable, of another model type, or a key does not
            map.
    """
    if model_type not in MODEL_TYPES:
        raise ConfigError(f"--model-type {model_type!r}: expected one of {', '.join(MODEL_TYPES)}")
    checkpoint, config_path = Path(checkpoint), Path(config_path)
    config = read_config(config_path)
    provenance = {
        "msst_model_type": model_type,
        "msst_config_sha256": hashlib.sha256(config_path.read_bytes()).hexdigest(),
    }
    state = read_state(checkpoint)
    if model_type == "htdemucs":
        return _htdemucs(config, state, config_path, checkpoint), provenance

    mapping = importlib.import_module(_MAPPING_MODULES[model_type])
    try:
        if mapping.__name__.endswith("roformer"):
            kwargs = mapping.kwargs_from_msst(model_type, config)
        else:
            kwargs = mapping.kwargs_from_msst(config)
        model = create_model(model_type, **kwargs)
    except ValueError as exc:
        raise ConfigError(f"{config_path}: {exc}") from None
    expected = model.state_dict()
    if not any(mapping.rename_msst_key(key) in expected for key in state):
        first = ", ".join(list(state)[:3])
        raise CheckpointError(
            f"{checkpoint}: none of its keys map to {model_type} (it starts with {first}); "
            "is it a checkpoint of another model type?"
        )
    model.load_state_dict(rename_state(state, mapping.rename_msst_key, expected, str(checkpoint)))
    return model, provenance


__all__ = [
    "MODEL_TYPES",
    "check_model_keys",
    "config_section",
    "convert_checkpoint",
    "output_stems",
    "read_config",
    "read_state",
]
