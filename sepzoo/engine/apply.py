"""The inference engine: apply a separator (or a bag of them) to tracks of any length.

Training validation, ``sepzoo eval`` and ``sepzoo separate`` all call :func:`apply_model`, so a
model is always evaluated the way it is used. The engine

* splits long tracks into overlapping chunks of the model's preferred segment, pads every
  chunk with *real* neighbouring audio up to ``model.valid_length`` (zeros only beyond the
  track's edges), runs the chunks through the model in batches and cross-fades the outputs
  with triangular weights (overlap-add);
* optionally averages over random time shifts of the input (the "shift trick"), with a
  seeded generator so that results are reproducible;
* optionally averages over test-time augmentations (:mod:`sepzoo.engine.tta`: channel flip,
  polarity), each variant undone on its outputs and run at every shift;
* optionally normalises the input by whole-track statistics and undoes it on the outputs;
* combines the members of a :class:`BagOfModels` per source with their weights.

Which chunks run, in which batches, at which shifts, and how their outputs are joined is
decided in :mod:`sepzoo.engine.chunks` (:class:`~sepzoo.engine.chunks.ChunkPlan`), which the
streaming engine asks too; this module only cuts the chunks out of a tensor it holds whole.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import tqdm
from torch import Tensor

from sepzoo.engine.chunks import (
    ChunkPlan,
    EngineSettings,
    OverlapAdd,
    call_model,
    check_engine_options,
    draw_shifts,
    group_batches,
    model_device,
    model_name,
)
from sepzoo.engine.tta import Variant, tta_variants
from sepzoo.models.bag import BagOfModels, combine_members
from sepzoo.models.base import Separator


def apply_model(
    model: Separator | BagOfModels,
    mix: Tensor,
    references: Tensor | None = None,
    *,
    segment: float | None = None,
    overlap: float = 0.25,
    shifts: int = 0,
    transition_power: float = 1.0,
    normalize: bool = False,
    batch_size: int = 4,
    device: str | torch.device | None = None,
    seed: int = 0,
    progress: bool = False,
    tta: str | Sequence[str] | None = None,
) -> Tensor:
    """Separate ``mix`` with ``model``, chunking, shifting and normalising as asked.

    Runs under ``torch.no_grad()`` and leaves the model's train/eval mode alone (set it
    before calling). The model must already be on ``device``.

    Args:
        model: A separator or a bag of separators.
        mix: One track ``[C, T]`` or a batch ``[B, C, T]``.
        references: The true stems ``[S, C, T]`` / ``[B, S, C, T]``, required by models with
            ``needs_references``. (Default: ``None``)
        segment: Chunk length in seconds, overriding each model's own ``segment``. With no
            segment from either, or for models with ``whole_track``, the whole track is
            processed in one call. (Default: ``None``)
        overlap: Fraction of each chunk shared with the next. (Default: ``0.25``)
        shifts: Number of random time shifts (of up to 0.5 s) to average over; 0 disables
            the shift trick. (Default: ``0``)
        transition_power: Exponent of the triangular cross-fade; larger is sharper, must be
            ``>= 1``. (Default: ``1.0``)
        normalize: Normalise the input by the whole track's mean and standard deviation
            (of the channel average) and undo it on the outputs. (Default: ``False``)
        batch_size: Chunks run through the model at once. (Default: ``4``)
        device: Where the model runs; chunks are moved there and results back.
            (Default: ``None``, the device of the model's parameters, else the CPU)
        seed: Seed of the generator drawing the shifts. (Default: ``0``)
        progress: Show a progress bar over chunks on stderr. (Default: ``False``)
        tta: Test-time augmentations (``"flip,polarity"`` or a list of names): every
            combination runs, at every shift, is undone on its stems, and all are averaged
            (:mod:`sepzoo.engine.tta`). For a bag, each member runs every variant.
            (Default: ``None``, none)

    Returns:
        Stems ``[S, C, T]`` (or ``[B, S, C, T]`` for a batch), float32 on ``mix``'s device.
    """
    check_engine_options(overlap, shifts, transition_power, batch_size, segment)
    batched = mix.dim() == 3
    mix, references = _as_batch(model, mix, references)
    variants = tta_variants(tta, model.audio_channels, model_name(model))
    settings = EngineSettings(
        segment=segment,
        overlap=overlap,
        transition_power=transition_power,
        batch_size=batch_size,
        device=None if device is None else torch.device(device),
        progress=progress,
    )
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        if normalize:
            mean, std = _track_statistics(mix)
            mix = (mix - mean) / std
            references = None if references is None else (references - mean.unsqueeze(1)) / std.unsqueeze(1)
        if isinstance(model, BagOfModels):
            stems = combine_members(
                model,
                mix,
                references,
                lambda member, member_references: _apply_shifted(
                    member, mix, member_references, shifts, generator, settings, variants
                ),
            )
        else:
            stems = _apply_shifted(model, mix, references, shifts, generator, settings, variants)
        if normalize:
            stems = stems * std.unsqueeze(1) + mean.unsqueeze(1)
    return stems if batched else stems[0]


def resolve_device(name: str | torch.device) -> torch.device:
    """The device a user named (``-d cpu``, ``-d cuda``, ``-d cuda:1``), checked to exist here.

    Args:
        name: A device name.

    Raises:
        SepzooError: The name is not a device, or no such device is available.
    """
    from sepzoo.errors import SepzooError

    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise SepzooError(f"-d {name}: not a device; expected cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SepzooError(f"-d {name}: no CUDA device is available here; use -d cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SepzooError(f"-d {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise SepzooError(f"-d {name}: expected cpu, cuda or cuda:N")
    return device


def _as_batch(
    model: Separator | BagOfModels, mix: Tensor, references: Tensor | None
) -> tuple[Tensor, Tensor | None]:
    """Check shapes and return float32 ``[B, C, T]`` / ``[B, S, C, T]`` tensors."""
    if mix.dim() not in (2, 3) or mix.shape[-2] != model.audio_channels or mix.shape[-1] == 0:
        raise ValueError(
            f"expected mix of shape [{model.audio_channels}, time] or [batch, {model.audio_channels}, time] "
            f"for {model_name(model)}, got {list(mix.shape)}"
        )
    if not model.needs_references:
        return (mix if mix.dim() == 3 else mix.unsqueeze(0)).float(), None
    if references is None:
        raise ValueError(f"{model_name(model)} needs the reference stems; pass references")
    expected = [*mix.shape[:-2], len(model.sources), *mix.shape[-2:]]
    if list(references.shape) != expected:
        raise ValueError(f"expected references of shape {expected}, got {list(references.shape)}")
    if mix.dim() == 2:
        mix, references = mix.unsqueeze(0), references.unsqueeze(0)
    return mix.float(), references.float().to(mix.device)


def _track_statistics(mix: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation of each track's channel average, shaped ``[B, 1, 1]``."""
    mono = mix.mean(dim=1)  # B, T
    mean = mono.mean(dim=-1)
    # The population std stays defined for one-sample tracks; a silent track keeps scale 1e-8.
    std = mono.std(dim=-1, correction=0).clamp_min(1e-8)
    return mean.view(-1, 1, 1), std.view(-1, 1, 1)


def _apply_shifted(
    model: Separator,
    mix: Tensor,
    references: Tensor | None,
    shifts: int,
    generator: torch.Generator,
    settings: EngineSettings,
    variants: Sequence[Variant] = (Variant(),),
) -> Tensor:
    """Average the outputs over the TTA variants and, within each, ``shifts`` random delays.

    The shifts are drawn once per model and every variant runs all of them, variant after
    variant, the order in which the streaming engine lays out its lanes.
    """
    plan = ChunkPlan(model, settings)
    length = mix.shape[-1]
    total = None
    drawn = draw_shifts(model, shifts, generator)
    for variant in variants:
        for shift in drawn:
            shifted_references = None if references is None else variant.apply(shift.pad(references))
            out = _apply_chunked(plan, variant.apply(shift.pad(mix)), shifted_references, settings)
            out = variant.undo(out[..., shift.delay : shift.delay + length])
            total = out if total is None else total + out
    assert total is not None
    passes = len(variants) * len(drawn)
    return total / passes if passes > 1 else total


def _apply_chunked(
    plan: ChunkPlan, mix: Tensor, references: Tensor | None, settings: EngineSettings
) -> Tensor:
    """Overlap-add the model's outputs over the plan's chunks of the whole input, ``[B, S, C, T]``.

    Each chunk is cut with its real neighbouring audio as context and the outputs are
    cross-faded with the plan's window; chunks run in the batches :func:`group_batches` forms.
    """
    model = plan.model
    length = mix.shape[-1]
    device = model_device(model, settings.device)
    batch, channels = mix.shape[:2]
    accumulator = OverlapAdd([batch, len(model.sources), channels], length, plan.window, device=mix.device)
    chunks = list(plan.chunks(length))
    bar = tqdm.tqdm(total=len(chunks), unit="chunk", disable=not settings.progress, leave=False)
    with bar:
        for group in group_batches(chunks, settings.batch_size):
            chunk_mix = torch.cat([chunk.cut(mix) for chunk in group])  # len(group) * B, C, P
            chunk_references = None
            if references is not None:
                chunk_references = torch.cat([chunk.cut(references) for chunk in group])
            out = call_model(model, chunk_mix, chunk_references, device)  # len(group) * B, S, C, P
            for index, chunk in enumerate(group):
                piece = out[index * batch : (index + 1) * batch]
                accumulator.add(chunk.crop(piece), chunk.offset)
            bar.update(len(group))
    return accumulator.result()
