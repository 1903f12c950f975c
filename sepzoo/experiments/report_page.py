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

from sepzoo.experiments.report_figures import METRICS, as_number, domain_colour

if TYPE_CHECKING:
    import jinja2

TEMPLATE = "report.html.j2"
"""The page's template, in ``sepzoo/experiments/templates``."""


def render_page(comparison: dict[str, Any], figures: dict[str, str], audio: dict[str, Any] | None) -> str:
    """The report's HTML page, from values ready to print.

    Args:
        comparison: A comparison in the ``comparison.json`` schema.
        figures: Each figure of :func:`~sepzoo.experiments.report_figures.comparison_figures`, by
            name, as base64 PNG.
        audio: The listening table, or ``None`` for none: ``track``, ``start``, ``end`` and
            ``bitrate`` as text, ``mixture`` (a ``data:`` URL or ``None``) and ``rows``, each a
            ``label`` and its ``players`` (a ``data:`` URL or ``None`` per source).
    """
    return _templates().get_template(TEMPLATE).render(_page(comparison, figures, audio))


def _page(
    comparison: dict[str, Any], figures: dict[str, str], audio: dict[str, Any] | None
) -> dict[str, Any]:
    """The template's context: strings, numbers already formatted, lists and dicts of them."""
    from sepzoo import __version__

    sources = comparison["sources"]
    dataset = comparison.get("dataset") or {}
    where = " / ".join(str(v) for v in (dataset.get("root"), dataset.get("subset")) if v) or "n/a"
    commands = comparison.get("commands") or [comparison.get("command")]
    scatter = [name for name in figures if name.startswith("scatter/")]
    return {
        "title": f"sepzoo report: {comparison.get('name', '')}",
        "name": comparison.get("name", "comparison"),
        "command_label": "command" if len(commands) == 1 else "inputs",
        "commands": [str(command) for command in commands if command],
        "facts": [
            ("date", str(comparison.get("date") or "n/a")),
            ("sepzoo version", str(comparison.get("sepzoo_version") or "n/a")),
            ("data set", f"{where} ({len(dataset.get('tracks') or [])} tracks)"),
            ("budget", _fmt_budget(comparison.get("budget"))),
            ("seeds", ", ".join(str(s) for s in comparison.get("seeds") or []) or "n/a"),
        ],
        "toy": bool(comparison.get("toy")),
        "sources": sources,
        "metrics": METRICS,
        "table": _table(comparison),
        "bars": [_image(figures, f"bars/{s}", f"{s}: cSDR and nSDR per system") for s in sources],
        "panel": _panel(comparison, figures),
        "scatter": [_image(figures, n, f"{n.split('/', 1)[1]}: per-track nSDR") for n in scatter],
        "statistics": _statistics(comparison),
        "audio": audio,
        "configs": _configs(comparison),
        "version": __version__,
        "date": datetime.date.today().isoformat(),
    }


def _image(figures: dict[str, str], name: str, alt: str) -> dict[str, str]:
    return {"src": f"data:image/png;base64,{figures[name]}", "alt": alt}


def _table(comparison: dict[str, Any]) -> dict[str, Any]:
    """The comparison table: a row per system, then the unprocessed mixture."""
    sources = comparison["sources"]
    seeds = len(comparison.get("seeds") or [])
    statistic = comparison.get("statistic") or {"cSDR": "median", "nSDR": "mean"}
    mixture = (comparison.get("mixture") or {}).get("nSDR") or {}
    notes = comparison.get("metrics") or {
        "cSDR": "BSSEval v4 SDR, median over 1-s frames per track",
        "nSDR": "MDX 2021 SDR over the whole track",
    }
    return {
        "statistic": {metric: statistic.get(metric) for metric in METRICS},
        "confidence": f"{as_number(comparison.get('confidence', 0.95)):.0%}",
        "rows": [_system_row(system, sources, seeds) for system in comparison["systems"]],
        "mixture": [format_number(mixture.get(s)) for s in sources],
        "notes": list(notes.items()),
    }


def _system_row(system: dict[str, Any], sources: list[str], seeds: int) -> dict[str, Any]:
    summary = system.get("summary") or {}
    return {
        "label": system["label"],
        "domain": system["domain"],
        "colour": domain_colour(system["domain"]),
        "kind": system.get("kind", "n/a"),
        "parameters": _fmt_parameters(system.get("parameters")),
        "steps": _fmt_steps(system.get("runs")),
        "cells": [
            _score_cell(metric, summary.get(metric, {}).get(source), seeds)
            for source in sources
            for metric in METRICS
        ],
    }


def _score_cell(metric: str, entry: dict[str, Any] | None, seeds: int) -> dict[str, str | None]:
    """An estimate, its interval when there is an estimate, and its spread over several seeds."""
    entry = entry or {}
    estimate = format_number(entry.get("estimate"))
    spread = as_number(entry.get("seed_std"))
    return {
        "metric": metric,
        "estimate": estimate,
        "interval": _fmt_interval(entry.get("low"), entry.get("high")) if estimate != "–" else None,
        "spread": f"{spread:.2f}" if seeds > 1 and math.isfinite(spread) else None,
    }


def _panel(comparison: dict[str, Any], figures: dict[str, str]) -> dict[str, Any] | None:
    tests = comparison.get("domain_panel") or []
    if not tests:
        return None
    alt = "waveform minus spectrogram, per metric and source"
    return {"image": _image(figures, "domain_panel", alt), "tests": [_test_row(t) for t in tests]}


def _test_row(test: dict[str, Any]) -> dict[str, Any]:
    verdict = "yes" if test.get("significant") else "no"
    cells = [
        test.get("metric"),
        test.get("source"),
        test.get("a"),
        test.get("b"),
        format_number(test.get("mean_difference")),
        _fmt_interval(test.get("low"), test.get("high")),
        test.get("count", "–"),
        _fmt_p(test.get("p_value")),
        _fmt_p(test.get("p_holm")),
        verdict,
    ]
    return {"verdict": verdict, "cells": [str(cell) for cell in cells]}


def _statistics(comparison: dict[str, Any]) -> dict[str, Any] | None:
    """The paired tests, and which of their differences are significant."""
    tests = comparison.get("paired") or []
    if not tests:
        return None
    alpha = as_number(comparison.get("alpha", 0.05))
    tracks = len((comparison.get("dataset") or {}).get("tracks") or [])
    smallest = 2.0 ** (1 - tracks)  # of a two-sided Wilcoxon test on that many tracks
    return {
        "confidence": f"{as_number(comparison.get('confidence', 0.95)):.0%}",
        "alpha": f"{alpha:g}",
        "tests": [_test_row(test) for test in tests],
        "significant": [_verdict(test) for test in tests if test.get("significant")],
        "rest": [_verdict(test) for test in tests if not test.get("significant")],
        "too_few": {"tracks": tracks, "p": f"{smallest:.3g}"} if tracks and smallest >= alpha else None,
    }


def _verdict(test: dict[str, Any]) -> dict[str, str | None]:
    """One test in words: the higher system, the lower one and by how much (``None``: unknown)."""
    difference = as_number(test.get("mean_difference"))
    higher, lower = (test["b"], test["a"]) if difference < 0 else (test["a"], test["b"])
    return {
        "metric": str(test["metric"]),
        "source": str(test["source"]),
        "higher": str(higher),
        "lower": str(lower),
        "by": f"{abs(difference):.2f}" if math.isfinite(difference) else None,
        "holm": _fmt_p(test.get("p_holm")),
    }


def _configs(comparison: dict[str, Any]) -> list[dict[str, str]]:
    """The comparison's recipe and each system's training recipe, as YAML text."""
    import yaml

    configs = []
    if comparison.get("recipe_text"):
        summary = f"comparison recipe ({comparison.get('recipe') or 'resolved'})"
        configs.append({"summary": summary, "text": str(comparison["recipe_text"])})
    for system in comparison["systems"]:
        config = system.get("config")
        text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True) if config else "no training recipe"
        summary = f"{system['label']} ({system.get('model') or 'unknown model'})"
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


def _fmt_steps(runs: list[dict[str, Any]] | None) -> str:
    steps = sorted({int(r["steps"]) for r in runs or [] if isinstance(r.get("steps"), int)})
    if not steps:
        return "–"
    return str(steps[0]) if len(steps) == 1 else f"{steps[0]}–{steps[-1]}"


def _fmt_budget(budget: Any) -> str:
    if not isinstance(budget, dict) or not budget:
        return "n/a"
    if "minutes" in budget:
        return f"{as_number(budget['minutes']):g} min of training per run"
    if "steps" in budget:
        return f"{budget['steps']} steps per run"
    return ", ".join(f"{k} {v}" for k, v in budget.items())
