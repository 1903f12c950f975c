"""``sepzoo eval``: score a model, an oracle, or estimates already on disk, on a data set.

Each track's mixture goes through the shared inference engine (or its estimates are read from
``--estimates DIR``); the estimates are scored with BSSEval v4 per one-second frame and with
nSDR, SI-SDR and SD-SDR per track (see :mod:`sepzoo.evaluation.scores`). Results land in

* ``OUT/<subset>/<track>.json``: museval's per-track layout, loadable with
  ``museval.EvalStore().add_eval_dir(OUT)`` or ``museval.MethodStore().add_eval_dir(OUT)``;
* ``OUT/summary.json`` and ``OUT/table.txt``: the aggregate per source;
* ``OUT/eval.json``: what was scored and how, so an interrupted run resumes where it stopped
  (tracks already scored are skipped) and a different run is not mixed into the same folder;
* optionally ``OUT/estimates/<subset>/<track>/<source>.wav`` and a W&B run (offline unless
  an API key is configured) holding the tables.

The JSON records' shapes are declared, and read back, in :mod:`sepzoo.evaluation.records`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sepzoo import DEFAULT_SOURCES
from sepzoo.errors import DataError, OutputExistsError, SepzooError
from sepzoo.io.lock import folder_lock

TOY_MARKER = "README.txt"
IDENTITY_FILE = "eval.json"
ESTIMATES_FOLDER = "estimates"


def find_tracks(root: Path, subset: str, sources: list[str]) -> list[Any]:
    """The tracks of ``root/subset``: stem folders (MUSDB18-HQ, toy set) or MUSDB18 ``.stem.mp4``
    files; for a MoisesDB root, the songs of its default split and mapping (``train`` or ``test``).

    Args:
        root: The data set root.
        subset: The subset folder (e.g. ``"test"``).
        sources: The stems needed.
    """
    from sepzoo.data.moisesdb_songs import is_moisesdb_root
    from sepzoo.data.tracks import scan_stem_folder

    folder = root / subset
    if not root.is_dir():
        raise DataError(f"{root}: data set root does not exist")
    if is_moisesdb_root(root):
        from sepzoo.data.moisesdb import MoisesDbDataModule

        return MoisesDbDataModule(root=str(root), sources=sources).subset_tracks(subset)
    if not folder.is_dir():
        raise DataError(f"{folder}: no '{subset}' subset folder in the data set root")
    if any(folder.glob("*.stem.mp4")):
        from sepzoo.data.musdb import MusdbDataModule

        module = MusdbDataModule(root=str(root), sources=sources, is_wav=False, subset_test=subset)
        return list(module.test_tracks())
    return scan_stem_folder(folder, sources)


def mixture_sources(model_sources: list[str]) -> list[str]:
    """The stems whose sum is the mixture a model is scored on.

    A model that estimates some of the four MUSDB sources (a one-target model) still hears the
    mixture of all four; any other model hears the sum of its own sources.

    Args:
        model_sources: The sources the model estimates.
    """
    if set(model_sources) < set(DEFAULT_SOURCES):
        return list(model_sources) + [s for s in DEFAULT_SOURCES if s not in model_sources]
    return list(model_sources)


def is_toy_dataset(root: Path) -> bool:
    """True for a data set written by ``sepzoo toy-musdb`` or ``sepzoo toy-moisesdb``.

    Args:
        root: The data set root.
    """
    marker = root / TOY_MARKER
    if not marker.is_file():
        return False
    text = marker.read_text(errors="replace")
    return "toy-musdb" in text or "toy-moisesdb" in text


class EstimatesDir:
    """Estimates written by any program, as ``DIR/<track>/<source>.wav`` or musdb's
    ``DIR/<subset>/<track>/<source>.wav`` (``.flac`` also read).

    The sources scored are the stems found in the first track's folder; every track must have
    the same ones, at the references' rate, channel count and length.

    Args:
        folder: The estimates folder.
        subset: The subset scored (selects ``DIR/<subset>`` when that layout is used).
    """

    def __init__(self, folder: str | Path, subset: str) -> None:
        folder = Path(folder)
        if not folder.is_dir():
            raise DataError(f"--estimates {folder}: no such folder")
        nested = folder / subset
        self.folder = nested if nested.is_dir() and not _holds_audio(nested) else folder
        tracks = sorted(p for p in self.folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not tracks:
            raise DataError(
                f"--estimates {folder}: holds no track folders; expected {folder}/<track>/<source>.wav "
                f"or {folder}/{subset}/<track>/<source>.wav"
            )
        self.sources = _stems_in(tracks[0])
        if not self.sources:
            raise DataError(f"--estimates {tracks[0]}: holds no .wav or .flac stems")

    def read(self, track: str, sample_rate: int, channels: int, frames: int) -> Tensor:
        """The estimates of one track, ``[S, C, T]``, checked against the references.

        Args:
            track: The track name.
            sample_rate: The references' sample rate.
            channels: The references' channel count.
            frames: The references' length.
        """
        from sepzoo.io.audio import read_audio

        paths = self.check(track, sample_rate, channels, frames)
        return torch.stack([read_audio(path, channels=channels)[0] for path in paths])

    def check(self, track: str, sample_rate: int, channels: int, frames: int) -> list[Path]:
        """The files of one track's estimates, in :attr:`sources` order, after checking their
        headers against the references.

        Args:
            track: The track name.
            sample_rate: The references' sample rate.
            channels: The references' channel count.
            frames: The references' length.
        """
        import soundfile as sf

        folder = self.folder / track
        if not folder.is_dir():
            raise DataError(f"--estimates: no folder for track {track!r} (expected {folder})")
        found = _stems_in(folder)
        if sorted(found) != sorted(self.sources):
            raise DataError(
                f"{folder}: holds stems {sorted(found)} but the other tracks hold {sorted(self.sources)}; "
                "every track needs the same estimates"
            )
        paths = []
        for source in self.sources:
            path = _stem_file(folder, source)
            try:
                info = sf.info(str(path))
            except Exception as exc:  # noqa: BLE001 - soundfile raises several kinds
                raise DataError(f"{path}: not a readable audio file ({exc})") from None
            if info.samplerate != sample_rate:
                raise DataError(
                    f"{path}: sample rate {info.samplerate} Hz; the references have {sample_rate} Hz"
                )
            if info.channels != channels:
                raise DataError(f"{path}: {info.channels} channel(s); the references have {channels}")
            if info.frames != frames:
                raise DataError(
                    f"{path}: {info.frames} samples; the references have {frames} "
                    f"({frames / sample_rate:.2f} s): estimates must be as long as the track"
                )
            paths.append(path)
        return paths


def _stem_file(folder: Path, source: str) -> Path:
    for suffix in (".wav", ".flac"):
        if (folder / f"{source}{suffix}").is_file():
            return folder / f"{source}{suffix}"
    raise DataError(f"{folder}: no {source}.wav")


def _stems_in(folder: Path) -> list[str]:
    names = [p.stem for p in sorted(folder.iterdir()) if p.suffix.lower() in (".wav", ".flac")]
    return [n for n in names if not n.startswith(".") and n != "mixture"]


def _holds_audio(folder: Path) -> bool:
    return any(p.suffix.lower() in (".wav", ".flac") for p in folder.iterdir() if p.is_file())


def evaluate(
    model_spec: str | None,
    root: str | Path,
    subset: str = "test",
    out: str | Path = "eval",
    *,
    estimates: str | Path | None = None,
    save_estimates: bool = False,
    max_tracks: int | None = None,
    shifts: int = 0,
    overlap: float = 0.25,
    segment: float | None = None,
    batch_size: int = 4,
    device: str = "cpu",
    force: bool = False,
    wandb: bool = False,
    wandb_project: str = "sepzoo",
    progress: bool = True,
    tta: str | Sequence[str] | None = None,
) -> dict[str, Any]:
    """Score a model, or estimates on disk, on every track of ``root/subset``.

    A folder that already holds results of the same evaluation (same model weights or
    estimates folder, data, subset and settings) is resumed: its tracks are loaded, not scored
    again. A folder holding another evaluation is refused; ``force`` clears either first.

    Args:
        model_spec: A model file, training checkpoint, run directory, bag or oracle name;
            ``None`` with ``estimates``.
        root: The data set root.
        subset: The subset to score. (Default: ``"test"``)
        out: Output folder. (Default: ``"eval"``)
        estimates: Score the estimates in this folder instead of running a model.
            (Default: ``None``)
        save_estimates: Also write the model's estimates to ``OUT/estimates``. (Default: ``False``)
        max_tracks: Score only the first N tracks. (Default: all)
        shifts: Random test-time shifts. (Default: ``0``)
        overlap: Chunk overlap. (Default: ``0.25``)
        segment: Chunk length in seconds. (Default: the model's)
        batch_size: Chunks per forward pass. (Default: ``4``)
        device: ``"cpu"`` or ``"cuda"``. (Default: ``"cpu"``)
        force: Clear earlier results in ``out`` and score every track. (Default: ``False``)
        wandb: Log the tables to a W&B run in ``OUT``. (Default: ``False``)
        wandb_project: The W&B project. (Default: ``"sepzoo"``)
        progress: Show a progress bar over tracks. (Default: ``True``)
        tta: Test-time augmentations, e.g. ``"flip,polarity"`` (:mod:`sepzoo.engine.tta`);
            recorded in the summary's settings when any. (Default: ``None``)

    Returns:
        The summary written to ``OUT/summary.json``.
    """
    from tqdm import tqdm

    from sepzoo.evaluation.records import read_track_record
    from sepzoo.evaluation.scores import aggregate

    if (model_spec is None) == (estimates is None):
        raise SepzooError("eval: give either a model (-n) or --estimates DIR, not both or neither")
    root, out = Path(root), Path(out)
    scorer = _build_scorer(
        model_spec, estimates, root, subset, shifts, overlap, segment, batch_size, device, tta
    )
    tracks = find_tracks(root, subset, scorer.data_sources)[: max_tracks or None]
    identity = {
        "model": None if model_spec is None else str(model_spec),
        "estimates": None if estimates is None else str(Path(estimates).resolve()),
        "root": str(root.resolve()),
        "subset": subset,
        "settings": scorer.settings,
    }
    for track in tracks:
        scorer.check(track)  # estimates that do not fit are refused before any track is scored
    results_dir = out / subset
    # One evaluation at a time writes into a folder; the lock dies with its process.
    with contextlib.ExitStack() as held:
        locked = out.is_dir()
        if locked:
            held.enter_context(folder_lock(out, "evaluating into this folder"))
        _prepare_out(out, results_dir, identity, force)
        if not locked:
            held.enter_context(folder_lock(out, "evaluating into this folder"))
        estimates_dir = out / ESTIMATES_FOLDER / subset if save_estimates and scorer.runs_model else None
        records: dict[str, dict[str, Any]] = {}
        resumed = 0
        bar = tqdm(tracks, desc="eval", unit="track", disable=not progress)
        for track in bar:
            path = results_dir / f"{_safe_name(track.name)}.json"
            record = read_track_record(path) if path.is_file() else None  # None: score it (again)
            if record is not None:
                records[track.name] = record
                resumed += 1
                continue
            record = scorer.score(track, estimates_dir)
            records[track.name] = record
            _write_track(path, track.name, record, identity)
            mean_sdr = _mean([_median(record["frames"][s]["SDR"]) for s in scorer.sources])
            bar.set_postfix_str(f"{track.name[:24]}: cSDR {mean_sdr:.2f} dB")
        bar.close()
        summary = {
            **identity,
            "tracks": len(records),
            "resumed_tracks": resumed,
            "toy": is_toy_dataset(root),
            "sources": scorer.sources,
            "metrics": METRIC_LABELS,
            **aggregate(list(records.values()), scorer.sources),
            "per_track": {name: _track_row(record, scorer.sources) for name, record in records.items()},
        }
        _write_json(out / "summary.json", summary)
        _write_text(out / "table.txt", format_track_table(summary) + "\n\n" + format_table(summary) + "\n")
        if wandb:
            summary["wandb_dir"] = str(log_to_wandb(summary, out, wandb_project))
        return summary


METRIC_LABELS = {
    "cSDR median": "BSSEval v4 SDR (museval): median over 1-s frames per track, then median over tracks",
    "cSDR mean": "BSSEval v4 SDR (museval): median over 1-s frames per track, then mean over tracks",
    "nSDR": "MDX 2021 SDR: 10 log10 |s|^2/|s - s_hat|^2 over the whole track, mean over tracks",
    "SI-SDR": "scale-invariant SDR (Le Roux et al. 2019) over the whole track, mean over tracks",
    "SD-SDR": "scale-dependent SDR (Le Roux et al. 2019) over the whole track, mean over tracks",
    "mixture nSDR": "nSDR of the unprocessed mixture as every estimate (the MIX baseline)",
}


class _Scorer:
    """Produces one track's estimates (a model or a folder) and scores them."""

    def __init__(
        self,
        sources: list[str],
        data_sources: list[str],
        sample_rate: int | None,
        channels: int | None,
        estimate: Callable[[Any, Tensor, Tensor], Tensor],
        settings: dict[str, Any],
        runs_model: bool,
        check: Callable[[Any], None] | None = None,
        device: str = "cpu",
    ) -> None:
        self.sources = sources
        self.data_sources = data_sources
        self.sample_rate = sample_rate
        self.channels = channels
        self.estimate = estimate
        self.settings = settings
        self.runs_model = runs_model
        self.check = check or (lambda track: None)
        self.device = device

    def score(self, track: Any, estimates_dir: Path | None) -> dict[str, Any]:
        from sepzoo.data.tracks import read_stems
        from sepzoo.evaluation.scores import score_track

        rate = self.sample_rate or track.sample_rate
        channels = self.channels or track.channels
        frames = track.frames_at(rate)
        every_stem = read_stems(track, self.data_sources, 0, frames, rate, channels)
        mix = every_stem.sum(0)  # C, T
        references = every_stem[[self.data_sources.index(s) for s in self.sources]]  # S, C, T
        estimates = self.estimate(track, mix, references)  # S, C, T
        if not torch.isfinite(estimates).all():
            raise SepzooError(f"track {track.name!r}: the estimates hold NaN or infinite samples")
        if estimates_dir is not None:
            from sepzoo.io.audio import write_audio

            for source, stem in zip(self.sources, estimates):
                write_audio(
                    estimates_dir / _safe_name(track.name) / f"{source}.wav", stem, rate, subtype="FLOAT"
                )
        return score_track(references, estimates, mix, self.sources, rate, device=self.device)


def _build_scorer(
    model_spec: str | None,
    estimates: str | Path | None,
    root: Path,
    subset: str,
    shifts: int,
    overlap: float,
    segment: float | None,
    batch_size: int,
    device: str,
    tta: str | Sequence[str] | None = None,
) -> _Scorer:
    from sepzoo.engine.apply import resolve_device
    from sepzoo.engine.tta import parse_tta, tta_variants

    names = parse_tta(tta)
    if names and estimates is not None:
        raise SepzooError(f"--tta {','.join(names)}: estimates on disk are scored as they are; drop --tta")
    device_name = str(resolve_device(device))
    if estimates is not None:
        folder = EstimatesDir(estimates, subset)
        unknown = [s for s in folder.sources if s not in DEFAULT_SOURCES]
        data_sources = mixture_sources(folder.sources)
        if unknown:
            data_sources = list(folder.sources)

        def read(track: Any, mix: Tensor, references: Tensor) -> Tensor:
            return folder.read(track.name, track.sample_rate, references.shape[1], references.shape[-1])

        def check(track: Any) -> None:
            folder.check(track.name, track.sample_rate, track.channels, track.frames)

        return _Scorer(
            folder.sources,
            data_sources,
            None,
            None,
            read,
            {},
            runs_model=False,
            check=check,
            device=device_name,
        )

    from sepzoo.engine.apply import apply_model
    from sepzoo.models.files import load_separator

    assert model_spec is not None
    model = load_separator(model_spec).to(device_name).eval()
    tta_variants(names, model.audio_channels, str(model_spec))

    def separate(track: Any, mix: Tensor, references: Tensor) -> Tensor:
        return apply_model(
            model,
            mix,
            references=references if model.needs_references else None,
            segment=segment,
            overlap=overlap,
            shifts=shifts,
            batch_size=batch_size,
            device=device_name,
            tta=names,
        )

    settings = {"shifts": shifts, "overlap": overlap, "segment": segment, "weights": _fingerprint(model)}
    if names:  # only when used, so that earlier results without TTA still resume
        settings["tta"] = list(names)
    sources = list(model.sources)
    return _Scorer(
        sources,
        mixture_sources(sources),
        model.sample_rate,
        model.audio_channels,
        separate,
        settings,
        runs_model=True,
        device=device_name,
    )


def _fingerprint(model: torch.nn.Module) -> str:
    """A digest of the model's weights, so that results of a retrained model are not resumed
    as if they were the old one's."""
    digest = hashlib.sha1(type(model).__name__.encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def _prepare_out(out: Path, results_dir: Path, identity: dict[str, Any], force: bool) -> None:
    """Check ``out`` before any track is scored: resume the same evaluation, refuse another
    one, clear both with ``force``, and make sure the folder can be written."""
    from sepzoo.evaluation.records import EvalIdentity, read_identity

    identity_file = out / IDENTITY_FILE
    holds_results = (out / "summary.json").exists() or (results_dir.is_dir() and any(results_dir.iterdir()))
    previous = read_identity(identity_file)
    if (holds_results or previous is not None) and previous != EvalIdentity(**identity) and not force:
        raise OutputExistsError(
            f"{out}: already holds the results of another evaluation; pass --force to replace them "
            "or choose another -o"
        )
    if force:
        shutil.rmtree(results_dir, ignore_errors=True)
        shutil.rmtree(out / ESTIMATES_FOLDER, ignore_errors=True)
        for name in ("summary.json", "table.txt"):
            (out / name).unlink(missing_ok=True)
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=results_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise SepzooError(
            f"{results_dir}: cannot write the evaluation results there ({exc.strerror})"
        ) from None
    _write_json(identity_file, identity)


def _write_track(path: Path, name: str, record: dict[str, Any], identity: dict[str, Any]) -> None:
    from sepzoo.evaluation.scores import museval_json

    extra = {"model": identity["model"], "estimates": identity["estimates"], "settings": identity["settings"]}
    _write_json(path, museval_json(name, record, extra))


def _track_row(record: dict[str, Any], sources: list[str]) -> dict[str, Any]:
    """A track's summary line: per source, the frame medians of BSSEval and the track scores."""
    from sepzoo.evaluation.scores import BSSEVAL_METRICS, TRACK_METRICS

    row: dict[str, Any] = {}
    for metric in BSSEVAL_METRICS:
        row[metric] = {s: _median(record["frames"][s][metric]) for s in sources}
    for metric in TRACK_METRICS:
        row[metric] = dict(record[metric])
    return row


def format_track_table(summary: dict[str, Any]) -> str:
    """Per track and source: cSDR (median over frames) and nSDR, with the mixture's nSDR.

    Args:
        summary: What :func:`evaluate` returned.
    """
    sources = summary["sources"]
    rows = summary["per_track"]
    width = max([len("track"), *(len(name) for name in rows)])
    lines = ["per track, in dB: cSDR (BSSEval v4 frame median) / nSDR (mixture nSDR)"]
    lines.append(f"{'track':<{width}}" + "".join(f" {source:>23}" for source in sources))
    for name, row in rows.items():
        cells = "".join(
            f" {row['SDR'][s]:7.2f} /{row['nSDR'][s]:6.2f} ({row['mixture_nSDR'][s]:6.2f})" for s in sources
        )
        lines.append(f"{name:<{width}}{cells}")
    return "\n".join(lines)


def format_table(summary: dict[str, Any]) -> str:
    """Per source: cSDR median and mean over tracks, SIR/ISR/SAR medians, nSDR, SI-SDR,
    SD-SDR, and the mixture's nSDR, each labelled.

    Args:
        summary: What :func:`evaluate` returned.
    """
    sources = summary["sources"]
    bss = summary["bsseval"]
    what = summary["model"] or summary["estimates"]
    lines = [f"{what} on {summary['tracks']} tracks of {summary['root']}/{summary['subset']} (dB)"]
    columns = {
        "cSDR med": bss["SDR"]["median"],
        "cSDR mean": bss["SDR"]["mean"],
        "SIR med": bss["SIR"]["median"],
        "ISR med": bss["ISR"]["median"],
        "SAR med": bss["SAR"]["median"],
        "nSDR": summary["nSDR"],
        "SI-SDR": summary["SI-SDR"],
        "SD-SDR": summary["SD-SDR"],
        "mix nSDR": summary["mixture_nSDR"],
    }
    lines.append(f"{'source':<10}" + "".join(f" {name:>9}" for name in columns))
    for source in sources:
        lines.append(f"{source:<10}" + "".join(f" {values[source]:9.2f}" for values in columns.values()))
    lines.append(
        f"{'mean':<10}" + "".join(f" {_mean(list(values.values())):9.2f}" for values in columns.values())
    )
    lines.append(
        "cSDR med/mean: BSSEval v4 (museval) SDR, median over 1-s frames per track, then median/mean over "
        "tracks; SIR/ISR/SAR med likewise (median of medians); nSDR, SI-SDR, SD-SDR: whole-track, mean over "
        "tracks; mix nSDR: the unprocessed mixture as every estimate"
    )
    if summary.get("toy"):
        lines.append("(synthetic toy data: a smoke test of the machinery, not evidence about any model)")
    return "\n".join(lines)


def log_to_wandb(summary: dict[str, Any], out: Path, project: str) -> Path:
    """Log the per-track and aggregate tables as a W&B run under ``out`` (offline unless an
    API key is configured); returns the run's folder.

    Args:
        summary: What :func:`evaluate` returned.
        out: The evaluation folder.
        project: The W&B project.
    """
    import wandb

    from sepzoo.io.wandb import resolve_wandb_mode

    os.environ.setdefault("WANDB_SILENT", "true")
    name = Path(summary["model"] or summary["estimates"]).name
    run = wandb.init(
        project=project,
        name=f"eval-{name}-{summary['subset']}",
        dir=str(out),
        mode=resolve_wandb_mode("auto"),
        job_type="eval",
        config={k: summary[k] for k in ("model", "estimates", "root", "subset", "settings", "toy")},
        settings=wandb.Settings(console="off", silent=True, x_disable_stats=True),
    )
    try:
        sources = summary["sources"]
        columns = ["track", "source", "cSDR", "SIR", "ISR", "SAR", "nSDR", "SI-SDR", "SD-SDR", "mixture nSDR"]
        per_track = wandb.Table(columns=columns)
        for track, row in summary["per_track"].items():
            for s in sources:
                per_track.add_data(
                    track,
                    s,
                    *(
                        row[m][s]
                        for m in ("SDR", "SIR", "ISR", "SAR", "nSDR", "SI-SDR", "SD-SDR", "mixture_nSDR")
                    ),
                )
        overall = wandb.Table(
            columns=["source", "cSDR median", "cSDR mean", "nSDR", "SI-SDR", "SD-SDR", "mixture nSDR"]
        )
        for s in sources:
            overall.add_data(
                s,
                summary["bsseval"]["SDR"]["median"][s],
                summary["bsseval"]["SDR"]["mean"][s],
                summary["nSDR"][s],
                summary["SI-SDR"][s],
                summary["SD-SDR"][s],
                summary["mixture_nSDR"][s],
            )
        run.log({"eval/per_track": per_track, "eval/summary": overall})
        for s in sources:
            run.summary[f"eval/cSDR_median/{s}"] = summary["bsseval"]["SDR"]["median"][s]
            run.summary[f"eval/nSDR/{s}"] = summary["nSDR"][s]
        return Path(run.dir).parent
    finally:
        run.finish()


def _median(values: list[float]) -> float:
    from sepzoo.evaluation.scores import frame_median

    return frame_median(values)


def _mean(values: list[float]) -> float:
    import statistics

    from sepzoo.evaluation.scores import nan_aggregate

    return nan_aggregate(values, statistics.fmean)


def _safe_name(name: str) -> str:
    return name.replace("/", "_").replace("\\", "_")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    from sepzoo.io.atomic import write_json_atomic

    try:
        write_json_atomic(path, data)
    except OSError as exc:
        raise SepzooError(f"{path}: could not be written ({exc.strerror})") from None


def _write_text(path: Path, text: str) -> None:
    from sepzoo.io.atomic import write_text_atomic

    try:
        write_text_atomic(path, text)
    except OSError as exc:
        raise SepzooError(f"{path}: could not be written ({exc.strerror})") from None
