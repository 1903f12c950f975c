"""Import of SCNet checkpoints trained with Music-Source-Separation-Training (MSST,
ZFTurbo/Music-Source-Separation-Training, ``models/scnet/scnet.py``, ``model_type: scnet``).

An MSST model is a YAML configuration (``configs/config_musdb18_scnet.yaml`` and its kin) and a
``.ckpt`` file holding the module's state dict. :func:`kwargs_from_msst` turns the configuration
into the init arguments of :class:`sepzoo.models.scnet.SCNet` and :func:`rename_msst_key` names
each state-dict key as sepzoo does; :func:`sepzoo.convert.msst.convert_checkpoint` (``sepzoo
convert msst --model-type scnet``) reads the files and loads the weights through
:func:`sepzoo.convert.rename_state`, which refuses keys that do not map, keys nothing maps to and
shapes that differ.

Configuration -> init arguments:

* ``model.<key>``: the module's own arguments, same names (``sources``, ``audio_channels``,
  ``dims``, ``nfft``, ``hop_size``, ``win_size``, ``normalized``, ``band_SR``, ``band_stride``,
  ``band_kernel``, ``conv_depths``, ``compress``, ``conv_kernel``, ``num_dplayer``, ``expand``);
  any other key is refused, naming the closest valid one. MSST's module does not standardise
  its input, so ``normalize_input`` is ``False``.
* the stem names: ``[training.target_instrument]`` when it is set, else ``training.instruments``,
  as MSST labels the module's outputs, else ``model.sources``; their number must be that of
  ``model.sources`` when both are given.
* ``audio.sample_rate`` -> ``sample_rate``; ``audio.chunk_size / audio.sample_rate`` ->
  ``segment`` (the training chunk, 11 s in MSST's configurations); ``audio.num_channels`` must
  agree with ``model.audio_channels``.

Key mapping, MSST -> sepzoo (``i``: encoder block; ``k``: decoder block, in the order both run,
innermost first; ``b``: band; ``l``: layer; ``j``: dual-path layer; a ``module.`` prefix left by
data-parallel training is dropped):

================================================  =================================================
MSST                                              sepzoo
================================================  =================================================
``encoder.i.SDlayer.convs.b``                     ``encoder.i.downsample.convs.b``
``encoder.i.conv_modules.b.layers.l.0``           ``encoder.i.band_convs.b.layers.l.norm``
``encoder.i.conv_modules.b.layers.l.1``           ``encoder.i.band_convs.b.layers.l.gated_conv``
``encoder.i.conv_modules.b.layers.l.3``           ``encoder.i.band_convs.b.layers.l.depthwise_conv``
``encoder.i.conv_modules.b.layers.l.4``           ``encoder.i.band_convs.b.layers.l.hidden_norm``
``encoder.i.conv_modules.b.layers.l.6``           ``encoder.i.band_convs.b.layers.l.output_conv``
``encoder.i.globalconv``                          ``encoder.i.full_band_conv``
``decoder.k.0.conv``                              ``decoder.k.fusion.conv``
``decoder.k.1.convtrs.b``                         ``decoder.k.upsample.convs.b``
``separation_net.dp_modules.j.norm_layers.0|1``   ``dual_path.layers.j.freq_path|time_path.norm``
``separation_net.dp_modules.j.lstm_layers.0|1``   ``dual_path.layers.j.freq_path|time_path.lstm``
``separation_net.dp_modules.j.linear_layers.0|1`` ``dual_path.layers.j.freq_path|time_path.projection``
================================================  =================================================

There is no installable reference implementation, so the mapping is tested on key names and
shapes (every key of MSST's layout, derived from its module structure, lands on a key of the
same shape), not on the numbers a converted model computes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sepzoo.convert.msst import check_model_keys, config_section, output_stems

MODEL_KEYS: tuple[str, ...] = (
    "sources", "audio_channels", "dims", "nfft", "hop_size", "win_size", "normalized", "band_SR",
    "band_stride", "band_kernel", "conv_depths", "compress", "conv_kernel", "num_dplayer", "expand",
)  # fmt: skip
"""The arguments of MSST's SCNet module, the keys its YAML ``model`` section may hold."""

_CONV_LAYER_SLOTS = {
    "0": "norm",
    "1": "gated_conv",
    "3": "depthwise_conv",
    "4": "hidden_norm",
    "6": "output_conv",
}
_PATHS = {"0": "freq_path", "1": "time_path"}
_DUAL_PATH_PARTS = {"norm_layers": "norm", "lstm_layers": "lstm", "linear_layers": "projection"}
_LSTM_PARAMETER = r"(?:weight|bias)_(?:ih|hh)_l0(?:_reverse)?"

_RULES: list[tuple[re.Pattern[str], Any]] = [
    (
        re.compile(r"encoder\.(\d+)\.SDlayer\.convs\.(\d+)\.(weight|bias)"),
        lambda m: f"encoder.{m[1]}.downsample.convs.{m[2]}.{m[3]}",
    ),
    (
        re.compile(r"encoder\.(\d+)\.conv_modules\.(\d+)\.layers\.(\d+)\.([01346])\.(weight|bias)"),
        lambda m: f"encoder.{m[1]}.band_convs.{m[2]}.layers.{m[3]}.{_CONV_LAYER_SLOTS[m[4]]}.{m[5]}",
    ),
    (
        re.compile(r"encoder\.(\d+)\.globalconv\.(weight|bias)"),
        lambda m: f"encoder.{m[1]}.full_band_conv.{m[2]}",
    ),
    (
        re.compile(r"decoder\.(\d+)\.0\.conv\.(weight|bias)"),
        lambda m: f"decoder.{m[1]}.fusion.conv.{m[2]}",
    ),
    (
        re.compile(r"decoder\.(\d+)\.1\.convtrs\.(\d+)\.(weight|bias)"),
        lambda m: f"decoder.{m[1]}.upsample.convs.{m[2]}.{m[3]}",
    ),
    (
        re.compile(r"separation_net\.dp_modules\.(\d+)\.(norm_layers|linear_layers)\.([01])\.(weight|bias)"),
        lambda m: f"dual_path.layers.{m[1]}.{_PATHS[m[3]]}.{_DUAL_PATH_PARTS[m[2]]}.{m[4]}",
    ),
    (
        re.compile(rf"separation_net\.dp_modules\.(\d+)\.lstm_layers\.([01])\.({_LSTM_PARAMETER})"),
        lambda m: f"dual_path.layers.{m[1]}.{_PATHS[m[2]]}.lstm.{m[3]}",
    ),
]


def rename_msst_key(key: str) -> str | None:
    """Our name for a key of MSST's SCNet state dict, or ``None`` for a key that has none.

    Args:
        key: A key of the MSST checkpoint, e.g. ``"encoder.0.SDlayer.convs.1.weight"``.
    """
    key = key.removeprefix("module.")
    for pattern, rename in _RULES:
        match = pattern.fullmatch(key)
        if match:
            return rename(match)
    return None


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def kwargs_from_msst(config: Mapping[str, Any]) -> dict[str, Any]:
    """The init arguments of :class:`~sepzoo.models.scnet.SCNet` that an MSST SCNet
    configuration describes.

    Args:
        config: The parsed YAML file (sections ``audio``, ``model``, ``training``; others are
            ignored).

    Raises:
        ValueError: One line naming ``model.<key>`` and the closest valid key for an unknown
            model key, or the keys that disagree (stem count, channels).
    """
    model = config_section(config, "model")
    audio = config_section(config, "audio")
    training = config_section(config, "training")
    check_model_keys(model, MODEL_KEYS, "scnet")
    kwargs: dict[str, Any] = {key: _plain(value) for key, value in model.items()}
    if training.get("target_instrument") or training.get("instruments"):
        declared = len(model["sources"]) if "sources" in model else None
        kwargs["sources"] = output_stems(training, declared, "the number of model.sources")
    elif "sources" in kwargs:
        kwargs["sources"] = [str(name) for name in kwargs["sources"]]
    channels = audio.get("num_channels")
    if channels is not None and "audio_channels" in model and int(channels) != int(model["audio_channels"]):
        raise ValueError(
            f"audio.num_channels is {channels} but model.audio_channels is {model['audio_channels']}"
        )
    if channels is not None and "audio_channels" not in model:
        kwargs["audio_channels"] = int(channels)
    sample_rate = int(audio.get("sample_rate", 44100))
    kwargs["sample_rate"] = sample_rate
    if audio.get("chunk_size"):
        kwargs["segment"] = int(audio["chunk_size"]) / sample_rate
    kwargs["normalize_input"] = False
    return kwargs


__all__ = ["MODEL_KEYS", "kwargs_from_msst", "rename_msst_key"]
