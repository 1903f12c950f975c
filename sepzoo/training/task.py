"""The one training task: a thin, model-agnostic LightningModule.

It trains any registered separator: the mixture is the sum of the sampled stems (or the mixture
the data set made, when a batch carries one), the loss is chosen by registered name, and
validation runs whole tracks through the shared inference engine
(:func:`sepzoo.engine.apply.apply_model`), scoring each track once with the nSDR metric.
Nothing here asks what kind of model it holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor

from sepzoo.engine.apply import apply_model
from sepzoo.evaluation.nsdr_metric import NSDR
from sepzoo.models.base import Separator
from sepzoo.models.lora import adapter_layout
from sepzoo.training.losses import SeparationLoss
from sepzoo.training.recipe import InferenceOptions

TRAIN_FORMAT = "sepzoo.train"
TRAIN_FORMAT_VERSION = 1


class WeightAverage:
    """Unbiased exponential moving average of a module's parameters and float buffers.

    Each update weighs the current weights ``1`` and the earlier ones ``decay``, ``decay**2``,
    ... and divides by the running total of those weights (``count``), as demucs's ``ModelEMA``
    does. The initial, random weights therefore weigh nothing: after the first update the average
    is the trained weights themselves. A plain moving average started from the initial weights
    would still hold ``decay**n`` of them after ``n`` steps (37% after 100 steps at 0.99), and
    validation, exports and comparisons all use the average.

    Args:
        module: The module whose weights are averaged.
        decay: Weight of the running average at each update (e.g. ``0.999``).
        keys: The entries of ``module.state_dict()`` to average, e.g. only what trains: the others
            would average to their own constant values. (Default: ``None``, every entry)
    """

    def __init__(self, module: torch.nn.Module, decay: float, keys: Iterable[str] | None = None) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.count = 0.0  # the total weight of the updates so far: sum of decay**k
        state = module.state_dict()
        kept = state.keys() if keys is None else set(keys)
        self.state = {k: v.detach().clone() for k, v in state.items() if k in kept}

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        """Fold ``module``'s current weights into the average.

        Args:
            module: The trained module.
        """
        self.count = self.count * self.decay + 1.0
        weight = 1.0 / self.count
        current = module.state_dict()
        for key in list(self.state):
            value, shadow = current[key], self.state[key]
            if shadow.device != value.device:
                shadow = self.state[key] = shadow.to(value.device)
            if value.dtype.is_floating_point:
                shadow.lerp_(value.detach(), weight)
            else:
                shadow.copy_(value)

    def restore(self, saved: Mapping[str, Any], device: torch.device) -> None:
        """Take the average back from a checkpoint's ``ema`` entry.

        A checkpoint written before the average was unbiased has no ``count``: it continues
        as it was computed then, with the steady-state weight ``1 - decay`` per update.

        Args:
            saved: The checkpoint's ``{"decay", "state", "count"}``.
            device: Where the training weights are.
        """
        self.state = {k: v.to(device) for k, v in saved["state"].items()}
        self.count = float(saved.get("count", 1.0 / (1.0 - self.decay)))

    def checkpoint(self) -> dict[str, Any]:
        """The average as a checkpoint stores it: decay, total weight and weights on the CPU."""
        return {"decay": self.decay, "count": self.count, "state": self.cpu_state()}

    def cpu_state(self) -> dict[str, Tensor]:
        """The averaged weights, on the CPU."""
        return {k: v.detach().cpu().clone() for k, v in self.state.items()}


class FinalCheckpoint(L.Callback):
    """Saves a training checkpoint when training ends, so that the final weights are kept even
    when ``max_steps`` stops training in the middle of an epoch, after the last validation.

    Args:
        path: The checkpoint file to write (the run's ``last.ckpt``).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.save_checkpoint(self.path)


class SeparationTask(L.LightningModule):
    """Trains and validates any :class:`~sepzoo.models.base.Separator`.

    Args:
        model: The network to train (kept as the attribute ``model``).
        loss: A registered loss built for the model's sources.
        optimizer: Builds the optimizer from the model's ``(name, parameter)`` pairs, frozen
            ones included (see :func:`~sepzoo.training.optimizers.build_optimizer`).
        scheduler: Builds a Lightning ``lr_scheduler`` config from the optimizer, or ``None``.
        engine: How validation runs whole tracks through the inference engine.
        ema_decay: Keep an exponential moving average of what trains (the parameters that
            require gradients, LoRA adapters included, and the buffers) with this decay, and
            validate and export with it; ``None`` turns it off. (Default: ``None``)
        audio_examples: Validation tracks whose audio and spectrograms are logged.
            (Default: ``2``)
        model_name: The model's registry name, saved in checkpoints. (Default: the class's)
        config: The resolved recipe, saved in checkpoints. (Default: ``None``)
        data_sources: The stems of each batch, in the data's order: their sum is the mixture,
            and the model's sources (all of them, or a subset for a one-target model) are the
            targets. (Default: ``None``, the model's sources)
        compile: Run the training step's forward pass through ``torch.compile``, with static
            shapes (training batches have one shape, or one per ``data.batch_segments`` length;
            dynamic shapes made inductor fail on Hybrid Demucs). Validation runs the model as
            it is. (Default: ``False``)
    """

    def __init__(
        self,
        model: Separator,
        loss: SeparationLoss,
        optimizer: Callable[[Any], torch.optim.Optimizer],
        scheduler: Callable[[torch.optim.Optimizer], dict | None] | None = None,
        engine: InferenceOptions | None = None,
        ema_decay: float | None = None,
        audio_examples: int = 2,
        model_name: str | None = None,
        config: dict[str, Any] | None = None,
        data_sources: list[str] | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        self.loss = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.engine = engine or InferenceOptions()
        self.ema = WeightAverage(model, ema_decay, _trained_entries(model)) if ema_decay else None
        self.audio_examples = audio_examples
        self.model_name = model_name or model.registry_name
        self.config = config or {}
        self.target_indices = _target_indices(list(model.sources), data_sources)
        self.valid_nsdr = NSDR(model.sources)
        self.valid_mixture_nsdr = NSDR(model.sources)
        self._samples_in_epoch = 0
        self._resumed_samples = 0
        self._swapped_out: dict[str, Tensor] | None = None
        self.example_logger: Callable[..., None] | None = None
        # The model's forward method compiled, not the module: a function is no submodule, so the
        # parameters keep their names, and checkpoints, the average and exports are those of an
        # uncompiled run. Validation's chunks of varying batch sizes, in evaluation mode (and
        # with some models' float64 Wiener filters), would only compile again and again.
        self._training_forward = torch.compile(model.forward, dynamic=False) if compile else None

    def forward(self, mix: Tensor) -> Tensor:
        """Separate a batch of mixtures ``[B, C, T]`` into ``[B, S, C, T]``.

        Args:
            mix: The mixtures.
        """
        return self.model(mix)

    def training_step(self, batch: Tensor | Sequence[Tensor], batch_idx: int) -> Tensor:
        """One optimisation step on a batch of stems ``[B, S, C, T]``.

        Args:
            batch: The sampled (and augmented) stems, whose sum is the mixture; or a pair
                ``(stems, mixture)`` when the data set makes the mixture ``[B, C, T]`` itself
                (e.g. degraded by a codec while the stems, the targets, stay clean).
            batch_idx: Index of the batch in the epoch.
        """
        if isinstance(batch, Tensor):
            stems = batch
            mix = stems.sum(dim=1)  # B, C, T
        else:
            stems, mix = batch  # B, S, C, T and B, C, T
        # Counted here, before any callback may checkpoint this step, over all processes: a run
        # resumed from that checkpoint skips this many samples of the epoch.
        self._samples_in_epoch += int(stems.shape[0]) * self.trainer.world_size
        targets = self._targets(stems)  # B, S, C, T
        separate = self._training_forward or self.model
        estimate = separate(mix, targets if self.model.needs_references else None)  # B, S, C, T
        total, per_source = self.loss(estimate, targets)
        self.log("train/loss", total, prog_bar=True, batch_size=stems.shape[0])
        for name, value in zip(self.model.sources, per_source):
            self.log(f"train/loss_{name}", value, batch_size=stems.shape[0])
        return total

    def _targets(self, stems: Tensor) -> Tensor:
        """The stems the model estimates, out of all the data's stems ``[B, S_data, C, T]``."""
        if self.target_indices is None:
            return stems
        return stems[:, self.target_indices]

    def on_train_epoch_start(self) -> None:
        # A run resumed mid-epoch starts its first epoch with the samples it already used.
        self._samples_in_epoch, self._resumed_samples = self._resumed_samples, 0

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        # Right after the weights change, before any callback may checkpoint this step.
        if self.ema is not None:
            self.ema.update(self.model)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Separate one whole validation track and score it.

        Args:
            batch: ``{"name": [track name], "stems": [1, S, C, T], "padding": [bool]}``.
            batch_idx: Index of the track on this process.
        """
        if bool(batch.get("padding", False)):
            return  # a placeholder that evens out the ranks' step counts; never scored
        mix = batch["stems"].sum(dim=1)  # 1, C, T
        stems = self._targets(batch["stems"])  # 1, S, C, T
        estimate = apply_model(
            self.model,
            mix,
            references=stems if self.model.needs_references else None,
            **self.engine.model_dump(),
        )  # 1, S, C, T
        self.valid_nsdr.update(estimate, stems)
        self.valid_mixture_nsdr.update(mix.unsqueeze(1).expand_as(stems), stems)
        if batch_idx < self.audio_examples and self.example_logger is not None and self.global_rank == 0:
            name = batch["name"][0] if isinstance(batch["name"], (list, tuple)) else batch["name"]
            self.example_logger(self, str(name), mix[0], estimate[0], stems[0])

    def on_validation_epoch_start(self) -> None:
        if self.ema is not None:
            self._swapped_out = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.model.load_state_dict({**self._swapped_out, **self.ema.state})

    def on_validation_epoch_end(self) -> None:
        if self._swapped_out is not None:
            self.model.load_state_dict(self._swapped_out)
            self._swapped_out = None
        # torchmetrics hands back a 0-d tensor for a one-source model: keep one score per source.
        scores = self.valid_nsdr.compute().reshape(-1)
        mixture_scores = self.valid_mixture_nsdr.compute().reshape(-1)
        for name, value, mixture in zip(self.model.sources, scores, mixture_scores):
            self.log(f"valid/nSDR_{name}", value.float())
            self.log(f"valid/mixture_nSDR_{name}", mixture.float())
        self.log("valid/nSDR", scores.mean().float(), prog_bar=True)
        # Already summed over processes by the metric: each track counts once, wherever it ran.
        self.log("valid/tracks", float(self.valid_nsdr.tracks_scored))
        self.valid_nsdr.reset()
        self.valid_mixture_nsdr.reset()

    def configure_optimizers(self) -> Any:
        # By name, for the recipe's parameter groups; the frozen ones (train.freeze, train.lora)
        # are left out there, as weight decay would move them.
        optimizer = self.optimizer_factory(list(self.model.named_parameters()))
        scheduler = self.scheduler_factory(optimizer) if self.scheduler_factory else None
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["sepzoo"] = {
            "format": TRAIN_FORMAT,
            "version": TRAIN_FORMAT_VERSION,
            "model": {"name": self.model_name, "kwargs": self.model.init_kwargs},
            "sources": list(self.model.sources),
            "sample_rate": self.model.sample_rate,
            "ema": None if self.ema is None else self.ema.checkpoint(),
            "lora": adapter_layout(self.model),
            "data_position": {"epoch": self.current_epoch, "samples": self._samples_in_epoch},
            "config": self.config,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        info = checkpoint.get("sepzoo") or {}
        if self.ema is not None and info.get("ema"):
            self.ema.restore(info["ema"], self.device)
        position = info.get("data_position")
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if position and datamodule is not None and hasattr(datamodule, "set_position"):
            datamodule.set_position(int(position["epoch"]), int(position["samples"]))
            self._resumed_samples = int(position["samples"])


def _trained_entries(model: torch.nn.Module) -> set[str]:
    """The state-dict entries training changes: parameters that require gradients, and buffers."""
    parameters = model.named_parameters(remove_duplicate=False)  # a shared tensor under each name
    trained = {name for name, parameter in parameters if parameter.requires_grad}
    return trained | {name for name, _ in model.named_buffers(remove_duplicate=False)}


def _target_indices(model_sources: list[str], data_sources: list[str] | None) -> list[int] | None:
    """Positions of the model's sources among the data's, or ``None`` when they are the same list."""
    if data_sources is None or list(data_sources) == model_sources:
        return None
    missing = [s for s in model_sources if s not in data_sources]
    if missing:
        raise ValueError(f"model sources {missing} are not among the data's sources {list(data_sources)}")
    return [list(data_sources).index(s) for s in model_sources]
