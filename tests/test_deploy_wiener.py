"""The NumPy Wiener filter of sepzoo.deploy.wiener against the torch one of sepzoo.dsp.wiener."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sepzoo.deploy import wiener as np_wiener
from sepzoo.dsp import wiener as torch_wiener


def _spectra(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


def _close(numpy_result: np.ndarray, torch_result: torch.Tensor) -> None:
    reference = torch_result.numpy()
    error = np.linalg.norm(numpy_result - reference) / np.linalg.norm(reference)
    assert numpy_result.shape == reference.shape
    assert error < 1e-6, error


@pytest.mark.parametrize("channels", [1, 2])
def test_estimates_and_em_match_torch(channels: int) -> None:
    rng = np.random.default_rng(channels)
    mix = _spectra(rng, (2, channels, 5, 7))
    magnitudes = np.abs(rng.standard_normal((2, 3, channels, 5, 7)))
    mix_t, magnitudes_t = torch.from_numpy(mix), torch.from_numpy(magnitudes)
    _close(
        np_wiener.softmask_estimates(magnitudes, mix), torch_wiener.softmask_estimates(magnitudes_t, mix_t)
    )
    start = np_wiener.mixture_phase_estimates(magnitudes, mix)
    start_t = torch_wiener.mixture_phase_estimates(magnitudes_t, mix_t)
    _close(start, start_t)
    _close(
        np_wiener.expectation_maximization(mix, start, 2, ridge=1e-3),
        torch_wiener.expectation_maximization(mix_t, start_t, 2, ridge=1e-3),
    )
    _close(
        np_wiener.wiener_gains_apply(
            mix, magnitudes[:, :, 0], np.ones((2, 3, 5, channels, channels)), block_frames=3
        ),
        torch_wiener.wiener_gains_apply(
            mix_t, magnitudes_t[:, :, 0], torch.ones(2, 3, 5, channels, channels, dtype=torch.complex128)
        ),
    )


@pytest.mark.parametrize(
    ("iterations", "softmask", "residual"), [(0, False, False), (1, False, True), (2, True, False)]
)
def test_wiener_filter_matches_torch(iterations: int, softmask: bool, residual: bool) -> None:
    rng = np.random.default_rng(iterations)
    mix = 30 * _spectra(rng, (2, 2, 6, 9))  # loud enough to be scaled down
    mix[0, :, 0, 0] = 0  # a silent bin
    magnitudes = np.abs(30 * rng.standard_normal((2, 2, 2, 6, 9)))
    result = np_wiener.wiener_filter(magnitudes, mix, iterations, softmask=softmask, residual=residual)
    reference = torch_wiener.wiener_filter(
        torch.from_numpy(magnitudes), torch.from_numpy(mix), iterations, softmask=softmask, residual=residual
    )
    _close(result, reference)


@pytest.mark.parametrize(("iterations", "residual"), [(0, False), (1, True), (2, False)])
def test_demucs_wiener_matches_torch(iterations: int, residual: bool) -> None:
    rng = np.random.default_rng(10 + iterations)
    mix = _spectra(rng, (2, 6, 8))
    mix[:, 0, :3] = 0  # zero bins become 1 + 0j
    mix[0, 1, 0] = 2j  # on the imaginary axis
    mix[1, 1, 1] = -1.5  # negative real
    magnitudes = np.abs(rng.standard_normal((4, 2, 6, 8)))
    result = np_wiener.demucs_wiener(magnitudes, mix, iterations, residual=residual)
    reference = torch_wiener.demucs_wiener(
        torch.from_numpy(magnitudes), torch.from_numpy(mix), iterations, residual=residual
    )
    _close(result, reference)


def test_deploy_wiener_needs_no_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np\n"
        "from sepzoo.deploy.wiener import wiener_filter\n"
        "print(wiener_filter(np.ones((1, 2, 1, 3, 4)), np.ones((1, 1, 3, 4), complex)).shape)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(1, 2, 1, 3, 4)"
