"""The handlers behind each ``sepzoo`` sub-command (argument parsing lives in ``main``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def _engine_options(args: argparse.Namespace) -> dict[str, Any]:
    """The inference engine's options and the device, as ``eval`` and ``separate`` take them.

    Args:
        args: Parsed arguments of a command with the engine's options.
    """
    return {
        "shifts": args.shifts,
        "tta": args.tta,
        "overlap": args.overlap,
        "segment": args.segment,
        "batch_size": args.batch_size,
        "device": args.device,
    }


def cmd_train(args: argparse.Namespace) -> int:
    """``sepzoo train RECIPE [key=value ...] [--resume] [--force]``.

    Args:
        args: Parsed arguments.
    """
    from sepzoo.training.recipe import load_recipe
    from sepzoo.training.rundir import DONE_MARKER
    from sepzoo.training.train import run_directory, train

    if args.print_run_dir or args.reuse:
        planned = run_directory(load_recipe(args.recipe, args.overrides))
        if args.print_run_dir:
            print(planned)
            return 0
        if (planned / DONE_MARKER).is_file():
            print(f"{planned}: this run already finished; reusing it (pass --force to train again)")
            return 0
    run_dir = train(args.recipe, args.overrides, resume=args.resume, force=args.force)
    from sepzoo.training.rundir import is_launcher_child

    if not is_launcher_child():
        print(f"run directory: {run_dir}")
        print(f"  resolved config: {run_dir / 'config.yaml'}")
        print(f"  checkpoints:     {run_dir / 'checkpoints'} (best.ckpt, last.ckpt)")
        wandb_dir = run_dir / "wandb"
        if wandb_dir.is_dir():
            print(
                f"  W&B run:         {wandb_dir} "
                f"(offline runs upload with `wandb sync {wandb_dir}/offline-run-*`)"
            )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """``sepzoo eval (-n MODEL | --estimates DIR) --root DIR [--subset test] -o OUT``.

    Args:
        args: Parsed arguments.
    """
    from sepzoo.errors import SepzooError
    from sepzoo.evaluation.evaluate import evaluate, format_table, format_track_table

    if (args.model is None) == (args.estimates is None):
        raise SepzooError("eval: give a model with -n MODEL or estimates with --estimates DIR (one of them)")
    if args.tracks is not None and args.tracks < 1:
        raise SepzooError(f"--tracks {args.tracks}: expected a positive number of tracks")
    if args.model is not None:
        from sepzoo.models.onnx_model import check_backend

        check_backend(args.model, args.backend)
    report = evaluate(
        args.model,
        args.root,
        args.subset,
        args.out,
        estimates=args.estimates,
        save_estimates=args.save_estimates,
        max_tracks=args.tracks,
        **_engine_options(args),
        force=args.force,
        wandb=args.wandb,
        wandb_project=args.wandb_project,
    )
    print(format_track_table(report))
    print()
    print(format_table(report))
    if report["resumed_tracks"]:
        print(f"({report['resumed_tracks']} track(s) were already scored in {args.out}; not scored again)")
    print(f"per-track museval JSON: {args.out}/{args.subset}/; summary: {args.out}/summary.json")
    if "wandb_dir" in report:
        print(f"W&B run: {report['wandb_dir']}")
    return 0


def cmd_separate(args: argparse.Namespace) -> int:
    """``sepzoo separate FILE... -n MODEL -o OUT [--two-stems S] [--flac] [--int24|--float32] ...``.

    The entry point has already asked torch for huge pages (see ``sepzoo -v separate``).

    Args:
        args: Parsed arguments.
    """
    from sepzoo.engine.separate import OutputFormat, separate_files
    from sepzoo.models.onnx_model import check_backend

    check_backend(args.model, args.backend)

    output_format = OutputFormat(
        flac=args.flac, int24=args.int24, float32=args.float32, clip_mode=args.clip_mode
    )
    separate_files(
        args.files,
        args.model,
        args.out,
        **_engine_options(args),
        force=args.force,
        two_stems=args.two_stems,
        output_format=output_format,
        jobs=args.jobs,
        normalize=args.normalize,
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """``sepzoo export RUN_OR_CKPT OUT``.

    Args:
        args: Parsed arguments.
    """
    from sepzoo.models.files import export_model_file

    path, used_ema = export_model_file(args.source, args.out, force=args.force)
    weights = "EMA weights" if used_ema else "trained weights (EMA was off)"
    print(f"wrote {path} ({weights})")
    return 0


def cmd_export_onnx(args: argparse.Namespace) -> int:
    """``sepzoo export-onnx MODEL OUT [--segment S] [--quantize int8] [--force]``.

    Args:
        args: Parsed arguments.
    """
    from sepzoo.export.onnx import export_onnx

    manifest = export_onnx(
        args.model, args.out, segment=args.segment, quantize=args.quantize, force=args.force
    )
    size = sum((Path(args.out) / name).stat().st_size for name in manifest["files"])
    shown = f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.1f} kB"
    what = "int8 (dynamic quantisation)" if manifest["quantize"] else "fp32"
    print(
        f"wrote {args.out}: {manifest['architecture']} as {what}, graph {shown} "
        f"({', '.join(manifest['files'])}), {manifest['segment_samples']} samples per chunk "
        f"({manifest['segment']:g} s of track) at {manifest['sample_rate']} Hz"
    )
    label = "relative L2 vs torch (measured, not a limit)" if manifest["quantize"] else "relative L2 vs torch"
    errors = ", ".join(f"{s} {v:.2e}" for s, v in manifest["parity"]["relative_l2"].items())
    print(f"  {label}: {errors}")
    if "fp32_relative_l2" in manifest["parity"]:
        checked = ", ".join(f"{s} {v:.2e}" for s, v in manifest["parity"]["fp32_relative_l2"].items())
        print(f"  fp32 graph before quantisation, relative L2 vs torch: {checked}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    """``sepzoo convert {demucs,torchaudio,msst,openunmix} SRC OUT``.

    Args:
        args: Parsed arguments.
    """
    from sepzoo.io.audio import prepare_output
    from sepzoo.models.bag import BagOfModels
    from sepzoo.models.files import save_model_file

    prepare_output(args.out, args.force)  # refuse before the (possibly slow) conversion
    metadata = {"converted_from": str(args.source), "converted_format": args.kind}
    if args.kind == "demucs":
        from sepzoo.convert.demucs import convert_file

        model = convert_file(args.source)
    elif args.kind == "torchaudio":
        from sepzoo.convert.torchaudio import convert_torchaudio_file

        model = convert_torchaudio_file(args.source, args.sources, args.sample_rate)
    elif args.kind == "msst":
        from sepzoo.convert.msst import convert_checkpoint

        model, provenance = convert_checkpoint(args.source, args.config, args.model_type)
        metadata.update(provenance)
    else:
        from sepzoo.convert.openunmix import convert_folder

        window = args.wiener_win_len or None
        model = convert_folder(args.source, niter=args.niter, wiener_win_len=window, residual=args.residual)
    path = save_model_file(model, args.out, metadata=metadata, force=args.force)
    what = f"bag of {len(model.members)} models" if isinstance(model, BagOfModels) else model.registry_name
    print(
        f"wrote {path}: {what}, {model.num_parameters():,} parameters, sources {', '.join(model.sources)}, "
        f"{model.sample_rate} Hz"
    )
    return 0


def cmd_bag(args: argparse.Namespace) -> int:
    """``sepzoo bag MEMBER... -o OUT [--mode M] [--domain D] [--weights W...]``: join models into one bag.

    Args:
        args: Parsed arguments.
    """
    from sepzoo.errors import SepzooError
    from sepzoo.io.audio import prepare_output
    from sepzoo.models.bag import BagOfModels, Combination
    from sepzoo.models.files import load_separator, save_model_file

    prepare_output(args.out, args.force)
    if args.weights is not None and args.mode != "mean":
        raise SepzooError(f"--weights apply to --mode mean only, not --mode {args.mode}")
    if args.domain == "wave" and (args.n_fft is not None or args.hop is not None):
        raise SepzooError("--n-fft and --hop apply to --domain spec only")
    if args.weights is not None and len(args.weights) != len(args.members):
        raise SepzooError(
            f"--weights {' '.join(args.weights)}: expected one weight per member ({len(args.members)}), "
            f"got {len(args.weights)}"
        )
    try:
        combination = Combination(
            args.mode,
            args.domain,
            2048 if args.n_fft is None else args.n_fft,
            512 if args.hop is None else args.hop,
        )
    except ValueError as exc:
        raise SepzooError(f"--n-fft/--hop: {exc}") from None
    members = []
    for spec in args.members:
        model = load_separator(spec)
        if isinstance(model, BagOfModels):
            raise SepzooError(f"{spec}: is a bag already; give its members one by one")
        members.append(model)
    try:
        sources = args.sources or list(dict.fromkeys(s for m in members for s in m.sources))
        weights = None if args.weights is None else _bag_weights(args.weights, members, sources)
        bag = BagOfModels(members, weights, sources=sources, combination=combination)
    except ValueError as exc:
        raise SepzooError(f"cannot join {', '.join(args.members)}: {exc}") from None
    path = save_model_file(bag, args.out, metadata={"members": list(args.members)}, force=args.force)
    served = ", ".join(f"{s} <- {sum(1 for row in bag.weights if row[i])}" for i, s in enumerate(bag.sources))
    how = f"{args.mode} of {'waveforms' if args.domain == 'wave' else 'spectrograms'}"
    print(f"wrote {path}: bag of {len(members)} models ({how}); members per source: {served}")
    return 0


def _bag_weights(texts: list[str], members: list, sources: list[str]) -> list[list[float]]:
    """Per-member, per-source weights from ``--weights``: one number per member (for each of its
    sources, 0 for the others) or one comma-separated number per bag source."""
    rows = []
    for text, member in zip(texts, members):
        try:
            values = [float(v) for v in text.split(",")]
        except ValueError:
            raise ValueError(f"--weights {text}: expected a number or comma-separated numbers") from None
        if len(values) == 1:
            values = [values[0] if s in member.sources else 0.0 for s in sources]
        elif len(values) != len(sources):
            raise ValueError(
                f"--weights {text}: expected 1 or {len(sources)} numbers (one per source of {sources})"
            )
        rows.append(values)
    return rows


def cmd_models(args: argparse.Namespace) -> int:
    """``sepzoo models``: the registry as a table.

    Args:
        args: Parsed arguments.
    """
    from sepzoo.models import count_parameters, get_model_class, list_models

    rows = []
    for name in list_models():
        rows.append((name, get_model_class(name).domain, f"{count_parameters(name):,}"))
    header = ("name", "domain", "parameters (default settings)")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print(
            "  ".join(
                cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))
            )
        )
    return 0


def cmd_toy_musdb(args: argparse.Namespace) -> int:
    """``sepzoo toy-musdb OUT --tracks N --test-tracks M --seconds S --seed K``.

    Args:
        args: Parsed arguments.
    """
    from sepzoo.data.toy import generate_toy_musdb

    out = generate_toy_musdb(
        args.out,
        tracks=args.tracks,
        test_tracks=args.test_tracks,
        seconds=args.seconds,
        seed=args.seed,
        force=args.force,
        progress=True,
    )
    print(
        f"wrote the toy data set (synthetic; a smoke test of the machinery) to {out}: "
        f"{args.tracks} train and {args.test_tracks} test tracks of {args.seconds:g} s"
    )
    return 0


def cmd_toy_moisesdb(args: argparse.Namespace) -> int:
    """``sepzoo toy-moisesdb OUT --songs N --seconds S --seed K``.

    Args:
        args: Parsed arguments.
    """
    from sepzoo.data.toy_moisesdb import generate_toy_moisesdb

    out = generate_toy_moisesdb(
        args.out, songs=args.songs, seconds=args.seconds, seed=args.seed, force=args.force, progress=True
    )
    print(
        f"wrote the toy MoisesDB set (synthetic; a smoke test of the machinery) to {out}: "
        f"{args.songs} songs of {args.seconds:g} s"
    )
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """``sepzoo compare RECIPE [key=value ...] [-o OUT] [--force] [--no-report]``.

    Args:
        args: Parsed arguments.
    """
    from sepzoo.experiments.compare import run_comparison

    run_comparison(args.recipe, args.overrides, out=args.out, force=args.force, report=not args.no_report)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """``sepzoo report RUN_DIR... -o report.html [--force]``.

    Args:
        args: Parsed arguments.
    """
    from sepzoo.experiments.report import write_report

    path = write_report(args.dirs, args.out, force=args.force)
    print(f"wrote {path}")
    return 0


def cmd_zoo(args: argparse.Namespace) -> int:
    """``sepzoo zoo [--cards DIR] [--render DIR] [--record COMPARISON_DIR] [--force]``.

    Args:
        args: Parsed arguments.
    """
    from sepzoo.experiments.zoo import run_zoo

    return run_zoo(cards=args.cards, render=args.render, record=args.record, force=args.force)
