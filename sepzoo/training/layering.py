"""Recipe files as layers: YAML files, the files they ``extends``, ``key=value`` overrides and
sepzoo's defaults, merged in that order, with the layer that set each key kept for messages.

A recipe's values come from several places; when one is wrong, the message names the place::

    sepzoo defaults  <  base.yaml  <  exp.yaml  <  command line

:class:`Layers` merges them with OmegaConf, resolves ``${...}`` interpolations and answers
:meth:`Layers.origin`: which file (or the command line) set a dotted key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from sepzoo.errors import ConfigError
from sepzoo.schema import describe_value

COMMAND_LINE = "command line"
"""The origin reported for values given as ``key=value`` overrides."""

DEFAULTS = "sepzoo defaults"
"""The origin reported for values nobody set."""


@dataclasses.dataclass
class Layer:
    """One source of values (a file, the command line or the defaults) in merge order.

    Args:
        origin: How messages name the source (a file path as the user would write it).
        values: Its values, as nested plain data.
    """

    origin: str
    values: dict[str, Any]

    def has(self, dotted: str) -> bool:
        """Whether this layer sets ``dotted`` (e.g. ``"model.repeats"``).

        Args:
            dotted: A dotted key.
        """
        node: Any = self.values
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return False
            node = node[part]
        return True


class Layers(list[Layer]):
    """Layers in merge order (later ones win), and which one set a key."""

    def origin(self, dotted: str) -> str:
        """The last layer that sets ``dotted`` (or its closest set parent), else the main file.

        Args:
            dotted: A dotted key; ``""`` for the whole config.
        """
        parts = dotted.split(".") if dotted else []
        while parts:
            key = ".".join(parts)
            for layer in reversed(self):
                if layer.has(key):
                    return layer.origin
            parts.pop()
        return self.main_origin()

    def main_origin(self) -> str:
        """The last file among the layers (the recipe itself), or :data:`DEFAULTS`."""
        for layer in reversed(self):
            if layer.origin not in (COMMAND_LINE, DEFAULTS):
                return layer.origin
        return DEFAULTS

    def fail(self, dotted: str, message: str) -> ConfigError:
        """A one-line error about ``dotted``, naming the layer that set it.

        Args:
            dotted: The key at fault.
            message: What is wrong with it.
        """
        return ConfigError(f"{self.origin(dotted)}: {dotted}: {message}")

    def merge(self) -> dict[str, Any]:
        """Merge the layers and resolve every ``${...}`` interpolation into plain data.

        Raises:
            ConfigError: If a value is ``???`` or an interpolation cannot be resolved.
        """
        try:
            merged = OmegaConf.merge(*[OmegaConf.create(layer.values) for layer in self])
        except OmegaConfBaseException as exc:
            key = getattr(exc, "full_key", None) or ""
            raise ConfigError(f"{self.origin(key)}: {first_line(exc)}") from None
        try:
            resolved = OmegaConf.to_container(merged, resolve=True, throw_on_missing=True)
        except MissingMandatoryValue as exc:
            raise self.fail(getattr(exc, "full_key", "") or "?", "must be set (it is '???')") from None
        except OmegaConfBaseException as exc:
            key = getattr(exc, "full_key", "") or "?"
            raise self.fail(key, f"cannot resolve interpolation: {first_line(exc)}") from None
        return resolved  # type: ignore[return-value]


def file_layers(path: Path) -> list[Layer]:
    """A recipe file and, before it, the files it extends (base first, recursively).

    Args:
        path: The recipe file.

    Raises:
        ConfigError: If a file is missing, unreadable or not a mapping, or ``extends`` is
            malformed or forms a cycle.
    """
    return _dedupe(_file_layers(path))


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name if it has none).

    Args:
        exc: Any exception.
    """
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _display(path: Path) -> str:
    """A path as the user would write it: relative to the working folder when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _read_yaml(path: Path, origin: str) -> dict[str, Any]:
    try:
        loaded = OmegaConf.load(path)
    except FileNotFoundError:
        raise ConfigError(f"{origin}: recipe file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{origin}: is a folder, not a recipe file") from None
    except OSError as exc:
        raise ConfigError(f"{origin}: cannot read the recipe ({exc.strerror})") from None
    except yaml.constructor.ConstructorError as exc:
        where = _mark(exc)
        problem = exc.problem or str(exc)
        if "python/" in problem or "tag" in problem:
            raise ConfigError(
                f"{origin}{where}: Python object tags are not allowed in recipes ({problem}); "
                "name models, losses and data sets by their registered names"
            ) from None
        raise ConfigError(f"{origin}{where}: {problem}") from None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        context = getattr(exc, "context", None)
        detail = f"{context}: {problem}" if context else problem
        raise ConfigError(f"{origin}{_mark(exc)}: invalid YAML ({detail})") from None
    except (OmegaConfBaseException, ValueError, TypeError) as exc:
        raise ConfigError(f"{origin}: {first_line(exc)}") from None
    if not OmegaConf.is_dict(loaded):
        raise ConfigError(f"{origin}: a recipe must be a mapping of keys to values, got a list")
    return OmegaConf.to_container(loaded, resolve=False)  # type: ignore[return-value]


def _mark(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is None:
        return ""
    return f":{mark.line + 1}:{mark.column + 1}"


def _file_layers(path: Path, chain: tuple[Path, ...] = ()) -> list[Layer]:
    """A file and, before it, the files it extends (base first, recursively)."""
    resolved_path = path.resolve()
    origin = _display(path)
    if resolved_path in chain:
        cycle = " -> ".join(_display(p) for p in (*chain, resolved_path))
        raise ConfigError(f"{origin}: `extends` forms a cycle: {cycle}")
    if not path.is_file() and not path.exists():
        if chain:
            raise ConfigError(f"{_display(chain[-1])}: extends {origin}, which does not exist")
        raise ConfigError(f"{origin}: recipe file not found")
    values = _read_yaml(path, origin)
    extends = values.pop("extends", None)
    if extends is None:
        bases: list[Any] = []
    elif isinstance(extends, str):
        bases = [extends]
    elif isinstance(extends, list) and all(isinstance(b, str) for b in extends):
        bases = list(extends)
    else:
        raise ConfigError(
            f"{origin}: extends: expected a path or a list of paths, got {describe_value(extends)}"
        )
    layers: list[Layer] = []
    for base in bases:
        base_path = Path(base).expanduser()
        if not base_path.is_absolute():
            base_path = path.parent / base_path
        layers.extend(_file_layers(base_path, (*chain, resolved_path)))
    layers.append(Layer(origin, values))
    return layers


def _dedupe(layers: list[Layer]) -> list[Layer]:
    """Keep the first appearance of a base file shared by several branches of ``extends``, so a
    later branch cannot silently undo what an earlier one changed."""
    seen: set[str] = set()
    kept = []
    for layer in layers:
        if layer.origin in seen:
            continue
        seen.add(layer.origin)
        kept.append(layer)
    return kept


def override_layer(overrides: Sequence[str]) -> Layer:
    """The command line's layer: ``key=value`` strings with dotted keys and YAML values.

    Args:
        overrides: The strings, e.g. ``trainer.max_steps=10`` or ``model.sources=[drums,bass]``.

    Raises:
        ConfigError: If one is not of the form ``key=value`` or cannot be parsed.
    """
    if isinstance(overrides, str):
        overrides = [overrides]
    merged = OmegaConf.create({})
    for item in overrides:
        if not isinstance(item, str) or "=" not in item:
            raise ConfigError(f"{COMMAND_LINE}: override {item!r} is not of the form key=value")
        key = item.split("=", 1)[0].strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"{COMMAND_LINE}: override {item!r} has no valid key before '='")
        if key == "extends":
            raise ConfigError(f"{COMMAND_LINE}: `extends` cannot be overridden; pass another recipe file")
        try:
            parsed = OmegaConf.from_dotlist([item])
            merged = OmegaConf.merge(merged, parsed)
        except (OmegaConfBaseException, yaml.YAMLError, ValueError) as exc:
            raise ConfigError(
                f"{COMMAND_LINE}: override {item!r} cannot be parsed: {first_line(exc)}"
            ) from None
    return Layer(COMMAND_LINE, OmegaConf.to_container(merged, resolve=False))  # type: ignore[arg-type]


__all__ = ["COMMAND_LINE", "DEFAULTS", "Layer", "Layers", "file_layers", "first_line", "override_layer"]
