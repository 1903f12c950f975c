"""BSSEval v4 against museval itself, frame by frame.

The stems are 16-bit with a faint noise floor, as MUSDB18-HQ's are (the toy set's own
synthesiser makes them), and go to both implementations in museval's order: musdb's
``track.targets``, vocals, drums, bass, other, the order ``museval.eval_mus_track`` uses. The SDR
must agree on every frame. museval's ISR, SIR and SAR can depend on the order of the sources
where its least-squares projections are ill-conditioned, and no implementation can match a
value museval itself does not pin down: those three are compared on the frames where museval
gives the same value with the sources in reverse order, and the test asserts that such frames
exist. NaN (a silent frame) must come out exactly where museval puts it.
"""

from __future__ import annotations

import museval
import numpy as np
import pytest
import torch

from sepzoo.data.toy import synthesize_track
from sepzoo.evaluation import bsseval
from sepzoo.evaluation.bsseval import bss_eval_v4

MUSEVAL_ORDER = ("vocals", "drums", "bass", "other")
"""musdb's ``track.targets``: the order in which museval scores a track's sources."""

METRICS = ("SDR", "ISR", "SIR", "SAR")
TOLERANCE_DB = 0.01


def sixteen_bit(x: np.ndarray) -> np.ndarray:
    """Rounded to 16-bit PCM, as the toy set writes its stems."""
    return np.clip(np.round(x * 32768), -32768, 32767) / 32768


def toy_stems(samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """References ``[S, T, C]`` (museval's layout, museval's source order) from the toy set's
    synthesiser, and leaky, noisy 16-bit estimates of them."""
    stems = synthesize_track(samples / 44100, np.random.default_rng(seed))
    references = np.stack([stems[name] for name in MUSEVAL_ORDER]).astype(np.float64) / 32768
    rng = np.random.default_rng(seed + 1)
    leak = 0.1 * references[[1, 2, 3, 0]]
    estimates = sixteen_bit(references + leak + 10 ** (-40 / 20) * rng.standard_normal(references.shape))
    return references, estimates


def noise_stems(samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Broadband references ``[S, T, C]`` with correlated channels, and noisy estimates."""
    rng = np.random.default_rng(seed)
    references = 0.1 * rng.standard_normal((4, samples, 2)) + 10 ** (-50 / 20) * rng.standard_normal(
        (4, samples, 2)
    )
    references[:, :, 1] += 0.3 * references[:, :, 0]
    estimates = references + 0.05 * rng.standard_normal(references.shape) + 0.1 * references[[1, 2, 3, 0]]
    return sixteen_bit(references), sixteen_bit(estimates)


def museval_scores(references: np.ndarray, estimates: np.ndarray, reverse: bool, **settings) -> dict:
    """museval's scores ``{metric: [S, frames]}``, rows in the given sources' order whichever
    order museval saw them in. Without ``settings``, ``museval.evaluate`` (museval's v4 as
    published: one-second frames, 512-tap filters); with them, its ``metrics.bss_eval``."""
    order = slice(None, None, -1) if reverse else slice(None)
    if settings:
        values = museval.metrics.bss_eval(references[order], estimates[order], **settings)[:4]
    else:
        values = museval.evaluate(references[order], estimates[order])
    return {name: value[order] for name, value in zip(METRICS, values)}


def ours(references: np.ndarray, estimates: np.ndarray, **settings) -> dict:
    to_torch = lambda x: torch.from_numpy(x).permute(0, 2, 1)  # noqa: E731 - [S, T, C] to [S, C, T]
    return {
        name: value.numpy()
        for name, value in bss_eval_v4(to_torch(references), to_torch(estimates), **settings).items()
    }


def assert_agrees(got: dict, expected: dict, reordered: dict) -> None:
    """``got`` matches museval's ``expected`` as the module docstring says; ``reordered`` is
    museval's result for the reversed order."""
    for name in METRICS:
        assert got[name].shape == expected[name].shape, name
        assert got[name].dtype == np.float64, name
        np.testing.assert_array_equal(np.isnan(got[name]), np.isnan(expected[name]), err_msg=name)
        if name == "SDR":
            comparable = ~np.isnan(expected[name])
        else:
            comparable = np.abs(expected[name] - reordered[name]) <= TOLERANCE_DB  # False where NaN
            # The stems are meant to be well posed: most values must be compared.
            scored = ~np.isnan(expected[name])
            assert comparable.sum() >= max(1, scored.sum() // 2), f"museval's {name} depends on the order"
        np.testing.assert_allclose(
            got[name][comparable], expected[name][comparable], rtol=0, atol=TOLERANCE_DB, err_msg=name
        )


def test_music_with_silent_stretches_agrees_with_museval_frame_by_frame():
    # Four whole frames and 777 samples that no frame covers (but the filters see).
    references, estimates = toy_stems(4 * 44100 + 777, seed=3)
    references[2, 44100 : 2 * 44100] = 0  # bass silent for a whole frame: frame 1 is NaN for all
    estimates[0, 3 * 44100 : 4 * 44100] = 0  # the vocals estimate silent: frame 3 is NaN for all
    references[1, 10000:30000] = 0  # drums silent for part of frame 0, which still counts
    expected = museval_scores(references, estimates, reverse=False)
    assert_agrees(ours(references, estimates), expected, museval_scores(references, estimates, reverse=True))
    assert np.isnan(expected["SDR"][:, [1, 3]]).all() and not np.isnan(expected["SDR"][:, [0, 2]]).any()


def test_a_track_shorter_than_one_window_is_one_frame():
    references, estimates = toy_stems(30000, seed=5)
    expected = museval_scores(references, estimates, reverse=False)
    assert_agrees(ours(references, estimates), expected, museval_scores(references, estimates, reverse=True))
    assert expected["SDR"].shape == (4, 1)


# museval.metrics.bss_eval with shorter filters: the same definition at a fraction of the cost,
# so that more layouts can be checked.
SHORT_FILTERS = {"filters_len": 64}


def museval_settings(window: int, hop: int) -> dict:
    return {
        "window": window,
        "hop": hop,
        "compute_permutation": False,
        "framewise_filters": False,
        **SHORT_FILTERS,
    }


@pytest.mark.parametrize(
    ("stems", "samples", "window", "hop"),
    [
        (toy_stems, 5 * 44100 + 1234, 2 * 44100, 66150),
        (noise_stems, 3 * 44100, 44100, 44100),
        (toy_stems, 20000, 44100, 44100),
    ],
    ids=["overlapping-frames", "whole-frames", "shorter-than-a-window"],
)
def test_other_frames_and_filter_lengths_agree_with_museval(stems, samples, window, hop):
    references, estimates = stems(samples, seed=7)
    references[3, 5000:12000] = 0  # a stretch of silence inside a frame
    settings = museval_settings(window, hop)
    assert_agrees(
        ours(references, estimates, window=window, hop=hop, **SHORT_FILTERS),
        museval_scores(references, estimates, reverse=False, **settings),
        museval_scores(references, estimates, reverse=True, **settings),
    )


@pytest.mark.parametrize("silent", ["estimate", "reference"])
def test_a_source_silent_throughout_makes_every_frame_nan(silent):
    # museval refuses such a track; every frame holds a silent source, which its frame rule
    # scores NaN for all sources, and so does sepzoo.
    references, estimates = noise_stems(3 * 44100 + 500, seed=11)
    (estimates if silent == "estimate" else references)[1] = 0
    with pytest.raises(ValueError, match="should be non-silent"):
        museval_scores(references, estimates, reverse=False, **museval_settings(44100, 44100))
    got = ours(references, estimates, **SHORT_FILTERS)
    for name in METRICS:
        assert got[name].shape == (4, 3) and np.isnan(got[name]).all()


def test_a_mono_source_up_mixed_to_two_equal_channels_agrees_with_museval():
    # Its two reference channels repeat each other, so the correlation matrix is singular (LU
    # refuses it); the projections, and so the scores, are still what museval's least squares give.
    references, estimates = noise_stems(2 * 44100, seed=17)
    references[2, :, 1] = references[2, :, 0]
    settings = museval_settings(44100, 44100)
    assert_agrees(
        ours(references, estimates, **SHORT_FILTERS),
        museval_scores(references, estimates, reverse=False, **settings),
        museval_scores(references, estimates, reverse=True, **settings),
    )


def test_the_torch_path_for_other_devices_gives_the_same_scores(monkeypatch):
    # Off the CPU, torch does the FFTs and factorisations that scipy does on it; run that path
    # here, where there is no GPU.
    references, estimates = toy_stems(2 * 44100 + 300, seed=13)
    expected = ours(references, estimates, **SHORT_FILTERS)
    monkeypatch.setattr(bsseval, "_on_cpu", lambda tensor: False)
    got = ours(references, estimates, **SHORT_FILTERS)
    for name in METRICS:
        np.testing.assert_allclose(got[name], expected[name], rtol=0, atol=1e-9, err_msg=name)


def test_shapes_must_match():
    with pytest.raises(ValueError, match=r"\[4, 2, 100\]"):
        bss_eval_v4(torch.zeros(4, 2, 100), torch.zeros(4, 2, 99))
