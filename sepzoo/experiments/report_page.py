"""The HTML page of ``sepzoo report``, made from Jinja2 templates.

Python computes every value the page shows (numbers formatted, figures and audio as ``data:``
URLs) and hands them to ``templates/report.html.j2`` as plain strings, lists and dicts; the
templates do all the markup. Autoescaping is on for every template, so text from a comparison
(system labels, track names, recipes) is always shown as text and never read as markup, and
``StrictUndefined`` turns a misspelt name in a template into an error instead of a blank.
"""

from __future__ import annotations

import datetime
import functools
import math
from typing import TYPE_CHECKING, Any

from sepzoo.experiments.records import (
    Budget,
    Comparison,
    EquivalenceTest,
    PairedTest,
    Run,
    ScoreSummary,
    System,
)
from sepzoo.experiments.report_figures import METRICS, as_number, domain_colour

if TYPE_CHECKING:
    import jinja2

TEMPLATE = "report.html.j2"
"""The page's template, in ``sepzoo/experiments/templates``."""


def render_page(comparison: Comparison, figures: dict[str, str], audio: dict[str, Any] | None) -> str:
    """The report's HTML page, from values ready to print.

    Args:
        comparison: The comparison.
        figures: Each figure of :func:`~sepzoo.experiments.report_figures.comparison_figures`, by
            name, as base64 PNG.
        audio: The listening table, or ``None`` for none: ``track``, ``start``, ``end`` and
            ``bitrate`` as text, ``mixture`` (a ``data:`` URL or ``None``) and ``rows``, each a
            ``label`` and its ``players`` (a ``data:`` URL or ``None`` per source).
    """
    return _templates().get_template(TEMPLATE).render(_page(comparison, figures, audio))


def _page(comparison: Comparison, figures: dict[str, str], audio: dict[str, Any] | None) -> dict[str, Any]:
    """The template's context: strings, numbers already formatted, lists and dicts of them."""
    from sepzoo import __version__

    sources = comparison.sources
    dataset = comparison.dataset
    where = " / ".join(v for v in (dataset.root, dataset.subset) if v) or "n/a"
    commands = comparison.commands or [comparison.command]
    scatter = [name for name in figures if name.startswith("scatter/")]
    return {
        "title": f"sepzoo report: {comparison.name}",
        "name": comparison.name,
        "command_label": "command" if len(commands) == 1 else "inputs",
        "commands": [command for command in commands if command],
        "facts": [
            ("date", comparison.date or "n/a"),
            ("sepzoo version", comparison.sepzoo_version or "n/a"),
            ("data set", f"{where} ({len(dataset.tracks)} tracks)"),
            ("budget", _fmt_budget(comparison.budget)),
            ("seeds", ", ".join(str(s) for s in comparison.seeds) or "n/a"),
        ],
        "toy": comparison.toy,
        "sources": sources,
        "metrics": METRICS,
        "table": _table(comparison),
        "bars": [_image(figures, f"bars/{s}", f"{s}: cSDR and nSDR per system") for s in sources],
        "panel": _panel(comparison, figures),
        "scatter": [_image(figures, n, f"{n.split('/', 1)[1]}: per-track nSDR") for n in scatter],
        "statistics": _statistics(comparison),
        "equivalence": _equivalence(comparison),
        "audio": audio,
        "configs": _configs(comparison),
        "version": __version__,
        "date": datetime.date.today().isoformat(),
    }


def _image(figures: dict[str, str], name: str, alt: str) -> dict[str, str]:
    return {"src": f"data:image/png;base64,{figures[name]}", "alt": alt}


def _table(comparison: Comparison) -> dict[str, Any]:
    """The comparison table: a row per system, then the unprocessed mixture."""
    sources = comparison.sources
    seeds = len(comparison.seeds)
    statistic = comparison.statistic or {"cSDR": "median", "nSDR": "mean"}
    mixture = comparison.mixture.nSDR
    notes = comparison.metrics or {
        "cSDR": "BSSEval v4 SDR, median over 1-s frames per track",
        "nSDR": "MDX 2021 SDR over the whole track",
    }
    return {
        "statistic": {metric: statistic.get(metric) for metric in METRICS},
        "confidence": f"{comparison.confidence:.0%}",
        "rows": [_system_row(system, sources, seeds) for system in comparison.systems],
        "mixture": [format_number(mixture.get(s)) for s in sources],
        "notes": list(notes.items()),
    }


def _system_row(system: System, sources: list[str], seeds: int) -> dict[str, Any]:
    return {
        "label": system.label,
        "domain": system.domain,
        "colour": domain_colour(system.domain),
        "kind": system.kind,
        "parameters": _fmt_parameters(system.parameters),
        "steps": _fmt_steps(system.runs),
        "cells": [
            _score_cell(metric, system.summary_of(metric, source), seeds)
            for source in sources
            for metric in METRICS
        ],
    }


def _score_cell(metric: str, entry: ScoreSummary, seeds: int) -> dict[str, str | None]:
    """An estimate, its interval when there is an estimate, and its spread over several seeds."""
    estimate = format_number(entry.estimate)
    spread = as_number(entry.seed_std)
    return {
        "metric": metric,
        "estimate": estimate,
        "interval": _fmt_interval(entry.low, entry.high) if estimate != "–" else None,
        "spread": f"{spread:.2f}" if seeds > 1 and math.isfinite(spread) else None,
    }


def _panel(comparison: Comparison, figures: dict[str, str]) -> dict[str, Any] | None:
    tests = comparison.domain_panel
    if not tests:
        return None
    alt = "waveform minus spectrogram, per metric and source"
    return {"image": _image(figures, "domain_panel", alt), "tests": [_test_row(t) for t in tests]}


def _test_row(test: PairedTest) -> dict[str, Any]:
    verdict = "yes" if test.significant else "no"
    cells = [
        test.metric,
        test.source,
        test.a,
        test.b,
        format_number(test.mean_difference),
        _fmt_interval(test.low, test.high),
        "–" if test.count is None else test.count,
        _fmt_p(test.p_value),
        _fmt_p(test.p_holm),
        verdict,
    ]
    return {"verdict": verdict, "cells": [str(cell) for cell in cells]}


def _statistics(comparison: Comparison) -> dict[str, Any] | None:
    """The paired tests, and which of their differences are significant."""
    tests = comparison.paired
    if not tests:
        return None
    alpha = comparison.alpha
    tracks = len(comparison.dataset.tracks)
    smallest = 2.0 ** (1 - tracks)  # of a two-sided Wilcoxon test on that many tracks
    return {
        "confidence": f"{comparison.confidence:.0%}",
        "alpha": f"{alpha:g}",
        "tests": [_test_row(test) for test in tests],
        "significant": [_verdict(test) for test in tests if test.significant],
        "rest": [_verdict(test) for test in tests if not test.significant],
        "too_few": {"tracks": tracks, "p": f"{smallest:.3g}"} if tracks and smallest >= alpha else None,
    }


def _equivalence(comparison: Comparison) -> dict[str, Any] | None:
    """The equivalence tests of exported models against their originals, one row per pair and source."""
    tests = comparison.equivalence
    if not tests:
        return None
    margin = comparison.equivalence_margin_db
    return {
        "alpha": f"{comparison.alpha:g}",
        "margin": "–" if margin is None else f"{margin:g}",
        "rows": [_equivalence_row(test) for test in tests],
    }


def _equivalence_row(test: EquivalenceTest) -> dict[str, Any]:
    cells = [
        test.exported,
        test.original,
        test.source,
        "–" if test.count is None else test.count,
        format_number(test.median_difference),
        _fmt_p(test.p_lower),
        _fmt_p(test.p_upper),
        _fmt_p(test.p_holm),
        _fmt_p(test.p_worse_holm),
        test.verdict,
    ]
    verdict = {"equivalent within the margin": "yes", "worse": "worse"}.get(test.verdict, "no")
    return {"verdict": verdict, "cells": [str(cell) for cell in cells]}


def _verdict(test: PairedTest) -> dict[str, str | None]:
    """One test in words: the higher system, the lower one and by how much (``None``: unknown)."""
    difference = as_number(test.mean_difference)
    higher, lower = (test.b, test.a) if difference < 0 else (test.a, test.b)
    return {
        "metric": test.metric,
        "source": test.source,
        "higher": higher,
        "lower": lower,
        "by": f"{abs(difference):.2f}" if math.isfinite(difference) else None,
        "holm": _fmt_p(test.p_holm),
    }


def _configs(comparison: Comparison) -> list[dict[str, str]]:
    """The comparison's recipe and each system's training recipe, as YAML text."""
    import yaml

    configs = []
    if comparison.recipe_text:
        summary = f"comparison recipe ({comparison.recipe or 'resolved'})"
        configs.append({"summary": summary, "text": comparison.recipe_text})
    for system in comparison.systems:
        config = system.config
        text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True) if config else "no training recipe"
        summary = f"{system.label} ({system.model or 'unknown model'})"
        configs.append({"summary": summary, "text": text})
    return configs


@functools.cache
def _templates() -> jinja2.Environment:
    """The report's templates, read from the package; every value they print is escaped."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("sepzoo.experiments", "templates"),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html", "j2"), default_for_string=True, default=True
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def format_number(value: Any, digits: int = 2) -> str:
    """A number with ``digits`` decimals, or a dash for none (``None``, NaN, not a number).

    Args:
        value: The number.
        digits: Decimals to show. (Default: ``2``)
    """
    number = as_number(value)
    return f"{number:.{digits}f}" if math.isfinite(number) else "–"


def _fmt_p(value: Any) -> str:
    number = as_number(value)
    if not math.isfinite(number):
        return "n/a"
    return "< 0.001" if number < 0.001 else f"{number:.3f}"


def _fmt_interval(low: Any, high: Any) -> str:
    low, high = as_number(low), as_number(high)
    if not (math.isfinite(low) and math.isfinite(high)):
        return "–"
    return f"[{low:.2f}, {high:.2f}]"


def _fmt_parameters(value: Any) -> str:
    number = as_number(value)
    if not math.isfinite(number):
        return "–"
    return f"{number / 1e6:.2f} M" if number >= 1e5 else f"{int(number):,}"


def _fmt_steps(runs: list[Run]) -> str:
    steps = sorted({r.steps for r in runs if isinstance(r.steps, int)})
    if not steps:
        return "–"
    return str(steps[0]) if len(steps) == 1 else f"{steps[0]}–{steps[-1]}"


def _fmt_budget(budget: Budget | None) -> str:
    if budget is None:
        return "n/a"
    if budget.minutes is not None:
        return f"{budget.minutes:g} min of training per run"
    if budget.steps is not None:
        return f"{budget.steps} steps per run"
    return "n/a"
