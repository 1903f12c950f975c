"""Declared shapes for the files users write, and one-line messages when a file breaks one.

A file's shape is a pydantic model on :class:`StrictModel`: unknown keys are refused and no
value is silently converted (a string is never read as a number). :func:`validate` checks plain
data (what YAML or JSON gives) in pydantic's JSON mode, since YAML and JSON share one data
model: there, strict typing still lets a list fill a tuple and a string fill a path, which is
all a file can hold.

When the data breaks the shape, :func:`first_error` turns pydantic's errors into one line that
names the file, the dotted key and, for an unknown key, the closest valid one; it reports the
problem that comes first in the data's own key order and counts the rest::

    exp.yaml: unknown key 'model.encoder_filter' for model 'conv_tasnet'; did you mean
    'model.encoder_filters'? (and 1 more error)
"""

from __future__ import annotations

import itertools
import json
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from sepzoo.errors import ConfigError, closest, suggestion

ModelT = TypeVar("ModelT", bound=BaseModel)

Origin = str | Callable[[str], str]
"""Where data came from: one file name, or a function from a dotted key (list positions left out)
to the file that set it."""

Key = str | int

# pydantic's error types that mean "the value is not of this type", by the name a YAML author knows.
_TYPE_NAMES: dict[str, str] = {
    "int_type": "int",
    "int_parsing": "int",
    "int_from_float": "int",
    "float_type": "float",
    "float_parsing": "float",
    "string_type": "str",
    "bool_type": "bool",
    "bool_parsing": "bool",
    "none_required": "null",
    "list_type": "list",
    "tuple_type": "list",
    "set_type": "list",
    "dict_type": "mapping",
    "model_type": "mapping",
    "model_attributes_type": "mapping",
    "dataclass_type": "mapping",
}


class StrictModel(BaseModel):
    """The base of every declared file shape: unknown keys are errors, values are never converted.

    A model's ``title`` (``model_config = ConfigDict(title="a paper")``) names it in messages:
    "unknown key 'paper.yaer' for a paper; did you mean 'paper.year'?".
    """

    model_config = ConfigDict(extra="forbid", strict=True)


def expect(accepts: Callable[[Any], bool], expected: str) -> AfterValidator:
    """A check beyond the type, for ``Annotated[int, expect(...)]``.

    A value it refuses is reported as "expected <expected>, got <value>".

    Args:
        accepts: Whether a value (already of the annotated type) is acceptable.
        expected: What is acceptable, in words (e.g. ``"a fraction in [0, 1)"``).
    """

    def check(value: Any) -> Any:
        if not accepts(value):
            raise PydanticCustomError("expected", "expected {expected}", {"expected": expected})
        return value

    return AfterValidator(check)


def validate(schema: type[ModelT], data: Mapping[str, Any], origin: Origin) -> ModelT:
    """Check plain data against a schema and return the model it fills.

    Args:
        schema: The model class describing the data's shape.
        data: Nested plain data (mappings, lists, strings, numbers, booleans, nulls).
        origin: The file the data came from, or a function from a dotted key to its file.

    Raises:
        ConfigError: With the first problem in the data's key order, in one line.
    """
    try:
        text = json.dumps(data)
    except (TypeError, ValueError) as exc:
        where = origin if isinstance(origin, str) else origin("")
        raise ConfigError(f"{where}: holds a value that is not plain data ({exc})") from None
    try:
        return schema.model_validate_json(text)
    except ValidationError as error:
        raise first_error(error, schema, data, origin) from None


def first_error(error: ValidationError, schema: type[BaseModel], data: Any, origin: Origin) -> ConfigError:
    """The one-line :class:`ConfigError` for the first problem of a validation, in key order.

    The errors pydantic reports for the members of one union count as one problem: the member
    that got furthest into the value is reported, or, when every member refused the value
    itself, all the types it could have had.

    Args:
        error: What pydantic raised.
        schema: The model class that was validated.
        data: The data that was validated.
        origin: The file the data came from, or a function from a dotted key to its file.
    """
    problems: dict[tuple[Key, ...], list[tuple[list[Key], ErrorDetails]]] = {}
    for details in error.errors(include_url=False):
        keys, anchor = _locate(details, data)
        problems.setdefault(tuple(keys[:anchor]), []).append((keys, details))
    ordered = sorted(problems.items(), key=lambda item: _position(data, item[0]))
    members = ordered[0][1]
    deepest = max(len(keys) for keys, _ in members)
    keys = next(keys for keys, _ in members if len(keys) == deepest)
    reported = [details for k, details in members if k == keys]
    message = _describe(reported, keys, schema, data, origin)
    more = len(ordered) - 1
    if more:
        message += f" (and {more} more error{'s' if more > 1 else ''})"
    return ConfigError(message)


def describe_value(value: Any) -> str:
    """A value as an error message shows it: its YAML type and a short repr.

    Args:
        value: Any plain value.
    """
    if value is None:
        return "null"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def dotted(keys: Sequence[Key]) -> str:
    """A key path as messages write it: ``model.sources`` or ``results[0].values``.

    Args:
        keys: Mapping keys and list positions, outermost first.
    """
    text = ""
    for key in keys:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else str(key))
    return text


# ----------------------------------------------------------------------------------------------
# Where an error is


_ABSENT = object()


def _child(node: Any, key: Key) -> Any:
    if isinstance(node, Mapping) and isinstance(key, str):
        return next((value for k, value in node.items() if str(k) == key), _ABSENT)
    if isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
        return node[key]
    return _ABSENT


def _locate(details: ErrorDetails, data: Any) -> tuple[list[Key], int | None]:
    """The keys of an error's location that exist in the data, and how many come before the first
    union member's tag (``None`` outside unions). A missing key is kept though absent."""
    keys: list[Key] = []
    anchor = None
    node = data
    loc = details["loc"]
    for index, part in enumerate(loc):
        child = _child(node, part)
        if child is _ABSENT and not (details["type"] == "missing" and index == len(loc) - 1):
            anchor = len(keys) if anchor is None else anchor
            continue
        keys.append(part)
        node = child
    return keys, anchor


def _position(data: Any, keys: Sequence[Key]) -> tuple[int, ...]:
    """Where a key path comes in the data: the rank of each key among its siblings."""
    position = []
    node = data
    for key in keys:
        if isinstance(node, Mapping):
            names = [str(k) for k in node]
            position.append(names.index(key) if key in names else len(names))
        else:
            position.append(key if isinstance(key, int) else 0)
        node = _child(node, key)
    return tuple(position)


# ----------------------------------------------------------------------------------------------
# What the error says


def _describe(
    reported: list[ErrorDetails], keys: list[Key], schema: type[BaseModel], data: Any, origin: Origin
) -> str:
    kind = reported[0]["type"]
    if kind == "missing" and keys and isinstance(keys[-1], int):
        keys, kind = keys[:-1], "too_short"  # a list too short for a tuple: the whole list is wrong
    mapping_keys = list(itertools.takewhile(lambda key: isinstance(key, str), keys))
    where = origin if isinstance(origin, str) else origin(".".join(mapping_keys))
    path = dotted(keys)
    owner = _strip(_annotation_at(schema, keys[:-1]))
    owner = owner if isinstance(owner, type) and issubclass(owner, BaseModel) else None
    title = f" for {owner.model_config['title']}" if owner and owner.model_config.get("title") else ""
    if kind == "extra_forbidden":
        return f"{where}: unknown key {path!r}{title}{_closest_keys(owner, keys)}"
    if kind == "missing":
        return f"{where}: {path}: must be set{title}"
    value = _value_at(data, keys)
    annotation = _annotation_at(schema, keys)
    expected = [_expected(details, annotation) for details in reported]
    expected = [text for text in dict.fromkeys(expected) if text]
    if not expected:  # only a Python object would do, which no file can hold
        name = getattr(_strip(annotation), "__name__", "Python")
        expected = [f"a {name} object, which a file cannot hold"]
    if _admits_none(annotation) and "null" not in expected:
        expected.append("null")
    strings = [v for v in _literal_values(annotation) if isinstance(v, str)]
    hint = suggestion(value, strings) if isinstance(value, str) else ""
    return f"{where}: {path}: expected {' or '.join(expected)}, got {describe_value(value)}{hint}"


def _expected(details: ErrorDetails, annotation: Any) -> str:
    """What one error says the value should have been, in a YAML author's words."""
    kind = details["type"]
    context = details.get("ctx") or {}
    if kind == "needs_python_object":
        return ""
    if kind == "expected":
        return str(context["expected"])
    if kind == "literal_error":
        literals = _literal_values(annotation)  # every literal of a union at once
        return "one of " + (", ".join(map(repr, literals)) if literals else str(context["expected"]))
    if kind in ("too_short", "too_long", "missing"):  # missing: a position of a tuple
        args = typing.get_args(_strip(annotation))
        if typing.get_origin(_strip(annotation)) is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} items"
        bound = (
            f"at least {context.get('min_length')}"
            if kind == "too_short"
            else f"at most {context.get('max_length')}"
        )
        return f"a list of {bound} items"
    if kind == "is_instance_of":
        return str(context["class"])
    if kind in _TYPE_NAMES:
        return _TYPE_NAMES[kind]
    return details["msg"].removeprefix("Input should be ")


def _closest_keys(owner: type[BaseModel] | None, keys: list[Key]) -> str:
    """``; did you mean '<closest key>'?`` (or the valid keys) from the model that holds an unknown key."""
    if owner is None:
        return ""
    valid = [field.alias or name for name, field in owner.model_fields.items()]  # the keys a file uses
    prefix = dotted(keys[:-1])
    close = [f"{prefix}.{c}" if prefix else c for c in closest(str(keys[-1]), valid)]
    if close:
        return "; did you mean " + " or ".join(repr(c) for c in close) + "?"
    return f" (valid keys: {', '.join(valid)})" if len(valid) <= 20 else ""


def _value_at(data: Any, keys: Sequence[Key]) -> Any:
    for key in keys:
        data = _child(data, key)
    return data


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (Union, types.UnionType)


def _strip(annotation: Any) -> Any:
    """An annotation without ``Annotated`` and, for ``X | None``, without the ``None``."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if _is_union(annotation):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return _strip(members[0])
    return annotation


def _annotation_at(schema: Any, keys: Sequence[Key]) -> Any:
    """The declared annotation of a key path below a model (``None`` where nothing is declared)."""
    annotation = schema
    for key in keys:
        annotation = _strip(annotation)
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = _field_by_key(annotation, key) if isinstance(key, str) else None
            if field is None:
                return None
            annotation = field.annotation
        elif origin is tuple and args and isinstance(key, int):
            annotation = args[0] if args[-1] is Ellipsis else args[min(key, len(args) - 1)]
        elif origin is not None and args and origin is not Literal and not _is_union(annotation):
            annotation = args[-1]  # list[X], Sequence[X], dict[str, X]
        else:
            return None
    return annotation


def _field_by_key(model: type[BaseModel], key: str) -> Any:
    """The field a file's key fills: by its alias where it has one (``SI-SDR``), else by name."""
    for name, field in model.model_fields.items():
        if (field.alias or name) == key:
            return field
    return None


def _admits_none(annotation: Any) -> bool:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if _is_union(annotation):
        return any(_admits_none(a) for a in typing.get_args(annotation))
    return annotation is type(None)


def _literal_values(annotation: Any) -> list[Any]:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) is Literal:
        return list(typing.get_args(annotation))
    if _is_union(annotation):
        return [v for a in typing.get_args(annotation) for v in _literal_values(a)]
    return []


__all__ = ["Origin", "StrictModel", "describe_value", "dotted", "expect", "first_error", "validate"]
