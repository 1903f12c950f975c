"""Run directories: one folder per (recipe, resolved config), resumable and never clobbered.

A run lives in ``<run.root>/<name>-<hash>/`` where ``hash`` is eight hex digits of the resolved
config's SHA-256 (see :meth:`sepzoo.training.recipe.Recipe.config_hash`). It holds::

    config.yaml        the resolved recipe, with a `meta` section (git commit, package versions)
    checkpoints/       best.ckpt (by validation nSDR), last.ckpt, step-*.ckpt (periodic)
    wandb/ or logs/    the logger's files
    DONE               written when training finished; a JSON summary

``--resume`` continues a run only when the hash matches (the same directory); a finished run
is never replaced without ``--force``.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from sepzoo.errors import OutputExistsError, SepzooError

DONE_MARKER = "DONE"
CONFIG_FILE = "config.yaml"
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
        shutil.rmtree(run_dir)
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


def run_metadata(config_hash: str) -> dict[str, Any]:
    """The ``meta`` section stored beside a resolved recipe.

    Args:
        config_hash: The resolved config's hash.
    """
    return {
        "config_hash": config_hash,
        "git_commit": git_commit(),
        "packages": package_versions(),
        "python": platform.python_version(),
        "command": " ".join(sys.argv),
    }
