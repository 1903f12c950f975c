"""BSSEval v4 against museval itself: the same SDR, ISR, SIR and SAR per frame, NaN in the same
frames (16-bit stems with a noise floor, sources in musdb's order, silent stretches included)."""

from __future__ import annotations

import museval
import numpy as np
import pytest
import torch

from sepzoo.bsseval import bss_eval_v4


def sixteen_bit(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, -1, 1) * 32767) / 32767


def stems_and_estimates(length: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Four stereo references ``[S, T, C]`` (museval's layout) and leaky, noisy estimates."""
    rng = np.random.default_rng(seed)
    references = 0.1 * rng.standard_normal((4, length, 2)) + 10 ** (-50 / 20) * rng.standard_normal(
        (4, length, 2)
    )
    references[:, :, 1] += 0.3 * references[:, :, 0]
    estimates = references + 0.05 * rng.standard_normal(references.shape) + 0.1 * references[[1, 2, 3, 0]]
    return sixteen_bit(references), sixteen_bit(estimates)


@pytest.mark.parametrize(("length", "silent"), [(44100 * 3 + 777, True), (30000, False)])
def test_every_frame_agrees_with_museval(length, silent):
    references, estimates = stems_and_estimates(length, seed=length)
    if silent:
        references[2, 44100 : 2 * 44100] = 0  # one silent second: that frame is NaN for all
    expected = dict(zip(["SDR", "ISR", "SIR", "SAR"], museval.evaluate(references, estimates)))
    ours = bss_eval_v4(
        torch.from_numpy(references).permute(0, 2, 1), torch.from_numpy(estimates).permute(0, 2, 1)
    )
    for name, values in expected.items():
        got = ours[name].numpy()
        assert got.shape == values.shape
        np.testing.assert_array_equal(np.isnan(got), np.isnan(values), err_msg=name)
        np.testing.assert_allclose(got, values, rtol=0, atol=0.01, err_msg=name)
    if silent:
        assert np.isnan(ours["SDR"][:, 1]).all() and not np.isnan(ours["SDR"][:, 0]).any()


def test_shapes_must_match():
    with pytest.raises(ValueError, match=r"\[4, 2, 100\]"):
        bss_eval_v4(torch.zeros(4, 2, 100), torch.zeros(4, 2, 99))
