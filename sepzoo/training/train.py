"""``sepzoo train``: from a recipe to a trained, logged, checkpointed run."""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import functools
import logging
import os
import shutil
import sys
import sysconfig
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sepzoo.errors import ConfigError
from sepzoo.io.atomic import make_writable_folder, write_json_atomic, write_text_atomic
from sepzoo.io.lock import folder_lock
from sepzoo.training.optimizers import build_optimizer, build_scheduler, group_parameters
from sepzoo.training.recipe import LoraOptions, Recipe, load_recipe, resolve_precision
from sepzoo.training.rundir import (
    CONFIG_FILE,
    DONE_MARKER,
    RunPlan,
    data_fingerprint,
    find_earlier_run,
    is_launcher_child,
    plan_run,
    run_hash,
    run_metadata,
)

log = logging.getLogger(__name__)


def run_directory(recipe: Recipe) -> Path:
    """Where a recipe's run lives: ``<run.root>/<run.name or recipe name>-<run hash>``.

    The run hash covers what changes the results, the training data's fingerprint included,
    and not where the data live or how they are loaded (:func:`~sepzoo.training.rundir.run_hash`).
    A run directory that an earlier version named by its own hash is found through its recorded
    config.

    Args:
        recipe: The validated recipe.
    """
    root, name = Path(recipe.run.root), recipe.run.name or recipe.name
    fingerprint = _fingerprint(recipe)
    planned = root / f"{name}-{run_hash(recipe.resolved, fingerprint)}"
    if planned.exists() or not root.is_dir():
        return planned
    return find_earlier_run(root, name, recipe.resolved, fingerprint) or planned


def _fingerprint(recipe: Recipe) -> str | None:
    data = recipe.resolved.get("data")
    return data_fingerprint(data.get("root")) if isinstance(data, dict) else None


def build_components(recipe: Recipe) -> tuple[Any, Any]:
    """Build the data module and the training task a recipe describes.

    What this machine cannot run (float16 mixed precision on the CPU, ``train.compile`` without
    a C++ compiler) is refused first, before anything is built.

    Args:
        recipe: The validated recipe.
    """
    from sepzoo.data import DATASETS
    from sepzoo.models import create_model
    from sepzoo.training.losses import build_loss
    from sepzoo.training.task import SeparationTask

    where = recipe.path or "recipe"
    trainer = recipe.trainer
    resolve_precision(
        trainer.get("precision", "auto"), trainer.get("accelerator", "auto"), f"{where}: trainer.precision"
    )
    if recipe.train.compile:
        check_compiler(f"{where}: train.compile")
    model = create_model(recipe.model.name, **recipe.model.kwargs)
    if recipe.train.init_from is not None:
        _load_initial_weights(model, recipe.train.init_from, recipe.train.init_strict)
    if recipe.train.freeze:
        frozen = freeze_parameters(model, recipe.train.freeze, f"{where}: train.freeze")
        total = len(list(model.parameters()))
        log.info("train.freeze: %d of %d parameter tensors frozen", len(frozen), total)
    if recipe.train.lora is not None:  # after init_from: the adapters go on the loaded weights
        add_lora(model, recipe.train.lora, recipe.seed, f"{where}: train.lora.targets")
    # The parameter groups are checked here, before anything is written, as the optimizer sees them.
    group_parameters(
        list(model.named_parameters()),
        recipe.optimizer.param_groups,
        f"{where}: optimizer.param_groups",
    )
    datamodule = DATASETS.get(recipe.data.name)(**recipe.data.kwargs)
    data_sources = list(getattr(datamodule, "sources", model.sources))
    missing = [s for s in model.sources if s not in data_sources]
    if missing:
        raise ConfigError(
            f"{recipe.path}: model.sources {list(model.sources)} name {missing}, which data.sources "
            f"{data_sources} lack"
        )
    loss = build_loss(recipe.loss.name, list(model.sources), **recipe.loss.kwargs)
    task = SeparationTask(
        model=model,
        loss=loss,
        optimizer=functools.partial(build_optimizer, recipe.optimizer),
        scheduler=functools.partial(build_scheduler, recipe.scheduler),
        engine=recipe.inference,
        ema_decay=recipe.train.ema_decay,
        audio_examples=recipe.train.audio_examples,
        model_name=recipe.model.name,
        config=recipe.resolved,
        data_sources=data_sources,
        compile=recipe.train.compile,
    )
    return datamodule, task


def cxx_compiler() -> str:
    """The C++ compiler ``torch.compile``'s code generation (inductor) calls: ``$CXX``, or
    ``g++`` (``clang++`` on macOS)."""
    return os.environ.get("CXX") or ("clang++" if sys.platform == "darwin" else "g++")


def check_compiler(where: str = "train.compile") -> None:
    """Refuse ``torch.compile`` in one line where its C++ compiler or Python's C headers (which
    the code it generates includes) are missing.

    Without the check, the first training step would fail deep inside inductor.

    Args:
        where: What names the key in the error message. (Default: ``"train.compile"``)

    Raises:
        ConfigError: The compiler or ``Python.h`` is not found.
    """
    compiler = cxx_compiler()
    if shutil.which(compiler) is None:
        named = f"$CXX ({compiler!r})" if os.environ.get("CXX") else repr(compiler)
        raise ConfigError(
            f"{where}: torch.compile needs a C++ compiler and {named} is not found; install one "
            "(scripts/setup.sh installs g++) or set train.compile=false"
        )
    headers = Path(sysconfig.get_path("include"))
    if sys.platform == "linux" and not (headers / "Python.h").is_file():
        raise ConfigError(
            f"{where}: torch.compile's C++ code includes Python.h, which is not in {headers}; install "
            "Python's headers (python3-dev; scripts/setup.sh does) or set train.compile=false"
        )


def freeze_parameters(model: Any, patterns: Sequence[str], where: str = "train.freeze") -> list[str]:
    """Stop the parameters whose names match any of ``patterns`` from training.

    Args:
        model: The model.
        patterns: ``fnmatch`` glob patterns over parameter names (``model.named_parameters()``).
        where: What names the patterns in error messages. (Default: ``"train.freeze"``)

    Returns:
        The names of the frozen parameters.

    Raises:
        ConfigError: A pattern matches no parameter, or every parameter would be frozen.
    """
    parameters = dict(model.named_parameters())
    frozen = [name for name in parameters if any(fnmatch.fnmatchcase(name, p) for p in patterns)]
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in frozen):
            example = f"; its parameters are named like {next(iter(parameters))!r}" if parameters else ""
            raise ConfigError(f"{where}: {pattern!r} matches no parameter of the model{example}")
    if len(frozen) == len(parameters):
        raise ConfigError(f"{where}: {list(patterns)} match every parameter; nothing would train")
    for name in frozen:
        parameters[name].requires_grad_(False)
    return frozen


def add_lora(model: Any, options: LoraOptions, seed: int, where: str = "train.lora.targets") -> list[str]:
    """Freeze every weight of ``model`` and put trainable LoRA adapters on the modules ``options`` names.

    Args:
        model: The model (with its initial or loaded weights).
        options: The recipe's ``train.lora``.
        seed: Draws the adapters' random halves, so that they are a function of the recipe.
        where: What names the targets in error messages. (Default: ``"train.lora.targets"``)

    Returns:
        The adapted weights, as ``<module>.<weight>`` names.

    Raises:
        ConfigError: A target pattern matches no module LoRA can adapt.
    """
    import torch

    from sepzoo.models.lora import add_adapters

    model.requires_grad_(False)  # the usual choice: norms, biases and the rest freeze too
    generator = torch.Generator().manual_seed(seed)
    adapted = add_adapters(model, options.targets, options.rank, options.alpha, generator, where)
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log.info(
        "train.lora: adapters of rank %d on %d weights; %d of %d parameters train",
        options.rank,
        len(adapted),
        trained,
        total,
    )
    return adapted


def _load_initial_weights(model: Any, source: str, strict: bool) -> None:
    """Copy the weights of a model file, training checkpoint or run directory into ``model``.

    Strict, every tensor must fit; otherwise the tensors that fit by name and shape are loaded,
    the others keep their initial values, and a one-line report names them.
    """
    from sepzoo.errors import CheckpointError
    from sepzoo.models.bag import BagOfModels
    from sepzoo.models.files import load_separator

    donor = load_separator(source)
    if isinstance(donor, BagOfModels):
        raise CheckpointError(f"{source}: train.init_from holds a bag of models; start from one member")
    from sepzoo.models.onnx_model import OnnxSeparator

    if isinstance(donor, OnnxSeparator):
        raise CheckpointError(
            f"{source}: train.init_from is an exported (ONNX) folder, which holds no torch weights; "
            "start from the model it was exported from"
        )
    report = compare_states(model.state_dict(), donor.state_dict())
    if strict and (donor.registry_name != model.registry_name or not report.complete):
        raise CheckpointError(
            f"{source}: train.init_from holds a {donor.registry_name!r} model that does not fit the recipe's "
            f"{model.registry_name!r} ({report.describe()}); set train.init_strict=false to load what fits"
        )
    model.load_state_dict({key: donor.state_dict()[key] for key in report.loaded}, strict=False)
    log.info("train.init_from %s: %s", source, report.describe())


@dataclasses.dataclass
class LoadReport:
    """How one state dict fits another: which keys load, and which do not and why.

    Args:
        loaded: Keys present in both with the same shape.
        missing: Keys of the model that the source lacks.
        unexpected: Keys of the source that the model lacks.
        mismatched: Keys present in both with different shapes.
    """

    loaded: list[str]
    missing: list[str]
    unexpected: list[str]
    mismatched: list[str]

    @property
    def complete(self) -> bool:
        """Whether every tensor of both sides loads."""
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self, limit: int = 4) -> str:
        """One line: counts, and the first few keys of each problem.

        Args:
            limit: Keys named per problem. (Default: ``4``)
        """
        parts = [f"{len(self.loaded)} tensors loaded"]
        for label, keys in (("missing", self.missing), ("unexpected", self.unexpected),
                            ("shape mismatch", self.mismatched)):  # fmt: skip
            if keys:
                more = f" +{len(keys) - limit} more" if len(keys) > limit else ""
                parts.append(f"{label}: {', '.join(keys[:limit])}{more}")
        return "; ".join(parts)


def compare_states(target: dict[str, Any], source: dict[str, Any]) -> LoadReport:
    """Compare a model's state dict with one to load into it.

    Args:
        target: The model's state dict.
        source: The state dict to load.
    """
    loaded = [k for k in target if k in source and source[k].shape == target[k].shape]
    mismatched = [k for k in target if k in source and source[k].shape != target[k].shape]
    missing = [k for k in target if k not in source]
    unexpected = [k for k in source if k not in target]
    return LoadReport(loaded, missing, unexpected, mismatched)


def build_callbacks(recipe: Recipe, run_dir: Path, validates: bool = True) -> list[Any]:
    """Checkpointing (best by validation nSDR, last, periodic, final) and learning-rate logging.

    Args:
        recipe: The validated recipe.
        run_dir: The run directory.
        validates: Whether the run has validation tracks; without them there is no ``best.ckpt``.
            (Default: ``True``)
    """
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint

    from sepzoo.training.task import FinalCheckpoint

    checkpoints = run_dir / "checkpoints"
    callbacks: list[Any] = [FinalCheckpoint(checkpoints / "last.ckpt")]
    if validates:
        callbacks.append(
            ModelCheckpoint(
                dirpath=checkpoints,
                filename="best",
                monitor="valid/nSDR",
                mode="max",
                save_top_k=1,
                save_last=True,
                enable_version_counter=False,
                auto_insert_metric_name=False,
            )
        )
    if recipe.train.checkpoint_every_n_steps:
        callbacks.append(
            ModelCheckpoint(
                dirpath=checkpoints,
                filename="step-{step:08d}",
                every_n_train_steps=recipe.train.checkpoint_every_n_steps,
                save_top_k=-1,
                auto_insert_metric_name=False,
                enable_version_counter=False,
            )
        )
    if recipe.scheduler.name != "none":
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    return callbacks


def build_trainer(recipe: Recipe, run_dir: Path, logger: Any, validates: bool = True) -> Any:
    """The Lightning Trainer for a recipe.

    Args:
        recipe: The validated recipe.
        run_dir: The run directory.
        logger: The experiment logger, or ``False`` to attach one later (``trainer.logger = ...``).
        validates: Whether the run has validation tracks. (Default: ``True``)
    """
    import lightning as L

    options = dict(recipe.trainer)
    options["precision"] = resolve_precision(
        options.get("precision", "auto"),
        options.get("accelerator", "auto"),
        f"{recipe.path or 'recipe'}: trainer.precision",
    )
    options.setdefault("num_sanity_val_steps", 0)
    if recipe.train.validate_every_n_steps:
        options.setdefault("val_check_interval", recipe.train.validate_every_n_steps)
        options.setdefault("check_val_every_n_epoch", None)
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        return L.Trainer(
            default_root_dir=str(run_dir),
            logger=logger,
            callbacks=build_callbacks(recipe, run_dir, validates),
            use_distributed_sampler=False,
            **options,
        )
    except (MisconfigurationException, ValueError, TypeError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{recipe.path or 'recipe'}: trainer: {message}") from None


def train(
    recipe_path: str | Path,
    overrides: list[str] | None = None,
    resume: bool = False,
    force: bool = False,
) -> Path:
    """Train the model a recipe describes and return its run directory.

    Args:
        recipe_path: The recipe YAML.
        overrides: ``key=value`` overrides. (Default: none)
        resume: Continue the unfinished run with the same config hash. (Default: ``False``)
        force: Replace an existing run with the same config hash. (Default: ``False``)
    """
    import lightning as L

    recipe = load_recipe(recipe_path, overrides or [])
    run_dir = run_directory(recipe)
    make_writable_folder(run_dir.parent, "the runs folder")
    # Seeded before the model is built, so that its initial weights are a function of the recipe.
    L.seed_everything(recipe.seed, workers=True, verbose=False)
    datamodule, task = build_components(recipe)
    # The data set is listed and checked before anything is written, so bad data leaves no run behind.
    validates = bool(getattr(datamodule, "has_validation", True))
    # One process at a time trains in a run directory: a second --resume or --force is refused
    # before it reads or deletes anything, and the lock dies with its process.
    with contextlib.ExitStack() as held:
        locked = run_dir.exists()
        if locked:
            held.enter_context(_run_lock(run_dir))
        return _train_locked(recipe, run_dir, datamodule, task, validates, resume, force, held, locked)


def _run_lock(run_dir: Path) -> contextlib.AbstractContextManager[None]:
    if is_launcher_child():
        return contextlib.nullcontext()  # the first process holds the lock for the whole launch
    return folder_lock(run_dir, "training in this run")


def _train_locked(
    recipe: Recipe,
    run_dir: Path,
    datamodule: Any,
    task: Any,
    validates: bool,
    resume: bool,
    force: bool,
    held: contextlib.ExitStack,
    locked: bool,
) -> Path:
    """The part of :func:`train` that runs with the run directory locked."""
    from sepzoo.training.loggers import build_logger, log_examples

    plan: RunPlan = plan_run(run_dir, resume=resume, force=force)
    if plan.resume_from is not None:
        _check_resumable(plan.resume_from, recipe)
    # Built before the run directory, so that a trainer setting the machine cannot honour (an
    # accelerator it lacks, say) fails before anything is written; the logger comes later.
    _quiet_lightning()
    trainer = build_trainer(recipe, run_dir, logger=False, validates=validates)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not locked:
        held.enter_context(_run_lock(run_dir))  # a fresh run: locked as soon as its folder exists
    fingerprint = _fingerprint(recipe)
    run_id = run_hash(recipe.resolved, fingerprint)
    meta = run_metadata(run_id, fingerprint)
    if not is_launcher_child():
        config_text = recipe.to_yaml(meta=meta)
        write_text_atomic(run_dir / CONFIG_FILE, config_text)
        if plan.resume_from is not None:
            _keep_csv_history(run_dir)
    run_name = run_dir.name
    logger = build_logger(
        recipe.logger.name,
        run_dir,
        run_name,
        project=recipe.logger.project,
        entity=recipe.logger.entity,
        group=recipe.logger.group,
        tags=recipe.logger.tags,
        mode=recipe.logger.mode,
        notes=recipe.logger.notes,
        config={**recipe.resolved, "meta": meta},
        resume_id=run_name if recipe.logger.name == "wandb" else None,
    )
    trainer.logger = logger
    task.example_logger = log_examples
    resume_from = str(plan.resume_from) if plan.resume_from else None
    # A resumed checkpoint is read like every other file: tensors and plain values only.
    trainer.fit(task, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    if trainer.interrupted:
        _finish_logger(logger)
        # Lightning has saved nothing new; the run stays unfinished and `--resume` continues it.
        raise KeyboardInterrupt
    if trainer.global_rank == 0:
        best = trainer.checkpoint_callback
        summary = {
            "global_step": trainer.global_step,
            "best_checkpoint": str(best.best_model_path) if best else None,
            "best_valid_nSDR": float(best.best_model_score)
            if best and best.best_model_score is not None
            else None,
            "config_hash": run_id,
        }
        write_json_atomic(run_dir / DONE_MARKER, summary)
    _finish_logger(logger)
    return run_dir


def _check_resumable(checkpoint: Path, recipe: Recipe) -> None:
    """Refuse, in one line, a checkpoint that is damaged or holds another model, before any work."""
    from sepzoo.errors import CheckpointError
    from sepzoo.models.files import TRAIN_FORMAT, safe_load

    content = safe_load(checkpoint)
    info = content.get("sepzoo") if isinstance(content, dict) else None
    if not isinstance(info, dict) or info.get("format") != TRAIN_FORMAT:
        raise CheckpointError(f"{checkpoint}: not a sepzoo training checkpoint; cannot resume from it")
    saved = (info.get("model") or {}).get("name")
    if saved != recipe.model.name:
        raise CheckpointError(
            f"{checkpoint}: holds a {saved!r} model, but the recipe trains {recipe.model.name!r}"
        )


def _keep_csv_history(run_dir: Path) -> None:
    """Move the CSV metrics of an interrupted run aside before resuming: Lightning's CSV logger
    starts its file afresh, and the history must not be lost."""
    metrics = run_dir / "logs" / "metrics.csv"
    if not metrics.is_file():
        return
    index = 1
    while (kept := metrics.with_name(f"metrics.before-resume-{index}.csv")).exists():
        index += 1
    metrics.rename(kept)


def _quiet_lightning() -> None:
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*Checkpoint directory.*exists and is not empty.*")
    # sepzoo resumes mid-epoch itself (the sampler skips the samples the checkpoint counted), and
    # keeps an interrupted run's CSV metrics before Lightning's CSV logger starts its file anew.
    warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch.*")
    warnings.filterwarnings("ignore", message=".*Experiment logs directory .* exists and is not empty.*")
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)


def _finish_logger(logger: Any) -> None:
    from lightning.pytorch.loggers import WandbLogger

    if isinstance(logger, WandbLogger) and logger._experiment is not None:
        logger.experiment.finish()
