"""``sepzoo``: train, evaluate, separate, compare, report, export, list models and cards, make toy data.

Every command reports bad input as one line on stderr and exits with status 2; heavy
libraries are imported only by the command that needs them, so ``sepzoo --help`` is quick.
The library logs through :mod:`logging` (under the ``sepzoo`` logger); this entry point shows
its progress lines on stdout and its warnings on stderr, more with ``-v``, fewer with ``-q``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from sepzoo.errors import SepzooError

EXIT_USER_ERROR = 2


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train the model a recipe describes",
        description="Train a recipe. Overrides are key=value pairs, e.g. trainer.max_steps=100.",
    )
    p.add_argument("recipe", help="recipe YAML file")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="recipe overrides")
    p.add_argument(
        "--resume", action="store_true", help="continue the unfinished run with the same config hash"
    )
    p.add_argument("--force", action="store_true", help="replace an existing run with the same config hash")
    p.add_argument(
        "--reuse", action="store_true", help="if this run already finished, say where it is and stop"
    )
    p.add_argument(
        "--print-run-dir", action="store_true", help="print the run directory of this recipe and stop"
    )


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="score a model or estimates on disk: BSSEval v4 (museval JSON), nSDR, SI-SDR, SD-SDR",
    )
    p.add_argument(
        "-n",
        "--name",
        dest="model",
        help="model file, training checkpoint, run directory, bag, or oracle name",
    )
    p.add_argument(
        "--estimates",
        help="score estimates already on disk: DIR/<track>/<source>.wav or DIR/<subset>/<track>/<source>.wav",
    )
    p.add_argument(
        "--root", required=True, help="data set root (MUSDB18, MUSDB18-HQ, toy set or stem folders)"
    )
    p.add_argument("--subset", default="test", help="subset folder to score (default: test)")
    p.add_argument(
        "-o",
        "--out",
        required=True,
        help="output folder: OUT/<subset>/<track>.json (museval format), summary.json, table.txt",
    )
    p.add_argument("--tracks", type=int, default=None, help="score only the first N tracks")
    p.add_argument(
        "--save-estimates", action="store_true", help="also write the estimates to OUT/estimates/<subset>/"
    )
    p.add_argument(
        "--wandb", action="store_true", help="log the tables to a W&B run (offline without an API key)"
    )
    p.add_argument("--wandb-project", default="sepzoo", help="W&B project (default: sepzoo)")
    _add_engine_options(p)
    p.add_argument("-d", "--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument(
        "--force",
        action="store_true",
        help="clear earlier results in OUT (without it, the same evaluation resumes and another is refused)",
    )


def _add_separate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "separate",
        help="split audio files into stems",
        description="Split audio files into stems. Each file is streamed through the model, so memory "
        "does not grow with its length; the stems of a file appear together once all are complete.",
    )
    p.add_argument(
        "files", nargs="+", help="audio files: wav, flac (soundfile); mp3, m4a, stem.mp4 (through ffmpeg)"
    )
    p.add_argument(
        "-n", "--name", required=True, dest="model", help="model file, training checkpoint or run directory"
    )
    p.add_argument("-o", "--out", required=True, help="output folder: OUT/<file stem>/<source>.wav")
    _add_engine_options(p)
    p.add_argument("-d", "--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    p.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=1,
        help="chunk batches run at the same time, sharing torch's threads (default: 1)",
    )
    p.add_argument(
        "--two-stems",
        metavar="SOURCE",
        default=None,
        help="write only SOURCE and no_SOURCE (the sum of the other stems)",
    )
    depth = p.add_mutually_exclusive_group()
    depth.add_argument("--int24", action="store_true", help="write 24-bit samples (default: 16-bit)")
    depth.add_argument("--float32", action="store_true", help="write 32-bit float WAV samples")
    p.add_argument(
        "--clip-mode",
        default="rescale",
        choices=["rescale", "clamp", "none"],
        help="rescale a stem that would clip by its peak, clamp samples to +-0.99, or neither "
        "(default: rescale)",
    )
    p.add_argument("--flac", action="store_true", help="write FLAC instead of WAV")
    p.add_argument(
        "--normalize",
        action="store_true",
        help="normalise each track by its mean and std (from a first pass over the file), as demucs does",
    )
    p.add_argument("--force", action="store_true", help="overwrite existing stems")


def _add_engine_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shifts", type=int, default=0, help="random test-time shifts (default: 0)")
    p.add_argument("--overlap", type=float, default=0.25, help="chunk overlap fraction (default: 0.25)")
    p.add_argument(
        "--segment", type=float, default=None, help="chunk length in seconds (default: the model's)"
    )
    p.add_argument("-b", "--batch-size", type=int, default=4, help="chunks per forward pass (default: 4)")


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a model file from a training checkpoint or run directory")
    p.add_argument("source", help="run directory or .ckpt file")
    p.add_argument("out", help="model file to write (.sepzoo)")
    p.add_argument("--force", action="store_true", help="overwrite an existing model file")


def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert a checkpoint of another project into a sepzoo model file",
        description="Convert an official demucs model file (.th) or bag of models (.yaml), or a "
        "torchaudio HDemucs state dict, into a sepzoo model file. Nothing in SOURCE is run.",
    )
    p.add_argument("kind", choices=["demucs", "torchaudio"], help="the project that wrote SOURCE")
    p.add_argument("source", help="the checkpoint to convert")
    p.add_argument("out", help="model file to write (.sepzoo)")
    p.add_argument("--sources", nargs="+", help="torchaudio: the stem names, in the model's output order")
    p.add_argument(
        "--sample-rate", type=int, default=44100, help="torchaudio: the model's rate (default: 44100)"
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing model file")


def _add_bag(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bag",
        help="join models (e.g. one per target) into one model file",
        description="Join model files, training checkpoints or run directories into a bag of models: "
        "each source is the average of the members that estimate it (weight 1 each).",
    )
    p.add_argument("members", nargs="+", help="model files, training checkpoints or run directories")
    p.add_argument("-o", "--out", required=True, help="model file to write (.sepzoo)")
    p.add_argument("--sources", nargs="+", help="the bag's source order (default: the members', in order)")
    p.add_argument("--force", action="store_true", help="overwrite an existing model file")


def _add_models(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("models", help="list registered models: name, domain, parameters at default settings")


def _add_toy(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("toy-musdb", help="generate the synthetic MUSDB18-HQ-style toy data set")
    p.add_argument("out", help="output folder")
    p.add_argument("--tracks", type=int, default=8, help="tracks in train/ (default: 8)")
    p.add_argument("--test-tracks", type=int, default=4, help="tracks in test/ (default: 4)")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each track (default: 10)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--force", action="store_true", help="replace an existing data set")


def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="train, evaluate and compare the models of a comparison recipe on the same tracks",
        description="Run a comparison recipe (recipes/compare/*.yaml): train every model and seed "
        "not yet trained (finished runs are reused), evaluate every model and oracle on the same "
        "test tracks, then write the comparison table with confidence intervals and paired tests, "
        "a W&B summary run and report.html.",
    )
    p.add_argument("recipe", help="comparison recipe YAML")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="comparison recipe overrides")
    p.add_argument("-o", "--out", default=None, help="output folder (default: the recipe's `out`)")
    p.add_argument(
        "--force",
        action="store_true",
        help="retrain and re-evaluate everything (without it, finished runs and scores are reused)",
    )
    p.add_argument("--no-report", action="store_true", help="do not write report.html")


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write a self-contained HTML report of comparisons or evaluations",
        description="Write one HTML file (tables, plots, audio excerpts, configs) that opens in a "
        "browser with no server, from comparison folders (`sepzoo compare`) or evaluation folders "
        "(`sepzoo eval -o`).",
    )
    p.add_argument("dirs", nargs="+", metavar="RUN_DIR", help="comparison or evaluation folders")
    p.add_argument("-o", "--out", required=True, help="the HTML file to write")
    p.add_argument("--force", action="store_true", help="overwrite an existing report")


def _add_zoo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "zoo",
        help="the zoo cards as a table; render them to Markdown or record measured results",
    )
    p.add_argument("--cards", default=None, help="zoo card folder (default: the repository's zoo_cards/)")
    p.add_argument("--render", metavar="DIR", default=None, help="write DIR/<name>.md for every card")
    p.add_argument(
        "--record",
        metavar="COMPARISON_DIR",
        default=None,
        help="add the measured results of a comparison to the cards of its models",
    )
    p.add_argument("--force", action="store_true", help="overwrite existing Markdown files")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``sepzoo`` command."""
    parser = argparse.ArgumentParser(
        prog="sepzoo", description="Music source separation experiments and model zoo."
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="say more (debug lines); before the command"
    )
    parser.add_argument(
        "-q", "--quiet", action="count", default=0, help="say less: -q warnings only, -qq errors only"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (
        _add_train,
        _add_eval,
        _add_separate,
        _add_export,
        _add_convert,
        _add_bag,
        _add_models,
        _add_toy,
        _add_compare,
        _add_report,
        _add_zoo,
    ):
        add(sub)
    return parser


class _BelowWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING


class _CurrentStream(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` or ``sys.stderr`` is when a line is logged, so that a
    caller who redirects them after set-up (a test harness, say) still gets the lines."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self._name = name

    @property
    def stream(self) -> object:  # type: ignore[override]
        return getattr(sys, self._name)

    @stream.setter
    def stream(self, value: object) -> None:
        pass  # the stream is looked up at each line


def configure_logging(verbosity: int) -> None:
    """Show the ``sepzoo`` logger's lines: progress on stdout, warnings and errors on stderr.

    Args:
        verbosity: ``-v`` count minus ``-q`` count: 1 or more shows debug lines, 0 progress,
            -1 warnings only, -2 or less errors only.
    """
    level = {1: logging.DEBUG, 0: logging.INFO, -1: logging.WARNING}.get(
        max(-2, min(1, verbosity)), logging.ERROR
    )
    logger = logging.getLogger("sepzoo")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)  # a second call in one process replaces the first
    progress = _CurrentStream("stdout")
    progress.addFilter(_BelowWarning())
    problems = _CurrentStream("stderr")
    problems.setLevel(logging.WARNING)
    detail = "%(name)s: %(message)s" if level <= logging.DEBUG else "%(message)s"
    for handler in (progress, problems):
        handler.setFormatter(logging.Formatter(detail))
        logger.addHandler(handler)
    logger.setLevel(level)


def _ask_for_huge_pages(command: str) -> None:
    """Ask torch's CPU allocator for transparent huge pages before torch loads (``separate``).

    A model's large activations then cost far fewer page faults, which made Demucs-family
    separation 25-35% faster on the CPU. It is read when torch is first imported, so it is set
    here, before any command imports torch; ``THP_MEM_ALLOC_ENABLE=0`` opts out.
    """
    log = logging.getLogger("sepzoo.cli")
    if command != "separate":
        return
    if "torch" in sys.modules:
        log.debug("THP_MEM_ALLOC_ENABLE: torch is already imported, so huge pages are left as they are")
        return
    if "THP_MEM_ALLOC_ENABLE" in os.environ:
        log.debug("THP_MEM_ALLOC_ENABLE=%s, as set by the caller", os.environ["THP_MEM_ALLOC_ENABLE"])
        return
    os.environ["THP_MEM_ALLOC_ENABLE"] = "1"
    log.debug("THP_MEM_ALLOC_ENABLE=1: torch's CPU allocator uses huge pages (set it to 0 to opt out)")


def _run(args: argparse.Namespace) -> int:
    from sepzoo.cli import commands

    handler = getattr(commands, "cmd_" + args.command.replace("-", "_"))
    return int(handler(args) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sepzoo`` console script.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).
    """
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose - args.quiet)
    _ask_for_huge_pages(args.command)
    try:
        return _run(args)
    except SepzooError as exc:
        print(f"sepzoo {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"sepzoo {args.command}: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print(
            f"sepzoo {args.command}: error: out of memory; try a smaller --segment or --batch-size",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
