"""`CrossDomainTransformer` matches `demucs.transformer.CrossTransformerEncoder` numerically."""

from __future__ import annotations

import random

import pytest
import torch

from sepzoo.models._cross_transformer import (
    CrossAttentionLayer,
    CrossDomainTransformer,
    official_transformer_key_map,
    sinusoidal_embedding_1d,
    sinusoidal_embedding_2d,
)

demucs_transformer = pytest.importorskip("demucs.transformer")

DIM = 48
HEADS = 4
HTDEMUCS = {
    "num_layers": 5,
    "norm_in": True,
    "norm_in_group": False,
    "group_norm": False,
    "norm_first": True,
    "norm_out": True,
    "layer_scale": True,
    "gelu": True,
    "emb": "sin",
}
SETTINGS = {
    "htdemucs": HTDEMUCS,
    "cross_first": {**HTDEMUCS, "cross_first": True},
    "group_norm": {**HTDEMUCS, "group_norm": True},
    "norm_in_group": {**HTDEMUCS, "norm_in": False, "norm_in_group": True},
    "post_norm": {**HTDEMUCS, "norm_first": False, "norm_out": False},
    "no_layer_scale": {**HTDEMUCS, "layer_scale": False},
    "relu_half_pos_embed": {**HTDEMUCS, "gelu": False, "weight_pos_embed": 0.5},
    "post_norm_group_cross_first_6": {
        **HTDEMUCS,
        "num_layers": 6,
        "norm_first": False,
        "norm_out": True,  # ignored without norm_first, in both implementations
        "group_norm": True,
        "cross_first": True,
        "layer_scale": False,
    },
    "no_norm_in_misc": {
        **HTDEMUCS,
        "num_layers": 4,
        "norm_in": False,
        "hidden_scale": 2.5,
        "max_period": 500.0,
        "dropout": 0.1,  # inactive in eval mode
        "norm_out": False,
    },
    "scaled_embedding": {**HTDEMUCS, "emb": "scaled", "max_positions": 64},
}
SHAPES = [((2, DIM, 8, 13), (2, DIM, 37)), ((1, DIM, 3, 5), (1, DIM, 4)), ((3, DIM, 1, 1), (3, DIM, 1))]
KEY_MAP_OPTIONS = (
    "norm_in",
    "norm_in_group",
    "norm_out",
    "norm_first",
    "group_norm",
    "layer_scale",
    "cross_first",
    "emb",
)


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    # The tensors here are tiny: extra threads only add synchronization, which is very slow when
    # the cores are shared with other processes.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _randomize(module: torch.nn.Module, seed: int) -> None:
    """Re-draw every parameter so that none sits at its default (norm gains 1, scales 1e-4, ...)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=generator, dtype=param.dtype)
            if param.dim() >= 2:
                # Unit-gain weights keep attention logits of order one, so softmax is far from uniform.
                param.copy_(noise / param.shape[-1] ** 0.5)
            elif name.endswith("scale") or (name.endswith("weight") and "norm" in name):
                param.copy_(0.5 + 0.1 * noise)
            else:
                param.copy_(0.1 * noise)


def _build_pair(settings: dict, seed: int = 0):
    options = {"cross_first": False, **settings}
    official = demucs_transformer.CrossTransformerEncoder(DIM, num_heads=HEADS, **options)
    _randomize(official, seed)
    ours = CrossDomainTransformer(DIM, num_heads=HEADS, **options)
    key_map = official_transformer_key_map(
        options["num_layers"], **{name: options[name] for name in KEY_MAP_OPTIONS}
    )
    ours.load_state_dict({key_map[key]: value for key, value in official.state_dict().items()}, strict=True)
    return official, ours, key_map


def _relative_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return ((ours - theirs).norm() / theirs.norm()).item()


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_key_map_covers_both_state_dicts(name):
    official, ours, key_map = _build_pair(SETTINGS[name])
    assert set(key_map) == set(official.state_dict())
    assert sorted(key_map.values()) == sorted(ours.state_dict())
    assert len(set(key_map.values())) == len(key_map)
    for theirs_key, our_key in key_map.items():
        assert official.state_dict()[theirs_key].shape == ours.state_dict()[our_key].shape, theirs_key


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_parameter_counts_match(name):
    official, ours, _ = _build_pair(SETTINGS[name])
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in official.parameters())


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_outputs_match_official(name, dtype, tolerance):
    official, ours, _ = _build_pair(SETTINGS[name])
    official.to(dtype).eval()
    ours.to(dtype).eval()
    generator = torch.Generator().manual_seed(1)
    for freq_shape, time_shape in SHAPES:
        freq = torch.randn(freq_shape, generator=generator, dtype=dtype)
        time = torch.randn(time_shape, generator=generator, dtype=dtype)
        with torch.no_grad():
            theirs_freq, theirs_time = official(freq, time)
            our_freq, our_time = ours(freq, time)
        assert our_freq.shape == freq.shape and our_time.shape == time.shape
        assert our_freq.dtype == dtype and our_time.dtype == dtype
        assert _relative_error(our_freq, theirs_freq) <= tolerance
        assert _relative_error(our_time, theirs_time) <= tolerance


@pytest.mark.parametrize("name", ["htdemucs", "post_norm_group_cross_first_6", "scaled_embedding"])
def test_training_outputs_and_gradients_match_official(name):
    settings = {**SETTINGS[name], "sin_random_shift": 7, "dropout": 0.0}
    official, ours, key_map = _build_pair(settings)
    official.double().train()
    ours.double().train()
    generator = torch.Generator().manual_seed(2)
    freq = torch.randn(2, DIM, 6, 9, generator=generator, dtype=torch.float64)
    time = torch.randn(2, DIM, 21, generator=generator, dtype=torch.float64)
    freq_weight = torch.randn(freq.shape, generator=generator, dtype=torch.float64)
    time_weight = torch.randn(time.shape, generator=generator, dtype=torch.float64)
    for seed in range(3):
        # Both draw the random position shift from Python's `random`, once per call.
        random.seed(seed)
        theirs = official(freq, time)
        random.seed(seed)
        mine = ours(freq, time)
        for our_out, their_out in zip(mine, theirs):
            assert _relative_error(our_out, their_out) <= 1e-10
        official.zero_grad()
        ours.zero_grad()
        ((theirs[0] * freq_weight).sum() + (theirs[1] * time_weight).sum()).backward()
        ((mine[0] * freq_weight).sum() + (mine[1] * time_weight).sum()).backward()
        our_params = dict(ours.named_parameters())
        for their_key, their_param in official.named_parameters():
            our_param = our_params[key_map[their_key]]
            if their_param.grad is None:
                assert our_param.grad is None, their_key
            else:
                assert _relative_error(our_param.grad, their_param.grad) <= 1e-10, their_key


def test_random_shift_changes_positions_only_in_training():
    official, ours, _ = _build_pair({**HTDEMUCS, "sin_random_shift": 50})
    unshifted, _, _ = _build_pair(HTDEMUCS)
    freq = torch.randn(1, DIM, 4, 5)
    time = torch.randn(1, DIM, 11)
    ours.eval()
    unshifted.eval()
    with torch.no_grad():
        reference = unshifted(freq, time)
        for _ in range(3):
            for our_out, their_out in zip(ours(freq, time), reference):
                torch.testing.assert_close(our_out, their_out, rtol=1e-5, atol=1e-5)
        ours.train()
        outputs = [ours(freq, time)[1] for _ in range(8)]
    assert any(not torch.equal(outputs[0], other) for other in outputs[1:])


@pytest.mark.parametrize("name", ["htdemucs", "post_norm_group_cross_first_6", "scaled_embedding"])
def test_same_seed_gives_same_initialization(name):
    settings = {"cross_first": False, **SETTINGS[name]}
    key_map = official_transformer_key_map(
        settings["num_layers"], **{option: settings[option] for option in KEY_MAP_OPTIONS}
    )
    torch.manual_seed(3)
    official = demucs_transformer.CrossTransformerEncoder(DIM, num_heads=HEADS, **settings)
    torch.manual_seed(3)
    ours = CrossDomainTransformer(DIM, num_heads=HEADS, **settings)
    our_state = ours.state_dict()
    for key, value in official.state_dict().items():
        torch.testing.assert_close(our_state[key_map[key]], value, rtol=0, atol=0)


def test_unused_context_norm_is_frozen_in_post_norm_layers():
    post = CrossAttentionLayer(DIM, HEADS, 2 * DIM, norm_first=False)
    pre = CrossAttentionLayer(DIM, HEADS, 2 * DIM, norm_first=True)
    assert not any(p.requires_grad for p in post.context_norm.parameters())
    assert all(p.requires_grad for p in pre.context_norm.parameters())


@pytest.mark.parametrize("length, dim, shift, max_period", [(37, 48, 0, 10000.0), (5, 4, 3, 500.0)])
def test_sinusoidal_embedding_1d_matches_official(length, dim, shift, max_period):
    theirs = demucs_transformer.create_sin_embedding(length, dim, shift=shift, max_period=max_period)
    ours = sinusoidal_embedding_1d(length, dim, shift=shift, max_period=max_period)
    assert ours.shape == (length, dim)
    torch.testing.assert_close(ours, theirs[:, 0, :], rtol=0, atol=0)


@pytest.mark.parametrize("dim, height, width, max_period", [(48, 8, 13, 10000.0), (4, 1, 3, 100.0)])
def test_sinusoidal_embedding_2d_matches_official(dim, height, width, max_period):
    theirs = demucs_transformer.create_2d_sin_embedding(dim, height, width, max_period=max_period)
    ours = sinusoidal_embedding_2d(dim, height, width, max_period=max_period)
    assert ours.shape == (dim, height, width)
    torch.testing.assert_close(ours, theirs[0], rtol=0, atol=0)


@pytest.mark.parametrize("emb", ["cape", "learned"])
def test_unsupported_embedding_is_rejected(emb):
    with pytest.raises(ValueError, match=emb):
        CrossDomainTransformer(DIM, emb=emb, num_heads=HEADS)
    with pytest.raises(ValueError, match=emb):
        official_transformer_key_map(5, **{**{name: False for name in KEY_MAP_OPTIONS}, "emb": emb})


@pytest.mark.parametrize(
    "options, message",
    [
        ({"dim": 42, "num_heads": 2}, "42"),
        ({"dim": 48, "num_heads": 5}, "5"),
        ({"dim": 48, "num_layers": -1}, "-1"),
        ({"dim": 48, "sin_random_shift": -2}, "-2"),
    ],
)
def test_invalid_settings_are_rejected(options, message):
    with pytest.raises(ValueError, match=message):
        CrossDomainTransformer(**options)


def test_invalid_inputs_are_rejected():
    model = CrossDomainTransformer(DIM, num_heads=HEADS, num_layers=2, emb="scaled", max_positions=8)
    with pytest.raises(ValueError, match="32"):
        model(torch.randn(1, 32, 2, 3), torch.randn(1, 32, 4))
    with pytest.raises(ValueError, match=r"\[2, 48, 4\]"):
        model(torch.randn(1, DIM, 2, 3), torch.randn(2, DIM, 4))
    with pytest.raises(ValueError, match="9"):
        model(torch.randn(1, DIM, 2, 3), torch.randn(1, DIM, 9))
    for dim in (2, 3):
        with pytest.raises(ValueError, match=str(dim)):
            sinusoidal_embedding_1d(5, dim)
    with pytest.raises(ValueError, match="6"):
        sinusoidal_embedding_2d(6, 2, 2)
