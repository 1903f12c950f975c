"""Training-loader throughput with the augmentations off and on, against what a training step
consumes: do two loader workers keep up?

On a toy set (written by :func:`sepzoo.data.toy.generate_toy_musdb`, as `sepzoo toy-musdb` does)
the training loader of recipes/toy/demucs.yaml (batch 4 x 1 s, the Demucs augmentations of the
recipe on) is timed with 0 and 2 workers, in three profiles: ``off`` (the recipe as it is),
``no-codec`` (every new augmentation at ``--probability`` but the codecs: polarity, channel
shuffle, loudness, mixup, the six pedalboard effects) and ``all`` (those plus the per-stem and
mixture codecs, MP3/AAC/Opus through ffmpeg). The loader runs at one torch thread, as in a
worker process. The first batch of each loader (worker start-up), and the batches its workers
prefetched meanwhile, are not timed; then at least ``--batches`` batches and ``--min-seconds``
are. Then forward + backward + Adam steps of the recipe's Demucs
on batches of that size are timed. The script prints samples/s for each, the ratios to ``off``,
and the ratio of loader to step throughput with 2 workers (>= 1: the workers keep up). Loader
and training compete for the same cores when training, so on a small machine the last ratio is
optimistic.

    .venv/bin/python benchmarks/loader_throughput.py [--batches 8] [--min-seconds 5] \
        [--probability 1.0] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPE = REPO_ROOT / "recipes" / "toy" / "demucs.yaml"
EFFECT_KEYS = ("loudness", "mixup", "eq", "compressor", "distortion", "chorus", "phaser", "reverb")


def profile_overrides(profile: str, probability: float) -> list[str]:
    """The recipe overrides of a profile."""
    if profile == "off":
        return []
    overrides = [
        "data.sign_flip=false",
        f"data.polarity={probability}",
        "data.channel_swap=false",
        f"data.channel_shuffle={probability}",
        *(f"data.{key}={probability}" for key in EFFECT_KEYS),
    ]
    if profile == "all":
        overrides += [f"data.codec={probability}", f"data.mixture_codec={probability}"]
        overrides += ["data.codec_formats=[mp3,aac,opus]"]
    return overrides


def datamodule(root: Path, workers: int, overrides: list[str]):
    from sepzoo.data import DATASETS
    from sepzoo.training.recipe import load_recipe

    loading = [f"data.root={root}", f"data.num_workers={workers}", "data.samples_per_epoch=100000"]
    recipe = load_recipe(RECIPE, [*loading, *overrides])
    module = DATASETS.get(recipe.data.name)(**recipe.data.kwargs)
    module.setup("fit")
    return module, recipe


def loader_rate(root: Path, workers: int, overrides: list[str], batches: int, min_seconds: float) -> float:
    """Samples per second of the training loader in its steady state: at least ``batches``
    batches and ``min_seconds`` seconds timed."""
    module, _ = datamodule(root, workers, overrides)
    loader = module.train_dataloader()
    iterator = iter(loader)
    # Untimed: the first batch (worker start-up) and those the workers made meanwhile, which a
    # timed run would get for free (each worker prefetches prefetch_factor batches).
    for _ in range(1 + workers * (loader.prefetch_factor or 0)):
        next(iterator)
    start, done = time.perf_counter(), 0
    while done < batches or time.perf_counter() - start < min_seconds:
        next(iterator)
        done += 1
    return done * module.batch_size / (time.perf_counter() - start)


def step_rate(root: Path, steps: int, warmup: int = 2) -> tuple[float, float]:
    """Samples per second that training steps of the recipe's model consume, and the median
    step time, on random batches of the recipe's size."""
    import torch

    from sepzoo.models import create_model

    module, recipe = datamodule(root, 0, [])
    torch.manual_seed(0)
    model = create_model(recipe.model.name, **recipe.model.kwargs)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    shape = (module.batch_size, len(module.sources), module.audio_channels, module.segment_frames)
    stems = torch.randn(*shape, generator=torch.Generator().manual_seed(0)) * 0.1  # B, S, C, T
    times = []
    for step in range(warmup + steps):
        start = time.perf_counter()
        loss = (model(stems.sum(dim=1)) - stems).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= warmup:
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return module.batch_size / median, median


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=8, help="timed batches per loader (default: 8)")
    parser.add_argument(
        "--min-seconds", type=float, default=5.0, help="shortest timed run per loader (default: 5)"
    )
    parser.add_argument("--steps", type=int, default=5, help="timed training steps (default: 5)")
    parser.add_argument(
        "--probability", type=float, default=1.0, help="probability of every new augmentation (default: 1.0)"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    parser.add_argument("--seconds", type=float, default=12.0, help="length of each toy track (default: 12)")
    args = parser.parse_args()

    import torch

    from sepzoo.data.toy import generate_toy_musdb

    # The loader at one torch thread, as in a worker process (the main process of workers=0
    # then does just what one worker does); the training step at --threads.
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="sepzoo-loader-") as folder:
        root = generate_toy_musdb(Path(folder) / "toy", tracks=6, test_tracks=1, seconds=args.seconds, seed=0)
        rates = {}
        for profile in ("off", "no-codec", "all"):
            for workers in (0, 2):
                overrides = profile_overrides(profile, args.probability)
                rates[profile, workers] = loader_rate(
                    root, workers, overrides, args.batches, args.min_seconds
                )
        torch.set_num_threads(args.threads)
        consumed, step_time = step_rate(root, args.steps)

    print(
        f"training loader, toy set, {RECIPE.relative_to(REPO_ROOT)} (batch 4 x 1 s), "
        f"new augmentations at probability {args.probability}, {args.batches} batches timed"
    )
    print("  profile   workers   samples/s   ratio to off")
    for (profile, workers), rate in rates.items():
        print(f"  {profile:8s}  {workers:7d}   {rate:9.2f}   {rate / rates['off', workers]:12.3f}")
    print(
        f"training step, the recipe's Demucs, forward + backward + Adam, {args.threads} threads: "
        f"{step_time * 1000:.0f} ms/step, {consumed:.2f} samples/s"
    )
    print("  loader with 2 workers / step (>= 1: the workers keep up)")
    for profile in ("off", "no-codec", "all"):
        ratio = rates[profile, 2] / consumed
        print(f"  {profile:8s}  {ratio:6.2f}  {'keeps up' if ratio >= 1 else 'does not keep up'}")


if __name__ == "__main__":
    main()
