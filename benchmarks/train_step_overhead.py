"""The training framework's overhead: one optimisation step of sepzoo's task under Lightning
against a bare PyTorch loop, on the same model, batch, loss and optimizer.

Each side runs in its own subprocess (same thread count), warms up, then times every step; the
script prints the median step time of each, their ratio (goal: sepzoo / bare <= 1.05) and each
process's peak resident memory.

    .venv/bin/python benchmarks/train_step_overhead.py [--steps 30] [--threads 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

MODEL_KWARGS = {
    "encoder_filters": 128,
    "encoder_kernel": 40,
    "bottleneck_channels": 64,
    "hidden_channels": 128,
    "blocks_per_repeat": 6,
    "repeats": 2,
}
"""The toy recipe's Conv-TasNet (recipes/toy/conv_tasnet.yaml)."""


def _batch(device: str):
    import torch

    generator = torch.Generator().manual_seed(0)
    return torch.randn(4, 4, 2, 44100, generator=generator).to(device) * 0.1  # B, S, C, T: 1 s segments


def _model(device: str):
    import torch

    from sepzoo.models import create_model

    torch.manual_seed(0)
    return create_model("conv_tasnet", **MODEL_KWARGS).to(device)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_bare(steps: int, warmup: int, device: str) -> list[float]:
    """A plain loop: forward, L1 loss, backward, Adam step."""
    import torch

    model, stems = _model(device), _batch(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    times = []
    for step in range(warmup + steps):
        _sync(device)
        start = time.perf_counter()
        estimate = model(stems.sum(dim=1))
        loss = (estimate - stems).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        _sync(device)
        if step >= warmup:
            times.append(time.perf_counter() - start)
    return times


def run_sepzoo(steps: int, warmup: int, device: str) -> list[float]:
    """sepzoo's SeparationTask under a Lightning Trainer, as `sepzoo train` builds it."""
    import functools
    import logging
    import tempfile
    import warnings

    import lightning as L
    from torch.utils.data import DataLoader, Dataset

    from sepzoo.training.losses import build_loss
    from sepzoo.training.optimizers import build_optimizer, build_scheduler
    from sepzoo.training.recipe import NamedSpec, SchedulerSpec
    from sepzoo.training.task import SeparationTask

    warnings.filterwarnings("ignore")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    stems = _batch("cpu")

    class SameBatch(Dataset):
        def __len__(self) -> int:
            return warmup + steps

        def __getitem__(self, index: int):
            return stems[index % len(stems)]

    class StepTimer(L.Callback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.start = 0.0

        def on_train_batch_start(self, *args: object) -> None:
            _sync(device)
            self.start = time.perf_counter()

        def on_train_batch_end(self, *args: object) -> None:
            _sync(device)
            self.times.append(time.perf_counter() - self.start)

    model = _model("cpu")
    task = SeparationTask(
        model=model,
        loss=build_loss("l1", list(model.sources)),
        optimizer=functools.partial(build_optimizer, NamedSpec("adam", {"lr": 1e-3})),
        scheduler=functools.partial(build_scheduler, SchedulerSpec("none")),
    )
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as folder:
        trainer = L.Trainer(
            default_root_dir=folder,
            max_steps=warmup + steps,
            accelerator="gpu" if device.startswith("cuda") else "cpu",
            devices=1,
            precision="32-true",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[timer],
            limit_val_batches=0,
            num_sanity_val_steps=0,
        )
        loader = DataLoader(SameBatch(), batch_size=len(stems), num_workers=0)
        trainer.fit(task, train_dataloaders=loader)
    return timer.times[warmup:]


def worker(kind: str, steps: int, warmup: int, threads: int, device: str) -> None:
    import torch

    torch.set_num_threads(threads)
    times = (run_bare if kind == "bare" else run_sepzoo)(steps, warmup, device)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"median": statistics.median(times), "steps": len(times), "peak_mb": peak_mb}))


def measure(kind: str, args: argparse.Namespace) -> dict:
    command = [
        sys.executable,
        __file__,
        "--worker",
        kind,
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--threads",
        str(args.threads),
        "--device",
        args.device,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=30, help="timed steps per side (default: 30)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (default: 5)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per side (default: 2)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--worker", choices=["bare", "sepzoo"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.steps, args.warmup, args.threads, args.device)
        return
    # Alternate the sides so that drift in the machine's speed hits both alike.
    bare, sepzoo = measure("bare", args), measure("sepzoo", args)
    bare_again, sepzoo_again = measure("bare", args), measure("sepzoo", args)
    bare_median = min(bare["median"], bare_again["median"])
    sepzoo_median = min(sepzoo["median"], sepzoo_again["median"])
    print(
        "training step, Conv-TasNet (toy recipe), batch 4 x 1 s stereo, "
        f"{args.device}, {args.threads} threads"
    )
    print(f"  bare PyTorch loop: {bare_median * 1000:8.1f} ms/step   peak RSS {bare['peak_mb']:7.0f} MB")
    print(f"  sepzoo task:       {sepzoo_median * 1000:8.1f} ms/step   peak RSS {sepzoo['peak_mb']:7.0f} MB")
    print(f"  ratio sepzoo / bare: {sepzoo_median / bare_median:.3f}  (goal <= 1.05)")


if __name__ == "__main__":
    main()
