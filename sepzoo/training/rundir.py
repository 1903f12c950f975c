"""Run directories: one folder per (recipe, what the run computes), resumable, locked while
a process trains in them, and never clobbered.

A run lives in ``<run.root>/<name>-<hash>/`` where ``hash`` (:func:`run_hash`) is eight hex
digits of a SHA-256 over what changes the run's results: the resolved recipe less where it runs
and how it loads (``run``, ``logger``, ``inference``, the trainer's device keys, ``data.root``,
``data.num_workers``, ``data.pin_memory``), plus a fingerprint of the training data (every audio
file's path relative to ``data.root`` and its size). The same data set mounted elsewhere, or
read with another worker count, is the same run; two different data sets never share one.
It holds::

    config.yaml        the resolved recipe, with a `meta` section (git commit, package versions,
                       the run hash and the data fingerprint)
    checkpoints/       best.ckpt (by validation nSDR), last.ckpt, step-*.ckpt (periodic)
    wandb/ or logs/    the logger's files
    DONE               written when training finished; a JSON summary
    .lock              locked (an OS file lock) while a process trains in the folder

``--resume`` continues a run only when the hash matches (the same directory, or a directory an
earlier sepzoo version named by its own hash, recognised through its recorded config); a
finished run is never replaced without ``--force``, and a run another process is training is
never touched.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import yaml

from sepzoo.data.base import ADDED_AUGMENT_KEYS, StemDataModule
from sepzoo.errors import OutputExistsError, SepzooError
from sepzoo.io.lock import LOCK_FILE

DONE_MARKER = "DONE"
CONFIG_FILE = "config.yaml"
LOADING_DATA_KEYS = ("root", "num_workers", "pin_memory")
"""Data keys that say where the data live and how they are read, not what a run computes."""
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".mp4", ".m4a", ".mp3", ".ogg", ".opus", ".aif", ".aiff"})
PACKAGES = (
    "sepzoo",
    "torch",
    "torchaudio",
    "lightning",
    "torchmetrics",
    "wandb",
    "musdb",
    "omegaconf",
    "soundfile",
    "numpy",
    "scipy",
)


@dataclass(frozen=True)
class RunPlan:
    """What ``sepzoo train`` will do with a run directory.

    Args:
        run_dir: The run directory.
        resume_from: The checkpoint training continues from, or ``None`` for a fresh start.
    """

    run_dir: Path
    resume_from: Path | None


def data_fingerprint(root: str | Path | None) -> str | None:
    """Eight hex digits of a SHA-256 over a data set's audio files: their paths relative to
    ``root`` and their sizes. ``None`` when there is no root to read.

    Args:
        root: The data set's folder (a recipe's ``data.root``).
    """
    if root is None or not Path(root).is_dir():
        return None
    root = Path(root)
    entries = []
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if path.suffix.lower() not in AUDIO_SUFFIXES or any(p.startswith(".") for p in relative.parts):
            continue
        if path.is_file():
            entries.append(f"{relative.as_posix()}\t{path.stat().st_size}")
    text = "\n".join(sorted(entries))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


_DATA_DEFAULTS = inspect.signature(StemDataModule.__init__).parameters
ADDED_KEYS_AT_DEFAULT: dict[tuple[str, str], Any] = {
    ("train", "freeze"): [],
    ("train", "lora"): None,
    ("train", "compile"): False,
    ("optimizer", "param_groups"): [],
    **{("data", key): _plain(_DATA_DEFAULTS[key].default) for key in ADDED_AUGMENT_KEYS},
}
"""Recipe keys added after runs were first named by hash, with the default that leaves results as
they were: at that default they are left out of the hash, so that adding a key never renames the
runs that do not use it (``--resume`` still finds them). The augmentation keys take their
defaults from :class:`~sepzoo.data.base.StemDataModule`'s signature."""


def run_hash(resolved: Mapping[str, Any], fingerprint: str | None) -> str:
    """Eight hex digits of a SHA-256 over what changes a run's results.

    Args:
        resolved: The resolved recipe (``Recipe.resolved``; a recorded ``meta`` is ignored).
        fingerprint: The training data's :func:`data_fingerprint`.
    """
    from sepzoo.training.recipe import RESULT_NEUTRAL_TRAIN_KEYS, RESULT_NEUTRAL_TRAINER_KEYS

    kept = {k: v for k, v in resolved.items() if k not in ("run", "logger", "meta", "inference")}
    if isinstance(kept.get("trainer"), Mapping):
        kept["trainer"] = {k: v for k, v in kept["trainer"].items() if k not in RESULT_NEUTRAL_TRAINER_KEYS}
    if isinstance(kept.get("train"), Mapping):
        kept["train"] = {k: v for k, v in kept["train"].items() if k not in RESULT_NEUTRAL_TRAIN_KEYS}
    if isinstance(kept.get("data"), Mapping):
        kept["data"] = {k: v for k, v in kept["data"].items() if k not in LOADING_DATA_KEYS}
    for (section, key), default in ADDED_KEYS_AT_DEFAULT.items():
        values = kept.get(section)
        if isinstance(values, Mapping) and key in values and _plain(values[key]) == default:
            kept[section] = {k: v for k, v in values.items() if k != key}
    kept["data_fingerprint"] = fingerprint
    text = json.dumps(kept, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def find_earlier_run(
    run_root: Path, name: str, resolved: Mapping[str, Any], fingerprint: str | None
) -> Path | None:
    """A run directory that an earlier sepzoo version named by its own hash, for this run.

    Versions before the run hash left out where the data live named run directories by a hash
    of the whole config. Such a directory is this run when its recorded config gives this run's
    hash; where its recorded ``data.root`` still exists, that data set must also have this
    fingerprint (a moved data set cannot be checked, and is taken as the same).

    Args:
        run_root: The recipe's ``run.root``.
        name: The run's name (``run.name`` or the recipe's name).
        resolved: The resolved recipe.
        fingerprint: The training data's fingerprint.
    """
    wanted = run_hash(resolved, fingerprint)
    for candidate in sorted(run_root.glob(f"{name}-*")):
        config = candidate / CONFIG_FILE
        if len(candidate.name) != len(name) + 9 or not config.is_file():
            continue
        try:
            recorded = yaml.safe_load(config.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        if not isinstance(recorded, dict) or "run_hash" in (recorded.get("meta") or {}):
            continue  # unreadable, or named by the run hash already
        recorded_root = (recorded.get("data") or {}).get("root")
        recorded_fingerprint = data_fingerprint(recorded_root)
        if recorded_fingerprint is not None and recorded_fingerprint != fingerprint:
            continue
        if run_hash(recorded, fingerprint) == wanted:
            return candidate
    return None


def is_launcher_child() -> bool:
    """True in the extra processes a distributed launcher starts (not the first one).

    Those processes must not check or clean the run directory: the first process already did.
    """
    for variable in ("LOCAL_RANK", "NODE_RANK", "RANK"):
        value = os.environ.get(variable)
        if value not in (None, "", "0"):
            return True
    return False


def plan_run(run_dir: Path, resume: bool, force: bool) -> RunPlan:
    """Decide whether a run starts afresh or resumes, refusing to clobber anything.

    Args:
        run_dir: The run directory for this recipe and config hash.
        resume: ``--resume`` was given.
        force: ``--force`` was given (replace a finished or unfinished run).
    """
    last = latest_checkpoint(run_dir)
    if is_launcher_child():
        return RunPlan(run_dir, last if resume else None)
    if resume and force:
        raise SepzooError("--resume and --force contradict each other: pass one")
    if not run_dir.exists():
        if resume:
            raise SepzooError(
                f"{run_dir}: nothing to resume (no run with this config hash; a changed recipe or "
                "override gives another hash)"
            )
        return RunPlan(run_dir, None)
    finished = (run_dir / DONE_MARKER).is_file()
    if force:
        for entry in run_dir.iterdir():
            if entry.name == LOCK_FILE:
                continue  # held by this process: the run stays locked while it starts again
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        return RunPlan(run_dir, None)
    if finished:
        raise OutputExistsError(
            f"{run_dir}: this run already finished; pass --force to train it again from scratch"
        )
    if resume:
        if last is None:
            raise SepzooError(
                f"{run_dir / 'checkpoints'}: no checkpoint to resume from; "
                "pass --force to start the run again"
            )
        return RunPlan(run_dir, last)
    raise OutputExistsError(
        f"{run_dir}: an unfinished run with this config exists; "
        "pass --resume to continue it or --force to restart"
    )


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The most recently written training checkpoint of a run (``last.ckpt`` or a periodic
    ``step-*.ckpt``), or ``None`` when there is none.

    Args:
        run_dir: The run directory.
    """
    folder = run_dir / "checkpoints"
    candidates = [folder / "last.ckpt", *folder.glob("step-*.ckpt")]
    existing = [path for path in candidates if path.is_file()]
    if not existing:
        return None
    return max(existing, key=lambda path: path.stat().st_mtime_ns)


def git_commit() -> str:
    """The sepzoo source tree's git commit (with ``-dirty`` when modified), or ``"unknown"``."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape a run's results."""
    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def run_metadata(config_hash: str, fingerprint: str | None = None) -> dict[str, Any]:
    """The ``meta`` section stored beside a resolved recipe.

    Args:
        config_hash: The run hash (:func:`run_hash`), as in the run directory's name.
        fingerprint: The training data's fingerprint. (Default: ``None``)
    """
    return {
        "config_hash": config_hash,
        "run_hash": config_hash,
        "data_fingerprint": fingerprint,
        "git_commit": git_commit(),
        "packages": package_versions(),
        "python": platform.python_version(),
        "command": " ".join(sys.argv),
    }
