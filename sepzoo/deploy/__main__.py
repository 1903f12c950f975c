"""``python -m sepzoo.deploy separate FILE... -n FOLDER -o OUT``: separate without torch.

Needs only NumPy, onnxruntime and soundfile. Each file (WAV, FLAC, OGG, AIFF at the exported
model's sample rate; mono is up-mixed, stereo down-mixed to fit the model) is separated with
:meth:`sepzoo.deploy.runtime.ExportedModel.separate` into ``OUT/<file stem>/<source>.wav``.
Stems are written as ``sepzoo separate`` writes them (16-bit by default, a stem that would clip
rescaled by its peak), each to a temporary name first. Bad input is one line on stderr and
exit status 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sepzoo.errors import DataError, OutputExistsError, SepzooError

EXIT_USER_ERROR = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sepzoo.deploy", description="Run exported sepzoo models without torch."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("separate", help="split audio files into stems with an exported folder")
    p.add_argument("files", nargs="+", help="audio files soundfile reads (wav, flac, ogg, aiff)")
    p.add_argument("-n", "--name", dest="model", required=True, help="exported folder (sepzoo export-onnx)")
    p.add_argument("-o", "--out", required=True, help="output folder: OUT/<file stem>/<source>.wav")
    p.add_argument("--overlap", type=float, default=0.25, help="chunk overlap fraction (default: 0.25)")
    p.add_argument(
        "--segment", type=float, default=None, help="chunk length in seconds (default: the export's)"
    )
    p.add_argument("-b", "--batch-size", type=int, default=4, help="chunks per graph run (default: 4)")
    p.add_argument("--provider", action="append", default=None, help="onnxruntime execution provider(s)")
    formats = p.add_mutually_exclusive_group()
    formats.add_argument("--int24", action="store_true", help="write 24-bit samples (default: 16-bit)")
    formats.add_argument("--float32", action="store_true", help="write 32-bit float WAV samples")
    p.add_argument(
        "--clip-mode",
        default="rescale",
        choices=["rescale", "clamp", "none"],
        help="for integer samples: rescale a stem that would clip by its peak, clamp, or neither "
        "(default: rescale)",
    )
    p.add_argument("--force", action="store_true", help="overwrite existing stems")
    return parser


def read_audio(path: Path, sample_rate: int, channels: int) -> np.ndarray:
    """Read ``path`` as float32 ``[channels, time]`` at the model's rate and channels.

    Args:
        path: An audio file soundfile reads.
        sample_rate: The model's rate; another rate is refused (no resampler without torch).
        channels: The model's channels (mono up-mixed, stereo down-mixed).
    """
    import soundfile

    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types for unreadable files
        raise DataError(f"{path}: cannot read audio ({str(exc).strip().splitlines()[-1]})") from None
    if rate != sample_rate:
        raise DataError(
            f"{path}: sample rate {rate} Hz; the exported model works at {sample_rate} Hz "
            "(resample it first, or use `sepzoo separate`, which resamples)"
        )
    wav = data.T
    if wav.shape[1] == 0:
        raise DataError(f"{path}: has no samples")
    if wav.shape[0] > 2:
        raise DataError(f"{path}: has {wav.shape[0]} channels; expected mono or stereo")
    if wav.shape[0] != channels:
        wav = wav.mean(axis=0, keepdims=True) if channels == 1 else np.repeat(wav, channels, axis=0)
    if not np.isfinite(wav).all():
        raise DataError(f"{path}: has samples that are not finite")
    return np.ascontiguousarray(wav, dtype=np.float32)


def write_audio(path: Path, wav: np.ndarray, sample_rate: int, subtype: str, clip_mode: str) -> None:
    """Write ``[C, T]`` audio atomically, clipping as ``sepzoo.io.audio.write_audio`` does.

    Args:
        path: The output ``.wav`` file.
        wav: The audio.
        sample_rate: Its rate.
        subtype: ``"PCM_16"``, ``"PCM_24"`` or ``"FLOAT"``.
        clip_mode: ``"rescale"``, ``"clamp"`` or ``"none"`` (integer subtypes only).
    """
    import soundfile

    from sepzoo.io.atomic import atomic_path

    wav = np.asarray(wav, dtype=np.float32)
    if subtype != "FLOAT":
        peak = float(np.abs(wav).max()) if wav.size else 0.0
        if clip_mode == "rescale" and peak > 1.0:
            wav = wav / np.float32(peak * 1.01)
        elif clip_mode == "clamp":
            wav = np.clip(wav, -1.0, 1.0)
    with atomic_path(path) as part:
        soundfile.write(str(part), wav.T, sample_rate, subtype=subtype, format="WAV")


def separate(args: argparse.Namespace) -> int:
    """Separate every file of ``args.files`` with the exported folder ``args.model``.

    Args:
        args: Parsed arguments of ``separate``.
    """
    from sepzoo.deploy.runtime import load_exported

    if not 0 <= args.overlap < 1:
        raise SepzooError(f"--overlap {args.overlap}: expected a fraction in [0, 1)")
    if args.batch_size < 1:
        raise SepzooError(f"--batch-size {args.batch_size}: expected 1 or more")
    model = load_exported(args.model, args.provider)
    model.chunk_length(args.segment)  # refuses a bad --segment before any work
    out = Path(args.out)
    plan: dict[Path, Path] = {}
    for name in args.files:
        path = Path(name)
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        folder = out / path.stem
        if folder in plan.values():
            raise SepzooError(f"{path}: two inputs would write to the same folder {folder}; rename one")
        existing = [folder / f"{s}.wav" for s in model.sources if (folder / f"{s}.wav").exists()]
        if existing and not args.force:
            raise OutputExistsError(f"{existing[0]}: already exists; pass --force to overwrite")
        plan[path] = folder
    subtype = "FLOAT" if args.float32 else "PCM_24" if args.int24 else "PCM_16"
    for path, folder in plan.items():
        start = time.perf_counter()
        mix = read_audio(path, model.sample_rate, model.audio_channels)
        stems = model.separate(mix, segment=args.segment, overlap=args.overlap, batch_size=args.batch_size)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SepzooError(f"{folder}: cannot create the output folder ({exc.strerror})") from None
        for source, stem in zip(model.sources, stems):
            write_audio(folder / f"{source}.wav", stem, model.sample_rate, subtype, args.clip_mode)
        seconds = mix.shape[-1] / model.sample_rate
        wall = time.perf_counter() - start
        print(f"{path}: {seconds:.1f} s of audio in {wall:.1f} s -> {folder}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m sepzoo.deploy``.

    Args:
        argv: Arguments. (Default: ``sys.argv[1:]``)
    """
    args = _parser().parse_args(argv)
    try:
        return separate(args)
    except SepzooError as exc:
        print(f"sepzoo.deploy {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
