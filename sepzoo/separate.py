"""``sepzoo separate``: split audio files into stems with a model file or checkpoint."""

from __future__ import annotations

from pathlib import Path

from sepzoo.errors import OutputExistsError, SepzooError


def plan_outputs(
    files: list[str], out: Path, sources: list[str], force: bool, suffix: str = ".wav"
) -> dict[Path, Path]:
    """Map each input to its output folder, refusing existing outputs before any work.

    Args:
        files: The input files.
        out: The output root.
        sources: The model's sources.
        force: Allow overwriting existing stems.
        suffix: Output file suffix. (Default: ``".wav"``)
    """
    from sepzoo.audio import audio_info

    plan: dict[Path, Path] = {}
    for name in files:
        path = Path(name)
        audio_info(path)  # unreadable inputs fail here, before any computation
        stem = path.name.split(".")[0] if path.name.endswith(".stem.mp4") else path.stem
        folder = out / stem
        if folder in plan.values():
            raise SepzooError(f"{path}: two inputs would write to the same folder {folder}; rename one")
        existing = [folder / f"{s}{suffix}" for s in sources if (folder / f"{s}{suffix}").exists()]
        if existing and not force:
            raise OutputExistsError(f"{existing[0]}: already exists; pass --force to overwrite")
        plan[path] = folder
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SepzooError(f"{out}: cannot create output folder ({exc.strerror})") from None
    return plan


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
) -> list[Path]:
    """Separate each file into ``out/<file stem>/<source>.wav``.

    Args:
        files: Audio files (mono or stereo, any sample rate).
        model_spec: A model file, training checkpoint or run directory.
        out: The output root.
        shifts: Random test-time shifts. (Default: ``0``)
        overlap: Chunk overlap. (Default: ``0.25``)
        segment: Chunk length in seconds. (Default: the model's)
        batch_size: Chunks per forward pass. (Default: ``4``)
        device: ``"cpu"`` or ``"cuda"``. (Default: ``"cpu"``)
        force: Overwrite existing stems. (Default: ``False``)

    Returns:
        The output folders, one per input.
    """
    import time

    from sepzoo.audio import read_audio, write_audio
    from sepzoo.checkpoint import load_separator
    from sepzoo.inference import apply_model, resolve_device

    out = Path(out)
    device = str(resolve_device(device))
    model = load_separator(model_spec)
    if model.needs_references:
        raise SepzooError(
            f"{model_spec}: an oracle needs the true stems; score it with `sepzoo eval` instead"
        )
    plan = plan_outputs(files, out, list(model.sources), force)
    model = model.to(device).eval()
    for path, folder in plan.items():
        started = time.perf_counter()
        mix, _ = read_audio(path, sample_rate=model.sample_rate, channels=model.audio_channels)
        estimate = apply_model(
            model,
            mix,
            segment=segment,
            overlap=overlap,
            shifts=shifts,
            batch_size=batch_size,
            device=device,
            progress=True,
        )  # S, C, T
        for source, stem in zip(model.sources, estimate):
            write_audio(folder / f"{source}.wav", stem, model.sample_rate)
        seconds = mix.shape[-1] / model.sample_rate
        print(
            f"{path}: {seconds:.1f} s separated into {len(model.sources)} stems in "
            f"{time.perf_counter() - started:.1f} s -> {folder}"
        )
    return list(plan.values())
