"""``comparison.json``: the one record ``sepzoo compare`` writes and the report, the zoo and the
W&B summary read.

:class:`Comparison` declares the file once, with its nested records (:class:`System`,
:class:`Run`, :class:`ScoreSummary`, :class:`PairedTest`, ...). ``sepzoo compare`` builds one
and writes what :func:`comparison_json` gives; :func:`read_comparison_file` reads one back
through :func:`sepzoo.schema.validate`, so a broken file is reported in one line naming the file
and the dotted key. The report builds the same record from ``sepzoo eval`` folders and merges several.

Scores that are NaN (BSSEval on a silent stem) are written as ``null``. Keys that older files
may lack have defaults, and :func:`comparison_json` writes exactly the keys that were set, so a
folder written by an earlier sepzoo reads and writes back unchanged.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from sepzoo.errors import ConfigError
from sepzoo.evaluation.records import read_json_object
from sepzoo.schema import StrictModel, expect, validate

COMPARISON_FORMAT = "sepzoo-comparison/1"
"""The ``format`` of a ``comparison.json``; a file of another format is refused before its keys."""
COMPARISON_FILE = "comparison.json"
"""The comparison's record in a ``sepzoo compare`` folder."""

Score = float | None
"""A score in dB; ``null`` where there is none (NaN)."""


def _is_iso_date(text: str) -> bool:
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        return False
    return True


IsoDate = Annotated[str, expect(_is_iso_date, "an ISO date (YYYY-MM-DD)")]
"""A date as ``YYYY-MM-DD`` text."""

_Format = Annotated[str, expect(lambda v: v == COMPARISON_FORMAT, repr(COMPARISON_FORMAT))]


class ScoreSummary(StrictModel):
    """A metric of one system on one source, over tracks.

    Args:
        estimate: The statistic over tracks (the median for cSDR, the mean for nSDR).
        low: Lower end of its bootstrap interval.
        high: Upper end of its bootstrap interval.
        count: Tracks with a score.
        seed_std: Standard deviation over training seeds (``null`` with one seed).
    """

    model_config = ConfigDict(title="a score summary")

    estimate: Score = None
    low: Score = None
    high: Score = None
    count: int | None = None
    seed_std: Score = None


class Run(StrictModel):
    """One trained run (or member bag) of a system, or the one evaluation of an oracle.

    Args:
        seed: The training seed; ``null`` for an oracle.
        run_dir: The training run directory (``null`` for a bag).
        spec: What was scored: a run directory or a bag's model file.
        members: The run directories of a bag's members.
        steps: Optimizer steps reached (one per member for a bag).
        train_seconds: Wall-clock training time.
        wandb_dir: The run's local W&B folder.
        eval_dir: The ``sepzoo eval`` folder, relative to the comparison folder.
    """

    model_config = ConfigDict(title="a run")

    seed: int | None = None
    run_dir: str | None = None
    spec: str | None = None
    members: list[str] | None = None
    steps: int | list[int | None] | None = None
    train_seconds: float | None = None
    wandb_dir: str | None = None
    eval_dir: str | None = None


class System(StrictModel):
    """A model or oracle of a comparison, its runs and its scores.

    Args:
        label: Its unique name in the comparison.
        model: The registry name of its architecture.
        domain: ``"waveform"``, ``"spectrogram"``, ``"hybrid"``, ``"oracle"`` or ``"unknown"``.
        kind: ``"trained"``, ``"oracle"`` or ``"exported"`` (an exported folder; left out of the
            paired tests and the domain panel, which compare independently trained models).
        recipe: The training recipe(s), comma-separated; ``null`` for an oracle.
        parameters: Trainable parameters as trained.
        config: The resolved training recipe (one per member of a bag, by recipe name).
        runs: One per seed.
        per_track: Per metric and source, one score per track of the comparison, mean over seeds.
        per_seed: Per metric and source, one summary per seed.
        summary: Per metric and source, the statistic over tracks with its interval.
    """

    model_config = ConfigDict(title="a system")

    label: str
    model: str | None = None
    domain: str
    kind: Literal["trained", "oracle", "exported"]
    recipe: str | None = None
    parameters: int | None = None
    config: dict[str, Any] | None = None
    runs: list[Run] = []
    per_track: dict[str, dict[str, list[Score]]] = {}
    per_seed: dict[str, dict[str, list[Score]]] = {}
    summary: dict[str, dict[str, ScoreSummary]] = {}

    def scores(self, metric: str, source: str) -> list[Score] | None:
        """The per-track scores of a metric and source, or ``None`` when there are none.

        Args:
            metric: ``"cSDR"`` or ``"nSDR"``.
            source: The source.
        """
        return self.per_track.get(metric, {}).get(source)

    def summary_of(self, metric: str, source: str) -> ScoreSummary:
        """The summary of a metric and source (all ``null`` when there is none).

        Args:
            metric: ``"cSDR"`` or ``"nSDR"``.
            source: The source.
        """
        return self.summary.get(metric, {}).get(source) or ScoreSummary()


class PairedTest(StrictModel):
    """Two systems (or two domains) on one metric and source; differences are ``a`` minus ``b``.

    Args:
        metric: ``"cSDR"`` or ``"nSDR"``.
        source: The source.
        a: The first system's label (or domain).
        b: The second system's label (or domain).
        mean_difference: Mean per-track difference.
        low: Lower end of its bootstrap interval.
        high: Upper end of its bootstrap interval.
        count: Tracks compared.
        p_value: Two-sided Wilcoxon signed-rank p-value.
        p_holm: The p-value after Holm's adjustment within the metric and source.
        significant: Whether ``p_holm`` is below the comparison's ``alpha``.
    """

    model_config = ConfigDict(title="a paired test")

    metric: str
    source: str
    a: str
    b: str
    mean_difference: Score = None
    low: Score = None
    high: Score = None
    count: int | None = None
    p_value: float | None = None
    p_holm: float | None = None
    significant: bool = False


class EquivalenceTest(StrictModel):
    """An exported model against the model it came from, on one source (TOST, exact Wilcoxon).

    Differences are ``exported`` minus ``original``, per track; see
    :func:`sepzoo.evaluation.stats.equivalence_tests` for the tests and the verdict.

    Args:
        metric: The metric compared (``"nSDR"``).
        source: The source.
        exported: The exported system's label.
        original: The original system's label.
        margin: The equivalence margin, in dB.
        count: Tracks compared.
        median_difference: Median per-track difference.
        p_lower: One-sided p-value against "median difference <= -margin".
        p_upper: One-sided p-value against "median difference >= +margin".
        p_tost: The larger of the two.
        p_holm: ``p_tost`` after Holm's adjustment across the pair's sources.
        p_worse: One-sided p-value of "median difference < -margin" (the exported is worse).
        p_worse_holm: ``p_worse`` after Holm's adjustment across the pair's sources.
        verdict: ``"equivalent within the margin"``, ``"worse"``, ``"not shown"`` or
            ``"not shown (n too small)"``.
    """

    model_config = ConfigDict(title="an equivalence test")

    metric: str = "nSDR"
    source: str
    exported: str
    original: str
    margin: float
    count: int | None = None
    median_difference: Score = None
    p_lower: float | None = None
    p_upper: float | None = None
    p_tost: float | None = None
    p_holm: float | None = None
    p_worse: float | None = None
    p_worse_holm: float | None = None
    verdict: str


class Dataset(StrictModel):
    """The test tracks every system was scored on.

    Args:
        root: The data set root (several, comma-separated, in a merged report).
        subset: The subset.
        tracks: The tracks, in the order of every per-track list.
    """

    model_config = ConfigDict(title="the `dataset` record")

    root: str | None = None
    subset: str | None = None
    tracks: list[str]


class Budget(StrictModel):
    """The training budget of every model and seed: steps, minutes or both.

    Args:
        steps: Optimizer steps.
        minutes: Wall-clock minutes of training.
    """

    model_config = ConfigDict(title="the `budget` record")

    steps: int | None = None
    minutes: float | None = None


class Mixture(StrictModel):
    """The unprocessed mixture as every estimate (the MIX baseline).

    Args:
        nSDR: Its mean nSDR over tracks, per source.
    """

    nSDR: dict[str, Score] = {}


class ExcerptFiles(StrictModel):
    """The audio excerpt: one stretch of one track through every system.

    Args:
        track: The track.
        start: Where the stretch starts, in seconds.
        seconds: Its length, in seconds.
        sample_rate: The files' sample rate.
        mixture: The mixture's WAV file, relative to the comparison folder.
        reference: The true stems' files, by source.
        systems: Each system's estimated stems' files, by label and source.
    """

    model_config = ConfigDict(title="the `excerpt` record")

    track: str
    start: float | None = None
    seconds: float | None = None
    sample_rate: int | None = None
    mixture: str | None = None
    reference: dict[str, str] = {}
    systems: dict[str, dict[str, str]] = {}


class WandbGroup(StrictModel):
    """Where the comparison's runs are in W&B.

    Args:
        group: The W&B group of every run.
        project: The W&B project.
        summary_dir: The summary run's local folder (``null`` when W&B was disabled).
    """

    model_config = ConfigDict(title="the `wandb` record")

    group: str | None = None
    project: str | None = None
    summary_dir: str | None = None


class Comparison(StrictModel):
    """A comparison of systems on the same tracks: ``comparison.json``.

    Args:
        format: Always :data:`COMPARISON_FORMAT`.
        name: The comparison's name.
        recipe: The comparison recipe file.
        recipe_text: The resolved comparison recipe as YAML.
        command: The command that made it.
        commands: The commands of every input of a merged report (never written to a file).
        date: When it was made (``YYYY-MM-DD``).
        sepzoo_version: The sepzoo version that made it.
        toy: Whether the tracks are the synthetic toy set.
        dataset: The test tracks.
        sources: The sources scored, in order.
        budget: The training budget per model and seed.
        seeds: The training seeds.
        confidence: Coverage of every interval.
        alpha: Significance level of the paired tests.
        metrics: What each metric is, in words.
        statistic: How each metric is summarised over tracks (``median`` or ``mean``).
        systems: The systems, in the order of the tables.
        mixture: The unprocessed mixture's scores.
        domains: The labels of each domain's systems.
        paired: Tests between trained systems of different domains.
        domain_panel: Tests between the domains themselves.
        equivalence_margin_db: The equivalence tests' margin, in dB.
        equivalence: Equivalence tests of exported models against the models they came from.
        wandb: Where the runs are in W&B.
        excerpt: The audio excerpt.
    """

    model_config = ConfigDict(title="a comparison")

    format: _Format = COMPARISON_FORMAT
    name: str
    recipe: str | None = None
    recipe_text: str | None = None
    command: str | None = None
    commands: list[str] = Field(default=[], exclude=True)
    date: IsoDate | None = None
    sepzoo_version: str | None = None
    toy: bool = False
    dataset: Dataset
    sources: list[str]
    budget: Budget | None = None
    seeds: list[int] = []
    confidence: float = 0.95
    alpha: float = 0.05
    metrics: dict[str, str] | None = None
    statistic: dict[str, str] | None = None
    systems: list[System]
    mixture: Mixture = Mixture()
    domains: dict[str, list[str]] = {}
    paired: list[PairedTest] = []
    domain_panel: list[PairedTest] = []
    equivalence_margin_db: float | None = None
    equivalence: list[EquivalenceTest] = []
    wandb: WandbGroup | None = None
    excerpt: ExcerptFiles | None = None

    @classmethod
    def from_data(cls, data: Mapping[str, Any], origin: str = "comparison") -> Comparison:
        """A comparison from plain data (NaN and infinite scores become ``null``).

        Args:
            data: The comparison as nested plain data, e.g. systems scored by
                :func:`~sepzoo.evaluation.stats.compare_systems`.
            origin: Where the data came from, for error messages. (Default: ``"comparison"``)

        Raises:
            ConfigError: One line naming ``origin`` and the dotted key of the first problem.
        """
        return validate(cls, json_safe(dict(data)), origin)


def json_safe(value: Any) -> Any:
    """Plain data with NaN and infinities as ``None`` (JSON has no NaN) and NumPy scalars as numbers.

    Args:
        value: Nested plain data.
    """
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return json_safe(value.item())
    return value


def scored_systems(
    systems: Sequence[System],
    sources: list[str],
    confidence: float,
    alpha: float,
    resamples: int = 10000,
    equivalence: Sequence[tuple[str, str]] = (),
    margin: float | None = None,
) -> dict[str, Any]:
    """Systems with their summaries, the paired tests and domain panel, and the equivalence tests.

    Args:
        systems: The systems, each with its per-track (and per-seed) scores.
        sources: The sources to compare.
        confidence: Coverage of every interval.
        alpha: Significance level.
        resamples: Bootstrap resamples. (Default: ``10000``)
        equivalence: ``(exported, original)`` label pairs to test for equivalence. (Default: none)
        margin: The equivalence margin in dB; needed with ``equivalence``. (Default: ``None``)

    Returns:
        The comparison's ``systems``, ``domains``, ``paired`` and ``domain_panel`` (and, with
        pairs, ``equivalence_margin_db`` and ``equivalence``) as plain data, for
        :meth:`Comparison.from_data`.
    """
    from sepzoo.evaluation.stats import compare_equivalence, compare_systems

    entries = [system.model_dump(exclude_unset=True, exclude={"summary"}) for system in systems]
    statistics = compare_systems(entries, sources, confidence, alpha, resamples)
    if margin is not None:
        statistics["equivalence_margin_db"] = margin
        statistics["equivalence"] = compare_equivalence(entries, equivalence, sources, margin, alpha)
    return {"systems": entries, **statistics}


def comparison_json(comparison: Comparison) -> dict[str, Any]:
    """A comparison as ``comparison.json`` holds it: the keys that were set, NaN as ``null``.

    Args:
        comparison: The comparison.
    """
    return {"format": comparison.format, **json_safe(comparison.model_dump(mode="json", exclude_unset=True))}


def read_comparison_file(path: Path) -> Comparison:
    """Read and check a ``comparison.json``.

    Args:
        path: The file.

    Raises:
        ConfigError: One line naming the file: not JSON, not an object, another format, or the
            dotted key of the first problem and the closest valid key.
    """
    data = read_json_object(path)
    if data.get("format") != COMPARISON_FORMAT:
        raise ConfigError(
            f"{path}: format is {data.get('format')!r}, expected {COMPARISON_FORMAT!r} (sepzoo compare)"
        )
    return validate(Comparison, data, str(path))


__all__ = [
    "COMPARISON_FILE",
    "COMPARISON_FORMAT",
    "Budget",
    "Comparison",
    "Dataset",
    "EquivalenceTest",
    "ExcerptFiles",
    "IsoDate",
    "Mixture",
    "PairedTest",
    "Run",
    "Score",
    "ScoreSummary",
    "System",
    "WandbGroup",
    "comparison_json",
    "json_safe",
    "read_comparison_file",
    "scored_systems",
]
