"""Tests of the registered training losses."""

from __future__ import annotations

import inspect

import pytest
import torch

from sepzoo.errors import ConfigError
from sepzoo.registry import UnknownNameError
from sepzoo.training.losses import LOSSES, SeparationLoss, build_loss, list_losses, register_loss

SOURCES = ["drums", "bass", "other", "vocals"]
# Small resolutions keep the STFT loss fast on short test signals.
SMALL_STFT = {"fft_sizes": [64, 128, 32], "hop_sizes": [16, 32, 8], "win_lengths": [64, 96, 32]}
LOSS_KWARGS = {"l1": {}, "mse": {}, "mrstft": SMALL_STFT, "neg_sisdr": {}}


def stems(batch: int = 2, sources: int = 4, channels: int = 2, length: int = 1024, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, sources, channels, length, generator=generator)


def make(name: str, **kwargs) -> SeparationLoss:
    return build_loss(name, SOURCES, **{**LOSS_KWARGS[name], **kwargs})


def test_registered_names():
    assert list_losses() == ["complex_spec_l1", "l1", "magnitude_mse", "mrstft", "mse", "neg_sisdr"]
    for name in list_losses():
        assert LOSSES.get(name).registry_name == name


@pytest.mark.parametrize("name", ["l1", "mse", "mrstft"])
def test_zero_on_identical_and_positive_otherwise(name):
    loss = make(name)
    reference = stems()
    total, per_source = loss(reference.clone(), reference)
    assert total.item() == pytest.approx(0.0, abs=1e-5)
    assert per_source.shape == (4,)
    assert torch.allclose(per_source, torch.zeros(4), atol=1e-5)
    total, per_source = loss(reference + 0.1 * stems(seed=1), reference)
    assert total.item() > 1e-3
    assert (per_source > 1e-3).all()


def test_neg_sisdr_is_minimal_on_identical_inputs():
    loss = make("neg_sisdr")
    reference = stems()
    perfect, _ = loss(reference.clone(), reference)
    noisy, _ = loss(reference + 0.1 * stems(seed=1), reference)
    # 10 log10(energy / eps) for a perfect estimate; about +20 dB SI-SDR for the noisy one.
    assert perfect.item() < -80
    assert noisy.item() == pytest.approx(-20.0, abs=1.0)
    assert noisy.item() > perfect.item()


@pytest.mark.parametrize("name", ["l1", "mse", "mrstft", "neg_sisdr"])
def test_gradient_reaches_the_estimate(name):
    loss = make(name)
    reference = stems()
    estimate = (reference + 0.3 * stems(seed=2)).requires_grad_()
    total, per_source = loss(estimate, reference)
    assert not per_source.requires_grad
    total.backward()
    assert estimate.grad is not None
    assert torch.isfinite(estimate.grad).all()
    assert estimate.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["l1", "mse", "mrstft", "neg_sisdr"])
def test_weights_give_the_weighted_mean(name):
    reference = stems()
    estimate = reference + torch.linspace(0.05, 0.5, 4).view(1, 4, 1, 1) * stems(seed=3)
    plain_total, per_source = make(name)(estimate, reference)
    assert plain_total.item() == pytest.approx(per_source.mean().item(), rel=1e-5)

    weights = {"vocals": 3.0, "bass": 0.0}
    total, weighted_per_source = make(name, weights=weights)(estimate, reference)
    assert torch.allclose(weighted_per_source, per_source)
    # drums 1, bass 0, other 1, vocals 3
    expected = (per_source[0] + per_source[2] + 3 * per_source[3]) / 5
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)
    assert total.item() != pytest.approx(plain_total.item(), rel=1e-3)


def test_weights_scale_free():
    reference = stems()
    estimate = reference + torch.linspace(0.05, 0.5, 4).view(1, 4, 1, 1) * stems(seed=3)
    small, _ = make("l1", weights={"drums": 1.0, "bass": 2.0, "other": 1.0, "vocals": 1.0})(
        estimate, reference
    )
    large, _ = make("l1", weights={"drums": 10.0, "bass": 20.0, "other": 10.0, "vocals": 10.0})(
        estimate, reference
    )
    assert small.item() == pytest.approx(large.item(), rel=1e-6)


@pytest.mark.parametrize(
    ("weights", "fragment"),
    [
        ({"vocal": 2.0}, "unknown source 'vocal'; did you mean 'vocals'?"),
        ({"guitar": 2.0}, "sources: drums, bass, other, vocals"),
        ({"bass": -1.0}, "loss.weights.bass must be >= 0, got -1.0"),
        ({"drums": 0, "bass": 0, "other": 0, "vocals": 0.0}, "all zero"),
        ({"bass": "heavy"}, "loss.weights.bass must be a finite number"),
        ({"bass": float("nan")}, "loss.weights.bass must be a finite number"),
    ],
)
def test_bad_weights_raise_one_line_config_error(weights, fragment):
    with pytest.raises(ConfigError) as info:
        build_loss("l1", SOURCES, weights=weights)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"fft_sizes": [64, 128]}, "same length"),
        (
            {"fft_sizes": [64], "hop_sizes": [16], "win_lengths": [128]},
            "window length 128 exceeds its FFT size 64",
        ),
        ({"fft_sizes": [64], "hop_sizes": [80], "win_lengths": [64]}, "hop size 80 exceeds"),
        ({"fft_sizes": [64, -1], "hop_sizes": [16, 16], "win_lengths": [64, 64]}, "positive integers"),
        ({"fft_sizes": []}, "non-empty"),
        ({"factor_sc": 0.0, "factor_mag": 0.0}, "both zero"),
        ({"factor_sc": -1.0}, "loss.factor_sc must be a number >= 0"),
    ],
)
def test_bad_mrstft_arguments(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        build_loss("mrstft", SOURCES, **kwargs)


def test_unknown_argument_is_a_type_error():
    with pytest.raises(TypeError, match="fft_size"):
        build_loss("l1", SOURCES, fft_size=[512])


@pytest.mark.parametrize(("name", "closest"), [("mrstf", "mrstft"), ("l2", "l1"), ("neg_sdr", "neg_sisdr")])
def test_unknown_loss_name(name, closest):
    with pytest.raises(UnknownNameError, match=f"did you mean .*'{closest}'"):
        build_loss(name, SOURCES)


def test_shape_mismatch_names_both_shapes():
    loss = make("l1")
    with pytest.raises(ValueError, match=r"\[2, 4, 2, 100\] vs \[2, 4, 2, 99\]"):
        loss(torch.zeros(2, 4, 2, 100), torch.zeros(2, 4, 2, 99))
    with pytest.raises(ValueError, match=r"\[batch, 4, channels, time\], got \[2, 3, 2, 100\]"):
        loss(torch.zeros(2, 3, 2, 100), torch.zeros(2, 3, 2, 100))


def test_mrstft_default_resolutions():
    loss = build_loss("mrstft", SOURCES)
    assert loss.fft_sizes == [1024, 2048, 512]
    assert loss.hop_sizes == [120, 240, 50]
    assert loss.win_lengths == [600, 1200, 240]
    reference = stems(batch=1, length=4096)
    total, _ = loss(reference + 0.1 * stems(batch=1, length=4096, seed=1), reference)
    assert torch.isfinite(total)


def test_mrstft_decreases_as_estimate_approaches_reference():
    loss = make("mrstft")
    reference = stems()
    noise = stems(seed=4)
    values = [loss(reference + scale * noise, reference)[0].item() for scale in (1.0, 0.3, 0.1, 0.01)]
    assert values == sorted(values, reverse=True)
    assert values[-1] < 0.2 * values[0]


def test_mrstft_terms_follow_their_factors():
    reference = stems()
    estimate = reference + 0.2 * stems(seed=5)
    sc_only, _ = make("mrstft", factor_mag=0.0)(estimate, reference)
    mag_only, _ = make("mrstft", factor_sc=0.0)(estimate, reference)
    both, _ = make("mrstft")(estimate, reference)
    scaled, _ = make("mrstft", factor_sc=2.0, factor_mag=0.5)(estimate, reference)
    assert both.item() == pytest.approx(sc_only.item() + mag_only.item(), rel=1e-5)
    assert scaled.item() == pytest.approx(2 * sc_only.item() + 0.5 * mag_only.item(), rel=1e-5)


def test_mrstft_spectral_convergence_by_hand():
    # A half-amplitude estimate has half the magnitude in every bin (except where the
    # reference is near the magnitude floor), so SC is 0.5 and the log term is log(2).
    loss = build_loss("mrstft", ["a"], fft_sizes=[64], hop_sizes=[16], win_lengths=[64], factor_mag=0.0)
    reference = stems(batch=1, sources=1, length=2048)
    total, _ = loss(0.5 * reference, reference)
    assert total.item() == pytest.approx(0.5, abs=1e-3)
    log_only = build_loss("mrstft", ["a"], fft_sizes=[64], hop_sizes=[16], win_lengths=[64], factor_sc=0.0)
    total, _ = log_only(0.5 * reference, reference)
    assert total.item() == pytest.approx(torch.log(torch.tensor(2.0)).item(), abs=1e-2)


def test_mrstft_finite_on_silence():
    loss = make("mrstft")
    silent = torch.zeros(2, 4, 2, 512)
    estimate = (0.01 * stems(length=512)).requires_grad_()
    total, per_source = loss(estimate, silent)
    total.backward()
    assert torch.isfinite(total) and torch.isfinite(per_source).all()
    assert torch.isfinite(estimate.grad).all()
    total, _ = loss(silent.clone(), silent)
    assert total.item() == pytest.approx(0.0, abs=1e-6)


def test_neg_sisdr_invariant_to_rescaling_the_estimate():
    loss = make("neg_sisdr")
    reference = stems()
    estimate = reference + 0.5 * stems(seed=6)
    base, base_per_source = loss(estimate, reference)
    for scale in (0.01, 0.5, 7.0):
        total, per_source = loss(scale * estimate, reference)
        assert total.item() == pytest.approx(base.item(), abs=1e-3)
        assert torch.allclose(per_source, base_per_source, atol=1e-3)


def test_neg_sisdr_by_hand():
    # Estimate = reference + orthogonal noise of a quarter of its energy: SI-SDR = 10 log10(4).
    t = torch.arange(4000, dtype=torch.float64)
    reference = torch.sin(2 * torch.pi * 5 * t / 4000)
    noise = 0.5 * torch.sin(2 * torch.pi * 11 * t / 4000)
    estimate = reference + noise
    loss = build_loss("neg_sisdr", ["a"])
    total, _ = loss(estimate.view(1, 1, 1, -1).float(), reference.view(1, 1, 1, -1).float())
    assert total.item() == pytest.approx(-10 * torch.log10(torch.tensor(4.0)).item(), abs=1e-3)


def test_neg_sisdr_ignores_offsets_with_zero_mean():
    reference = stems()
    estimate = reference + 0.3 * stems(seed=7)
    loss = make("neg_sisdr")
    base, _ = loss(estimate, reference)
    shifted, _ = loss(estimate + 2.0, reference)
    assert shifted.item() == pytest.approx(base.item(), abs=1e-3)
    raw, _ = make("neg_sisdr", zero_mean=False)(estimate + 2.0, reference)
    assert raw.item() > base.item() + 1.0


def test_mixed_precision_input_is_computed_in_float32():
    loss = make("mrstft")
    reference = stems()
    estimate = reference + 0.1 * stems(seed=8)
    total32, _ = loss(estimate, reference)
    total16, per_source = loss(estimate.bfloat16(), reference.bfloat16())
    assert total16.dtype == torch.float32 and per_source.dtype == torch.float32
    assert total16.item() == pytest.approx(total32.item(), rel=0.1)


def test_weights_are_not_saved_in_state_dict():
    loss = make("l1", weights={"vocals": 2.0})
    assert loss.state_dict() == {}
    assert loss.weight_dict == {"drums": 1.0, "bass": 1.0, "other": 1.0, "vocals": 2.0}


def test_init_arguments_have_simple_types_and_documentation():
    simple = {"list[str]", "dict[str, float] | None", "list[int] | None", "int", "float", "bool"}
    for name in list_losses():
        cls = LOSSES.get(name)
        signature = inspect.signature(cls.__init__)
        for parameter in list(signature.parameters.values())[1:]:
            assert parameter.annotation in simple, (name, parameter.name, parameter.annotation)
            assert f"{parameter.name}:" in cls.__doc__, (name, parameter.name)


def test_register_loss_rejects_non_losses_and_duplicates():
    from sepzoo.registry import DuplicateNameError

    with pytest.raises(TypeError):
        register_loss("not_a_loss")(object)
    with pytest.raises(DuplicateNameError):

        @register_loss("l1")
        class Another(SeparationLoss):
            def per_source(self, estimate, reference):
                return estimate.mean(dim=(0, 2, 3))
