"""State dicts of ``torchaudio.models.HDemucs`` (e.g. its ``HDEMUCS_HIGH_MUSDB_PLUS`` bundle).

torchaudio's Hybrid Demucs is the official ``demucs.hdemucs.HDemucs`` with renamed lists and
a fixed set of options (complex as channels, no band split, no Wiener filter). Its saved state
dict records neither the source names nor the sample rate, so the caller gives them; the
architecture's sizes are read off the tensors' shapes, and the other options are torchaudio's
defaults.

Key mapping, torchaudio -> official ``HDemucs`` (then as :mod:`sepzoo.convert.demucs` maps those):

================================  =============================================================
torchaudio                        official ``HDemucs``
================================  =============================================================
``freq_encoder.*``                ``encoder.*``
``freq_decoder.*``                ``decoder.*``
``time_encoder.*``                ``tencoder.*``
``time_decoder.*``                ``tdecoder.*``
``freq_emb.*``                    ``freq_emb.*``
``time_encoder.k.norm1.*`` of the  dropped: torchaudio builds a norm in the time layer that only
layer where the branches merge    hands its convolution to the frequency branch, and never uses it
================================  =============================================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from sepzoo.convert import rename_state
from sepzoo.convert.demucs import KEY_MAPPERS
from sepzoo.errors import CheckpointError
from sepzoo.models import create_model
from sepzoo.models.base import Separator
from sepzoo.models.files import safe_load
from sepzoo.models.hybrid_demucs import plan_layers

PREFIXES = {
    "freq_encoder": "encoder",
    "freq_decoder": "decoder",
    "time_encoder": "tencoder",
    "time_decoder": "tdecoder",
    "freq_emb": "freq_emb",
}
"""torchaudio's module lists and the official names they stand for."""

STRIDE = 4
"""torchaudio's default stride (the option it was trained with; not recoverable from shapes)."""


def convert_torchaudio_file(
    path: str | Path, sources: Sequence[str] | None, sample_rate: int = 44100
) -> Separator:
    """Convert a saved ``torchaudio.models.HDemucs`` state dict.

    Args:
        path: The file written by ``torch.save(model.state_dict(), path)``.
        sources: The stem names, in the model's output order.
        sample_rate: The model's sample rate in Hz. (Default: ``44100``)

    Raises:
        CheckpointError: The file is unreadable or not such a state dict, the number of
            sources differs from the model's, or a key does not map.
    """
    path = Path(path)
    if not sources:
        raise CheckpointError(f"{path}: a torchaudio state dict records no source names; pass --sources")
    state = safe_load(path)
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a torchaudio HDemucs state dict (names to tensors)")
    kwargs = _architecture(state, path, list(sources), sample_rate)
    model = create_model("hdemucs", **kwargs)
    official = _official_keys(state, kwargs)
    model.load_state_dict(
        rename_state(official, KEY_MAPPERS["hdemucs"](kwargs), model.state_dict(), str(path))
    )
    return model


def _shape(state: Mapping[str, Tensor], key: str, path: Path) -> tuple[int, ...]:
    if key not in state:
        raise CheckpointError(f"{path}: not a torchaudio HDemucs state dict; it lacks {key}")
    return tuple(state[key].shape)


def _architecture(
    state: Mapping[str, Tensor], path: Path, sources: list[str], sample_rate: int
) -> dict[str, Any]:
    """The model's arguments, read off the shapes of its tensors."""
    first = _shape(state, "freq_encoder.0.conv.weight", path)  # channels, 2 * audio channels, kernel, 1
    channels, audio_channels, kernel_size = first[0], first[1] // 2, first[2]
    depth = len({key.split(".")[1] for key in state if key.startswith("freq_encoder.")})
    second = _shape(state, "freq_encoder.1.conv.weight", path) if depth > 1 else (2 * channels,)
    growth = second[0] / channels
    rows = (
        _shape(state, "freq_emb.embedding.weight", path)[0] if "freq_emb.embedding.weight" in state else None
    )
    nfft = rows * STRIDE * 2 if rows else 4096
    outermost = _shape(state, f"freq_decoder.{depth - 1}.conv_tr.weight", path)  # in, S * 2C, kernel, 1
    model_sources = outermost[1] // (2 * audio_channels)
    if model_sources != len(sources):
        raise CheckpointError(
            f"{path}: the model separates {model_sources} sources, but {len(sources)} were given "
            f"({', '.join(sources)})"
        )
    kwargs: dict[str, Any] = {
        "sources": sources, "audio_channels": audio_channels, "channels": channels, "depth": depth,
        "nfft": nfft, "kernel_size": kernel_size, "sample_rate": sample_rate,
        "freq_emb": 0.2 if rows else 0.0,
    }  # fmt: skip
    if growth != 2:
        kwargs["growth"] = growth
    return kwargs


def _official_keys(state: Mapping[str, Tensor], kwargs: Mapping[str, Any]) -> dict[str, Tensor]:
    """torchaudio's keys renamed to the official ones, the merge layer's unused norm dropped."""
    plans = plan_layers(int(kwargs["nfft"]), int(kwargs["depth"]), int(kwargs["kernel_size"]), STRIDE, 2)
    merges = [index for index, plan in enumerate(plans) if plan.last_frequency]
    unused = {f"time_encoder.{index}.norm1.{part}" for index in merges for part in ("weight", "bias")}
    renamed = {}
    for key, value in state.items():
        if key in unused:
            continue
        head, _, rest = key.partition(".")
        renamed[f"{PREFIXES.get(head, head)}.{rest}" if rest else key] = value
    return renamed


__all__ = ["PREFIXES", "convert_torchaudio_file"]
