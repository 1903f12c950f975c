"""Import of Open-Unmix model folders (sigsep/open-unmix-pytorch, the ``openunmix`` package).

A folder that ``openunmix.utils.load_separator`` loads holds, per target, ``<target>.json`` (the
training arguments, under ``"args"``) and ``<target>.pth`` or ``<target>-<hash>.pth`` (the
state dict of one ``openunmix.model.OpenUnmix``), and one ``separator.json`` with the STFT and
the sample rate (``sample_rate``, ``nfft``, ``nhop``, ``nb_channels``). Every target found
becomes one network of a single :class:`~sepzoo.models.open_unmix.OpenUnmix`.

What the converted model computes is what ``load_separator`` builds:

* one 3-layer bidirectional LSTM network per target, reading the bins below the one its
  ``input_mean`` ends at (``max_bin``);
* a centred STFT padded by reflection, as ``openunmix.transforms.TorchSTFT`` pads;
* the multichannel Wiener filter with the loader's settings, which are arguments of
  ``load_separator`` rather than contents of the folder: ``niter`` EM rounds on windows of
  ``wiener_win_len`` frames, with or without the ``residual`` source (here it takes part in the
  filter and is not an output stem);
* whole tracks at once (no chunking), as ``openunmix`` separates them.

Key mapping (``openunmix`` name -> ours, under ``target_networks.<target>.``):

============================  =========================
``fc1``                       ``encoder``
``bn1``                       ``encoder_norm``
``lstm``                      ``lstm``
``fc2`` / ``bn2``             ``hidden_layer`` / ``hidden_norm``
``fc3`` / ``bn3``             ``decoder`` / ``decoder_norm``
``input_mean``                ``input_shift``
``input_scale``               ``input_scale``
``output_scale``              ``output_scale``
``output_mean``               ``output_shift``
============================  =========================

The STFT windows and sample-rate buffers some releases store are constants of the transform,
not weights, and are skipped; any other key that does not map is refused by name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from sepzoo import DEFAULT_SOURCES
from sepzoo.convert import rename_state
from sepzoo.errors import CheckpointError, ConfigError
from sepzoo.models import create_model
from sepzoo.models.files import safe_load
from sepzoo.models.open_unmix import OpenUnmix

SEPARATOR_FILE = "separator.json"

_LAYERS = {
    "fc1": "encoder",
    "bn1": "encoder_norm",
    "lstm": "lstm",
    "fc2": "hidden_layer",
    "bn2": "hidden_norm",
    "fc3": "decoder",
    "bn3": "decoder_norm",
}
_VECTORS = {
    "input_mean": "input_shift",
    "input_scale": "input_scale",
    "output_scale": "output_scale",
    "output_mean": "output_shift",
}
# Constants of openunmix's transforms that some saved state dicts carry along with the weights.
_CONSTANTS = re.compile(r"^(stft|transform\.\d+)\.window$|^sample_rate$")


def rename_key(key: str) -> str | None:
    """Our name, within one target network, for a key of ``openunmix.model.OpenUnmix``.

    Args:
        key: The key in the target's ``.pth`` state dict, e.g. ``"fc1.weight"``.
    """
    if key in _VECTORS:
        return _VECTORS[key]
    layer, dot, rest = key.partition(".")
    return f"{_LAYERS[layer]}.{rest}" if dot and layer in _LAYERS else None


def find_targets(folder: Path) -> list[str]:
    """The targets of an Open-Unmix folder: every ``<target>.json`` beside ``separator.json``,
    MUSDB's sources in their usual order first, then the others by name.

    Args:
        folder: The model folder.
    """
    names = [path.stem for path in folder.glob("*.json") if path.name != SEPARATOR_FILE]
    musdb = [name for name in DEFAULT_SOURCES if name in names]
    return musdb + sorted(name for name in names if name not in musdb)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        content = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file; an Open-Unmix model folder needs it") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(content, dict):
        raise CheckpointError(f"{path}: expected a JSON object, found {type(content).__name__}")
    return content


def _field(content: Mapping[str, Any], key: str, path: Path, number: bool = False) -> Any:
    value = content.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float) if number else int):
        raise CheckpointError(
            f"{path}: {key} must be {'a number' if number else 'an integer'}, got {value!r}"
        )
    return value


def _weights_file(folder: Path, target: str) -> Path:
    # openunmix takes the first match of <target>*.pth; a name must not stand for another target's
    # file ("bass" must not take "bass_guitar.pth"), so only <target>.pth and <target>-<hash>.pth.
    pattern = re.compile(rf"{re.escape(target)}(-\w+)?")
    found = sorted(path for path in folder.glob("*.pth") if pattern.fullmatch(path.stem))
    if not found:
        raise CheckpointError(
            f"{folder}: no weights for target {target!r} ({target}.pth or {target}-<hash>.pth)"
        )
    return found[0]


def _target_state(path: Path) -> dict[str, Tensor]:
    state = safe_load(path)
    if not isinstance(state, Mapping) or not all(isinstance(value, Tensor) for value in state.values()):
        raise CheckpointError(f"{path}: expected the state dict of one Open-Unmix target (names to tensors)")
    return {key: value for key, value in state.items() if not _CONSTANTS.match(key)}


def convert_folder(
    folder: str | Path,
    niter: int = 1,
    wiener_win_len: int | None = 300,
    residual: bool = False,
) -> OpenUnmix:
    """Convert the Open-Unmix model folder ``folder`` into one sepzoo model.

    Args:
        folder: The folder ``openunmix.utils.load_separator`` reads.
        niter: Wiener-filter EM rounds, as ``load_separator``'s ``niter``. (Default: ``1``)
        wiener_win_len: Frames filtered together, or ``None`` for whole tracks.
            (Default: ``300``)
        residual: Let the mixture minus the targets take part in the filter.
            (Default: ``False``)

    Raises:
        ConfigError: ``niter`` or ``wiener_win_len`` is out of range.
        CheckpointError: The folder, ``separator.json`` or a target's files are missing or
            unreadable, the targets disagree with the separator, or a key does not map.
    """
    if niter < 0:
        raise ConfigError(f"niter must be >= 0, got {niter}")
    if wiener_win_len is not None and wiener_win_len < 1:
        raise ConfigError(f"wiener_win_len must be a positive number of frames or None, got {wiener_win_len}")
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(
            f"{folder}: not a folder; an Open-Unmix model is a folder of .json and .pth files"
        )
    separator_path = folder / SEPARATOR_FILE
    separator = _read_json(separator_path)
    sample_rate = _field(separator, "sample_rate", separator_path, number=True)
    n_fft = _field(separator, "nfft", separator_path)
    hop_length = _field(separator, "nhop", separator_path)
    channels = _field(separator, "nb_channels", separator_path)
    if float(sample_rate) != int(sample_rate):
        raise CheckpointError(
            f"{separator_path}: sample_rate must be a whole number of Hz, got {sample_rate}"
        )
    targets = find_targets(folder)
    if not targets:
        raise CheckpointError(f"{folder}: no <target>.json beside {SEPARATOR_FILE}")

    states, files, hidden_sizes, max_bins = {}, {}, set(), set()
    for target in targets:
        args_path = folder / f"{target}.json"
        args = _read_json(args_path).get("args")
        if not isinstance(args, Mapping):
            raise CheckpointError(f"{args_path}: expected the training arguments under 'args'")
        if _field(args, "nfft", args_path) != n_fft or _field(args, "nb_channels", args_path) != channels:
            raise CheckpointError(
                f"{args_path}: nfft {args['nfft']} and nb_channels {args['nb_channels']} differ from "
                f"{separator_path}'s {n_fft} and {channels}"
            )
        hidden_sizes.add(_field(args, "hidden_size", args_path))
        weights = files[target] = _weights_file(folder, target)
        states[target] = _target_state(weights)
        mean = states[target].get("input_mean")
        if mean is None or mean.dim() != 1:
            raise CheckpointError(f"{weights}: no input_mean vector; not an Open-Unmix target state dict")
        max_bins.add(mean.shape[0])
    if len(hidden_sizes) > 1 or len(max_bins) > 1:
        raise CheckpointError(
            f"{folder}: the targets differ in hidden_size {sorted(hidden_sizes)} or bandwidth "
            f"{sorted(max_bins)} bins; convert them one folder each"
        )
    (hidden_size,), (max_bin,) = hidden_sizes, max_bins
    bins = n_fft // 2 + 1
    if not 0 < max_bin <= bins:
        raise CheckpointError(f"{folder}: input_mean has {max_bin} bins, the STFT only {bins}")
    model = create_model(
        "open_unmix",
        sources=targets,
        n_fft=n_fft,
        hop_length=hop_length,
        hidden_size=hidden_size,
        lstm_layers=3,
        bidirectional=True,
        # Half a bin below the next one: the bandwidth whose last bin is max_bin - 1.
        bandwidth=None if max_bin == bins else (max_bin - 0.5) * int(sample_rate) / n_fft,
        wiener_iterations=niter,
        wiener_residual=residual,
        wiener_window=wiener_win_len,
        pad_mode="reflect",
        sample_rate=int(sample_rate),
        audio_channels=channels,
        segment=None,
    )
    ours = model.state_dict()
    state = {}
    for target, target_state in states.items():
        prefix = f"target_networks.{target}."
        expected = {key[len(prefix) :]: value for key, value in ours.items() if key.startswith(prefix)}
        for key, value in rename_state(target_state, rename_key, expected, str(files[target])).items():
            state[prefix + key] = value
    model.load_state_dict(state)
    return model


__all__ = ["SEPARATOR_FILE", "convert_folder", "find_targets", "rename_key"]
