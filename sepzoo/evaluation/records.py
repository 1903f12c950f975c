"""The files ``sepzoo eval`` writes, declared once, and the readers that check them.

An evaluation folder holds three kinds of JSON record (see :mod:`sepzoo.evaluation.evaluate`):

* ``OUT/eval.json`` (:class:`EvalIdentity`): what was scored and how, so that a second run
  resumes the same evaluation and refuses another one;
* ``OUT/<subset>/<track>.json`` (:class:`TrackFile`): museval's per-track layout, with
  sepzoo's own whole-track scores under a ``sepzoo`` key;
* ``OUT/summary.json`` (:class:`EvalSummary`): the aggregate per source and one row per track.

Each shape is a pydantic model on :class:`~sepzoo.schema.StrictModel`, and every reader goes
through :func:`sepzoo.schema.validate`, so a file that breaks its shape is reported in one line
naming the file and the dotted key. JSON has no NaN, but Python's ``json`` writes it (and
museval writes it for a frame without a score); a score is therefore a number or ``null``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from sepzoo.errors import ConfigError
from sepzoo.schema import StrictModel, validate

log = logging.getLogger(__name__)

RecordT = TypeVar("RecordT", bound=BaseModel)

SUMMARY_FILE = "summary.json"
"""The summary of an evaluation folder."""

PerSource = dict[str, float | None]
"""One score per source (``null`` where there is none, or NaN)."""


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object a file holds, before any check of its shape.

    Args:
        path: The file.

    Raises:
        ConfigError: Naming the file, if it cannot be read, is not UTF-8 JSON text, or holds
            something other than an object.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_record(path: Path, schema: type[RecordT]) -> RecordT:
    """A JSON file read and checked against its declared shape.

    Args:
        path: The file.
        schema: The model that declares the file's shape.

    Raises:
        ConfigError: One line naming the file and, for a broken shape, the dotted key.
    """
    return validate(schema, read_json_object(path), str(path))


# ----------------------------------------------------------------------------------------------
# OUT/eval.json


class EvalSettings(StrictModel):
    """The inference settings of an evaluation that ran a model (empty for estimates on disk).

    Args:
        shifts: Random test-time shifts. (Default: ``None``)
        overlap: Chunk overlap. (Default: ``None``)
        segment: Chunk length in seconds; ``None`` for the model's own. (Default: ``None``)
        weights: A digest of the model's weights. (Default: ``None``)
    """

    shifts: int | None = None
    overlap: float | None = None
    segment: float | None = None
    weights: str | None = None


class EvalIdentity(StrictModel):
    """``OUT/eval.json``: what an evaluation folder holds the scores of.

    Args:
        model: The model spec scored, or ``None`` for estimates on disk.
        estimates: The estimates folder scored, or ``None`` for a model.
        root: The data set root, resolved.
        subset: The subset scored.
        settings: The inference settings.
    """

    model_config = ConfigDict(title="an evaluation's identity")

    model: str | None
    estimates: str | None
    root: str
    subset: str
    settings: EvalSettings


def read_identity(path: Path) -> EvalIdentity | None:
    """The identity an evaluation folder was written with.

    Args:
        path: The folder's ``eval.json``.

    Returns:
        The identity, or ``None`` when the file is missing or is not an identity (such a folder
        is treated as holding another evaluation).
    """
    if not Path(path).is_file():
        return None
    try:
        return read_record(path, EvalIdentity)
    except ConfigError as exc:
        log.debug("%s", exc)
        return None


# ----------------------------------------------------------------------------------------------
# OUT/<subset>/<track>.json (museval's layout)


class FrameMetrics(StrictModel):
    """BSSEval v4 scores of one frame of one source, in dB (``null`` where BSSEval gives none).

    Args:
        SDR: Source-to-distortion ratio.
        SIR: Source-to-interference ratio.
        SAR: Source-to-artefacts ratio.
        ISR: Image-to-spatial-distortion ratio.
    """

    SDR: float | None
    SIR: float | None
    SAR: float | None
    ISR: float | None


class Frame(StrictModel):
    """One frame of museval's per-track layout.

    Args:
        time: Where the frame starts, in seconds.
        duration: The frame's length, in seconds.
        metrics: Its scores.
    """

    time: float
    duration: float
    metrics: FrameMetrics


class Target(StrictModel):
    """One source's frames in museval's per-track layout.

    Args:
        name: The source.
        frames: Its frames, in time order.
    """

    name: str
    frames: list[Frame]


class TrackScores(StrictModel):
    """sepzoo's own scores of one track (the ``sepzoo`` key of a per-track file).

    Args:
        track: The track's name.
        nSDR: Whole-track nSDR (MDX 2021) per source.
        SI_SDR: Scale-invariant SDR per source (key ``SI-SDR``).
        SD_SDR: Scale-dependent SDR per source (key ``SD-SDR``).
        mixture_nSDR: The unprocessed mixture's nSDR per source.
        model: The model spec scored. (Default: ``None``)
        estimates: The estimates folder scored. (Default: ``None``)
        settings: The inference settings. (Default: none)
    """

    model_config = ConfigDict(title="sepzoo's scores of a track")

    track: str
    nSDR: PerSource
    SI_SDR: PerSource = Field(alias="SI-SDR")
    SD_SDR: PerSource = Field(alias="SD-SDR")
    mixture_nSDR: PerSource
    model: str | None = None
    estimates: str | None = None
    settings: EvalSettings = EvalSettings()


class TrackFile(StrictModel):
    """``OUT/<subset>/<track>.json``: museval's per-track layout plus sepzoo's scores.

    Args:
        targets: Per source, BSSEval v4 scores per frame.
        museval_version: The museval release whose layout the file follows.
        sepzoo: sepzoo's whole-track scores and what was scored.
    """

    model_config = ConfigDict(title="a per-track result")

    targets: list[Target]
    museval_version: str
    sepzoo: TrackScores


def read_track_record(path: Path) -> dict[str, Any] | None:
    """The scores of one track as :func:`~sepzoo.evaluation.scores.score_track` made them.

    Args:
        path: A per-track file of an evaluation folder.

    Returns:
        The record, or ``None`` (with a warning) when the file is not a per-track result: the
        track is then scored again.
    """
    from sepzoo.evaluation.scores import record_from_json

    try:
        scores = read_record(path, TrackFile)
    except ConfigError as exc:
        log.warning("%s; scoring the track again", exc)
        return None
    return record_from_json(scores.model_dump(by_alias=True))


# ----------------------------------------------------------------------------------------------
# OUT/summary.json


class BssevalSummary(StrictModel):
    """One BSSEval metric over tracks.

    Args:
        median: Per source, the median over tracks of each track's frame median.
        mean: Per source, the mean over tracks of each track's frame median.
    """

    median: PerSource
    mean: PerSource


class TrackRow(StrictModel):
    """One track's line of a summary: per metric, a score per source.

    Only ``SDR`` and ``nSDR`` are required, which is what a comparison reads.

    Args:
        SDR: BSSEval v4 SDR, the median over the track's frames.
        SIR: SIR, likewise. (Default: none)
        ISR: ISR, likewise. (Default: none)
        SAR: SAR, likewise. (Default: none)
        nSDR: Whole-track nSDR.
        SI_SDR: Whole-track SI-SDR (key ``SI-SDR``). (Default: none)
        SD_SDR: Whole-track SD-SDR (key ``SD-SDR``). (Default: none)
        mixture_nSDR: The unprocessed mixture's nSDR. (Default: none)
    """

    model_config = ConfigDict(title="a track's scores")

    SDR: PerSource
    SIR: PerSource = {}
    ISR: PerSource = {}
    SAR: PerSource = {}
    nSDR: PerSource
    SI_SDR: PerSource = Field(default={}, alias="SI-SDR")
    SD_SDR: PerSource = Field(default={}, alias="SD-SDR")
    mixture_nSDR: PerSource = {}


class EvalSummary(StrictModel):
    """``OUT/summary.json``: what was scored, the aggregates per source and a row per track.

    Args:
        model: The model spec scored, or ``None`` for estimates on disk.
        estimates: The estimates folder scored. (Default: ``None``)
        root: The data set root. (Default: ``None``)
        subset: The subset scored. (Default: ``None``)
        settings: The inference settings. (Default: none)
        tracks: How many tracks were scored. (Default: ``None``)
        resumed_tracks: How many of them an earlier run had scored. (Default: ``0``)
        toy: Whether the data set is the synthetic toy set. (Default: ``False``)
        sources: The sources scored.
        metrics: What each summary column is, in words. (Default: none)
        bsseval: SDR, SIR, ISR and SAR over tracks. (Default: none)
        nSDR: Mean nSDR over tracks per source. (Default: none)
        SI_SDR: Mean SI-SDR over tracks (key ``SI-SDR``). (Default: none)
        SD_SDR: Mean SD-SDR over tracks (key ``SD-SDR``). (Default: none)
        mixture_nSDR: Mean nSDR of the unprocessed mixture. (Default: none)
        per_track: Each track's scores, by track name, in the order scored.
    """

    model_config = ConfigDict(title="an evaluation summary")

    model: str | None
    estimates: str | None = None
    root: str | None = None
    subset: str | None = None
    settings: EvalSettings = EvalSettings()
    tracks: int | None = None
    resumed_tracks: int = 0
    toy: bool = False
    sources: list[str]
    metrics: dict[str, str] = {}
    bsseval: dict[str, BssevalSummary] = {}
    nSDR: PerSource = {}
    SI_SDR: PerSource = Field(default={}, alias="SI-SDR")
    SD_SDR: PerSource = Field(default={}, alias="SD-SDR")
    mixture_nSDR: PerSource = {}
    per_track: dict[str, TrackRow]

    def missing_scores(self) -> str | None:
        """The first track and metric (``SDR`` or ``nSDR``) without a score for every source.

        Returns:
            ``"per_track['<track>'].<metric>: no score for <sources>"``, or ``None``.
        """
        for track, row in self.per_track.items():
            for metric in ("SDR", "nSDR"):
                scores = getattr(row, metric)
                missing = [source for source in self.sources if source not in scores]
                if missing:
                    return f"per_track[{track!r}].{metric}: no score for {', '.join(missing)}"
        return None


def read_summary(path: Path) -> EvalSummary:
    """Read and check an evaluation's ``summary.json``.

    Args:
        path: The file.

    Raises:
        ConfigError: One line naming the file and the dotted key of the first problem, or a
            track without a score for every source.
    """
    again = "not laid out as sepzoo eval writes it (written by an older version? run sepzoo eval again)"
    data = read_json_object(path)
    try:
        summary = validate(EvalSummary, data, str(path))
    except ConfigError as exc:
        raise ConfigError(f"{exc}; {again}") from None
    missing = summary.missing_scores()
    if missing:
        raise ConfigError(f"{path}: {missing}; {again}")
    return summary


__all__ = [
    "SUMMARY_FILE",
    "BssevalSummary",
    "EvalIdentity",
    "EvalSettings",
    "EvalSummary",
    "Frame",
    "FrameMetrics",
    "PerSource",
    "Target",
    "TrackFile",
    "TrackRow",
    "TrackScores",
    "read_identity",
    "read_json_object",
    "read_record",
    "read_summary",
    "read_track_record",
]
