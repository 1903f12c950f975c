"""Experiment loggers: W&B (online when configured, offline otherwise), CSV or TensorBoard.

W&B never blocks, prompts or needs a network: unless the user has configured an API key (the
``WANDB_API_KEY`` variable or a ``wandb login`` entry in ``~/.netrc``), or asked for
``logger.mode=online``, runs are written offline under the run directory, to be uploaded later
with ``wandb sync``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sepzoo.io.wandb import resolve_wandb_mode, wandb_settings

EXAMPLE_SECONDS = 10.0


def build_logger(
    kind: str,
    run_dir: Path,
    run_name: str,
    project: str = "sepzoo",
    entity: str | None = None,
    group: str | None = None,
    tags: list[str] | None = None,
    mode: str = "auto",
    notes: str | None = None,
    config: dict[str, Any] | None = None,
    resume_id: str | None = None,
) -> Any:
    """Build the Lightning logger a recipe asks for.

    With ``kind="wandb"`` and ``mode="disabled"`` no W&B run is started: the metrics go to a
    :class:`~lightning.pytorch.loggers.CSVLogger` under ``run_dir/logs`` instead, as with
    ``kind="csv"``, so a run without W&B still keeps its curves.

    Args:
        kind: ``"wandb"``, ``"csv"`` or ``"tensorboard"``.
        run_dir: The run directory; logs go below it.
        run_name: The run's display name (and W&B run id stem).
        project: W&B project. (Default: ``"sepzoo"``)
        entity: W&B entity (team or user). (Default: ``None``)
        group: W&B group. (Default: ``None``)
        tags: W&B tags. (Default: ``None``)
        mode: ``"auto"``, ``"online"``, ``"offline"`` or ``"disabled"``. (Default: ``"auto"``)
        notes: W&B run notes. (Default: ``None``)
        config: The resolved recipe, stored as the W&B run config. (Default: ``None``)
        resume_id: W&B run id to continue when resuming. (Default: ``None``)
    """
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger

    wandb_mode = resolve_wandb_mode(mode) if kind == "wandb" else None
    if kind == "csv" or wandb_mode == "disabled":
        return CSVLogger(save_dir=str(run_dir), name="logs", version="")
    if kind == "tensorboard":
        return TensorBoardLogger(save_dir=str(run_dir), name="logs", version="")
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_CONSOLE", "off")
    logger = WandbLogger(
        name=run_name,
        save_dir=str(run_dir),
        project=project,
        entity=entity,
        group=group,
        tags=list(tags or []),
        notes=notes,
        mode=wandb_mode,
        id=resume_id,
        resume="allow" if resume_id else None,
        log_model=False,
        settings=wandb_settings(),
    )
    if config is not None:
        logger.experiment.config.update(config, allow_val_change=True)
    return logger


def spectrogram_figure(waves: dict[str, Tensor], sample_rate: int) -> Any:
    """A matplotlib figure with one log-magnitude spectrogram per named waveform.

    Args:
        waves: Mono or stereo waveforms ``[C, T]`` by title.
        sample_rate: Their sample rate.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(waves), 1, figsize=(8, 2.2 * len(waves)), squeeze=False)
    window = torch.hann_window(2048)
    for ax, (title, wave) in zip(axes[:, 0], waves.items()):
        mono = wave.float().mean(0).cpu()
        spec = torch.stft(mono, 2048, 512, window=window, return_complex=True).abs()
        db = 20 * torch.log10(spec + 1e-5)
        ax.imshow(
            db.numpy(),
            origin="lower",
            aspect="auto",
            vmin=float(db.max()) - 80,
            vmax=float(db.max()),
            extent=(0, mono.shape[-1] / sample_rate, 0, sample_rate / 2000),
        )
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("kHz")
    axes[-1, 0].set_xlabel("seconds")
    fig.tight_layout()
    return fig


def log_examples(task: Any, track: str, mix: Tensor, estimate: Tensor, reference: Tensor) -> None:
    """Log one validation track's audio and spectrograms to whatever logger the task has.

    W&B gets ``wandb.Audio`` and ``wandb.Image`` media; TensorBoard gets audio and figures; the
    CSV logger gets WAV and PNG files under ``<run>/logs/media/``.

    Args:
        task: The :class:`~sepzoo.training.task.SeparationTask` (gives the logger, step and sources).
        track: The track's name.
        mix: The mixture ``[C, T]``.
        estimate: The estimated stems ``[S, C, T]``.
        reference: The true stems ``[S, C, T]``.
    """
    import matplotlib.pyplot as plt
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger

    sample_rate = task.model.sample_rate
    keep = int(EXAMPLE_SECONDS * sample_rate)
    mix, estimate, reference = mix[..., :keep].cpu(), estimate[..., :keep].cpu(), reference[..., :keep].cpu()
    step = task.global_step
    slug = "".join(c if c.isalnum() else "_" for c in track)[:60]
    for logger in task.loggers:
        for index, source in enumerate(task.model.sources):
            figure = spectrogram_figure(
                {
                    "mixture": mix,
                    f"{source} estimate": estimate[index],
                    f"{source} reference": reference[index],
                },
                sample_rate,
            )
            clips = {"mixture": mix, "estimate": estimate[index], "reference": reference[index]}
            if isinstance(logger, WandbLogger):
                import wandb

                media: dict[str, Any] = {
                    f"examples/{slug}/{source}/{kind}": wandb.Audio(clip.T.numpy(), sample_rate=sample_rate)
                    for kind, clip in clips.items()
                }
                media[f"examples/{slug}/{source}/spectrogram"] = wandb.Image(figure)
                logger.experiment.log({**media, "trainer/global_step": step})
            elif isinstance(logger, TensorBoardLogger):
                for kind, clip in clips.items():
                    logger.experiment.add_audio(f"{slug}/{source}/{kind}", clip.mean(0), step, sample_rate)
                logger.experiment.add_figure(f"{slug}/{source}/spectrogram", figure, step)
            elif isinstance(logger, CSVLogger):
                from sepzoo.io.audio import write_audio

                folder = Path(logger.log_dir) / "media" / f"step-{step:08d}" / slug
                for kind, clip in clips.items():
                    write_audio(folder / f"{source}_{kind}.wav", clip, sample_rate, subtype="FLOAT")
                figure.savefig(folder / f"{source}_spectrogram.png", dpi=80)
            plt.close(figure)
