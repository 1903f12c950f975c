"""The zoo as a whole: cards checked against the registry, rendered to Markdown, and updated.

``sepzoo zoo`` prints every card as a table after checking that each registered model has a
card and each card validates. ``--render DIR`` writes one Markdown page per card and an index;
``--record COMPARISON_DIR`` adds what a ``sepzoo compare`` run measured to the cards of its
models, rewriting only the ``measured_results:`` block of each card so that its comments stay.

Recipes and model files named by the cards are relative to the folder above the cards folder,
which for the default ``zoo_cards/`` is the repository root.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, TypeVar

from sepzoo import DEFAULT_SOURCES
from sepzoo.errors import ConfigError, OutputExistsError, SepzooError
from sepzoo.experiments.cards import (
    ALL_KEY,
    MeasuredResult,
    ZooCard,
    card_table,
    latest_measured,
    load_card,
    load_cards,
    parse_card,
    replace_measured_results,
    short_label,
    validate_card,
)
from sepzoo.experiments.records import COMPARISON_FILE, Comparison, ScoreSummary, System, read_comparison_file
from sepzoo.io.atomic import write_all_atomic

EXIT_PROBLEMS = 2
RENDER_COMMAND = "sepzoo zoo --render zoo_cards/md --force"
INDEX_FILE = "README.md"
RECORDED_METRICS: tuple[str, ...] = ("cSDR", "nSDR")
TOY_DATASET = "sepzoo toy set (synthetic; a smoke test of the machinery, not evidence about the model)"

log = logging.getLogger(__name__)

T = TypeVar("T")


def repository_root() -> Path:
    """The folder that holds the ``sepzoo`` package: the repository root of a checkout."""
    return Path(__file__).resolve().parents[2]


def default_cards_dir() -> Path:
    """The repository's ``zoo_cards/`` folder.

    Raises:
        ConfigError: If there is none beside the package (an installed copy, say).
    """
    folder = repository_root() / "zoo_cards"
    if not folder.is_dir():
        raise ConfigError(
            f"no zoo_cards/ folder in {repository_root()} (above the sepzoo package); pass --cards DIR"
        )
    return folder


def check_zoo(cards_dir: str | Path, repo_root: str | Path) -> list[str]:
    """Every problem of the zoo: invalid cards and registered models without a card.

    Args:
        cards_dir: The cards folder.
        repo_root: The folder that the cards' recipes and model files are relative to.

    Returns:
        One line per problem, cards in file order first; empty when all is well.

    Raises:
        ConfigError: If ``cards_dir`` is not a folder.
    """
    from sepzoo.models import list_models

    folder = Path(cards_dir)
    if not folder.is_dir():
        raise ConfigError(f"zoo card folder {folder} does not exist")
    problems = []
    seen: dict[str, Path] = {}
    for path in sorted(folder.glob("*.yaml")):
        try:
            card = load_card(path)
            if card.name in seen:
                raise ConfigError(f"{path}: name {card.name!r} is already used by {seen[card.name]}")
            seen[card.name] = path
            validate_card(card, repo_root)
        except SepzooError as exc:
            problems.append(str(exc))
    for name in list_models():
        expected = folder / f"{name}.yaml"
        if not expected.is_file():
            problems.append(f"model {name!r} is registered but has no zoo card: expected {expected}")
    return problems


# ----------------------------------------------------------------------------- Markdown


def render_markdown(cards: list[ZooCard]) -> dict[str, str]:
    """The Markdown pages of the cards: ``<name>.md`` for each and ``README.md`` as the index.

    Args:
        cards: Cards from :func:`~sepzoo.experiments.cards.load_cards`.

    Returns:
        File name to text, in card order with the index last.
    """
    pages = {f"{card.name}.md": render_card(card) for card in cards}
    pages[INDEX_FILE] = render_index(cards)
    return pages


def render_card(card: ZooCard) -> str:
    """One card as a Markdown page.

    Args:
        card: A zoo card.
    """
    source_name = card.path.name if card.path is not None else f"{card.name}.yaml"
    lines = [
        f"# {card.title}",
        "",
        *_facts(card),
        "",
        "## Published results",
        "",
        "Numbers as their source printed them; each row says exactly which metric it is.",
        "",
        *_published_table(card),
        "",
        "## Measured by sepzoo",
        "",
        *_measured_table(card),
        "",
        f"_Rendered from the zoo card `{source_name}` by `{RENDER_COMMAND}`; edit the card, not this page._",
    ]
    return "\n".join(lines) + "\n"


def _facts(card: ZooCard) -> list[str]:
    paper = card.paper
    recipe = f"`{card.recipe}`" if card.recipe else "none: an oracle needs the true stems and no training"
    model_file = "none released"
    if card.model_file is not None:
        model_file = f"`{card.model_file.path}` (SHA-256 `{card.model_file.sha256}`)"
    return [
        f"- **Paper:** [{paper.title}]({paper.url}), {', '.join(paper.authors)} ({paper.year})",
        f"- **Registry name:** `{card.name}`",
        f"- **Domain:** {card.domain}",
        f"- **Parameters:** {card.parameters:,} (at default settings)",
        f"- **Sources:** {', '.join(card.sources)}",
        f"- **Recipe:** {recipe}",
        f"- **Model file:** {model_file}",
    ]


def _published_table(card: ZooCard) -> list[str]:
    if not card.published_results:
        return ["None recorded."]
    columns = _value_columns(card, card.published_results)
    header = ["dataset", "metric", *columns, "source", "notes"]
    rows = [
        [result.dataset, result.metric, *_numbers(result.values, columns), result.source, result.notes or ""]
        for result in card.published_results
    ]
    return _table(header, rows, numeric=len(columns), skip=2)


def _measured_table(card: ZooCard) -> list[str]:
    if not card.measured_results:
        return ["None yet: `sepzoo zoo --record COMPARISON_DIR` adds the results of a `sepzoo compare` run."]
    columns = _value_columns(card, card.measured_results)
    header = ["dataset", "metric", *columns, "command", "date", "sepzoo version", "notes"]
    rows = [
        [result.dataset, result.metric, *_numbers(result.values, columns), f"`{result.command}`"]
        + [result.date, result.sepzoo_version, result.notes or ""]
        for result in card.measured_results
    ]
    return _table(header, rows, numeric=len(columns), skip=2)


def render_index(cards: list[ZooCard]) -> str:
    """The Markdown index of the cards, one row per card linking its page.

    Args:
        cards: Cards from :func:`~sepzoo.experiments.cards.load_cards`.
    """
    lines = [
        "# The sepzoo model zoo",
        "",
        "One page per registered model, rendered from its card in `zoo_cards/` by",
        f"`{RENDER_COMMAND}`; edit the cards, not these pages. Published numbers are as their",
        "sources printed them, with the exact metric on each page; measured numbers are sepzoo's own,",
        "with the command that reproduces them. Numbers measured on the synthetic toy set are a smoke",
        "test of the machinery, not evidence about a model.",
        "",
    ]
    rows = []
    for card in cards:
        latest = latest_measured(card)
        measured = f"{len(card.measured_results)} (latest {latest[0].date})" if latest else "0"
        row = [f"[{card.name}]({card.name}.md)", card.title, card.domain, f"{card.parameters:,}"]
        rows.append(row + [str(len(card.published_results)), measured])
    header = ["model", "title", "domain", "parameters", "published results", "measured results"]
    lines += _table(header, rows, numeric=3, skip=3)
    return "\n".join(lines) + "\n"


def _value_columns(card: ZooCard, results: list[Any]) -> list[str]:
    present = {key for result in results for key in result.values}
    order = [ALL_KEY, *card.sources, *DEFAULT_SOURCES, *sorted(present)]
    return [key for index, key in enumerate(order) if key in present and key not in order[:index]]


def _numbers(values: dict[str, float], columns: list[str]) -> list[str]:
    return [f"{values[column]:.2f}" if column in values else "-" for column in columns]


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _table(header: list[str], rows: list[list[str]], numeric: int, skip: int) -> list[str]:
    """A Markdown table; the ``numeric`` columns after the first ``skip`` are right-aligned."""
    rule = ["---:" if skip <= index < skip + numeric else "---" for index in range(len(header))]
    return [_row(header), "| " + " | ".join(rule) + " |", *(_row(row) for row in rows)]


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(_cell(cell) for cell in cells) + " |"


def write_pages(pages: dict[str, str], out_dir: str | Path, force: bool = False) -> list[Path]:
    """Write rendered pages into a folder, each file atomically.

    Every target is checked before anything is written.

    Args:
        pages: File name to text, from :func:`render_markdown`.
        out_dir: The folder; created if missing.
        force: Overwrite existing files. (Default: ``False``)

    Returns:
        The files written.

    Raises:
        OutputExistsError: Naming the first existing file, without ``force``.
        SepzooError: If the folder cannot be created or written to.
    """
    folder = Path(out_dir)
    _check_targets([folder / name for name in pages], force)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SepzooError(f"cannot create render folder {folder}: {exc.strerror or exc}") from None
    if not os.access(folder, os.W_OK):
        raise SepzooError(f"render folder {folder} is not writable")
    targets = {folder / name: text for name, text in pages.items()}
    _write_all_atomic(targets)
    return list(targets)


def _check_targets(paths: list[Path], force: bool) -> None:
    for path in paths:
        if path.parent.exists() and not path.parent.is_dir():
            raise SepzooError(f"render folder {path.parent} exists and is not a folder")
        if path.is_dir():
            raise OutputExistsError(f"{path} is a folder; expected a Markdown file there")
        if path.exists() and not force:
            raise OutputExistsError(f"{path} exists; pass --force to overwrite the rendered pages")


def _write_all_atomic(targets: dict[Path, str]) -> None:
    """Write every file beside its target first, then rename each over it; on failure, none is renamed."""
    try:
        write_all_atomic(targets)
    except OSError as exc:
        raise SepzooError(f"cannot write {exc.filename or 'a file'}: {exc.strerror or exc}") from None


# ----------------------------------------------------------------------------- recording


def read_comparison(directory: str | Path) -> Comparison:
    """Read and check the ``comparison.json`` of a ``sepzoo compare`` folder.

    Args:
        directory: The comparison folder.

    Raises:
        ConfigError: If the folder or file is missing, the JSON is broken, its format is not
            ``sepzoo-comparison/1``, or it breaks the shape of a
            :class:`~sepzoo.experiments.records.Comparison` (naming the dotted key).
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise ConfigError(f"comparison folder {folder} does not exist")
    path = folder / COMPARISON_FILE
    if not path.is_file():
        raise ConfigError(f"{path} does not exist; `sepzoo compare` writes it")
    return read_comparison_file(path)


def _needed(value: T | None, key: str, path: Path) -> T:
    """A key a comparison may lack but a zoo card needs."""
    if value is None:
        raise ConfigError(f"{path}: {key}: must be set to record results in a zoo card")
    return value


def _dataset_label(comparison: Comparison, path: Path) -> str:
    dataset = comparison.dataset
    tracks = len(dataset.tracks)
    subset = _needed(dataset.subset, "dataset.subset", path)
    if comparison.toy:
        return f"{TOY_DATASET}, {tracks} {subset} tracks"
    root = _needed(dataset.root, "dataset.root", path)
    names = set()
    for system in comparison.systems:
        data_config = (system.config or {}).get("data")
        if isinstance(data_config, dict) and isinstance(data_config.get("name"), str):
            names.add(data_config["name"])
    name = "MUSDB18" if names <= {"musdb"} else " / ".join(sorted(names)) + " data set"
    return f"{name} {subset} ({tracks} tracks at {root})"


def _training_label(comparison: Comparison, system: System, path: Path) -> str:
    if system.recipe is None:
        return "no training"
    budget = _needed(comparison.budget, "budget", path)
    spent = [f"{_plain(budget.minutes)} min" if budget.minutes is not None else ""]
    spent.append(f"{_plain(budget.steps)} steps" if budget.steps is not None else "")
    return f"recipe {system.recipe}, budget {', '.join(s for s in spent if s)}, seeds {comparison.seeds}"


def _plain(value: float) -> str:
    """A number without a trailing ``.0`` (``2.0`` minutes reads ``2``)."""
    return str(value) if isinstance(value, int) else f"{value:g}"


def measured_results_of(
    comparison: Comparison, index: int, path: Path
) -> tuple[list[MeasuredResult], list[str]]:
    """The measured results of one system of a comparison, one per metric in ``RECORDED_METRICS``.

    Values are the summary's estimates per source, rounded to 0.01 dB, with ``"all"`` the mean
    over sources when every source has one.

    Args:
        comparison: The comparison.
        index: The system's position in ``systems``.
        path: The comparison's file, for error messages.

    Returns:
        The results, and notes on anything left out (a metric with no finite score).

    Raises:
        ConfigError: Naming the file and the key, if the comparison lacks what a card records.
    """
    where = f"systems[{index}]"
    system = comparison.systems[index]
    model = _needed(system.model, f"{where}.model", path)
    tracks = len(comparison.dataset.tracks)
    training = _training_label(comparison, system, path)
    shared = {
        "dataset": _dataset_label(comparison, path),
        "command": _needed(comparison.command, "command", path),
        "date": _needed(comparison.date, "date", path),
        "sepzoo_version": _needed(comparison.sepzoo_version, "sepzoo_version", path),
    }
    results, skipped = [], []
    for metric in RECORDED_METRICS:
        per_source = _needed(system.summary.get(metric), f"{where}.summary.{metric}", path)
        estimates, intervals, missing = _scores(comparison, per_source)
        if not estimates:
            skipped.append(
                f"system {system.label!r}: no finite {metric} estimate for any source; {metric} not recorded"
            )
            continue
        values = {ALL_KEY: round(sum(estimates.values()) / len(estimates), 2)} if not missing else {}
        values |= {source: round(value, 2) for source, value in estimates.items()}
        description = _needed((comparison.metrics or {}).get(metric), f"metrics.{metric}", path)
        name = metric if system.label == model else f"{metric} of system {system.label!r}"
        notes = [
            f"no score for {', '.join(missing)}, so no '{ALL_KEY}'"
            if missing
            else f"'{ALL_KEY}' is the mean of the per-source values",
            f"{comparison.confidence:.0%} intervals over tracks: {', '.join(intervals)}" if intervals else "",
            f"{system.parameters:,} parameters as trained" if system.parameters is not None else "",
            f"comparison {comparison.name!r}",
        ]
        results.append(
            MeasuredResult(
                metric=f"{name}: {description} ({tracks} tracks); {training}",
                values=values,
                notes="; ".join(note for note in notes if note) + ".",
                **shared,
            )
        )
    return results, skipped


def _scores(
    comparison: Comparison, per_source: dict[str, ScoreSummary]
) -> tuple[dict[str, float], list[str], list[str]]:
    """A metric's finite estimates by source, their intervals as text, and the sources without one."""
    estimates, intervals, missing = {}, [], []
    # comparison.json is written with sorted keys; list the stems in the comparison's own order.
    order = comparison.sources
    for source in [*(s for s in order if s in per_source), *(s for s in per_source if s not in order)]:
        stats = per_source[source]
        if stats.estimate is None or not math.isfinite(stats.estimate):
            missing.append(source)
            continue
        estimates[source] = stats.estimate
        low, high = stats.low, stats.high
        if low is not None and high is not None and math.isfinite(low) and math.isfinite(high):
            intervals.append(f"{source} {low:.2f} to {high:.2f}")
    return estimates, intervals, missing


def merge_measured(existing: list[MeasuredResult], new: list[MeasuredResult]) -> list[MeasuredResult]:
    """Add measured results, replacing earlier ones with the same dataset and metric.

    A replaced result keeps its place; new ones go at the end. Recording the same comparison
    twice therefore gives the same list.

    Args:
        existing: The card's measured results.
        new: The results to add.
    """
    merged = list(existing)
    for result in new:
        key = (result.dataset, result.metric)
        positions = [index for index, old in enumerate(merged) if (old.dataset, old.metric) == key]
        if not positions:
            merged.append(result)
            continue
        merged[positions[0]] = result
        for index in reversed(positions[1:]):
            del merged[index]
    return merged


def record_comparison(comparison_dir: str | Path, cards_dir: str | Path, repo_root: str | Path) -> list[str]:
    """Add the results of a comparison to the cards of its models.

    Each edited card is re-read and validated before any card file is replaced; on any problem
    nothing is written. Systems whose model has no card are skipped with a note.

    Args:
        comparison_dir: The folder ``sepzoo compare`` wrote.
        cards_dir: The cards folder.
        repo_root: The folder that the cards' recipes and model files are relative to.

    Returns:
        One line per card updated and per system or metric skipped.

    Raises:
        ConfigError: For a missing or broken comparison, or a card that would not validate.
    """
    folder = Path(cards_dir)
    if not folder.is_dir():
        raise ConfigError(f"zoo card folder {folder} does not exist")
    comparison = read_comparison(comparison_dir)
    path = Path(comparison_dir) / COMPARISON_FILE
    notes: list[str] = []
    new_results: dict[Path, list[MeasuredResult]] = {}
    labels: dict[Path, list[str]] = {}
    for index, system in enumerate(comparison.systems):
        model = _needed(system.model, f"systems[{index}].model", path)
        card_path = folder / f"{model}.yaml"
        if not card_path.is_file():
            notes.append(f"skipped system {system.label!r}: model {model!r} has no card ({card_path})")
            continue
        results, skipped = measured_results_of(comparison, index, path)
        notes += skipped
        new_results.setdefault(card_path, []).extend(results)
        labels.setdefault(card_path, []).append(system.label)

    staged: dict[Path, str] = {}
    for card_path, results in new_results.items():
        keys = [(result.dataset, result.metric) for result in results]
        if len(set(keys)) != len(keys):
            raise ConfigError(
                f"{path}: systems {', '.join(labels[card_path])} give {card_path.name} the same"
                " dataset and metric twice; give them distinct labels"
            )
        text = card_path.read_text(encoding="utf-8")
        card = parse_card(text, card_path)
        merged = merge_measured(card.measured_results, results)
        new_text = replace_measured_results(text, merged, card_path)
        new_card = parse_card(new_text, card_path)
        unmeasured = {"measured_results": []}
        if new_card.measured_results != merged or (
            new_card.model_copy(update=unmeasured) != card.model_copy(update=unmeasured)
        ):
            raise ConfigError(f"{card_path}: rewriting measured_results would change the rest of the card")
        validate_card(new_card, repo_root)
        staged[card_path] = new_text
        replaced = len(card.measured_results) + len(results) - len(merged)
        detail = f", replacing {replaced} earlier" if replaced else ""
        metrics = ", ".join(short_label(result.metric) for result in results)
        notes.append(f"{card_path}: recorded {metrics} on {short_label(results[0].dataset)}{detail}")
    _write_all_atomic(staged)
    return notes


# ----------------------------------------------------------------------------- command


def run_zoo(
    cards: str | None = None, render: str | None = None, record: str | None = None, force: bool = False
) -> int:
    """``sepzoo zoo``: the cards as a table, or rendered to Markdown, or updated from a comparison.

    Recording runs before rendering, so that the pages show what was just recorded; the table
    is printed when neither is asked for. Rendering and the table first check the whole zoo
    (:func:`check_zoo`) and stop with one line per problem on stderr.

    Args:
        cards: The cards folder; ``None`` takes the repository's ``zoo_cards/``.
        render: Folder to write the Markdown pages into, or ``None``.
        record: A ``sepzoo compare`` folder whose results to add to the cards, or ``None``.
        force: Overwrite existing Markdown pages. (Default: ``False``)

    Returns:
        The exit status: 0, or 2 when the zoo has problems.

    Raises:
        SepzooError: For bad input, as one line.
    """
    cards_dir = Path(cards) if cards is not None else default_cards_dir()
    if not cards_dir.is_dir():
        raise ConfigError(f"zoo card folder {cards_dir} does not exist")
    repo_root = cards_dir.resolve().parent
    if render is not None:
        names = [f"{path.stem}.md" for path in sorted(cards_dir.glob("*.yaml"))] + [INDEX_FILE]
        _check_targets([Path(render) / name for name in names], force)
    if record is not None:
        for line in record_comparison(record, cards_dir, repo_root):
            log.info("%s", line)
        if render is None:
            return 0
    problems = check_zoo(cards_dir, repo_root)
    if problems:
        for problem in problems:
            log.error("sepzoo zoo: error: %s", problem)
        return EXIT_PROBLEMS
    loaded = load_cards(cards_dir)
    if render is not None:
        written = write_pages(render_markdown(loaded), render, force)
        log.info("wrote %d Markdown files to %s", len(written), render)
        return 0
    log.info("%s", card_table(loaded))
    return 0
