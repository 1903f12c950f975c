"""Checkpoints of the official ``demucs`` package: single models and bags of models.

A model file of the official package is the dict that ``demucs.states.serialize_model`` writes:
``{"klass": <class>, "args": tuple, "kwargs": dict, "state": {key: tensor}, "training_args":
dict}`` (tensors in float16 when saved with ``half=True``, as the published models are). It is
read with the restricted unpickler: the class is kept as a name and never imported, and
``fractions.Fraction`` (the type of the ``segment`` argument of hybrid models) is the only other
global accepted. A bag of models is a YAML file naming its members' signatures
(``models: [sig, ...]``), optionally with per-source ``weights`` and a ``segment``; the members
are the files ``<sig>.th`` or ``<sig>-<checksum>.th`` beside it.

Key mapping, official -> sepzoo, for ``demucs.demucs.Demucs`` (``i``: layer; the index of each
module inside the official ``nn.Sequential`` depends on the options, and is computed from them):

============================================  =================================================
official                                      sepzoo
============================================  =================================================
``encoder.i.0``                               ``encoder.i.conv``
``encoder.i.1``                               ``encoder.i.norm``
``encoder.i.3`` (with ``dconv_mode & 1``)     ``encoder.i.residual``
``encoder.i.{3|4}``, ``.{4|5}``               ``encoder.i.rewrite``, ``encoder.i.rewrite_norm``
``decoder.i.0``, ``decoder.i.1``              ``decoder.i.rewrite``, ``decoder.i.rewrite_norm``
``decoder.i.{0|3}`` (``dconv_mode & 2``)      ``decoder.i.residual``
``decoder.i.{0|1|3|4}``, next                 ``decoder.i.conv_transpose``, ``decoder.i.norm``
``lstm.lstm``, ``lstm.linear``                ``bottleneck.lstm``, ``bottleneck.projection``
residual ``layers.l.0``, ``.1``               ``layers.l.dilated_conv``, ``layers.l.dilated_norm``
residual ``layers.l.3`` (LSTM)                ``layers.l.lstm`` (``linear`` -> ``projection``)
residual ``layers.l.{3|4}`` (attention)       ``layers.l.attention`` (``query_decay`` ->
                                              ``decay_query``, ``proj`` -> ``output``)
residual ``layers.l.k``, ``k+1``, ``k+3``     ``layers.l.expand``, ``.expand_norm``, ``.scale``
============================================  =================================================

Checkpoints of an older generation whose encoder/decoder layers had no norm slot
(``encoder.i.2`` where ``encoder.i.3`` is expected) are renamed first, as the official loader does.

Key mapping, official -> sepzoo, for ``demucs.hdemucs.HDemucs`` (``i``: layer, counted from the
outside; the official decoder lists run from the innermost layer, so their position ``k`` is
``depth - 1 - i``, and ``n_t - 1 - i`` in the temporal branch, ``n_t`` being its number of
layers; our decoder lists are indexed like the encoders):

============================================  =================================================
official                                      sepzoo
============================================  =================================================
``encoder.i``, ``decoder.k``                  ``freq_encoder.i``, ``freq_decoder.i``
``tencoder.i``, ``tdecoder.k``                ``time_encoder.i``, ``time_decoder.i``
encoder ``conv``, ``norm1``                   ``conv``, ``norm``
encoder ``rewrite``, ``norm2``                ``rewrite``, ``rewrite_norm``
decoder ``conv_tr``, ``norm2``                ``conv_transpose``, ``norm``
decoder ``rewrite``, ``norm1``                ``rewrite``, ``rewrite_norm``
``dconv`` (either)                            ``residual``, its layers as for ``Demucs``
``layers.b`` (a ``MultiWrap``'s band ``b``)   ``bands.b``
``freq_emb.embedding``                        ``freq_embedding.embedding``
============================================  =================================================

For ``demucs.htdemucs.HTDemucs``, the encoders, decoders and frequency embedding map as for
``HDemucs`` (its residual branches have no LSTM or attention), and:

============================================  =================================================
official                                      sepzoo
============================================  =================================================
``channel_upsampler``, ``channel_downsampler``  ``freq_to_transformer``, ``transformer_to_freq``
``channel_upsampler_t``, ``..._downsampler_t``  ``time_to_transformer``, ``transformer_to_time``
``crosstransformer.*``                        ``transformer.*``, as
                                              ``sepzoo.models._cross_transformer.official_transformer_key_map``
                                              documents (self/cross-attention layers per branch,
                                              their norms, layer scales and feed-forward networks)
============================================  =================================================

HT Demucs packages record their ``segment`` (the training segment, e.g. ``Fraction(39, 5)``);
sepzoo keeps it as the model's segment. The optimizer-only arguments (``t_weight_decay``,
``t_lr``) and those of positional embeddings or sparse attention that sepzoo does not implement
are dropped when they are inactive; a package that uses sparse attention is refused.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import yaml

from sepzoo.convert import rename_state
from sepzoo.errors import CheckpointError, closest
from sepzoo.models import create_model, get_model_class
from sepzoo.models.bag import BagOfModels
from sepzoo.models.base import Separator
from sepzoo.models.files import ForeignClass, foreign_globals, safe_load
from sepzoo.models.hybrid_demucs import plan_layers

OFFICIAL_CLASSES: dict[str, str] = {
    "demucs.demucs.Demucs": "demucs",
    "demucs.hdemucs.HDemucs": "hdemucs",
    "demucs.htdemucs.HTDemucs": "htdemucs",
}
"""Official classes that convert, with the registry name of their sepzoo counterpart."""

OFFICIAL_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "demucs": (
        "sources", "audio_channels", "channels", "growth", "depth", "rewrite", "lstm_layers",
        "kernel_size", "stride", "context", "gelu", "glu", "norm_starts", "norm_groups", "dconv_mode",
        "dconv_depth", "dconv_comp", "dconv_attn", "dconv_lstm", "dconv_init", "normalize", "resample",
        "rescale", "samplerate", "segment",
    ),
    "hdemucs": (
        "sources", "audio_channels", "channels", "channels_time", "growth", "nfft", "wiener_iters",
        "end_iters", "wiener_residual", "cac", "depth", "rewrite", "hybrid", "hybrid_old", "multi_freqs",
        "multi_freqs_depth", "freq_emb", "emb_scale", "emb_smooth", "kernel_size", "time_stride", "stride",
        "context", "context_enc", "norm_starts", "norm_groups", "dconv_mode", "dconv_depth", "dconv_comp",
        "dconv_attn", "dconv_lstm", "dconv_init", "rescale", "samplerate", "segment",
    ),
    "htdemucs": (
        "sources", "audio_channels", "channels", "channels_time", "growth", "nfft", "wiener_iters",
        "end_iters", "wiener_residual", "cac", "depth", "rewrite", "multi_freqs", "multi_freqs_depth",
        "freq_emb", "emb_scale", "emb_smooth", "kernel_size", "time_stride", "stride", "context",
        "context_enc", "norm_starts", "norm_groups", "dconv_mode", "dconv_depth", "dconv_comp", "dconv_init",
        "bottom_channels", "t_layers", "t_emb", "t_hidden_scale", "t_heads", "t_dropout", "t_max_positions",
        "t_norm_in", "t_norm_in_group", "t_group_norm", "t_norm_first", "t_norm_out", "t_max_period",
        "t_weight_decay", "t_lr", "t_layer_scale", "t_gelu", "t_weight_pos_embed", "t_sin_random_shift",
        "t_cape_mean_normalize", "t_cape_augment", "t_cape_glob_loc_scale", "t_sparse_self_attn",
        "t_sparse_cross_attn", "t_mask_type", "t_mask_random_seed", "t_sparse_attn_window", "t_global_window",
        "t_sparsity", "t_auto_sparsity", "t_cross_first", "rescale", "samplerate", "segment",
        "use_train_segment",
    ),
}  # fmt: skip
"""The official constructors' arguments in order, to bind positional ``args``."""

OFFICIAL_DEFAULTS: dict[str, dict[str, Any]] = {
    "htdemucs": {"bottom_channels": 0, "segment": 10.0},
}
"""Defaults of the official constructors where ours differ (ours are the published models')."""

TRAINING_ONLY_ARGUMENTS: dict[str, dict[str, Any]] = {
    "htdemucs": {
        "t_weight_decay": None, "t_lr": None, "t_cape_mean_normalize": None, "t_cape_augment": None,
        "t_cape_glob_loc_scale": None, "t_mask_random_seed": None, "t_sparse_attn_window": None,
        "t_global_window": None, "t_sparsity": None, "t_mask_type": None,
        "t_sparse_self_attn": False, "t_sparse_cross_attn": False, "t_auto_sparsity": False,
    },
}  # fmt: skip
"""Official arguments that sepzoo's model does not take: those that only steer the optimizer or
the positional embeddings sepzoo does not implement are dropped (``None``); the others must hold
the given value (sparse attention is not supported) or the package is refused."""

_RENAMED_ARGUMENTS = {"samplerate": "sample_rate"}
MODEL_SUFFIX = ".th"


def read_package(path: str | Path) -> dict[str, Any]:
    """Read an official model file without importing anything from it.

    Args:
        path: The ``.th`` file.

    Raises:
        CheckpointError: The file is unreadable, refers to a global other than a known model
            class or ``fractions.Fraction``, or lacks the package keys.
    """
    path = Path(path)
    allowed: dict[str, object] = {**foreign_globals(OFFICIAL_CLASSES), "fractions.Fraction": Fraction}
    content = safe_load(path, allowed_globals=allowed)
    if not isinstance(content, dict):
        raise CheckpointError(f"{path}: expected a demucs package (a dict), found a {type(content).__name__}")
    missing = [key for key in ("klass", "args", "kwargs", "state") if key not in content]
    if missing:
        raise CheckpointError(f"{path}: not a demucs package; it lacks {', '.join(missing)}")
    return content


def model_from_package(content: Mapping[str, Any], source: str | Path) -> Separator:
    """Build the sepzoo model equivalent to an official package, with its weights.

    Args:
        content: What :func:`read_package` returned.
        source: The file, for error messages.
    """
    klass = content["klass"]
    if not isinstance(klass, ForeignClass) or klass.full_name not in OFFICIAL_CLASSES:
        name = klass.full_name if isinstance(klass, ForeignClass) else repr(klass)
        raise CheckpointError(
            f"{source}: model class {name} cannot be converted (known: {', '.join(OFFICIAL_CLASSES)})"
        )
    name = OFFICIAL_CLASSES[klass.full_name]
    return model_from_arguments(name, content["args"], content["kwargs"], content["state"], source)


def model_from_arguments(
    name: str,
    args: Any,
    kwargs: Any,
    state: Mapping[str, Any],
    source: str | Path,
    arguments_source: str | Path | None = None,
) -> Separator:
    """Build the sepzoo model that the official class's constructor arguments describe, with the
    official state dict's weights.

    Args:
        name: ``"demucs"``, ``"hdemucs"`` or ``"htdemucs"``.
        args: Positional arguments of the official constructor.
        kwargs: Keyword arguments of the official constructor.
        state: The official model's state dict.
        source: The file of the weights, for error messages.
        arguments_source: The file the arguments come from, if not ``source``, for error
            messages. (Default: ``None``)
    """
    arguments_source = source if arguments_source is None else arguments_source
    kwargs = _our_kwargs(name, args, kwargs, arguments_source)
    try:
        model = create_model(name, **kwargs)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{arguments_source}: cannot build {name} from its arguments ({exc})") from None
    state = dict(state)
    if name == "demucs":
        _rename_legacy_slots(state, kwargs.get("depth", 6))
    renamed = rename_state(state, KEY_MAPPERS[name](kwargs), model.state_dict(), str(source))
    model.load_state_dict(renamed)
    return model


def _our_kwargs(name: str, args: Any, kwargs: Any, source: str | Path) -> dict[str, Any]:
    order = OFFICIAL_ARGUMENTS[name]
    if not isinstance(args, (list, tuple)) or not isinstance(kwargs, Mapping):
        raise CheckpointError(f"{source}: the package's args/kwargs are not a list and a dict")
    if len(args) > len(order):
        raise CheckpointError(f"{source}: {len(args)} positional arguments, but {name} takes {len(order)}")
    merged = {**OFFICIAL_DEFAULTS.get(name, {}), **dict(zip(order, args))}
    for key, value in kwargs.items():
        if key not in order:
            hint = closest(str(key), order)
            suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
            raise CheckpointError(f"{source}: unknown argument {key!r} of the official {name}{suggestion}")
        merged[key] = value
    for key, required in TRAINING_ONLY_ARGUMENTS.get(name, {}).items():
        value = merged.pop(key, required)
        if required is not None and value != required:
            raise CheckpointError(f"{source}: {key}={value!r} is not supported (only {required!r} converts)")
    ours = {_RENAMED_ARGUMENTS.get(key, key): value for key, value in merged.items()}
    if "sources" in ours:
        ours["sources"] = [str(s) for s in ours["sources"]]
    if isinstance(ours.get("segment"), Fraction):
        ours["segment"] = float(ours["segment"])
    return ours


def _rename_legacy_slots(state: dict[str, Any], depth: int) -> None:
    """Older checkpoints lacked the norm slot in each layer; move them as the official loader does."""
    for index in range(depth):
        for part in ("encoder", "decoder"):
            for kind in ("bias", "weight"):
                old, new = f"{part}.{index}.2.{kind}", f"{part}.{index}.3.{kind}"
                if old in state and new not in state:
                    state[new] = state.pop(old)


def _branch_key(rest: str, lstm: bool, attention: bool) -> str | None:
    """Map a key inside an official residual branch (``layers.l.k...``) to ours."""
    parts = rest.split(".")
    if len(parts) < 4 or parts[0] != "layers":
        return None
    layer, slot, tail = parts[1], int(parts[2]), parts[3:]
    names = {0: "dilated_conv", 1: "dilated_norm"}
    position = 3
    if lstm:
        names[position] = "lstm"
        position += 1
    if attention:
        names[position] = "attention"
        position += 1
    names.update({position: "expand", position + 1: "expand_norm", position + 3: "scale"})
    if slot not in names:
        return None
    module = names[slot]
    inner = {"linear": "projection", "query_decay": "decay_query", "proj": "output"}
    if module in ("lstm", "attention"):
        tail = [inner.get(tail[0], tail[0]), *tail[1:]]
    return ".".join(["layers", layer, module, *tail])


def _demucs_mapper(kwargs: Mapping[str, Any]) -> Callable[[str], str | None]:
    depth = int(kwargs.get("depth", 6))
    rewrite = bool(kwargs.get("rewrite", True))
    dconv_mode = int(kwargs.get("dconv_mode", 1))
    attention_from = int(kwargs.get("dconv_attn", 4))
    lstm_from = int(kwargs.get("dconv_lstm", 4))

    def encoder(index: int, slot: int, rest: str) -> str | None:
        names = {0: "conv", 1: "norm"}
        position = 3
        if dconv_mode & 1:
            if slot == position:
                return _prefixed("residual", _branch_key(rest, index >= lstm_from, index >= attention_from))
            position += 1
        if rewrite:
            names.update({position: "rewrite", position + 1: "rewrite_norm"})
        return f"{names[slot]}.{rest}" if slot in names else None

    def decoder(position_in_list: int, slot: int, rest: str) -> str | None:
        index = depth - 1 - position_in_list  # the decoder list runs from the innermost layer
        names = {}
        position = 0
        if rewrite:
            names.update({0: "rewrite", 1: "rewrite_norm"})
            position = 3
        if dconv_mode & 2:
            if slot == position:
                return _prefixed("residual", _branch_key(rest, index >= lstm_from, index >= attention_from))
            position += 1
        names[position] = "conv_transpose"
        if index > 0:
            names[position + 1] = "norm"
        return f"{names[slot]}.{rest}" if slot in names else None

    def rename(key: str) -> str | None:
        parts = key.split(".")
        if parts[0] == "lstm" and len(parts) >= 3:
            inner = {"lstm": "lstm", "linear": "projection"}.get(parts[1])
            return None if inner is None else ".".join(["bottleneck", inner, *parts[2:]])
        if parts[0] not in ("encoder", "decoder") or len(parts) < 4 or not parts[2].isdigit():
            return None
        index, slot, rest = int(parts[1]), int(parts[2]), ".".join(parts[3:])
        mapped = (encoder if parts[0] == "encoder" else decoder)(index, slot, rest)
        return None if mapped is None else f"{parts[0]}.{index}.{mapped}"

    return rename


def _prefixed(prefix: str, key: str | None) -> str | None:
    return None if key is None else f"{prefix}.{key}"


def _with_defaults(name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``kwargs`` completed with the defaults of our model's constructor."""
    parameters = inspect.signature(get_model_class(name).__init__).parameters.values()
    defaults = {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}
    return {**defaults, **kwargs}


_HYBRID_ENCODER_NAMES = {"conv": "conv", "norm1": "norm", "rewrite": "rewrite", "norm2": "rewrite_norm"}
_HYBRID_DECODER_NAMES = {
    "conv_tr": "conv_transpose",
    "norm2": "norm",
    "rewrite": "rewrite",
    "norm1": "rewrite_norm",
}


def _hybrid_demucs_mapper(kwargs: Mapping[str, Any], name: str = "hdemucs") -> Callable[[str], str | None]:
    arguments = _with_defaults(name, kwargs)
    hybrid = bool(arguments.get("hybrid", True))
    depth = int(arguments["depth"])
    plans = plan_layers(
        int(arguments["nfft"]), depth, int(arguments["kernel_size"]), int(arguments["stride"]),
        int(arguments["time_stride"]),
    )  # fmt: skip
    time_layers = sum(plan.frequency for plan in plans) if hybrid else 0
    # HT Demucs's residual branches have neither attention nor LSTMs.
    attention_from = int(arguments.get("dconv_attn", depth))
    lstm_from = int(arguments.get("dconv_lstm", depth))
    lists = {
        "encoder": ("freq_encoder", depth, False, _HYBRID_ENCODER_NAMES),
        "decoder": ("freq_decoder", depth, True, _HYBRID_DECODER_NAMES),
        "tencoder": ("time_encoder", time_layers, False, _HYBRID_ENCODER_NAMES),
        "tdecoder": ("time_decoder", time_layers, True, _HYBRID_DECODER_NAMES),
    }

    def layer(index: int, parts: list[str], names: Mapping[str, str]) -> str | None:
        prefix = ""
        if parts[0] == "layers" and len(parts) > 2 and parts[1].isdigit():
            prefix, parts = f"bands.{parts[1]}.", parts[2:]
        if parts[0] == "dconv":
            if len(parts) < 4 or not parts[2].isdigit() or not parts[3].isdigit():
                return None
            branch = _branch_key(".".join(parts[1:]), index >= lstm_from, index >= attention_from)
            return _prefixed(f"{prefix}residual", branch)
        if parts[0] not in names or len(parts) < 2:
            return None
        return prefix + ".".join([names[parts[0]], *parts[1:]])

    def rename(key: str) -> str | None:
        parts = key.split(".")
        if parts[:2] == ["freq_emb", "embedding"] and len(parts) == 3:
            return f"freq_embedding.embedding.{parts[2]}"
        if parts[0] not in lists or len(parts) < 3 or not parts[1].isdigit():
            return None
        ours, count, reverse, names = lists[parts[0]]
        position = int(parts[1])
        index = count - 1 - position if reverse else position
        if not 0 <= index < count:
            return None
        return _prefixed(f"{ours}.{index}", layer(index, parts[2:], names))

    return rename


_HT_CHANNEL_SAMPLERS = {
    "channel_upsampler": "freq_to_transformer",
    "channel_downsampler": "transformer_to_freq",
    "channel_upsampler_t": "time_to_transformer",
    "channel_downsampler_t": "transformer_to_time",
}


def _ht_demucs_mapper(kwargs: Mapping[str, Any]) -> Callable[[str], str | None]:
    from sepzoo.models._cross_transformer import official_transformer_key_map

    arguments = _with_defaults("htdemucs", kwargs)
    hybrid_rename = _hybrid_demucs_mapper(kwargs, name="htdemucs")
    transformer_keys = {}
    if arguments["t_layers"]:
        transformer_keys = official_transformer_key_map(
            int(arguments["t_layers"]), norm_in=arguments["t_norm_in"],
            norm_in_group=arguments["t_norm_in_group"], norm_out=arguments["t_norm_out"],
            norm_first=arguments["t_norm_first"],
            group_norm=arguments["t_group_norm"], layer_scale=arguments["t_layer_scale"],
            cross_first=arguments["t_cross_first"], emb=arguments["t_emb"],
        )  # fmt: skip

    def rename(key: str) -> str | None:
        head, _, rest = key.partition(".")
        if head in _HT_CHANNEL_SAMPLERS and rest in ("weight", "bias"):
            return f"{_HT_CHANNEL_SAMPLERS[head]}.{rest}"
        if head == "crosstransformer":
            mapped = transformer_keys.get(rest)
            return None if mapped is None else f"transformer.{mapped}"
        return hybrid_rename(key)

    return rename


KEY_MAPPERS: dict[str, Callable[[Mapping[str, Any]], Callable[[str], str | None]]] = {
    "demucs": _demucs_mapper,
    "hdemucs": _hybrid_demucs_mapper,
    "htdemucs": _ht_demucs_mapper,
}
"""For each converted model, a function of its kwargs returning the key mapping."""


def convert_file(path: str | Path) -> Separator | BagOfModels:
    """Convert an official model file (``.th``) or bag of models (``.yaml``).

    Args:
        path: The file.
    """
    path = Path(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        return _convert_bag(path)
    return model_from_package(read_package(path), path)


def _convert_bag(path: Path) -> BagOfModels:
    try:
        spec = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except (OSError, yaml.YAMLError) as exc:
        raise CheckpointError(f"{path}: not a readable bag of models ({str(exc).splitlines()[0]})") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("models"), list) or not spec["models"]:
        raise CheckpointError(f"{path}: a bag of models needs a non-empty `models` list of signatures")
    members = []
    for signature in spec["models"]:
        member = _member_file(path.parent, str(signature), path)
        members.append(model_from_package(read_package(member), member))
    segment = spec.get("segment")
    if segment is not None:
        if not isinstance(segment, (int, float)) or not math.isfinite(segment) or segment <= 0:
            raise CheckpointError(f"{path}: segment must be a positive number of seconds, got {segment!r}")
        for member in members:
            # As the official bags do: a model trained on one segment (HT Demucs) keeps it
            # unless the bag asks for a shorter one.
            if member.max_segment is not None and segment > member.max_segment:
                continue
            member.segment = float(segment)
            member._init_kwargs["segment"] = float(segment)
    for index, member in enumerate(members[1:], start=1):
        # An official bag's members all estimate the same sources, in the same order.
        if member.sources != members[0].sources:
            raise CheckpointError(
                f"{path}: bag member {index} has sources={member.sources} but member 0 has "
                f"sources={members[0].sources}; an official bag's members must agree"
            )
    try:
        return BagOfModels(members, spec.get("weights"))
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def _member_file(folder: Path, signature: str, bag: Path) -> Path:
    exact = folder / f"{signature}{MODEL_SUFFIX}"
    if exact.is_file():
        return exact
    found = sorted(folder.glob(f"{signature}-*{MODEL_SUFFIX}"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise CheckpointError(
            f"{bag}: member {signature!r} not found; expected {exact} or {folder / signature}-<checksum>.th"
        )
    raise CheckpointError(
        f"{bag}: several files for member {signature!r}: {', '.join(p.name for p in found)}"
    )


__all__ = [
    "KEY_MAPPERS",
    "OFFICIAL_ARGUMENTS",
    "OFFICIAL_CLASSES",
    "convert_file",
    "model_from_arguments",
    "model_from_package",
    "read_package",
]
