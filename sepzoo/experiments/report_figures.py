"""The figures of ``sepzoo report``: bar charts, the domain panel and per-track scatter plots.

Every figure is a :class:`matplotlib.figure.Figure` on the Agg canvas, made outside pyplot, so
drawing needs no display and leaves no global state behind; :func:`png_base64` turns one into
the PNG that the report embeds as a ``data:`` URL. The W&B summary run logs the same figures.
"""

from __future__ import annotations

import base64
import io
import math
from typing import TYPE_CHECKING, Any

from sepzoo.experiments.records import Comparison, PairedTest, System

if TYPE_CHECKING:
    from matplotlib.figure import Figure

METRICS = ("cSDR", "nSDR")
"""The metrics of a comparison, in the order the report shows them."""
DOMAIN_COLOURS = {
    "waveform": "#1f77b4",
    "spectrogram": "#ff7f0e",
    "hybrid": "#2ca02c",
    "oracle": "#7f7f7f",
}
OTHER_COLOUR = "#9467bd"
PANEL_MARKERS = ("o", "s", "^")


def as_number(value: Any) -> float:
    """A score as a float: ``None`` (JSON's NaN) and anything non-numeric become NaN.

    Args:
        value: A value read from a comparison.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def domain_colour(domain: str) -> str:
    """The colour of a domain in every figure and in the report's table, as ``#rrggbb``.

    Args:
        domain: ``"waveform"``, ``"spectrogram"``, ...; any other domain gets one shared colour.
    """
    return DOMAIN_COLOURS.get(domain, OTHER_COLOUR)


def png_base64(figure: Figure) -> str:
    """A figure drawn as PNG, in base64 (the payload of a ``data:image/png`` URL).

    Args:
        figure: The figure.
    """
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def comparison_figures(comparison: Comparison) -> dict[str, Figure]:
    """The report's figures of a comparison, for the report itself and for a W&B summary run.

    Figures are built with :class:`matplotlib.figure.Figure` on the Agg canvas, outside pyplot,
    so they need no display and leave no global state behind.

    Args:
        comparison: The comparison.

    Returns:
        By name: ``bars/<source>`` (each system's cSDR and nSDR with their intervals, coloured by
        domain), ``domain_panel`` (the waveform-vs-spectrogram differences, when the comparison
        has trained systems of both) and ``scatter/<source>`` (per-track nSDR of the best
        waveform system against the best spectrogram system, when both domains are present).
    """
    figures = {f"bars/{source}": _bar_figure(comparison, source) for source in comparison.sources}
    if comparison.domain_panel:
        figures["domain_panel"] = _panel_figure(comparison)
    for source in comparison.sources:
        best = [best_system(comparison, domain, source) for domain in ("waveform", "spectrogram")]
        if best[0] is not None and best[1] is not None:
            figures[f"scatter/{source}"] = _scatter_figure(source, best[0], best[1])
    return figures


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _bar_figure(comparison: Comparison, source: str) -> Figure:
    systems = comparison.systems
    figure = _new_figure(max(5.4, 1.6 + 0.8 * len(systems)), 3.6)
    axes = figure.subplots(1, len(METRICS), squeeze=False)[0]
    confidence = comparison.confidence
    for ax, metric in zip(axes, METRICS):
        entries = [s.summary_of(metric, source) for s in systems]
        estimates = [as_number(e.estimate) for e in entries]
        below = [max(0.0, v - as_number(e.low)) for v, e in zip(estimates, entries)]
        above = [max(0.0, as_number(e.high) - v) for v, e in zip(estimates, entries)]
        positions = list(range(len(systems)))
        colours = [domain_colour(s.domain) for s in systems]
        ax.bar(positions, estimates, color=colours, yerr=[below, above], capsize=4, ecolor="#333333")
        ax.set_xticks(positions, [s.label for s in systems], rotation=30, ha="right", fontsize=8)
        ax.axhline(0, color="#999999", linewidth=0.8)
        if metric == "nSDR":
            _mixture_line(ax, comparison, source)
        ax.set_title(f"{source}: {metric} (dB), {confidence:.0%} CI", fontsize=10)
    _domain_legend(figure, systems)
    return figure


def _mixture_line(ax: Any, comparison: Comparison, source: str) -> None:
    value = as_number(comparison.mixture.nSDR.get(source))
    if math.isfinite(value):
        ax.axhline(value, color="#444444", linestyle="--", linewidth=1, label="mixture")
        ax.legend(fontsize=8, loc="lower right")


def _domain_legend(figure: Figure, systems: list[System]) -> None:
    from matplotlib.patches import Patch

    domains = list(dict.fromkeys(s.domain for s in systems))
    handles = [Patch(color=domain_colour(d), label=d) for d in domains]
    figure.legend(handles=handles, loc="outside upper center", ncols=len(handles), fontsize=8, frameon=False)


def _panel_figure(comparison: Comparison) -> Figure:
    sources = comparison.sources
    figure = _new_figure(max(6.0, 1.5 * len(sources) * len(METRICS)), 3.6)
    axes = figure.subplots(1, len(METRICS), squeeze=False)[0]
    panel = comparison.domain_panel
    pairs = list(dict.fromkeys((t.a, t.b) for t in panel))
    for ax, metric in zip(axes, METRICS):
        for offset, pair in enumerate(pairs):
            tests = {t.source: t for t in panel if (t.a, t.b) == pair and t.metric == metric}
            _panel_series(
                ax, sources, tests, 0.15 * (offset - (len(pairs) - 1) / 2), pair, PANEL_MARKERS[offset % 3]
            )
        ax.axhline(0, color="#999999", linewidth=0.8)
        ax.set_xticks(range(len(sources)), sources)
        ax.set_title(f"{metric}: mean difference per track (dB)", fontsize=10)
        ax.legend(fontsize=8)
    return figure


def _panel_series(
    ax: Any,
    sources: list[str],
    tests: dict[str, PairedTest],
    offset: float,
    pair: tuple[str, str],
    marker: str,
) -> None:
    """One pair of domains on one metric: a filled marker where the difference is significant."""
    colour, label = domain_colour(pair[0]), f"{pair[0]} − {pair[1]}"
    for index, source in enumerate(sources):
        test = tests.get(source)
        if test is None:
            continue
        value = as_number(test.mean_difference)
        below, above = value - as_number(test.low), as_number(test.high) - value
        error = [[max(0.0, below)], [max(0.0, above)]]
        ax.errorbar(
            index + offset,
            value,
            yerr=error,
            fmt=marker,
            color=colour,
            markerfacecolor=colour if test.significant else "white",
            capsize=4,
            label=label,
        )
        label = None  # one legend entry per pair


def best_system(comparison: Comparison, domain: str, source: str) -> System | None:
    """The system of a domain with the highest nSDR on a source (``None`` when the domain has none).

    Args:
        comparison: The comparison.
        domain: ``"waveform"``, ``"spectrogram"``, ...
        source: The source.
    """
    scored = [
        (as_number(s.summary_of("nSDR", source).estimate), s)
        for s in comparison.systems
        if s.domain == domain
    ]
    scored = [(value, system) for value, system in scored if math.isfinite(value)]
    return max(scored, key=lambda pair: pair[0])[1] if scored else None


def _scatter_figure(source: str, wave: System, spec: System) -> Figure:
    x = [as_number(v) for v in spec.scores("nSDR", source) or []]
    y = [as_number(v) for v in wave.scores("nSDR", source) or []]
    figure = _new_figure(4.2, 4.2)
    ax = figure.subplots()
    ax.scatter(x, y, color=domain_colour("waveform"), edgecolor="#333333", zorder=3)
    finite = [v for v in x + y if math.isfinite(v)] or [0.0]
    low, high = min(finite) - 1, max(finite) + 1
    ax.plot([low, high], [low, high], color="#999999", linestyle="--", linewidth=1)
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_xlabel(f"{spec.label} (spectrogram) nSDR, dB", fontsize=9)
    ax.set_ylabel(f"{wave.label} (waveform) nSDR, dB", fontsize=9)
    ax.set_title(f"{source}: per-track nSDR", fontsize=10)
    return figure
