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
"""

from __future__ import annotations

import datetime
import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sepzoo import DEFAULT_SOURCES
from sepzoo.errors import ConfigError, SepzooError, suggestion

SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
RECIPE_PATTERN = re.compile(r"^recipes/musdb/[^/]+\.yaml$")
ALL_KEY = "all"


@dataclass(frozen=True)
class PaperReference:
    """The publication a model comes from.

    Args:
        title: Paper title.
        authors: Author names, in order.
        year: Publication year.
        url: Where to read it.
    """

    title: str
    authors: list[str]
    year: int
    url: str


@dataclass(frozen=True)
class PublishedResult:
    """A number a paper published, with exactly what it measures and where it was printed.

    Args:
        dataset: Evaluation data (e.g. ``"MUSDB18 test"``).
        metric: What the numbers are (e.g. ``"cSDR median over tracks (BSSEval v4)"``).
        values: Per-source numbers, optionally with ``"all"``.
        source: Citation with table number and URL.
        notes: Anything a reader needs to compare fairly. (Default: ``None``)
    """

    dataset: str
    metric: str
    values: dict[str, float]
    source: str
    notes: str | None = None


@dataclass(frozen=True)
class MeasuredResult:
    """A number sepzoo measured itself, with the command that reproduces it.

    Args:
        dataset: Evaluation data.
        metric: What the numbers are.
        values: Per-source numbers, optionally with ``"all"``.
        command: The command line that produced them.
        date: ISO date of the measurement.
        sepzoo_version: The sepzoo version that measured.
    """

    dataset: str
    metric: str
    values: dict[str, float]
    command: str
    date: str
    sepzoo_version: str


@dataclass(frozen=True)
class ModelFile:
    """A released weight file.

    Args:
        path: Path or URL of the file.
        sha256: Its SHA-256 digest, 64 lowercase hex digits.
    """

    path: str
    sha256: str


@dataclass(frozen=True)
class ZooCard:
    """One model's zoo card.

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
        path: The file the card was read from. (Default: ``None``)
    """

    name: str
    title: str
    paper: PaperReference
    domain: str
    parameters: int
    sources: list[str]
    published_results: list[PublishedResult]
    recipe: str | None
    measured_results: list[MeasuredResult]
    model_file: ModelFile | None
    path: Path | None = field(default=None, compare=False)


class _Reader:
    """Strict reading of one YAML mapping tree, with errors that name the file and key path."""

    def __init__(self, file: Path) -> None:
        self.file = file

    def fail(self, message: str) -> ConfigError:
        return ConfigError(f"{self.file}: {message}")

    def mapping(
        self, value: Any, where: str, required: tuple[str, ...], optional: tuple[str, ...] = ()
    ) -> dict:
        if not isinstance(value, dict):
            raise self.fail(f"{where or 'the card'} must be a mapping, got {_type_name(value)}")
        allowed = required + optional
        for key in value:
            if key not in allowed:
                dotted = _join(where, str(key))
                raise self.fail(f"unknown key {dotted!r}{suggestion(str(key), allowed)}")
        for key in required:
            if key not in value:
                raise self.fail(f"missing required key {_join(where, key)!r}")
        return value

    def string(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"{where} must be a non-empty string, got {_type_name(value)}")
        return value

    def optional_string(self, value: Any, where: str) -> str | None:
        return None if value is None else self.string(value, where)

    def integer(self, value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"{where} must be an integer, got {_type_name(value)}")
        return value

    def number(self, value: Any, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(f"{where} must be a finite number, got {_type_name(value)}")
        return float(value)

    def string_list(self, value: Any, where: str) -> list[str]:
        if not isinstance(value, list) or not value:
            raise self.fail(f"{where} must be a non-empty list of strings, got {_type_name(value)}")
        return [self.string(item, f"{where}[{index}]") for index, item in enumerate(value)]

    def object_list(self, value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(f"{where} must be a list, got {_type_name(value)}")
        return value

    def values(self, value: Any, where: str) -> dict[str, float]:
        if not isinstance(value, dict) or not value:
            raise self.fail(f"{where} must be a non-empty mapping source: number, got {_type_name(value)}")
        return {
            self.string(key, f"{where} key"): self.number(number, _join(where, str(key)))
            for key, number in value.items()
        }

    def date(self, value: Any, where: str) -> str:
        # YAML reads an unquoted 2024-05-01 as a date; keep the ISO text either way.
        if isinstance(value, datetime.date):
            return value.isoformat()
        text = self.string(value, where)
        try:
            datetime.date.fromisoformat(text)
        except ValueError:
            raise self.fail(f"{where} must be an ISO date (YYYY-MM-DD), got {text!r}") from None
        return text


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, (str, int, float, bool)):
        return f"{type(value).__name__} {value!r}"
    return type(value).__name__


CARD_KEYS: tuple[str, ...] = (
    "name",
    "title",
    "paper",
    "domain",
    "parameters",
    "sources",
    "published_results",
    "recipe",
    "measured_results",
    "model_file",
)

MEASURED_KEYS: tuple[str, ...] = ("dataset", "metric", "values", "command", "date", "sepzoo_version")


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
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{path}: not valid YAML: {first_line}") from None
    reader = _Reader(path)
    data = reader.mapping(raw, "", required=CARD_KEYS)

    paper_data = reader.mapping(data["paper"], "paper", required=("title", "authors", "year", "url"))
    paper = PaperReference(
        title=reader.string(paper_data["title"], "paper.title"),
        authors=reader.string_list(paper_data["authors"], "paper.authors"),
        year=reader.integer(paper_data["year"], "paper.year"),
        url=reader.string(paper_data["url"], "paper.url"),
    )

    published = []
    for index, item in enumerate(reader.object_list(data["published_results"], "published_results")):
        where = f"published_results[{index}]"
        entry = reader.mapping(item, where, ("dataset", "metric", "values", "source"), ("notes",))
        published.append(
            PublishedResult(
                dataset=reader.string(entry["dataset"], f"{where}.dataset"),
                metric=reader.string(entry["metric"], f"{where}.metric"),
                values=reader.values(entry["values"], f"{where}.values"),
                source=reader.string(entry["source"], f"{where}.source"),
                notes=reader.optional_string(entry.get("notes"), f"{where}.notes"),
            )
        )

    measured = []
    for index, item in enumerate(reader.object_list(data["measured_results"], "measured_results")):
        where = f"measured_results[{index}]"
        entry = reader.mapping(item, where, MEASURED_KEYS)
        measured.append(
            MeasuredResult(
                dataset=reader.string(entry["dataset"], f"{where}.dataset"),
                metric=reader.string(entry["metric"], f"{where}.metric"),
                values=reader.values(entry["values"], f"{where}.values"),
                command=reader.string(entry["command"], f"{where}.command"),
                date=reader.date(entry["date"], f"{where}.date"),
                sepzoo_version=reader.string(str(entry["sepzoo_version"]), f"{where}.sepzoo_version"),
            )
        )

    model_file = None
    if data["model_file"] is not None:
        file_data = reader.mapping(data["model_file"], "model_file", required=("path", "sha256"))
        digest = reader.string(file_data["sha256"], "model_file.sha256")
        if not SHA256_PATTERN.match(digest):
            raise reader.fail(f"model_file.sha256 must be 64 lowercase hex digits, got {digest!r}")
        model_file = ModelFile(path=reader.string(file_data["path"], "model_file.path"), sha256=digest)

    return ZooCard(
        name=reader.string(data["name"], "name"),
        title=reader.string(data["title"], "title"),
        paper=paper,
        domain=reader.string(data["domain"], "domain"),
        parameters=reader.integer(data["parameters"], "parameters"),
        sources=reader.string_list(data["sources"], "sources"),
        published_results=published,
        recipe=reader.optional_string(data["recipe"], "recipe"),
        measured_results=measured,
        model_file=model_file,
        path=path,
    )


def validate_card(card: ZooCard, repo_root: str | Path) -> None:
    """Check a card against the model registry and the repository.

    Checks that the name is registered and equals the file stem, that domain, parameter count
    and sources match the model built at default settings, that result values name known
    sources, that the recipe exists, and that a present model file has the stated SHA-256.

    Args:
        card: A card from :func:`load_card`.
        repo_root: The repository root that ``recipe`` and ``model_file.path`` are relative to.

    Raises:
        ConfigError: One line naming the card and the mismatch.
    """
    from sepzoo.models import MODELS, create_model, get_model_class

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
    model = create_model(card.name)
    actual = model.num_parameters()
    if card.parameters != actual:
        raise fail(f"parameters is {card.parameters} but {card.name!r} at default settings has {actual}")
    if card.sources != model.sources:
        raise fail(f"sources is {card.sources} but {card.name!r} at default settings outputs {model.sources}")

    known = set(card.sources) | {ALL_KEY}
    results = [("published_results", r) for r in card.published_results]
    results += [("measured_results", r) for r in card.measured_results]
    counters: dict[str, int] = {}
    for group, result in results:
        index = counters.get(group, 0)
        counters[group] = index + 1
        for key in result.values:
            if key not in known:
                raise fail(
                    f"{group}[{index}].values has unknown source {key!r}{suggestion(key, known)}"
                    f" (sources: {', '.join(card.sources)}, or {ALL_KEY!r})"
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


def card_table(cards: list[ZooCard]) -> str:
    """A plain-text table of the cards' published results, one row per result.

    Columns: name, domain, parameters, dataset, ``all`` and one column per source (the default
    sources first); missing numbers show as ``-``.

    Args:
        cards: Cards from :func:`load_cards`.
    """
    extra_sources = sorted({s for card in cards for s in card.sources} - set(DEFAULT_SOURCES))
    columns = [ALL_KEY, *DEFAULT_SOURCES, *extra_sources]
    header = ["name", "domain", "params", "dataset", *columns]
    rows = []
    for card in cards:
        base = [card.name, card.domain, _format_parameters(card.parameters)]
        if not card.published_results:
            rows.append(base + ["-"] * (1 + len(columns)))
        for result in card.published_results:
            numbers = [f"{result.values[c]:.2f}" if c in result.values else "-" for c in columns]
            rows.append(base + [result.dataset, *numbers])
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
