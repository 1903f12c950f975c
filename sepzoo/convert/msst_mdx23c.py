"""MDX23C checkpoints of Music-Source-Separation-Training (MSST): their YAML configuration as
:class:`sepzoo.models.mdx23c.MDX23C` arguments, and their state-dict keys as ours.

An MSST model is a configuration file (``configs/config_*_mdx23c.yaml``) and a state dict of
``models.mdx23c_tfc_tdf_v3.TFC_TDF_net`` (the same class ships in ``audio-separator`` as
``uvr_lib_v5.tfc_tdf_v3.TFC_TDF_net``). :func:`kwargs_from_msst` reads the configuration's
sections:

==================================  ===========================================================
MSST                                sepzoo ``mdx23c`` argument
==================================  ===========================================================
``audio.sample_rate``               ``sample_rate`` (44100 when absent)
``audio.num_channels``              ``audio_channels``
``audio.n_fft``, ``audio.hop_length``, ``audio.dim_f``   the same names
``audio.chunk_size`` (samples)      ``segment = chunk_size / sample_rate`` seconds; the model's
                                    ``segment_length`` rounds it back to ``chunk_size`` exactly
``audio.dim_t`` (no ``chunk_size``) ``segment = hop_length * (dim_t - 1) / sample_rate``
``model.<key>``                     the same names: ``num_subbands``, ``num_scales``, ``scale``,
                                    ``num_blocks_per_scale``, ``num_channels``, ``growth``,
                                    ``bottleneck_factor``, ``norm`` (``None`` when absent, as
                                    audio-separator reads it), ``act`` (``"gelu"`` when absent)
``training.target_instrument``      ``sources = [target_instrument]`` when set, else
``training.instruments``            ``sources = instruments``, in MSST's order
==================================  ===========================================================

The other keys of ``audio`` and ``training`` (data and optimisation settings) and the other
sections (``augmentations``, ``inference``) say nothing about the network and are not read.

Key mapping, MSST -> sepzoo (``i``: stage, ``j``: layer; within the pre-activated sequences the
positions and parameter names are the same on both sides: ``0`` the norm, ``2`` the convolution
or linear layer, and for the frequency MLP ``3`` and ``5`` the second norm and linear layer):

=================================================  ============================================
MSST                                               sepzoo
=================================================  ============================================
``first_conv``                                     ``input_conv``
``encoder_blocks.i.tfc_tdf.blocks.j.*``            ``encoders.i.tfc_tdf.layers.j.*``
``encoder_blocks.i.downscale.conv.*``              ``encoders.i.downsample.*``
``bottleneck_block.blocks.j.*``                    ``bottleneck.layers.j.*``
``decoder_blocks.i.upscale.conv.*``                ``decoders.i.upsample.*``
``decoder_blocks.i.tfc_tdf.blocks.j.*``            ``decoders.i.tfc_tdf.layers.j.*``
``final_conv.*``                                   ``output_conv.*``
in a TFC-TDF layer: ``tfc1``, ``tdf``, ``tfc2``,   ``tfc_in``, ``tdf``, ``tfc_out``, ``shortcut``
``shortcut``
=================================================  ============================================
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sepzoo.convert.msst import check_model_keys, config_section, output_stems
from sepzoo.errors import ConfigError

MODEL_KEYS: tuple[str, ...] = (
    "act",
    "bottleneck_factor",
    "growth",
    "norm",
    "num_blocks_per_scale",
    "num_channels",
    "num_scales",
    "num_subbands",
    "scale",
)
"""The keys of an MSST MDX23C configuration's ``model`` section."""

_REQUIRED_MODEL_KEYS = tuple(key for key in MODEL_KEYS if key not in ("act", "norm"))

_LAYER_PARTS = {"tfc1": "tfc_in", "tdf": "tdf", "tfc2": "tfc_out", "shortcut": "shortcut"}
_LEAF = r"((?:\d+\.)?(?:weight|bias|running_mean|running_var|num_batches_tracked))"
_PART = r"(tfc1|tdf|tfc2|shortcut)"
_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"first_conv\.(weight)", r"input_conv.\1"),
        (r"final_conv\.(\d+\.weight)", r"output_conv.\1"),
        (
            rf"encoder_blocks\.(\d+)\.tfc_tdf\.blocks\.(\d+)\.{_PART}\.{_LEAF}",
            r"encoders.\1.tfc_tdf.layers.\2.\3.\4",
        ),
        (rf"encoder_blocks\.(\d+)\.downscale\.conv\.{_LEAF}", r"encoders.\1.downsample.\2"),
        (rf"bottleneck_block\.blocks\.(\d+)\.{_PART}\.{_LEAF}", r"bottleneck.layers.\1.\2.\3"),
        (rf"decoder_blocks\.(\d+)\.upscale\.conv\.{_LEAF}", r"decoders.\1.upsample.\2"),
        (
            rf"decoder_blocks\.(\d+)\.tfc_tdf\.blocks\.(\d+)\.{_PART}\.{_LEAF}",
            r"decoders.\1.tfc_tdf.layers.\2.\3.\4",
        ),
    )
)


class MsstConfigError(ConfigError, ValueError):
    """An MSST configuration that does not describe an MDX23C model sepzoo can build."""


def rename_msst_key(key: str) -> str | None:
    """Our state-dict key for a key of MSST's ``TFC_TDF_net``, or ``None`` if it has none.

    Args:
        key: A key of the MSST model's state dict (without a ``module.`` prefix).
    """
    for pattern, replacement in _RULES:
        match = pattern.fullmatch(key)
        if match is None:
            continue
        renamed = match.expand(replacement)
        for theirs, ours in _LAYER_PARTS.items():
            renamed = renamed.replace(f".{theirs}.", f".{ours}.")
        return renamed
    return None


def _required(section: Mapping[str, Any], prefix: str, key: str) -> Any:
    if section.get(key) is None:
        raise MsstConfigError(f"{prefix}.{key} is missing from the MSST configuration")
    return section[key]


def kwargs_from_msst(config: Mapping[str, Any]) -> dict[str, Any]:
    """``mdx23c`` init arguments from an MSST MDX23C configuration (its YAML, loaded).

    Args:
        config: The configuration with its ``audio``, ``model`` and ``training`` sections, as
            plain mappings (or objects with ``get`` and ``items``, such as an
            ``ml_collections.ConfigDict``).

    Raises:
        MsstConfigError: A ``ValueError`` (and a :class:`sepzoo.errors.ConfigError`) naming the
            dotted key: an unknown ``model.<key>`` (with the closest valid key), a missing
            required key, or stems that are not listed.
    """
    try:
        audio = config_section(config, "audio")
        model = config_section(config, "model")
        training = config_section(config, "training")
        check_model_keys(model, MODEL_KEYS, "mdx23c")
        sources = output_stems(training)
    except ValueError as exc:
        raise MsstConfigError(str(exc)) from None
    kwargs: dict[str, Any] = {"sources": sources}
    for key in ("n_fft", "hop_length", "dim_f"):
        kwargs[key] = int(_required(audio, "audio", key))
    for key in _REQUIRED_MODEL_KEYS:
        value = _required(model, "model", key)
        kwargs[key] = [int(v) for v in value] if key == "scale" else int(value)
    kwargs["norm"] = model.get("norm")
    kwargs["act"] = model.get("act") or "gelu"
    sample_rate = int(audio.get("sample_rate") or 44100)
    kwargs["sample_rate"] = sample_rate
    kwargs["audio_channels"] = int(_required(audio, "audio", "num_channels"))
    chunk_size = audio.get("chunk_size")
    if chunk_size is None and audio.get("dim_t") is not None:
        chunk_size = kwargs["hop_length"] * (int(audio["dim_t"]) - 1)
    if chunk_size is not None:
        if int(chunk_size) < 1:
            raise MsstConfigError(
                f"audio.chunk_size must be a positive number of samples, got {chunk_size!r}"
            )
        kwargs["segment"] = int(chunk_size) / sample_rate
    return kwargs


__all__ = ["MODEL_KEYS", "MsstConfigError", "kwargs_from_msst", "rename_msst_key"]
