"""Zoo cards: one YAML file per registered model with its paper, size and results.

A card lives at ``zoo_cards/<registry name>.yaml``. It keeps what a paper published apart from
what sepzoo measured, names exactly which metric each number is, and is checked against the
registry (name, domain, parameter count, sources) so that it cannot drift from the code.

Example::

    name: conv_tasnet
    title: Conv-TasNet (music variant)
    paper: {title: ..., authors: [...], year: 2019, url: ...}
    domain: waveform
    parameters: 10977872
    sources: [drums, bass, other, vocals]
    published_results:
      - dataset: MUSDB18 test
        metric: ...
        values: {drums: 6.08, all: 5.73}
        source: ...
    recipe: recipes/musdb/conv_tasnet.yaml
    measured_results: []
    model_file: null

The shape is declared once, by :class:`ZooCard` and its parts (pydantic models on
:class:`~sepzoo.schema.StrictModel`), and checked by :func:`sepzoo.schema.validate`: an unknown
key, a missing one or a value of the wrong type fails in one line naming the file, the dotted key
and the closest valid key. :func:`validate_card` then checks the card against the registry.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import math
import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import ConfigDict, PrivateAttr

from sepzoo import DEFAULT_SOURCES
from sepzoo.errors import ConfigError, SepzooError, suggestion
from sepzoo.experiments.records import IsoDate
from sepzoo.schema import StrictModel, describe_value, expect, validate

SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
RECIPE_PATTERN = re.compile(r"^recipes/musdb/[^/]+\.yaml$")
ALL_KEY = "all"


_Text = Annotated[str, expect(lambda v: bool(v.strip()), "a non-empty string")]
_Texts = Annotated[list[_Text], expect(bool, "a non-empty list of strings")]
_Number = Annotated[float, expect(math.isfinite, "a finite number")]
_Values = Annotated[dict[str, _Number], expect(bool, "a non-empty mapping of source: number")]
_Digest = Annotated[str, expect(lambda v: bool(SHA256_PATTERN.match(v)), "64 lowercase hex digits")]


class _CardPart(StrictModel):
    model_config = ConfigDict(frozen=True)


class PaperReference(_CardPart):
    """The publication a model comes from.

    Args:
        title: Paper title.
        authors: Author names, in order.
        year: Publication year.
        url: Where to read it.
    """

    model_config = ConfigDict(title="the paper")

    title: _Text
    authors: _Texts
    year: int
    url: _Text


class PublishedResult(_CardPart):
    """A number a paper published, with exactly what it measures and where it was printed.

    Args:
        dataset: Evaluation data (e.g. ``"MUSDB18 test"``).
        metric: What the numbers are (e.g. ``"cSDR median over tracks (BSSEval v4)"``).
        values: Per-source numbers, optionally with ``"all"``.
        source: Citation with table number and URL.
        notes: Anything a reader needs to compare fairly. (Default: ``None``)
    """

    model_config = ConfigDict(title="a published result")

    dataset: _Text
    metric: _Text
    values: _Values
    source: _Text
    notes: _Text | None = None


class MeasuredResult(_CardPart):
    """A number sepzoo measured itself, with the command that reproduces it.

    Args:
        dataset: Evaluation data.
        metric: What the numbers are.
        values: Per-source numbers, optionally with ``"all"``.
        command: The command line that produced them.
        date: ISO date of the measurement (``YYYY-MM-DD``; an unquoted YAML date is read as one).
        sepzoo_version: The sepzoo version that measured.
        notes: Anything a reader needs to judge them (intervals, the size trained).
            (Default: ``None``)
    """

    model_config = ConfigDict(title="a measured result")

    dataset: _Text
    metric: _Text
    values: _Values
    command: _Text
    date: IsoDate
    sepzoo_version: _Text
    notes: _Text | None = None


class ModelFile(_CardPart):
    """A released weight file.

    Args:
        path: Path or URL of the file.
        sha256: Its SHA-256 digest, 64 lowercase hex digits.
    """

    model_config = ConfigDict(title="the `model_file` entry")

    path: _Text
    sha256: _Digest


class ZooCard(_CardPart):
    """One model's zoo card: the shape of ``zoo_cards/<name>.yaml``.

    Every key is required; ``recipe`` and ``model_file`` may be ``null``.

    Args:
        name: Registry name; equals the card's file stem.
        title: Human-readable model name.
        paper: The publication.
        domain: ``"waveform"``, ``"spectrogram"``, ``"hybrid"`` or ``"oracle"``.
        parameters: Trainable parameters at default settings.
        sources: Output stems at default settings, in order.
        published_results: Numbers from the paper.
        recipe: Training recipe, relative to the repository root; ``None`` for an oracle,
            which needs no training (and only for one).
        measured_results: Numbers sepzoo measured.
        model_file: Released weights, or ``None``.
    """

    model_config = ConfigDict(title="a zoo card")

    name: _Text
    title: _Text
    paper: PaperReference
    domain: _Text
    parameters: int
    sources: _Texts
    published_results: list[PublishedResult]
    recipe: _Text | None
    measured_results: list[MeasuredResult]
    model_file: ModelFile | None
    _path: Path | None = PrivateAttr(default=None)

    @property
    def path(self) -> Path | None:
        """The file the card was read from (``None`` for a card built in code)."""
        return self._path

    @classmethod
    def from_data(cls, data: dict[str, Any], path: Path) -> ZooCard:
        """A card from the plain data of its YAML file.

        Args:
            data: The file's YAML, loaded.
            path: The file, named in error messages and kept as :attr:`path`.

        Raises:
            ConfigError: Naming the file and the dotted key of the first problem.
        """
        card = validate(cls, _dates_as_text(data), str(path))
        card._path = path
        return card


def _dates_as_text(data: dict[str, Any]) -> dict[str, Any]:
    """YAML reads an unquoted ``date: 2024-05-01`` as a date; a card keeps the ISO text."""
    measured = data.get("measured_results")
    if not isinstance(measured, list):
        return data
    entries = [
        {**entry, "date": entry["date"].isoformat()}
        if isinstance(entry, dict) and isinstance(entry.get("date"), datetime.date)
        else entry
        for entry in measured
    ]
    return {**data, "measured_results": entries}


def load_card(path: str | Path) -> ZooCard:
    """Read and type-check one card (no registry checks; see :func:`validate_card`).

    Args:
        path: The card's YAML file.

    Raises:
        ConfigError: Naming the file and the dotted key path for an unknown key (with the
            closest valid key), a missing key, or a value of the wrong type.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"zoo card {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    return parse_card(text, path)


def parse_card(text: str, path: str | Path) -> ZooCard:
    """Read and type-check a card's YAML text, as :func:`load_card` does for a file.

    Args:
        text: The card's YAML.
        path: The file the text belongs to, used in error messages and as ``ZooCard.path``.

    Raises:
        ConfigError: As :func:`load_card`.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{path}: not valid YAML: {first_line}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the card must be a mapping, got {describe_value(raw)}")
    return ZooCard.from_data(raw, path)


def validate_card(card: ZooCard, repo_root: str | Path) -> None:
    """Check a card against the model registry and the repository.

    Checks that the name is registered and equals the file stem, that domain, parameter count
    and sources match the model built at default settings, that result values name known
    sources (the card's, ``"all"``, and for measured results also the MUSDB18 stems), that the
    recipe exists, and that a present model file has the stated SHA-256.

    Args:
        card: A card from :func:`load_card`.
        repo_root: The repository root that ``recipe`` and ``model_file.path`` are relative to.

    Raises:
        ConfigError: One line naming the card and the mismatch.
    """
    from sepzoo.models import MODELS, get_model_class

    root = Path(repo_root)
    where = str(card.path) if card.path is not None else f"zoo card {card.name!r}"

    def fail(message: str) -> ConfigError:
        return ConfigError(f"{where}: {message}")

    if card.path is not None and card.path.stem != card.name:
        raise fail(f"name {card.name!r} must equal the file name stem {card.path.stem!r}")
    try:
        cls = get_model_class(card.name)
    except SepzooError:
        hint = suggestion(card.name, MODELS.names())
        raise fail(f"name {card.name!r} is not a registered model{hint}") from None
    if card.domain != cls.domain:
        raise fail(f"domain is {card.domain!r} but model {card.name!r} has domain {cls.domain!r}")
    actual, sources = _default_size_and_sources(cls)
    if card.parameters != actual:
        raise fail(f"parameters is {card.parameters} but {card.name!r} at default settings has {actual}")
    if card.sources != sources:
        raise fail(f"sources is {card.sources} but {card.name!r} at default settings outputs {sources}")

    # A recipe may train a model on other stems than its defaults (the toy Band-split RNN
    # estimates all four), so sepzoo's own measurements may also name any MUSDB18 stem.
    published_known = [*card.sources, ALL_KEY]
    measured_known = [*card.sources, *(s for s in DEFAULT_SOURCES if s not in card.sources), ALL_KEY]
    groups = [
        ("published_results", card.published_results, published_known),
        ("measured_results", card.measured_results, measured_known),
    ]
    for group, results, known in groups:
        for index, result in enumerate(results):
            for key in result.values:
                if key not in known:
                    raise fail(
                        f"{group}[{index}].values has unknown source {key!r}{suggestion(key, known)}"
                        f" (expected one of: {', '.join(known)})"
                    )

    if card.recipe is None:
        if card.domain != "oracle":
            raise fail(
                f"recipe is null, but only an oracle trains without a recipe ({card.name!r} is {card.domain})"
            )
    elif not RECIPE_PATTERN.match(card.recipe):
        raise fail(f"recipe must look like 'recipes/musdb/<file>.yaml', got {card.recipe!r}")
    elif not (root / card.recipe).is_file():
        raise fail(f"recipe {card.recipe!r} does not exist under {root}")

    if card.model_file is not None:
        weights = root / card.model_file.path
        if weights.is_file():
            digest = _sha256(weights)
            if digest != card.model_file.sha256:
                raise fail(f"model_file {weights} has sha256 {digest}, card says {card.model_file.sha256}")


@functools.cache
def _default_size_and_sources(cls: type) -> tuple[int, list[str]]:
    # Building the large models takes seconds; checking the whole zoo builds each class once.
    model = cls()
    return model.num_parameters(), list(model.sources)


def _sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


def load_cards(directory: str | Path) -> list[ZooCard]:
    """Load every ``*.yaml`` card in ``directory``, sorted by file name.

    Args:
        directory: The cards folder (usually ``zoo_cards/``).

    Raises:
        ConfigError: If the folder does not exist, a card is invalid, or two cards share a name.
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise ConfigError(f"zoo card folder {folder} does not exist")
    cards = [load_card(path) for path in sorted(folder.glob("*.yaml"))]
    seen: dict[str, Path | None] = {}
    for card in cards:
        if card.name in seen:
            raise ConfigError(f"{card.path}: name {card.name!r} is already used by {seen[card.name]}")
        seen[card.name] = card.path
    return cards


def _format_parameters(count: int) -> str:
    if count >= 1_000_000:
        return f"{count / 1_000_000:.2f}M"
    if count >= 1_000:
        return f"{count / 1_000:.1f}k"
    return str(count)


def short_label(text: str, limit: int = 28) -> str:
    """The head of a dataset or metric description, for a table cell.

    Cuts at the first ``" ("``, ``","``, ``";"`` or ``":"``, so ``"sepzoo toy set (synthetic...)"``
    gives ``"sepzoo toy set"`` and ``"cSDR: BSSEval v4 SDR..."`` gives ``"cSDR"``.

    Args:
        text: The full description.
        limit: Longest label returned; longer heads end in ``"..."``. (Default: ``28``)
    """
    head = re.split(r" \(|[,;:]", text, maxsplit=1)[0].strip() or text.strip()
    return head if len(head) <= limit else head[: limit - 3].rstrip() + "..."


def latest_measured(card: ZooCard) -> list[MeasuredResult]:
    """The card's measured results of the most recent date, in card order (empty if none).

    Args:
        card: A zoo card.
    """
    if not card.measured_results:
        return []
    newest = max(result.date for result in card.measured_results)
    return [result for result in card.measured_results if result.date == newest]


def card_table(cards: list[ZooCard]) -> str:
    """A plain-text table of the cards: published results and the latest measured ones.

    One row per published result and per measured result of the newest date. Columns: name,
    domain, parameters, dataset (shortened), result (``published`` or ``measured`` with the
    metric's short name), ``all`` and one column per source (the default sources first);
    missing numbers show as ``-``.

    Args:
        cards: Cards from :func:`load_cards`.
    """
    extra_sources = sorted({s for card in cards for s in card.sources} - set(DEFAULT_SOURCES))
    columns = [ALL_KEY, *DEFAULT_SOURCES, *extra_sources]
    header = ["name", "domain", "params", "dataset", "result", *columns]
    rows = []
    for card in cards:
        base = [card.name, card.domain, _format_parameters(card.parameters)]
        results = [(result, "published") for result in card.published_results]
        results += [(result, f"measured {short_label(result.metric)}") for result in latest_measured(card)]
        if not results:
            rows.append(base + ["-"] * (2 + len(columns)))
        for result, kind in results:
            numbers = [f"{result.values[c]:.2f}" if c in result.values else "-" for c in columns]
            rows.append(base + [short_label(result.dataset), kind, *numbers])
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


class _CardDumper(yaml.SafeDumper):
    """Writes block lists indented under their key, as the hand-written cards do."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    # Long one-line descriptions read best folded (">-"), like the hand-written entries.
    style = ">" if len(text) > 60 and "\n" not in text and text == text.strip() else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_CardDumper.add_representer(str, _represent_text)

_TOP_LEVEL_KEY = re.compile(r"^[A-Za-z_][\w-]*\s*:(\s|$)")
_MEASURED_LINE = re.compile(r"^measured_results\s*:")


def measured_results_yaml(results: list[MeasuredResult]) -> str:
    """The ``measured_results:`` block of a card, as YAML text ending in a newline.

    Args:
        results: The measured results, in the order they should appear.
    """
    if not results:
        return "measured_results: []\n"
    entries = []
    for result in results:
        entry: dict[str, Any] = {
            "dataset": result.dataset,
            "metric": result.metric,
            "values": dict(result.values),
            "command": result.command,
            "date": result.date,
            "sepzoo_version": result.sepzoo_version,
        }
        if result.notes is not None:
            entry["notes"] = result.notes
        entries.append(entry)
    return yaml.dump(
        {"measured_results": entries},
        Dumper=_CardDumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=88,
    )


def replace_measured_results(text: str, results: list[MeasuredResult], path: str | Path) -> str:
    """A card's text with only its ``measured_results:`` block rewritten.

    Everything else, comments included, is kept as written. The block runs from the top-level
    ``measured_results:`` line to the next top-level key; comment and blank lines just above
    that key stay with it. Comments inside the block itself are not kept.

    Args:
        text: The card's YAML text.
        results: The measured results the block should hold.
        path: The card's file, for error messages.

    Raises:
        ConfigError: If the text has no top-level ``measured_results:`` line, or more than one.
    """
    lines = text.splitlines(keepends=True)
    starts = [index for index, line in enumerate(lines) if _MEASURED_LINE.match(line)]
    if len(starts) != 1:
        raise ConfigError(
            f"{path}: expected one top-level 'measured_results:' line to rewrite, found {len(starts)}"
        )
    start = starts[0]
    end = start + 1
    while end < len(lines) and not _TOP_LEVEL_KEY.match(lines[end]):
        end += 1
    while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].startswith("#")):
        end -= 1
    head = "".join(lines[:start])
    return head + measured_results_yaml(results) + "".join(lines[end:])
