"""BS-RoFormer and Mel-RoFormer checkpoints of Music-Source-Separation-Training (MSST): its YAML
configurations as sepzoo init arguments, and its state-dict keys as ours.

An MSST model is a configuration file (sections ``audio``, ``model``, ``training``, ...) and a
state dict of the ``BSRoformer`` (``model_type: bs_roformer``) or ``MelBandRoformer``
(``mel_band_roformer``) class. :func:`kwargs_from_msst` turns the configuration into the init
arguments of :class:`~sepzoo.models.bs_roformer.BSRoformer` or
:class:`~sepzoo.models.mel_band_roformer.MelBandRoformer`; :func:`rename_msst_key` maps each
state key, for :func:`sepzoo.convert.rename_state`::

    kwargs = kwargs_from_msst("bs_roformer", config)
    model = create_model("bs_roformer", **kwargs)
    state = rename_state(msst_state, rename_msst_key, model.state_dict(), "model.ckpt")
    model.load_state_dict(state)

Configuration. A ``model.*`` key missing from the file takes the reference class's default (not
sepzoo's), since that is what the checkpoint was trained with; ``model.dim`` and
``model.depth`` have none and are required.

* ``model.stereo`` -> ``audio_channels`` (2 or 1); ``audio.num_channels`` must agree.
* ``training.target_instrument`` -> ``sources: [target]`` (``model.num_stems`` must be 1);
  without it, ``training.instruments`` -> ``sources`` (as many as ``model.num_stems``).
* ``audio.sample_rate`` -> ``sample_rate``; for Mel-RoFormer ``model.sample_rate`` (which
  places the mel bands) must agree with it when both are given.
* ``audio.chunk_size`` (samples) -> ``segment`` = ``chunk_size / sample_rate`` seconds; the
  model's ``segment_length`` rounds it back to ``chunk_size`` samples.
* Accepted and left out, because they do not change what the reference computes:
  ``flash_attn``, ``sage_attention``, ``use_torch_checkpoint``, ``dim_freqs_in``, ``zero_dc``
  and ``skip_connection`` (stored, never used), ``match_input_audio_length`` (sepzoo always
  returns the input's length), the ``multi_stft_*`` loss settings, and for Mel-RoFormer
  ``mlp_expansion_factor`` (its mask estimators always use 4).
* Refused: ``linear_transformer_depth`` other than 0, and ``freqs_per_bands`` that do not sum to
  ``stft_n_fft // 2 + 1`` (both naming the key); any other ``model.*`` key is refused naming it
  and the closest valid key.

Key mapping, MSST -> sepzoo (``i``: block; ``j``: 0 for the time transformer, 1 for the
frequency transformer, ``T`` its sepzoo name ``blocks.i.{time|freq}_transformer``; ``k``: layer;
``b``: band; ``n``: source; ``l``: index in the MLP):

==============================================  ==============================================
MSST                                            sepzoo
==============================================  ==============================================
``layers.i.j.layers.k.0.rotary_embed.freqs``    ``time_rotary.freqs`` / ``freq_rotary.freqs``
``layers.i.j.layers.k.0.norm.gamma``            ``T.layers.k.attention.norm.weight``
``layers.i.j.layers.k.0.to_qkv.weight``         ``T.layers.k.attention.to_qkv.weight``
``layers.i.j.layers.k.0.to_gates.*``            ``T.layers.k.attention.to_gates.*``
``layers.i.j.layers.k.0.to_out.0.weight``       ``T.layers.k.attention.to_out.weight``
``layers.i.j.layers.k.1.net.0.gamma``           ``T.layers.k.feed_forward.norm.weight``
``layers.i.j.layers.k.1.net.{1|4}.*``           ``T.layers.k.feed_forward.{hidden|output}.*``
``layers.i.j.norm.gamma`` (Mel-RoFormer)        ``T.norm.weight``
``final_norm.gamma`` (BS-RoFormer)              ``final_norm.weight``
``band_split.to_features.b.0.gamma``            ``band_split.projections.b.0.weight``
``band_split.to_features.b.1.*``                ``band_split.projections.b.1.*``
``mask_estimators.n.to_freqs.b.0.l.*``          ``mask_estimators.n.band_mlps.b.l.*``
==============================================  ==============================================

Every layer of a transformer shares one rotary table, so all of its ``freqs`` keys map to one
buffer (they hold the same values).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sepzoo.convert.msst import check_model_keys, config_section, output_stems
from sepzoo.models.bs_roformer import PAPER_FREQS_PER_BANDS, contiguous_bands

MODEL_TYPES = ("bs_roformer", "mel_band_roformer")
"""MSST's ``model_type`` names of the two architectures; sepzoo registers them by the same names."""

_COMMON_DEFAULTS: dict[str, Any] = {
    "stereo": False,
    "num_stems": 1,
    "time_transformer_depth": 2,
    "freq_transformer_depth": 2,
    "linear_transformer_depth": 0,
    "dim_head": 64,
    "heads": 8,
    "stft_n_fft": 2048,
    "stft_hop_length": 512,
    "stft_win_length": 2048,
    "stft_normalized": False,
}

_DEFAULTS: dict[str, dict[str, Any]] = {
    "bs_roformer": {
        **_COMMON_DEFAULTS,
        "freqs_per_bands": list(PAPER_FREQS_PER_BANDS),
        "attn_dropout": 0.0,
        "ff_dropout": 0.0,
        "mask_estimator_depth": 2,
        "mlp_expansion_factor": 4,
    },
    "mel_band_roformer": {
        **_COMMON_DEFAULTS,
        "num_bands": 60,
        "attn_dropout": 0.1,
        "ff_dropout": 0.1,
        "mask_estimator_depth": 1,
        "sample_rate": 44100,
    },
}
"""The reference classes' defaults of the keys sepzoo uses."""

_IGNORED: dict[str, frozenset[str]] = {
    "bs_roformer": frozenset(
        {
            "flash_attn",
            "sage_attention",
            "use_torch_checkpoint",
            "dim_freqs_in",
            "zero_dc",
            "skip_connection",
            "multi_stft_resolution_loss_weight",
            "multi_stft_resolutions_window_sizes",
            "multi_stft_hop_size",
            "multi_stft_normalized",
        }
    ),
}
_IGNORED["mel_band_roformer"] = _IGNORED["bs_roformer"] | {"match_input_audio_length", "mlp_expansion_factor"}

_SEPZOO_KEYS = (
    "dim",
    "depth",
    "time_transformer_depth",
    "freq_transformer_depth",
    "dim_head",
    "heads",
    "attn_dropout",
    "ff_dropout",
    "mask_estimator_depth",
    "stft_n_fft",
    "stft_hop_length",
    "stft_win_length",
    "stft_normalized",
)
_MODEL_SPECIFIC = {
    "bs_roformer": ("freqs_per_bands", "mlp_expansion_factor"),
    "mel_band_roformer": ("num_bands",),
}


def kwargs_from_msst(model_type: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """sepzoo init arguments of the model an MSST configuration describes.

    Args:
        model_type: ``"bs_roformer"`` or ``"mel_band_roformer"``, MSST's ``--model_type``.
        config: The parsed YAML configuration (a dict, or an object with ``get`` such as
            ``ml_collections.ConfigDict``), with sections ``model``, ``audio`` and ``training``.

    Raises:
        ValueError: One line naming the key (``model.<key>``, ``audio.<key>``,
            ``training.<key>``) for an unknown or unsupported key, a missing required key, or
            values that disagree.
    """
    if model_type not in _DEFAULTS:
        raise ValueError(f"model_type must be one of {', '.join(MODEL_TYPES)}, got {model_type!r}")
    given = config_section(config, "model")
    audio = config_section(config, "audio")
    training = config_section(config, "training")
    defaults = _DEFAULTS[model_type]
    check_model_keys(given, sorted({"dim", "depth"} | set(defaults) | _IGNORED[model_type]), model_type)
    for key in ("dim", "depth"):
        if key not in given:
            raise ValueError(f"model.{key} is required for {model_type}")
    model = {**defaults, **given}
    if model["linear_transformer_depth"] != 0:
        raise ValueError(
            f"model.linear_transformer_depth={model['linear_transformer_depth']} is not supported: "
            "sepzoo's RoFormers have no linear-attention transformers (use 0)"
        )
    sources = output_stems(training, model["num_stems"], "model.num_stems")
    kwargs: dict[str, Any] = {"sources": sources}
    for key in _SEPZOO_KEYS + _MODEL_SPECIFIC[model_type]:
        kwargs[key] = model[key]
    kwargs["stft_normalized"] = bool(kwargs["stft_normalized"])
    if model_type == "bs_roformer":
        kwargs["freqs_per_bands"] = [int(width) for width in model["freqs_per_bands"]]
        try:
            contiguous_bands(kwargs["freqs_per_bands"], int(model["stft_n_fft"]))
        except ValueError as error:
            raise ValueError(f"model.freqs_per_bands: {error}") from None

    channels = 2 if model["stereo"] else 1
    if "num_channels" in audio and int(audio["num_channels"]) != channels:
        raise ValueError(
            f"audio.num_channels is {audio['num_channels']} but model.stereo={model['stereo']} "
            f"means {channels} channel(s)"
        )
    kwargs["audio_channels"] = channels

    sample_rate = int(audio.get("sample_rate", model.get("sample_rate", 44100)))
    if model_type == "mel_band_roformer":
        if "sample_rate" in given and int(given["sample_rate"]) != sample_rate:
            raise ValueError(
                f"model.sample_rate ({given['sample_rate']}) places the mel bands and must equal "
                f"audio.sample_rate ({sample_rate})"
            )
    kwargs["sample_rate"] = sample_rate

    if "chunk_size" in audio:
        chunk_size = int(audio["chunk_size"])
        if chunk_size < 1:
            raise ValueError(f"audio.chunk_size must be a positive number of samples, got {chunk_size}")
        kwargs["segment"] = chunk_size / sample_rate
    return kwargs


_TRANSFORMERS = {"0": "time_transformer", "1": "freq_transformer"}
_ROTARIES = {"0": "time_rotary", "1": "freq_rotary"}
_LAYER_PARTS = {
    "0.norm.gamma": "attention.norm.weight",
    "0.to_qkv.weight": "attention.to_qkv.weight",
    "0.to_gates.weight": "attention.to_gates.weight",
    "0.to_gates.bias": "attention.to_gates.bias",
    "0.to_out.0.weight": "attention.to_out.weight",
    "1.net.0.gamma": "feed_forward.norm.weight",
    "1.net.1.weight": "feed_forward.hidden.weight",
    "1.net.1.bias": "feed_forward.hidden.bias",
    "1.net.4.weight": "feed_forward.output.weight",
    "1.net.4.bias": "feed_forward.output.bias",
}

_ROTARY = re.compile(r"layers\.\d+\.([01])\.layers\.\d+\.0\.rotary_embed\.freqs")
_LAYER = re.compile(r"layers\.(\d+)\.([01])\.layers\.(\d+)\.(.+)")
_OUTPUT_NORM = re.compile(r"layers\.(\d+)\.([01])\.norm\.gamma")
_BAND_SPLIT = re.compile(r"band_split\.to_features\.(\d+)\.(0\.gamma|1\.weight|1\.bias)")
_MASK = re.compile(r"mask_estimators\.(\d+)\.to_freqs\.(\d+)\.0\.(\d+)\.(weight|bias)")


def rename_msst_key(key: str) -> str | None:
    """The sepzoo state key of an MSST ``BSRoformer`` or ``MelBandRoformer`` state key, or
    ``None`` for a key that has no counterpart (see the module's table).

    Args:
        key: A key of the MSST state dict.
    """
    if match := _ROTARY.fullmatch(key):
        return f"{_ROTARIES[match[1]]}.freqs"
    if match := _LAYER.fullmatch(key):
        block, axis, layer, part = match.groups()
        if part not in _LAYER_PARTS:
            return None
        return f"blocks.{block}.{_TRANSFORMERS[axis]}.layers.{layer}.{_LAYER_PARTS[part]}"
    if match := _OUTPUT_NORM.fullmatch(key):
        return f"blocks.{match[1]}.{_TRANSFORMERS[match[2]]}.norm.weight"
    if key == "final_norm.gamma":
        return "final_norm.weight"
    if match := _BAND_SPLIT.fullmatch(key):
        part = "0.weight" if match[2] == "0.gamma" else match[2]
        return f"band_split.projections.{match[1]}.{part}"
    if match := _MASK.fullmatch(key):
        source, band, index, kind = match.groups()
        return f"mask_estimators.{source}.band_mlps.{band}.{index}.{kind}"
    return None


__all__ = ["MODEL_TYPES", "kwargs_from_msst", "rename_msst_key"]
