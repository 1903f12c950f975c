"""Tests of the separation metrics and the distributed-safe nSDR aggregate."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sepzoo.evaluation.metrics import MDX_DELTA, NSDR, nsdr, si_sdr

SOURCES = ["drums", "bass", "other", "vocals"]


def stems(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def numpy_nsdr(estimate: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The MDX 2021 scoring formula for one track, [S, C, T] -> [S]."""
    signal = np.sum(np.square(reference), axis=(1, 2)) + 1e-7
    error = np.sum(np.square(reference - estimate), axis=(1, 2)) + 1e-7
    return 10 * np.log10(signal / error)


def at_snr(reference: torch.Tensor, noise: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
    """``reference`` plus ``noise`` rescaled so that the error has the given SNR per source."""
    signal = reference.double().square().sum(dim=(-2, -1), keepdim=True)
    energy = noise.double().square().sum(dim=(-2, -1), keepdim=True)
    scale = torch.sqrt(signal / (energy * 10 ** (snr_db.view(-1, 1, 1) / 10)))
    return reference.double() + scale * noise.double()


def test_nsdr_matches_a_known_snr():
    reference = stems(4, 2, 3000)
    snr = torch.tensor([3.0, -6.5, 12.0, 25.0], dtype=torch.float64)
    estimate = at_snr(reference, stems(4, 2, 3000, seed=1), snr)
    values = nsdr(estimate, reference.double())
    assert values.shape == (4,)
    assert values.dtype == torch.float64
    assert torch.allclose(values, snr, atol=1e-6)


def test_nsdr_matches_the_challenge_formula():
    reference = stems(3, 4, 2, 500)
    estimate = reference + 0.7 * stems(3, 4, 2, 500, seed=1)
    values = nsdr(estimate, reference)
    assert values.shape == (3, 4)
    for track in range(3):
        expected = numpy_nsdr(estimate[track].double().numpy(), reference[track].double().numpy())
        np.testing.assert_allclose(values[track].numpy(), expected, atol=1e-9)


def test_nsdr_sums_channels_before_the_ratio():
    # A mean of per-channel SDRs would be (40 + 0) / 2 = 20 dB; the MDX SDR pools the energies.
    reference = torch.ones(1, 2, 100, dtype=torch.float64)
    estimate = reference.clone()
    estimate[0, 0] += 0.01
    estimate[0, 1] = 0.0
    expected = 10 * np.log10((200 + 1e-7) / (100 * 0.01**2 + 100 + 1e-7))
    assert nsdr(estimate, reference).item() == pytest.approx(expected, abs=1e-9)


def test_nsdr_silence_and_perfect_estimates_are_finite():
    silent = torch.zeros(2, 2, 400)
    loud = stems(2, 2, 400)
    both_silent = nsdr(silent, silent)
    assert torch.equal(both_silent, torch.zeros(2, dtype=torch.float64))
    silent_reference = nsdr(loud, silent)
    assert torch.isfinite(silent_reference).all()
    assert (silent_reference < -80).all()
    perfect = nsdr(loud, loud)
    energy = loud.double().square().sum(dim=(-2, -1))
    assert torch.allclose(perfect, 10 * torch.log10(1 + energy / MDX_DELTA))


def test_nsdr_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\[4, 2, 10\] vs \[4, 2, 11\]"):
        nsdr(torch.zeros(4, 2, 10), torch.zeros(4, 2, 11))
    with pytest.raises(ValueError, match=r"\[\.\.\., sources, channels, time\], got \[2, 10\]"):
        nsdr(torch.zeros(2, 10), torch.zeros(2, 10))


def test_si_sdr_by_hand():
    reference = stems(2, 4, 2, 600).double()
    estimate = 0.8 * reference + 0.4 * stems(2, 4, 2, 600, seed=1).double()
    values = si_sdr(estimate, reference)
    assert values.shape == (2, 4)
    for b in range(2):
        for s in range(4):
            x = estimate[b, s].numpy().ravel()
            y = reference[b, s].numpy().ravel()
            x = x - x.mean()
            y = y - y.mean()
            target = (x @ y) / (y @ y) * y
            expected = 10 * np.log10(np.sum(target**2) / np.sum((x - target) ** 2))
            assert values[b, s].item() == pytest.approx(expected, abs=1e-6)


def test_si_sdr_is_scale_and_offset_invariant():
    reference = stems(3, 2, 800)
    estimate = reference + 0.5 * stems(3, 2, 800, seed=2)
    base = si_sdr(estimate, reference)
    # Exact up to eps: at a gain of 1e-3 it shifts the result by about 1e-5 dB.
    for scale in (1e-3, 0.5, 20.0):
        assert torch.allclose(si_sdr(scale * estimate, reference), base, atol=1e-4)
    assert torch.allclose(si_sdr(estimate + 3.0, reference), base, atol=1e-6)
    # nSDR, by contrast, punishes a wrong gain.
    assert (nsdr(0.5 * estimate, reference) < nsdr(estimate, reference)).all()


def test_si_sdr_silence_is_finite():
    silent = torch.zeros(2, 2, 100)
    assert torch.isfinite(si_sdr(stems(2, 2, 100), silent)).all()
    assert torch.isfinite(si_sdr(silent, silent)).all()


def test_metric_averages_over_tracks():
    metric = NSDR(SOURCES)
    first = (stems(2, 4, 2, 300, seed=1), stems(2, 4, 2, 300, seed=2))
    second = (stems(3, 4, 2, 300, seed=3), stems(3, 4, 2, 300, seed=4))
    first = (first[1] + 0.5 * first[0], first[1])
    second = (second[1] + 0.2 * second[0], second[1])
    metric.update(*first)
    metric.update(*second)
    per_track = torch.cat([nsdr(*first), nsdr(*second)])  # 5, S
    result = metric.compute()
    assert result.dtype == torch.float64
    assert torch.allclose(result, per_track.mean(dim=0), atol=1e-12)
    assert metric.count.item() == 5

    as_dict = metric.compute_dict()
    assert list(as_dict) == [*SOURCES, "mean"]
    assert as_dict["vocals"] == pytest.approx(per_track[:, 3].mean().item())
    assert as_dict["mean"] == pytest.approx(per_track.mean().item())


def test_merged_states_weigh_each_track_equally():
    # One "rank" sees one track, the other three: the merged mean is over four tracks, not
    # the mean of the two ranks' means.
    reference = stems(4, 4, 2, 256, seed=5)
    estimate = reference + torch.tensor([0.05, 0.3, 1.0, 2.0]).view(4, 1, 1, 1) * stems(4, 4, 2, 256, seed=6)
    rank0, rank1, single = NSDR(SOURCES), NSDR(SOURCES), NSDR(SOURCES)
    rank0.update(estimate[:1], reference[:1])
    rank1.update(estimate[1:], reference[1:])
    single.update(estimate, reference)
    # Computing before merging must not leave a stale cached result behind.
    mean_of_means = (rank0.compute() + rank1.compute()) / 2
    rank0.merge_state(rank1)
    assert torch.allclose(rank0.compute(), single.compute(), atol=1e-12)
    assert not torch.allclose(rank0.compute(), mean_of_means, atol=1e-3)


def test_metric_reset_and_shape_errors():
    metric = NSDR(SOURCES)
    metric.update(stems(1, 4, 2, 64) + 1, stems(1, 4, 2, 64))
    metric.reset()
    assert metric.count.item() == 0
    assert torch.equal(metric.total, torch.zeros(4, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\[batch, 4, channels, time\], got \[1, 2, 2, 64\]"):
        metric.update(stems(1, 2, 2, 64), stems(1, 2, 2, 64))


def test_metric_sums_stay_float64_under_module_dtype_conversion():
    module = torch.nn.Module()
    module.metric = NSDR(SOURCES)
    module.to(torch.bfloat16)
    module.half()
    assert module.metric.total.dtype == torch.float64
    reference = stems(2, 4, 2, 128)
    module.metric.update(reference.bfloat16(), reference.bfloat16())
    module.metric.reset()
    assert module.metric.total.dtype == torch.float64


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _sync_worker(rank: int, port: int, results: dict) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        reference = stems(5, 4, 2, 128, seed=7)
        estimate = reference + torch.linspace(0.1, 1.0, 5).view(5, 1, 1, 1) * stems(5, 4, 2, 128, seed=8)
        tracks = slice(0, 1) if rank == 0 else slice(1, 5)
        metric = NSDR(SOURCES)
        metric.update(estimate[tracks], reference[tracks])
        results[rank] = metric.compute().tolist()
    finally:
        dist.destroy_process_group()


def test_metric_syncs_across_processes():
    # Two real gloo processes with 1 and 4 tracks: both get the mean over all 5 tracks.
    port = _free_port()
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_sync_worker, args=(port, results), nprocs=2, join=True)
        synced = {rank: torch.tensor(values, dtype=torch.float64) for rank, values in results.items()}
    reference = stems(5, 4, 2, 128, seed=7)
    estimate = reference + torch.linspace(0.1, 1.0, 5).view(5, 1, 1, 1) * stems(5, 4, 2, 128, seed=8)
    expected = nsdr(estimate, reference).mean(dim=0)
    assert set(synced) == {0, 1}
    assert torch.allclose(synced[0], expected, atol=1e-12)
    assert torch.allclose(synced[1], expected, atol=1e-12)


def energy_ratio_db(numerator: torch.Tensor, denominator: torch.Tensor, eps: float) -> torch.Tensor:
    """``10 log10((eps + sum n^2) / (eps + sum d^2))`` over the last axis."""
    return 10 * torch.log10((numerator.square().sum(-1) + eps) / (denominator.square().sum(-1) + eps))


@pytest.mark.parametrize("zero_mean", [True, False])
def test_sums_taken_block_by_block_equal_the_formulas_over_the_whole_track(monkeypatch, zero_mean):
    from sepzoo.evaluation import metrics
    from sepzoo.evaluation.metrics import sd_sdr

    # On the CPU the metrics sum over blocks of samples: short blocks (64 samples of 2 x 4 x 2
    # rows) make these float32 stems span many of them, the last one ragged.
    monkeypatch.setattr(metrics, "BLOCK_ELEMENTS", 64 * 16)
    reference = stems(2, 4, 2, 1000) + 0.2
    estimate = 0.8 * reference + 0.3 * stems(2, 4, 2, 1000, seed=1)
    mix = reference.sum(dim=1, keepdim=True).expand_as(reference)  # every source's estimate, no copy
    x, y, m = (signal.double().flatten(-2) for signal in (estimate, reference, mix))  # 2, S, C*T
    expected = {"nSDR": energy_ratio_db(y, y - x, MDX_DELTA), "mixture": energy_ratio_db(y, y - m, MDX_DELTA)}
    if zero_mean:
        x, y = x - x.mean(-1, keepdim=True), y - y.mean(-1, keepdim=True)
    target = (x * y).sum(-1, keepdim=True) / (y.square().sum(-1, keepdim=True) + 1e-8) * y
    expected["SI-SDR"] = energy_ratio_db(target, x - target, 1e-8)
    expected["SD-SDR"] = energy_ratio_db(target, y - x, 1e-8)
    got = {
        "nSDR": nsdr(estimate, reference),
        "mixture": nsdr(mix, reference),
        "SI-SDR": si_sdr(estimate, reference, zero_mean=zero_mean),
        "SD-SDR": sd_sdr(estimate, reference, zero_mean=zero_mean),
    }
    for name, values in expected.items():
        torch.testing.assert_close(got[name], values, rtol=0, atol=1e-9, msg=name)
