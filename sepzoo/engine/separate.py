"""``sepzoo separate``: split audio files into stems with a model file or checkpoint.

Each file is streamed through the model: :class:`~sepzoo.io.audio.AudioStream` reads it in blocks
(resampled to the model's rate and converted to its channel count),
:class:`~sepzoo.engine.streaming.StreamingEngine` separates them with the chunks, batches and shifts of
:func:`~sepzoo.engine.apply.apply_model`, and one :class:`~sepzoo.io.audio.StemWriter` per output
writes the stems as they are finished. Memory therefore does not grow with the track's length
(unless the model must see whole tracks). Whole-track normalisation (``normalize``) reads the
file once more first, for its statistics.

Nothing is computed before every input has been probed, every output folder has been created
and found writable, and no output would be overwritten without ``force``. The stems of a file
appear together, once all of them are complete: an error on the way (a bad block of input, a
full disk) removes what was written and leaves earlier outputs untouched.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from sepzoo.errors import OutputExistsError, SepzooError
from sepzoo.io.audio import ClipMode
from sepzoo.models.bag import BagOfModels
from sepzoo.models.base import Separator

log = logging.getLogger(__name__)

CLIP_MODES: tuple[str, ...] = ("rescale", "clamp", "none")


@dataclass(frozen=True)
class OutputFormat:
    """How stems are written, with demucs's options.

    Args:
        flac: Write FLAC instead of WAV. (Default: ``False``)
        int24: 24-bit integer samples instead of 16-bit. (Default: ``False``)
        float32: 32-bit float WAV samples. (Default: ``False``)
        clip_mode: ``"rescale"`` (scale a stem down when it would clip), ``"clamp"`` or
            ``"none"``; see :class:`~sepzoo.io.audio.StemWriter`. (Default: ``"rescale"``)
    """

    flac: bool = False
    int24: bool = False
    float32: bool = False
    clip_mode: ClipMode = "rescale"

    def __post_init__(self) -> None:
        if self.int24 and self.float32:
            raise SepzooError("--int24 and --float32 exclude each other; choose one sample format")
        if self.flac and self.float32:
            raise SepzooError("--float32 needs WAV output: FLAC holds 16 or 24-bit integers (try --int24)")
        if self.clip_mode not in CLIP_MODES:
            raise SepzooError(f"--clip-mode {self.clip_mode}: expected one of {', '.join(CLIP_MODES)}")

    @property
    def suffix(self) -> str:
        """File suffix of the stems."""
        return ".flac" if self.flac else ".wav"

    @property
    def subtype(self) -> str:
        """soundfile subtype of the stems."""
        return "FLOAT" if self.float32 else "PCM_24" if self.int24 else "PCM_16"


def output_names(sources: list[str], two_stems: str | None = None) -> list[str]:
    """The stems written per file: every source, or ``two_stems`` and ``no_<two_stems>``.

    Args:
        sources: The model's sources.
        two_stems: Keep this source and the sum of the others, as ``demucs --two-stems``.
            (Default: ``None``)
    """
    if two_stems is None:
        return list(sources)
    if two_stems not in sources:
        raise SepzooError(f"--two-stems {two_stems}: the model's sources are {', '.join(sources)}")
    return [two_stems, f"no_{two_stems}"]


def plan_outputs(
    files: list[str], out: Path, names: list[str], force: bool, suffix: str = ".wav"
) -> dict[Path, Path]:
    """Map each input to its output folder, refusing bad inputs and outputs before any work.

    Every input is probed, every output folder is created and test-written, and existing stems
    are refused unless ``force``.

    Args:
        files: The input files.
        out: The output root; file ``a/song.mp3`` (or ``song.stem.mp4``) goes to ``out/song/``.
        names: The stems written per file (:func:`output_names`).
        force: Allow overwriting existing stems.
        suffix: Output file suffix. (Default: ``".wav"``)
    """
    from sepzoo.io.audio import AudioStream

    plan: dict[Path, Path] = {}
    for name in files:
        path = Path(name)
        AudioStream(path)  # probes it: unreadable inputs fail here, before any computation
        stem = path.name.split(".")[0] if path.name.lower().endswith(".stem.mp4") else path.stem
        folder = out / stem
        if folder in plan.values():
            raise SepzooError(f"{path}: two inputs would write to the same folder {folder}; rename one")
        existing = [folder / f"{s}{suffix}" for s in names if (folder / f"{s}{suffix}").exists()]
        if existing and not force:
            raise OutputExistsError(f"{existing[0]}: already exists; pass --force to overwrite")
        plan[path] = folder
    for folder in plan.values():
        _check_writable(folder)
    return plan


def _check_writable(folder: Path) -> None:
    """Create ``folder`` and write a byte to a file in it, or raise a one-line :class:`SepzooError`.

    Writing, not only creating, also catches a disk that is already full.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SepzooError(f"{folder}: cannot create output folder ({exc.strerror})") from None
    probe = None
    try:
        handle, probe = tempfile.mkstemp(prefix=".sepzoo-write-test.", dir=folder)
        with os.fdopen(handle, "wb") as stream:
            stream.write(b"\0")
            stream.flush()
    except OSError as exc:
        raise SepzooError(f"{folder}: output folder is not writable ({exc.strerror})") from None
    finally:
        if probe is not None:
            Path(probe).unlink(missing_ok=True)


@dataclass(frozen=True)
class FileSummary:
    """What separating one file did."""

    path: Path
    folder: Path
    stems: int
    seconds: float
    wall_seconds: float

    def line(self) -> str:
        """The summary line printed per file."""
        speed = self.seconds / self.wall_seconds if self.wall_seconds > 0 else float("inf")
        return (
            f"{self.path}: {self.seconds:.1f} s separated into {self.stems} stems in "
            f"{self.wall_seconds:.1f} s ({speed:.2f}x real time) -> {self.folder}"
        )


@contextmanager
def _threads_per_job(jobs: int) -> Iterator[None]:
    """Share torch's intra-op threads among ``jobs`` concurrent batches while separating."""
    if jobs <= 1:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, before // jobs))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _stems_to_outputs(stems: Tensor, sources: list[str], two_stems: str | None) -> list[Tensor]:
    """The blocks ``[C, n]`` to write, from the model's stems ``[S, C, n]``."""
    if two_stems is None:
        return list(stems)
    index = sources.index(two_stems)
    rest = [stems[i] for i in range(len(sources)) if i != index]
    other = torch.stack(rest).sum(dim=0) if rest else torch.zeros_like(stems[index])
    return [stems[index], other]


def separate_file(
    model: Separator | BagOfModels,
    path: Path,
    folder: Path,
    *,
    two_stems: str | None = None,
    output_format: OutputFormat = OutputFormat(),
    segment: float | None = None,
    overlap: float = 0.25,
    shifts: int = 0,
    batch_size: int = 4,
    device: str = "cpu",
    jobs: int = 1,
    normalize: bool = False,
    progress: bool = False,
    block_frames: int = 65536,
    tta: str | Sequence[str] | None = None,
) -> FileSummary:
    """Stream one file through ``model`` into ``folder/<stem><suffix>``, all stems or none.

    Args:
        model: The separator or bag, in eval mode, on ``device``.
        path: The input file.
        folder: The output folder (it must exist).
        two_stems: Write only this source and ``no_<source>``. (Default: ``None``)
        output_format: Container, sample format and clipping. (Default: 16-bit WAV, rescale)
        segment: Chunk length in seconds. (Default: ``None``, the model's)
        overlap: Chunk overlap. (Default: ``0.25``)
        shifts: Random test-time shifts. (Default: ``0``)
        batch_size: Chunks per forward pass. (Default: ``4``)
        device: Where the model runs. (Default: ``"cpu"``)
        jobs: Batches run at the same time. (Default: ``1``)
        normalize: Normalise by the whole track's statistics, from a first pass over the file.
            (Default: ``False``)
        progress: Show a progress bar on stderr. (Default: ``False``)
        block_frames: Frames read from the file at a time. (Default: ``65536``)
        tta: Test-time augmentations (:mod:`sepzoo.engine.tta`). (Default: ``None``)
    """
    import tqdm

    from sepzoo.engine.streaming import stream_model, track_statistics
    from sepzoo.io.audio import AudioStream, StemWriter

    started = time.perf_counter()
    sources = list(model.sources)
    names = output_names(sources, two_stems)
    stream = AudioStream(path, model.sample_rate, model.audio_channels, block_frames=block_frames)
    statistics = track_statistics(stream) if normalize else None
    writers: list[StemWriter] = []
    frames = 0
    bar = tqdm.tqdm(
        total=round(stream.estimated_frames / model.sample_rate, 1),
        desc=path.name,
        unit="s",
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s [{elapsed}<{remaining}]",
        disable=not progress,
        leave=False,
        file=sys.stderr,
    )
    try:
        for name in names:
            writers.append(
                StemWriter(
                    folder / f"{name}{output_format.suffix}",
                    model.sample_rate,
                    model.audio_channels,
                    output_format.subtype,
                    output_format.clip_mode,
                )
            )
        with bar:
            for stems in stream_model(
                model,
                stream,
                segment=segment,
                overlap=overlap,
                shifts=shifts,
                statistics=statistics,
                batch_size=batch_size,
                device=device,
                jobs=jobs,
                tta=tta,
            ):  # S, C, n
                for writer, block in zip(writers, _stems_to_outputs(stems, sources, two_stems)):
                    writer.write(block)
                frames += stems.shape[-1]
                bar.update(round(stems.shape[-1] / model.sample_rate, 3))
        for writer in writers:
            writer.finish()
        for writer in writers:
            writer.commit()
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    return FileSummary(path, folder, len(names), frames / model.sample_rate, time.perf_counter() - started)


def separate_files(
    files: list[str],
    model_spec: str,
    out: str | Path,
    shifts: int = 0,
    overlap: float = 0.25,
    segment: float | None = None,
    batch_size: int = 4,
    device: str = "cpu",
    force: bool = False,
    *,
    two_stems: str | None = None,
    output_format: OutputFormat = OutputFormat(),
    jobs: int = 1,
    normalize: bool = False,
    progress: bool | None = None,
    tta: str | Sequence[str] | None = None,
) -> list[Path]:
    """Separate each file into ``out/<file stem>/<source>.wav`` (or ``.flac``), streaming it.

    Inputs are WAV, FLAC, OGG or AIFF (soundfile) or anything ffmpeg decodes (mp3, m4a, the
    mixture of a stem.mp4), mono or stereo at any rate: they are resampled to the model's rate.
    Prints one summary line per file (seconds of audio, wall time, speed, output folder).

    Args:
        files: Audio files.
        model_spec: A model file, training checkpoint or run directory.
        out: The output root.
        shifts: Random test-time shifts. (Default: ``0``)
        overlap: Chunk overlap. (Default: ``0.25``)
        segment: Chunk length in seconds. (Default: the model's)
        batch_size: Chunks per forward pass. (Default: ``4``)
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``. (Default: ``"cpu"``)
        force: Overwrite existing stems. (Default: ``False``)
        two_stems: Write only this source and ``no_<source>`` (the sum of the others).
            (Default: ``None``)
        output_format: Container, sample format and clipping. (Default: 16-bit WAV, rescale)
        jobs: Chunk batches run at the same time; torch's intra-op threads are divided among
            them meanwhile. 0 and 1 run one at a time. (Default: ``1``)
        normalize: Normalise each track by its mean and standard deviation (of the channel
            average) and undo it on the stems, from a first pass over the file. (Default: ``False``)
        progress: Show a progress bar per file on stderr. (Default: ``None``, when stderr is a
            terminal)
        tta: Test-time augmentations, e.g. ``"flip,polarity"``: every combination runs at every
            shift and the stems are averaged (:mod:`sepzoo.engine.tta`). (Default: ``None``)

    Returns:
        The output folders, one per input.
    """
    from sepzoo.engine.apply import resolve_device
    from sepzoo.engine.chunks import check_engine_options
    from sepzoo.engine.tta import parse_tta, tta_variants
    from sepzoo.models.files import load_separator

    if jobs < 0:
        raise SepzooError(f"-j {jobs}: the number of jobs must be 0 or more")
    try:
        check_engine_options(overlap, shifts, 1.0, batch_size, segment)
    except ValueError as exc:
        raise SepzooError(str(exc)) from None
    tta = parse_tta(tta)
    out = Path(out)
    device = str(resolve_device(device))
    model = load_separator(model_spec)
    if model.needs_references:
        raise SepzooError(
            f"{model_spec}: an oracle needs the true stems; score it with `sepzoo eval` instead"
        )
    tta_variants(tta, model.audio_channels, model_spec)
    names = output_names(list(model.sources), two_stems)
    plan = plan_outputs(files, out, names, force, output_format.suffix)
    model = model.to(device).eval()
    show = sys.stderr.isatty() if progress is None else progress
    jobs = max(1, jobs)
    with _threads_per_job(jobs):
        for path, folder in plan.items():
            summary = separate_file(
                model,
                path,
                folder,
                two_stems=two_stems,
                output_format=output_format,
                segment=segment,
                overlap=overlap,
                shifts=shifts,
                batch_size=batch_size,
                device=device,
                jobs=jobs,
                normalize=normalize,
                progress=show,
                tta=tta,
            )
            log.info("%s", summary.line())
    return list(plan.values())
