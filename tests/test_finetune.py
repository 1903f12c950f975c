"""Fine-tuning: LoRA adapters (on linear, attention and convolution weights) that alone train,
average, resume and merge into plain weights on export; per-module learning rates through
``optimizer.param_groups``; and their one-line refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sepzoo.errors import ConfigError
from sepzoo.models import create_model, get_model_class
from sepzoo.models.files import export_model_file, load_model_file, safe_load, save_model_file
from sepzoo.models.lora import merge_adapters
from sepzoo.training.optimizers import build_optimizer
from sepzoo.training.recipe import LoraOptions, OptimizerSpec, load_recipe
from sepzoo.training.rundir import DONE_MARKER, run_hash
from sepzoo.training.train import add_lora, build_components, train


def _htdemucs(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("htdemucs", **get_model_class("htdemucs").test_kwargs)


def _mixture(model: torch.nn.Module, seed: int = 1) -> torch.Tensor:
    return torch.randn(1, 2, model.valid_length(1000), generator=torch.Generator().manual_seed(seed))


def _adapters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if ".lora_" in name}


# ----------------------------------------------------------------------------------------------
# LoRA on a model with nn.MultiheadAttention


def test_adapters_start_as_the_base_model_and_merge_into_its_plain_weights():
    model = _htdemucs().eval()
    plain_keys = list(model.state_dict())
    mix = _mixture(model)
    with torch.no_grad():
        base = model(mix)
    options = LoraOptions(rank=2, alpha=4.0, targets=("*.attention", "*.feedforward.expand"))
    adapted = add_lora(model, options, seed=3)
    assert "transformer.time_cross_attention_layers.0.attention.in_proj_weight" in adapted
    assert len(adapted) == 8  # 4 attention layers: the packed projection and the expansion
    # The packed query/key/value projection [3E, E] has one adapter per projection.
    attention = model.transformer.time_cross_attention_layers[0].attention
    update = attention.parametrizations.in_proj_weight[0]
    assert update.lora_down.shape == (3, 2, attention.embed_dim) and update.scale == 2.0
    with torch.no_grad():
        torch.testing.assert_close(model(mix), base, rtol=1e-5, atol=1e-6)  # B = 0: the base model
        for name, parameter in _adapters(model).items():
            if name.endswith("lora_up"):
                parameter.normal_(0, 1.0, generator=torch.Generator().manual_seed(len(name)))
        adapted_output = model(mix)
    assert not torch.equal(adapted_output, base)

    assert merge_adapters(model) == 8
    assert sorted(model.state_dict()) == sorted(plain_keys)
    plain = _htdemucs(seed=1).eval()
    plain.load_state_dict(model.state_dict())  # strict: the registered model's own keys
    with torch.no_grad():
        torch.testing.assert_close(plain(mix), adapted_output, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("key_size", [None, 6], ids=["packed", "separate"])
def test_torch_multihead_attention_reads_its_adapted_projections(key_size):
    # nn.MultiheadAttention's own forward hands its weight tensors to F.multi_head_attention_forward.
    torch.manual_seed(0)
    attention = torch.nn.MultiheadAttention(8, 2, kdim=key_size, vdim=key_size, batch_first=True)
    model = torch.nn.ModuleDict({"attention": attention})
    query, context = torch.randn(2, 5, 8), torch.randn(2, 7, key_size or 8)

    def attend() -> torch.Tensor:
        with torch.no_grad():
            return attention(query, context, context, need_weights=False)[0]

    base = attend()
    projections = ["in_proj_weight"] if key_size is None else [f"{x}_proj_weight" for x in "qkv"]
    weights = [getattr(attention, name).detach().clone() for name in projections]
    adapted = add_lora(model, LoraOptions(rank=2, targets=("attention",)), seed=0)
    assert adapted == [f"attention.{name}" for name in projections]
    # B = 0: the weights the attention reads are the base weights, bit for bit (the output may
    # differ in the last bits, as BLAS kernels may depend on where a tensor lies in memory).
    assert all(torch.equal(getattr(attention, name), w) for name, w in zip(projections, weights))
    torch.testing.assert_close(attend(), base, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        for name, parameter in _adapters(model).items():
            if name.endswith("lora_up"):
                parameter.fill_(0.5)
    changed = attend()
    assert not torch.allclose(changed, base)
    merge_adapters(model)
    assert not any("parametrizations" in key for key in model.state_dict())
    torch.testing.assert_close(attend(), changed, rtol=1e-5, atol=1e-6)


def test_adapters_are_drawn_from_the_run_seed():
    def downs(seed: int) -> list[torch.Tensor]:
        model = _htdemucs()
        add_lora(model, LoraOptions(targets=("*.attention",)), seed=seed)
        return [p for name, p in _adapters(model).items() if name.endswith("lora_down")]

    first, again, other = downs(5), downs(5), downs(6)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not any(torch.equal(a, b) for a, b in zip(first, other))


def test_only_the_adapters_of_attention_layers_train():
    model = _htdemucs().train()
    add_lora(model, LoraOptions(rank=2, targets=("*.attention", "*.attention.out_proj")), seed=0)
    adapters = _adapters(model)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = build_optimizer(OptimizerSpec("adamw", {"lr": 1e-2}), list(model.named_parameters()))
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert in_optimizer == {id(p) for p in adapters.values()}
    for step in range(2):
        optimizer.zero_grad()
        model(_mixture(model, seed=step)).pow(2).mean().backward()
        optimizer.step()
    for name, parameter in model.named_parameters():
        if name in adapters:
            assert not torch.equal(parameter, before[name]), f"{name} did not train"
        else:
            assert torch.equal(parameter, before[name]), f"{name} moved"
            assert parameter.grad is None


# ----------------------------------------------------------------------------------------------
# LoRA through sepzoo train: a run from a model file, resumed, exported


LORA = [
    "logger.name=csv",
    "trainer.max_steps=4",
    "train.audio_examples=0",
    "data.valid_max_seconds=1.0",
    "train.checkpoint_every_n_steps=1",
    "train.ema_decay=0.9",
    "train.lora={rank: 2, alpha: 4, targets: [decoder.basis, 'mask_estimator.blocks.*.project']}",
    # The decoder's adapter at its own rate, decayed by the schedule like the rest.
    "optimizer.param_groups=[{params: ['decoder.*'], lr: 0.003}]",
    "scheduler.name=cosine",
    "scheduler.total_steps=4",
]


@pytest.fixture(scope="module")
def lora_run(toy_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(recipe, the donor model file, an uninterrupted LoRA run fine-tuning it)."""
    from conftest import REPO_ROOT, TINY_RECIPE

    folder = tmp_path_factory.mktemp("lora")
    recipe = folder / "tiny.yaml"
    base = REPO_ROOT / "recipes" / "base.yaml"
    recipe.write_text(TINY_RECIPE.format(base=base, root=toy_root, runs=folder / "runs"))
    torch.manual_seed(7)
    donor = create_model("conv_tasnet", **load_recipe(recipe).model.kwargs)
    donor_file = save_model_file(donor, folder / "donor.sepzoo")
    run_dir = train(recipe, [*LORA, f"train.init_from={donor_file}"])
    return recipe, donor_file, run_dir


def _checkpoint_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    content = safe_load(checkpoint)
    assert content["global_step"] == 4
    ema = {f"ema.{k}": v for k, v in content["sepzoo"]["ema"]["state"].items()}
    return {**content["state_dict"], **ema}


def test_a_lora_run_trains_and_averages_only_its_adapters(lora_run):
    _, donor_file, run_dir = lora_run
    donor = load_model_file(donor_file).state_dict()
    content = safe_load(run_dir / "checkpoints" / "last.ckpt")
    state = {k.removeprefix("model."): v for k, v in content["state_dict"].items() if k.startswith("model.")}
    adapted = ["mask_estimator.blocks.0.project", "mask_estimator.blocks.1.project", "decoder.basis"]
    layout = {"rank": 2, "alpha": 4.0, "weights": [f"{module}.weight" for module in adapted]}
    assert content["sepzoo"]["lora"] == layout
    for key, value in donor.items():  # every base weight is the donor's, bit for bit
        module, _, weight = key.rpartition(".")
        stored = f"{module}.parametrizations.{weight}.original" if module in adapted else key
        torch.testing.assert_close(state[stored], value, rtol=0, atol=0)
    adapters = [k for k in state if ".lora_" in k]
    assert len(adapters) == 6 and all(state[k].abs().sum() > 0 for k in adapters)  # B left zero
    assert sorted(content["sepzoo"]["ema"]["state"]) == sorted(adapters)
    groups = content["optimizer_states"][0]["param_groups"]
    assert [g["initial_lr"] for g in groups] == [0.003, 3e-4] and [len(g["params"]) for g in groups] == [2, 4]


def test_export_merges_the_averaged_adapters_into_the_plain_model(lora_run, tmp_path):
    recipe, donor_file, run_dir = lora_run
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    out, used_ema = export_model_file(checkpoint, tmp_path / "merged.sepzoo")
    assert used_ema
    content = safe_load(out)
    assert list(content["state_dict"]) == list(load_model_file(donor_file).state_dict())
    assert content["metadata"]["lora"]["rank"] == 2
    exported = load_model_file(out).eval()

    # The adapted model as validation saw it: the checkpoint's weights, then the averaged adapters.
    _, task = build_components(load_recipe(recipe, [*LORA, f"train.init_from={donor_file}"]))
    saved = safe_load(checkpoint)
    task.load_state_dict(saved["state_dict"])
    task.model.load_state_dict({**task.model.state_dict(), **saved["sepzoo"]["ema"]["state"]})
    mix = torch.randn(1, 2, 6000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = task.model.eval()(mix)
        torch.testing.assert_close(exported(mix), expected, rtol=1e-5, atol=1e-6)
        assert not torch.equal(expected, load_model_file(donor_file).eval()(mix))


class _SimulatedCrash(RuntimeError):
    pass


def _crash_after(step: int):
    from lightning.pytorch.callbacks import Callback

    class Crash(Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step >= step:
                raise _SimulatedCrash(f"stopped after step {step}")

    return Crash()


def test_resume_restores_the_adapters_their_average_and_their_groups_exactly(lora_run, tmp_path, monkeypatch):
    import sepzoo.training.train as train_module

    recipe, donor_file, straight = lora_run
    overrides = [*LORA, f"train.init_from={donor_file}", f"run.root={tmp_path / 'resumed'}"]
    build_callbacks = train_module.build_callbacks
    monkeypatch.setattr(
        train_module, "build_callbacks", lambda *args: [*build_callbacks(*args), _crash_after(2)]
    )
    with pytest.raises(_SimulatedCrash):
        train(recipe, overrides)
    monkeypatch.setattr(train_module, "build_callbacks", build_callbacks)
    run_dir = train(recipe, overrides, resume=True)
    assert run_dir == tmp_path / "resumed" / straight.name and (run_dir / DONE_MARKER).is_file()
    expected = _checkpoint_weights(straight / "checkpoints" / "last.ckpt")
    actual = _checkpoint_weights(run_dir / "checkpoints" / "last.ckpt")
    assert expected.keys() == actual.keys() and any(".lora_up" in key for key in actual)
    for key in expected:
        assert torch.equal(actual[key], expected[key]), f"{key}: the resumed weights differ"


# ----------------------------------------------------------------------------------------------
# Per-module learning rates


def _step(task, optimizer, scheduler, seed: int) -> None:
    optimizer.zero_grad()
    mix = torch.randn(2, 2, 8000, generator=torch.Generator().manual_seed(seed))
    task.model(mix).pow(2).mean().backward()
    optimizer.step()
    scheduler.step()


def test_param_groups_get_their_settings_and_a_group_at_lr_0_stays_put(tiny_recipe):
    groups = (
        "[{params: [encoder.*], lr: 0.0}, {params: ['mask_estimator.blocks.*'], lr: 0.01, weight_decay: 0.5}]"
    )
    overrides = [
        "optimizer.name=adamw",
        f"optimizer.param_groups={groups}",
        "scheduler.name=warmup_cosine",
        "scheduler.warmup_steps=2",
        "scheduler.total_steps=10",
    ]
    _, task = build_components(load_recipe(tiny_recipe, overrides))
    configured = task.configure_optimizers()
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    named = dict(task.model.named_parameters())
    members = [
        {name for name, p in named.items() if any(p is q for q in g["params"])}
        for g in optimizer.param_groups
    ]
    assert members[0] == {name for name in named if name.startswith("encoder.")}
    assert members[1] == {name for name in named if name.startswith("mask_estimator.blocks.")}
    assert members[2] == set(named) - members[0] - members[1]  # the rest, with the optimizer's settings
    assert [g["initial_lr"] for g in optimizer.param_groups] == [0.0, 0.01, 3e-4]
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.01, 0.5, 0.01]
    before = {name: p.detach().clone() for name, p in named.items()}
    for step in range(3):
        _step(task, optimizer, scheduler, step)
        factor = optimizer.param_groups[2]["lr"] / 3e-4  # the schedule scales each group's own lr
        assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.0, 0.01 * factor, 3e-4 * factor])
    for name, parameter in named.items():
        moved = not torch.equal(parameter, before[name])
        assert moved == (name not in members[0]), name


def test_param_groups_see_only_what_trains_under_freeze_and_lora(tiny_recipe):
    lora = ["train.lora.targets=[decoder.basis]", "optimizer.param_groups=[{params: ['*.lora_up'], lr: 0.0}]"]
    _, task = build_components(load_recipe(tiny_recipe, lora))
    optimizer = task.configure_optimizers()
    up, down = (task.model.decoder.basis.parametrizations.weight[0].lora_up,
                task.model.decoder.basis.parametrizations.weight[0].lora_down)  # fmt: skip
    assert [g["params"] for g in optimizer.param_groups] == [[up], [down]]
    freeze = ["train.freeze=[decoder.*]", "optimizer.param_groups=[{params: [decoder.*], lr: 0.1}]"]
    with pytest.raises(
        ConfigError,
        match=r"optimizer\.param_groups\[0\]\.params: 'decoder\.\*' matches only frozen parameters "
        r"\(train\.freeze or train\.lora\), e\.g\. 'decoder\.basis\.weight'; they stay out of the optimizer$",
    ):
        build_components(load_recipe(tiny_recipe, freeze))


# ----------------------------------------------------------------------------------------------
# Refusals, each in one line


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["train.lora.targets=[decoder.bassis]"],
            r"train\.lora\.targets: 'decoder\.bassis' matches no module of the model; Linear, "
            r"MultiheadAttention or convolution modules are named like 'decoder\.basis'",
        ),
        (
            ["train.lora.targets=['*.input_norm']"],
            r"'\*\.input_norm' matches only modules LoRA cannot adapt \(ChannelwiseLayerNorm\)",
        ),
        (
            ["optimizer.param_groups=[{params: [encodr.*], lr: 0.1}]"],
            r"optimizer\.param_groups\[0\]\.params: 'encodr\.\*' matches no trainable parameter; "
            r"trainable parameters are named like 'encoder\.conv\.weight'",
        ),
        (
            ["optimizer.param_groups=[{params: ['encoder.*'], lr: 0.1}, {params: ['*.conv.*'], lr: 0.2}]"],
            r"optimizer\.param_groups: parameter 'encoder\.conv\.weight' is matched by groups 0 and 1; "
            r"a parameter belongs to one group$",
        ),
    ],
)
def test_targets_and_groups_that_match_wrongly_are_refused_before_any_work(tiny_recipe, overrides, message):
    with pytest.raises(ConfigError, match=message) as error:
        build_components(load_recipe(tiny_recipe, overrides))
    assert str(error.value).startswith(f"{tiny_recipe}: ") and "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["optimizer.param_groups=[{params: [encoder.*], lrr: 0.1}]"],
            r"unknown key 'optimizer\.param_groups\[0\]\.lrr' for a parameter group of optimizer 'adam'; "
            r"did you mean 'optimizer\.param_groups\[0\]\.lr'\?",
        ),
        (["optimizer.param_groups=[{lr: 0.1}]"], r"optimizer\.param_groups\[0\]\.params: must be set"),
        (
            ["optimizer.param_groups=[{params: [encoder.*], lr: -1.0}]"],
            r"optimizer\.param_groups\[0\]: invalid adam settings: Invalid learning rate: -1\.0",
        ),
        (
            [
                "optimizer.param_groups=[{params: [encoder.*], lr: 0.0}]",
                "scheduler.name=cosine",
                "scheduler.total_steps=10",
                "scheduler.min_lr=1e-5",
            ],  # fmt: skip
            r"scheduler: invalid cosine settings: min_lr \(1e-05\) is larger than the lr of parameter "
            r"group 0 \(0\.0\)",
        ),
        (["train.lora.targets=[]"], r"train\.lora\.targets: expected a list of at least one glob pattern"),
        (["train.lora.rank=0", "train.lora.targets=[x]"], r"train\.lora\.rank: expected a positive integer"),
        (
            ["train.lora.targets=[decoder.*]", "train.freeze=[encoder.*]"],
            r"train\.freeze: train\.lora freezes every weight of the model already and trains only its "
            r"adapters; leave train\.freeze out",
        ),
    ],
)
def test_bad_lora_and_group_settings_are_refused_when_the_recipe_is_read(tiny_recipe, overrides, message):
    with pytest.raises(ConfigError, match=message) as error:
        load_recipe(tiny_recipe, overrides)
    assert str(error.value).startswith("command line: ") and "\n" not in str(error.value)


def test_the_new_keys_at_their_defaults_rename_no_run(tiny_recipe):
    resolved = load_recipe(tiny_recipe).resolved
    assert resolved["train"]["lora"] is None and resolved["optimizer"]["param_groups"] == []
    before = {  # as runs written before the keys existed
        **resolved,
        "train": {k: v for k, v in resolved["train"].items() if k != "lora"},
        "optimizer": {k: v for k, v in resolved["optimizer"].items() if k != "param_groups"},
    }
    assert run_hash(resolved, "data") == run_hash(before, "data")
    lora = load_recipe(tiny_recipe, ["train.lora.targets=[decoder.*]"]).resolved
    written = load_recipe(tiny_recipe, ["train.lora={rank: 8, alpha: 8.0, targets: [decoder.*]}"]).resolved
    assert lora["train"]["lora"] == {"rank": 8, "alpha": 8.0, "targets": ["decoder.*"]}
    assert run_hash(lora, "data") == run_hash(written, "data") != run_hash(resolved, "data")
    grouped = load_recipe(tiny_recipe, ["optimizer.param_groups=[{params: [decoder.*], lr: 0.1}]"]).resolved
    assert run_hash(grouped, "data") != run_hash(resolved, "data")
