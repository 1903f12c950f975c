"""Training speed of every registered architecture in float32, in bfloat16 mixed precision and
compiled: steps per second, and the ratios bf16 / fp32 and compiled / fp32.

Each architecture trains at the size of its toy recipe (``recipes/toy/*.yaml``: the model, the
loss, the optimizer, gradient clipping, the data segment and batch size); an architecture
without a toy recipe takes the recipe of the architecture it is a variant of, with its own name
(``demucs_v2`` takes ``demucs.yaml``). The batch is random stems. A step is what sepzoo's
training step does: the mixture through the model, the loss, backward, clipping, the optimizer.

* ``fp32``: as ``trainer.precision: 32-true`` runs it;
* ``bf16``: forward pass and loss under bfloat16 autocast, as ``bf16-mixed`` runs them;
* ``compiled``: float32, the model's forward method through ``torch.compile``, as
  ``train.compile: true`` runs it.

Every (architecture, mode) runs in a fresh subprocess; the warm-up steps (which include the
compilation) are not timed, and a mode's speed is one over its median step time. With
``--device cuda`` (or ``--demucs``), the official ``demucs.htdemucs.HTDemucs`` is timed too, at
the size and batch of sepzoo's ``htdemucs`` toy recipe, with the same loss and optimizer.

    .venv/bin/python benchmarks/train_speed.py [--models conv_tasnet htdemucs] [--steps 20]
        [--warmup 3] [--threads 2] [--device cpu] [--modes fp32 bf16 compiled] [--demucs]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
TOY_RECIPES = REPO_ROOT / "recipes" / "toy"
MODES = ("fp32", "bf16", "compiled")
DEMUCS = "demucs:htdemucs"
"""The row of the official HT Demucs (the ``demucs`` package), timed at sepzoo's toy size."""


# ----------------------------------------------------------------------------------------------
# Which recipe each architecture trains at


def trainable_architectures() -> list[str]:
    """Registered models that have parameters to train (every domain but the oracles)."""
    from sepzoo.models import get_model_class, list_models

    return [name for name in list_models() if get_model_class(name).domain != "oracle"]


def toy_recipes() -> dict[str, Path]:
    """The toy recipe of each architecture that has one, by model name."""
    import yaml

    found = {}
    for path in sorted(TOY_RECIPES.glob("*.yaml")):
        model = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("model") or {}
        found.setdefault(model.get("name"), path)
    return found


def recipe_for(name: str, recipes: dict[str, Path]) -> Path | None:
    """The toy recipe ``name`` trains at: its own, or that of the nearest registered parent class.

    Args:
        name: A registered model name.
        recipes: :func:`toy_recipes`.
    """
    from sepzoo.models import get_model_class, list_models

    if name in recipes:
        return recipes[name]
    registered = {get_model_class(other): other for other in list_models()}
    for parent in get_model_class(name).__mro__[1:]:
        if registered.get(parent) in recipes:
            return recipes[registered[parent]]
    return None


# ----------------------------------------------------------------------------------------------
# One measurement (in the subprocess)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


@dataclasses.dataclass
class Setup:
    """What one architecture trains with: its toy recipe's model, loss, optimizer, gradient
    clipping (0: none), and a batch of random stems ``[B, S, C, T]``."""

    model: Any
    loss: Any
    optimizer: Any
    clip: float
    stems: Any
    size: str
    """The batch as the table shows it: ``"4 x 1 s"``."""


def _setup(name: str, recipe_path: Path, device: str) -> Setup:
    import torch

    from sepzoo.models import create_model
    from sepzoo.training.losses import build_loss
    from sepzoo.training.optimizers import build_optimizer
    from sepzoo.training.recipe import load_recipe

    recipe = load_recipe(recipe_path, [f"model.name={name}"] if name != DEMUCS else [])
    torch.manual_seed(0)
    if name == DEMUCS:
        model = _official_htdemucs(recipe.model.kwargs)
        sources = list(recipe.model.kwargs["sources"])
    else:
        model = create_model(name, **recipe.model.kwargs)
        sources = list(model.sources)
    model = model.to(device).train()
    loss = build_loss(recipe.loss.name, sources, **recipe.loss.kwargs).to(device)
    optimizer = build_optimizer(recipe.optimizer, [p for p in model.parameters() if p.requires_grad])
    samples = round(recipe.data.kwargs["segment"] * recipe.sample_rate)
    shape = (recipe.data.kwargs["batch_size"], len(sources), recipe.audio_channels, samples)
    stems = 0.1 * torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    clip = float(recipe.trainer.get("gradient_clip_val") or 0.0)
    size = f"{shape[0]} x {samples / recipe.sample_rate:g} s"
    return Setup(model, loss, optimizer, clip, stems.to(device), size)


def _official_htdemucs(kwargs: dict[str, Any]) -> Any:
    """``demucs.htdemucs.HTDemucs`` with the arguments of sepzoo's ``htdemucs`` recipe (the names
    are demucs's, but for the sample rate)."""
    from demucs.htdemucs import HTDemucs

    from sepzoo.convert.demucs import OFFICIAL_ARGUMENTS

    renamed = {("samplerate" if key == "sample_rate" else key): value for key, value in kwargs.items()}
    unknown = sorted(set(renamed) - set(OFFICIAL_ARGUMENTS["htdemucs"]))
    if unknown:
        raise SystemExit(f"demucs's HTDemucs takes no {', '.join(unknown)}")
    return HTDemucs(**renamed)


def time_steps(
    name: str, recipe_path: Path, mode: str, steps: int, warmup: int, device: str
) -> tuple[list[float], str]:
    """Seconds of each timed training step of one architecture in one mode, and the batch's size
    (``"4 x 1 s"``).

    Args:
        name: A registered model name, or :data:`DEMUCS`.
        recipe_path: Its toy recipe.
        mode: One of :data:`MODES`.
        steps: Timed steps.
        warmup: Untimed steps first.
        device: ``"cpu"`` or ``"cuda"``.
    """
    import torch

    setup = _setup(name, recipe_path, device)
    model, loss, optimizer, stems = setup.model, setup.loss, setup.optimizer, setup.stems
    forward = torch.compile(model.forward, dynamic=False) if mode == "compiled" else model
    mix = stems.sum(dim=1)  # B, C, T
    times = []
    for step in range(warmup + steps):
        _sync(device)
        start = time.perf_counter()
        with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=mode == "bf16"):
            total, _ = loss(forward(mix), stems)
        total.backward()
        if setup.clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), setup.clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _sync(device)
        if step >= warmup:
            times.append(time.perf_counter() - start)
    return times, setup.size


def worker(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    times, size = time_steps(args.worker, args.recipe, args.mode, args.steps, args.warmup, args.device)
    print(json.dumps({"steps_per_second": 1.0 / statistics.median(times), "size": size}))


# ----------------------------------------------------------------------------------------------
# The table (in the parent process)


def measure(name: str, recipe: Path, mode: str, args: argparse.Namespace) -> dict[str, Any] | str:
    """Steps per second and batch size of one (architecture, mode) in a fresh subprocess, or why
    it failed."""
    command = [
        sys.executable, __file__, "--worker", name, "--recipe", str(recipe), "--mode", mode,
        "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads),
        "--device", args.device,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return f"over {args.timeout} s"
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        # torch's compiler ends its messages with advice; the exception's own line says what failed
        errors = [line for line in lines if "Error" in line.split(":")[0] or "Exception" in line]
        reason = (errors or lines or [str(done.returncode)])[-1]
        return f"failed: {reason[:120]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def _cell(value: float | str | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if isinstance(value, float) else value


def _ratio(value: float | str | None, base: float | str | None) -> str:
    if isinstance(value, float) and isinstance(base, float):
        return f"{value / base:.2f}"
    return "-"


def print_table(
    rows: dict[str, dict[str, float | str]], sizes: dict[str, str], args: argparse.Namespace
) -> None:
    """Steps per second per mode, and the ratios to fp32 (above 1: faster than fp32)."""
    header = ["architecture", "batch x segment", *(f"{m} steps/s" for m in args.modes)]
    header += [f"{m}/fp32" for m in args.modes if m != "fp32" and "fp32" in args.modes]
    lines = [header]
    for name, speeds in rows.items():
        line = [name, sizes[name], *(_cell(speeds.get(m)) for m in args.modes)]
        line += [
            _ratio(speeds.get(m), speeds.get("fp32"))
            for m in args.modes
            if m != "fp32" and "fp32" in args.modes
        ]
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    print(
        f"training steps per second, {args.device}, {args.threads} threads, median of {args.steps} steps "
        f"after {args.warmup} warm-up steps, one process per cell"
    )
    for line in lines:
        print(
            "  "
            + "  ".join(
                cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths))
            )
        )
    if DEMUCS in rows and "htdemucs" in rows:
        for mode in args.modes:
            ratio = _ratio(rows["htdemucs"].get(mode), rows[DEMUCS].get(mode))
            print(f"  htdemucs {mode}: sepzoo / demucs steps per second {ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", help="registered names (default: every trainable one)")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES, help="(default: all three)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per cell (default: 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default: 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per process (default: 2)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument(
        "--demucs", action="store_true", help="also time demucs's own HT Demucs (default: on with cuda)"
    )
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell (default: 3600)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--recipe", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    known = trainable_architectures()
    names = args.models or known
    unknown = [name for name in names if name not in known]
    if unknown:
        parser.error(f"not trainable registered models: {', '.join(unknown)} (known: {', '.join(known)})")
    recipes = toy_recipes()
    chosen = {name: recipe_for(name, recipes) for name in names}
    if args.demucs or args.device.startswith("cuda"):
        chosen[DEMUCS] = recipes.get("htdemucs")
    rows, sizes = {}, {}
    for name, recipe in chosen.items():
        if recipe is None:
            print(f"{name}: no toy recipe for it or an architecture it is a variant of; left out")
            continue
        results = {mode: measure(name, recipe, mode, args) for mode in args.modes}
        rows[name] = {m: r["steps_per_second"] if isinstance(r, dict) else r for m, r in results.items()}
        sizes[name] = next((r["size"] for r in results.values() if isinstance(r, dict)), "-")
        print(f"  measured {name} ({recipe.name}): {rows[name]}", file=sys.stderr, flush=True)
    print_table(rows, sizes, args)


if __name__ == "__main__":
    main()
