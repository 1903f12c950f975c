"""The W&B summary run of a comparison: its tables, charts, panel, scatter plots and audio.

Every training run of a comparison logs to the comparison's W&B group with tags naming the
comparison, the model, its domain and the seed; this run joins the same group and holds what
a reviewer compares. Without an API key it is written offline, to be uploaded later with
``wandb sync``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sepzoo.experiments.records import Comparison, PairedTest, ScoreSummary

_SYSTEM_COLUMNS = ["system", "domain", "kind"]
_SUMMARY_COLUMNS = ["estimate", "low", "high", "seed_std", "tracks"]
_TEST_COLUMNS = [
    "metric",
    "source",
    "a",
    "b",
    "mean_difference",
    "low",
    "high",
    "tracks",
    "p_value",
    "p_holm",
    "significant",
]


def log_comparison(comparison: Comparison, out_dir: Path, mode: str = "auto") -> str | None:
    """Log a comparison to a W&B run in its group.

    Args:
        comparison: The comparison (NaN scores already ``None``).
        out_dir: The comparison folder; the run is written under ``out_dir/wandb``.
        mode: The comparison recipe's ``wandb.mode``: ``"auto"``, ``"online"``, ``"offline"`` or
            ``"disabled"``. (Default: ``"auto"``)

    Returns:
        The run's local folder, or ``None`` when W&B is disabled.
    """
    from sepzoo.io.wandb import resolve_wandb_mode

    mode = resolve_wandb_mode(mode)
    if mode == "disabled":
        return None
    import wandb

    group = comparison.wandb
    toy = comparison.toy
    run = wandb.init(
        project=group.project if group else None,
        group=group.group if group else None,
        name=f"{comparison.name}-summary",
        job_type="comparison",
        tags=[comparison.name, "summary", *(["toy"] if toy else [])],
        dir=str(out_dir),
        mode=mode,
        config=comparison.model_dump(
            mode="json", include={"dataset", "sources", "budget", "seeds", "confidence", "alpha"}
        ),
        notes="Toy data: a smoke test of the machinery, not evidence about the domains." if toy else None,
        reinit="finish_previous",
        settings=wandb.Settings(silent=True, console="off"),
    )
    try:
        run.log(_tables(wandb, comparison))
        run.log(_charts(wandb, comparison))
        run.log(_figures(wandb, comparison))
        run.log(_audio(wandb, comparison, out_dir))
        for system in comparison.systems:
            for metric, per_source in system.summary.items():
                for source, summary in per_source.items():
                    run.summary[f"{system.label}/{metric}/{source}"] = summary.estimate
        folder = str(Path(run.dir).parent)
    finally:
        run.finish()
    return folder


def _tables(wandb: Any, comparison: Comparison) -> dict[str, Any]:
    """The comparison table (long and wide), per-track scores, paired tests and the domain panel."""
    long = wandb.Table(columns=[*_SYSTEM_COLUMNS, "metric", "source", *_SUMMARY_COLUMNS])
    sources = comparison.sources
    wide = {
        metric: wandb.Table(columns=["system", "domain", *sources]) for metric in comparison.metrics or {}
    }
    tracks = wandb.Table(columns=["system", "domain", "track", "source", "cSDR", "nSDR"])
    for system in comparison.systems:
        for metric, per_source in system.summary.items():
            for source, s in per_source.items():
                row = [system.label, system.domain, system.kind, metric, source]
                long.add_data(*row, s.estimate, s.low, s.high, s.seed_std, s.count)
            if metric in wide:
                wide[metric].add_data(
                    system.label, system.domain, *[_interval(per_source.get(source)) for source in sources]
                )
        for index, track in enumerate(comparison.dataset.tracks):
            for source in sources:
                scores = [system.per_track[metric][source][index] for metric in ("cSDR", "nSDR")]
                tracks.add_data(system.label, system.domain, track, source, *scores)
    return {
        "comparison/table": long,
        **{f"comparison/{metric}": table for metric, table in wide.items()},
        "comparison/per_track": tracks,
        "comparison/paired_tests": _tests_table(wandb, comparison.paired),
        "comparison/wave_vs_spec": _tests_table(wandb, comparison.domain_panel),
    }


def _tests_table(wandb: Any, tests: list[PairedTest]) -> Any:
    table = wandb.Table(columns=_TEST_COLUMNS)
    for t in tests:
        names = [t.metric, t.source, t.a, t.b]
        table.add_data(*names, t.mean_difference, t.low, t.high, t.count, t.p_value, t.p_holm, t.significant)
    return table


def _interval(summary: ScoreSummary | None) -> str:
    if summary is None or summary.estimate is None or summary.low is None or summary.high is None:
        return "n/a"
    return f"{summary.estimate:.2f} [{summary.low:.2f}, {summary.high:.2f}]"


def _charts(wandb: Any, comparison: Comparison) -> dict[str, Any]:
    """Native W&B bar charts per metric and source, and per-track scatter plots."""
    from sepzoo.experiments.report_figures import best_system

    charts: dict[str, Any] = {}
    for metric in comparison.metrics or {}:
        for source in comparison.sources:
            table = wandb.Table(columns=["system", metric])
            for system in comparison.systems:
                value = system.summary_of(metric, source).estimate
                if value is not None:
                    table.add_data(system.label, value)
            charts[f"bars/{metric}/{source}"] = wandb.plot.bar(
                table, "system", metric, title=f"{metric}: {source}"
            )
    for source in comparison.sources:
        wave, spec = (best_system(comparison, domain, source) for domain in ("waveform", "spectrogram"))
        if wave is None or spec is None:
            continue
        table = wandb.Table(columns=[f"{wave.label} nSDR", f"{spec.label} nSDR", "track"])
        pairs = zip(wave.scores("nSDR", source) or [], spec.scores("nSDR", source) or [])
        for track, (x, y) in zip(comparison.dataset.tracks, pairs):
            if x is not None and y is not None:
                table.add_data(x, y, track)
        charts[f"scatter/{source}"] = wandb.plot.scatter(
            table,
            f"{wave.label} nSDR",
            f"{spec.label} nSDR",
            title=f"per-track nSDR, {source}: {wave.label} vs {spec.label}",
        )
    return charts


def _figures(wandb: Any, comparison: Comparison) -> dict[str, Any]:
    """The report's figures (bar charts with intervals, the domain panel, scatter plots) as images."""
    import matplotlib.pyplot as plt

    from sepzoo.experiments.report_figures import comparison_figures

    images = {}
    for name, figure in comparison_figures(comparison).items():
        images[f"figures/{name}"] = wandb.Image(figure)
        plt.close(figure)
    return images


def _audio(wandb: Any, comparison: Comparison, out_dir: Path) -> dict[str, Any]:
    """The same excerpt through every system, the reference first, one column per source."""
    excerpt = comparison.excerpt
    if excerpt is None:
        return {}
    sources = comparison.sources
    table = wandb.Table(columns=["system", "mixture", *sources])
    rate = excerpt.sample_rate

    def audio(path: str | None, caption: str) -> Any:
        return None if path is None else wandb.Audio(str(out_dir / path), sample_rate=rate, caption=caption)

    mixture = audio(excerpt.mixture, "mixture")
    table.add_data(
        "reference", mixture, *[audio(excerpt.reference.get(s), f"reference {s}") for s in sources]
    )
    for label, files in excerpt.systems.items():
        table.add_data(label, mixture, *[audio(files.get(s), f"{label} {s}") for s in sources])
    return {"audio/excerpt": table}
