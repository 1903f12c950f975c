"""Low-rank adapters (LoRA) on a model's weight tensors, and merging them back into plain weights.

LoRA (Hu et al., 2021) fine-tunes a weight ``W`` of shape ``[out, in]`` as
``W + (alpha / rank) * B @ A``, with ``A: [rank, in]`` drawn at random, ``B: [out, rank]`` zero
and ``W`` left as it is: the adapted model starts out computing exactly what the base model
computes, and only ``A`` and ``B`` train.

The adapters are :mod:`torch.nn.utils.parametrize` parametrizations of the weight tensors rather
than wrapper modules. A parametrization changes what the attribute ``module.weight`` returns,
whoever reads it, so one mechanism serves an ``nn.Linear`` (read by its own ``forward``), an
``nn.MultiheadAttention``'s packed ``in_proj_weight`` (read directly by
``F.multi_head_attention_forward``, or by a model's own attention code, where a wrapper module
would never be called) and a convolution's kernel alike, and no model's code changes.

Adaptable weights:

- ``nn.Linear``: ``weight`` ``[out, in]``.
- ``nn.MultiheadAttention``: ``in_proj_weight`` ``[3 * E, E]`` gets three independent adapters,
  one each for the query, key and value projections (as the LoRA paper adapts ``W_q`` and
  ``W_v`` separately), stacked like the packed weight; with separate ``q_proj_weight``,
  ``k_proj_weight``, ``v_proj_weight`` each gets its own. Its ``out_proj`` is an ``nn.Linear``
  child of its own (``<name>.out_proj``).
- Convolutions (``nn.Conv1d/2d/3d``, ``nn.ConvTranspose1d/2d/3d``): the kernel seen as a matrix
  ``[shape[0], rest]``, so that the update has rank ``rank`` there (most of this zoo is
  convolutional).

Recurrent layers (``nn.LSTM``) are not adaptable: their fused kernels read a cached flat copy of
the weights. Dropout on the adapter's input, which some LoRA implementations offer, has no place
here: a parametrization sees the weight, never the activations.

An adapted weight ``<module>.<weight>`` keeps the base tensor as
``<module>.parametrizations.<weight>.original`` and the adapter as
``<module>.parametrizations.<weight>.0.lora_down`` (``A``) and ``...0.lora_up`` (``B``).
:func:`merge_adapters` folds each adapter into its weight and removes the parametrization: the
model's state dict has its ordinary keys again.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from sepzoo.errors import ConfigError, closest

_CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_KINDS = "Linear, MultiheadAttention or convolution"


class LowRankUpdate(nn.Module):
    """Adds ``(alpha / rank) * B @ A`` to the weight it parametrizes.

    The weight is seen as ``chunks`` matrices stacked along its first dimension (3 for a
    packed query/key/value projection, else 1), each ``[shape[0] / chunks, rest]`` and each with
    an adapter of its own.

    Args:
        weight: The weight to adapt (only its shape, dtype and device are used).
        rank: Rank of each update.
        alpha: Scale numerator: the update is multiplied by ``alpha / rank``.
        chunks: Matrices stacked in the weight. (Default: ``1``)
        generator: Random generator for ``A``. (Default: ``None``, torch's global one)
    """

    def __init__(
        self,
        weight: Tensor,
        rank: int,
        alpha: float,
        chunks: int = 1,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"rank must be a positive integer, got {rank}")
        if weight.ndim < 2 or weight.shape[0] % chunks:
            raise ValueError(f"cannot split a weight of shape {list(weight.shape)} into {chunks} matrices")
        rows, columns = weight.shape[0] // chunks, weight[0].numel()
        self.rank = rank
        self.alpha = float(alpha)
        self.scale = self.alpha / rank
        # As nn.Linear initialises a weight of fan-in `columns` (Kaiming uniform, a = sqrt(5)),
        # drawn on the CPU so that one generator state gives the same adapters on any device.
        bound = 1.0 / math.sqrt(columns)
        down = torch.empty(chunks, rank, columns, dtype=weight.dtype).uniform_(
            -bound, bound, generator=generator
        )
        self.lora_down = nn.Parameter(down.to(weight.device))  # A: chunks, rank, columns
        up = torch.zeros(chunks, rows, rank, dtype=weight.dtype, device=weight.device)
        self.lora_up = nn.Parameter(up)  # B: chunks, rows, rank

    def forward(self, weight: Tensor) -> Tensor:
        """The adapted weight.

        Args:
            weight: The base weight.
        """
        update = torch.matmul(self.lora_up, self.lora_down)  # chunks, rows, columns
        return weight + self.scale * update.reshape(weight.shape)


def adaptable_weights(module: nn.Module) -> dict[str, int]:
    """The weights of ``module`` an adapter can go on, each with the matrices it stacks.

    Args:
        module: Any module.
    """
    if isinstance(module, nn.MultiheadAttention):
        if isinstance(module.in_proj_weight, Tensor):
            return {"in_proj_weight": 3}
        return {name: 1 for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight")}
    if isinstance(module, (nn.Linear, *_CONVOLUTIONS)):
        return {"weight": 1}
    return {}


def add_adapters(
    model: nn.Module,
    targets: Sequence[str],
    rank: int,
    alpha: float,
    generator: torch.Generator | None = None,
    where: str = "train.lora.targets",
) -> list[str]:
    """Put a LoRA adapter on every adaptable weight of the modules ``targets`` match.

    The base weights keep their values and their ``requires_grad``; the adapters are new
    parameters that require gradients. Adapters are made in the order of
    ``model.named_modules()``, so that one generator state gives the same adapters every time.

    Args:
        model: The model.
        targets: ``fnmatch`` glob patterns over module names (``model.named_modules()``), e.g.
            ``["*.attention", "*.feedforward.*"]``.
        rank: Rank of each update.
        alpha: The update is scaled by ``alpha / rank``.
        generator: Random generator for the adapters' ``A``. (Default: ``None``, the global one)
        where: What names ``targets`` in error messages. (Default: ``"train.lora.targets"``)

    Returns:
        The adapted weights, as ``<module>.<weight>`` names.

    Raises:
        ConfigError: A pattern matches no adaptable module; the message names a few it could
            have meant.
    """
    modules = {name: module for name, module in model.named_modules() if name}
    adaptable = [name for name, module in modules.items() if adaptable_weights(module)]
    chosen = [name for name in adaptable if any(fnmatch.fnmatchcase(name, p) for p in targets)]
    for pattern in targets:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in chosen):
            raise ConfigError(f"{where}: {_no_match(pattern, modules, adaptable)}")
    adapted = []
    for name in chosen:
        module = modules[name]
        for weight, chunks in adaptable_weights(module).items():
            update = LowRankUpdate(getattr(module, weight), rank, alpha, chunks, generator)
            parametrize.register_parametrization(module, weight, update)
            adapted.append(f"{name}.{weight}")
    return adapted


def _no_match(pattern: str, modules: dict[str, nn.Module], adaptable: list[str]) -> str:
    """Why a target pattern chose nothing, and a few module names it could have meant."""
    others = sorted({type(m).__name__ for n, m in modules.items() if fnmatch.fnmatchcase(n, pattern)})
    if others:
        what = f"{pattern!r} matches only modules LoRA cannot adapt ({', '.join(others[:4])})"
    else:
        what = f"{pattern!r} matches no module of the model"
    guesses = closest(pattern, adaptable)
    if not guesses:  # a misspelt last part (`*.atention`): compare the last parts
        last = pattern.rsplit(".", 1)[-1].strip("*?[]")
        near = closest(last, {name.rsplit(".", 1)[-1] for name in adaptable}, n=1) if last else []
        guesses = [name for name in adaptable if name.rsplit(".", 1)[-1] in near]
    guesses = (guesses or adaptable)[:3]
    listed = f"; {_KINDS} modules are named like {', '.join(map(repr, guesses))}" if guesses else ""
    return f"{what}{listed}"


def adapter_layout(model: nn.Module) -> dict[str, Any] | None:
    """What :func:`restore_adapters` needs to rebuild the adapters of ``model``, as plain values.

    Args:
        model: A model, adapted or not.

    Returns:
        ``{"rank", "alpha", "weights": ["<module>.<weight>", ...]}``, or ``None`` without
        adapters.
    """
    found = [(f"{name}.{weight}", update) for name, weight, update in _updates(model)]
    if not found:
        return None
    settings = {(update.rank, update.alpha) for _, update in found}
    if len(settings) > 1:
        raise ValueError(f"adapters of several ranks or alphas {sorted(settings)} cannot be described as one")
    rank, alpha = settings.pop()
    return {"rank": rank, "alpha": alpha, "weights": [name for name, _ in found]}


def restore_adapters(model: nn.Module, layout: dict[str, Any]) -> None:
    """Put adapters back on the weights a layout names (their values come from a state dict).

    Args:
        model: The model, freshly built.
        layout: What :func:`adapter_layout` returned for the trained model.

    Raises:
        ValueError: The layout names a weight the model has no adaptable module for.
    """
    modules = dict(model.named_modules())
    for full_name in layout["weights"]:
        name, _, weight = full_name.rpartition(".")
        module = modules.get(name)
        chunks = adaptable_weights(module).get(weight) if module is not None else None
        if chunks is None:
            raise ValueError(f"the model has no adaptable weight {full_name!r}")
        # The adapter's values come from the state dict; a generator of its own leaves the
        # global random state alone.
        generator = torch.Generator().manual_seed(0)
        base = getattr(module, weight)
        update = LowRankUpdate(base, int(layout["rank"]), float(layout["alpha"]), chunks, generator)
        parametrize.register_parametrization(module, weight, update)


def merge_adapters(model: nn.Module) -> int:
    """Fold every adapter into its weight and remove it: the model computes what it computed
    with the adapters, and its state dict has the ordinary keys again. (Another
    parametrization of an adapted weight, if any, is folded in with it.)

    Args:
        model: An adapted model.

    Returns:
        How many weights were merged.
    """
    merged = 0
    for name, weight, _ in list(_updates(model)):
        module = model.get_submodule(name) if name else model
        with torch.no_grad():
            parametrize.remove_parametrizations(module, weight, leave_parametrized=True)
        merged += 1
    return merged


def _updates(model: nn.Module) -> list[tuple[str, str, LowRankUpdate]]:
    """``(module name, weight name, adapter)`` for every adapter in ``model``."""
    found = []
    for name, module in model.named_modules():
        if not parametrize.is_parametrized(module):
            continue
        for weight, chain in module.parametrizations.items():
            found += [(name, weight, update) for update in chain if isinstance(update, LowRankUpdate)]
    return found


__all__ = [
    "LowRankUpdate",
    "adaptable_weights",
    "adapter_layout",
    "add_adapters",
    "merge_adapters",
    "restore_adapters",
]
