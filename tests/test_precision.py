"""Mixed precision and compilation: every model trains under bfloat16 autocast with its signal
processing in float32, real Lightning runs train at ``bf16-mixed`` and compiled, and settings
the machine cannot run are refused in one line before anything is written."""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode

from sepzoo.dsp.precision import full_precision
from sepzoo.errors import ConfigError
from sepzoo.models import create_model, get_model_class, list_models
from sepzoo.training.losses import build_loss
from sepzoo.training.recipe import load_recipe, resolve_precision
from sepzoo.training.rundir import DONE_MARKER
from sepzoo.training.train import run_directory, train

REPO_ROOT = Path(__file__).resolve().parents[1]
TRAINABLE = [name for name in list_models() if get_model_class(name).domain != "oracle"]
HALF = (torch.float16, torch.bfloat16, torch.complex32)
SIGNAL_PROCESSING = {
    torch.stft: "torch.stft",
    torch.istft: "torch.istft",
    torch.complex: "torch.complex",
    torch.view_as_complex: "torch.view_as_complex",
    torch.fft.rfft: "torch.fft.rfft",
    torch.fft.irfft: "torch.fft.irfft",
}


class HalfPrecisionSignalProcessing(TorchFunctionMode):
    """Records every STFT, FFT or complex construction that is handed a half-precision tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        if func in SIGNAL_PROCESSING:
            dtypes = [v.dtype for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor)]
            if any(dtype in HALF for dtype in dtypes):
                self.calls.append(f"{SIGNAL_PROCESSING[func]}{dtypes}")
        return func(*args, **kwargs)


def _inputs(model: torch.nn.Module, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    stems = 0.3 * torch.randn(2, len(model.sources), model.audio_channels, length, generator=generator)
    return stems.sum(dim=1), stems


@pytest.mark.parametrize("name", TRAINABLE)
def test_every_model_trains_under_bfloat16_autocast_with_its_signal_processing_in_float32(name):
    torch.manual_seed(0)
    model = create_model(name, **get_model_class(name).test_kwargs).train()
    mix, stems = _inputs(model, model.valid_length(600))
    loss = build_loss("l1", list(model.sources))
    with HalfPrecisionSignalProcessing() as seen, torch.autocast("cpu", dtype=torch.bfloat16):
        estimate = model(mix)
        total, _ = loss(estimate, stems)
    total.backward()
    assert seen.calls == []
    assert estimate.dtype == torch.float32 and total.dtype == torch.float32
    assert math.isfinite(total.item())
    gradients = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None for g in gradients)
    assert all(torch.isfinite(g).all() for g in gradients if g is not None)
    # Validation runs under autocast too, in evaluation mode (where some models Wiener-filter).
    model.eval()
    with seen, torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        estimate = model(mix)
    assert seen.calls == []
    assert estimate.dtype == torch.float32 and torch.isfinite(estimate).all()


def test_bfloat16_autocast_changes_the_signal_processing_of_a_spectrogram_model_by_rounding_only():
    torch.manual_seed(0)
    model = create_model("open_unmix", **get_model_class("open_unmix").test_kwargs).eval()
    mix, _ = _inputs(model, 600)
    with torch.no_grad():
        full = model(mix)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model(mix)
    scale = full.abs().max()
    assert 0 < (mixed - full).abs().max() < 0.05 * scale  # the network's rounding, no more


def test_full_precision_computes_float32_and_float64_calls_exactly_as_before():
    def spectrum(signal: torch.Tensor, scale: float) -> tuple[torch.Tensor, bool]:
        window = torch.hann_window(64, dtype=signal.dtype)
        values = torch.stft(signal, 64, 16, window=window, return_complex=True) * scale
        return values, torch.is_autocast_enabled("cpu")

    wrapped = full_precision(spectrum)
    signal = torch.randn(2, 1000, generator=torch.Generator().manual_seed(0))
    for dtype in (torch.float32, torch.float64):
        expected, _ = spectrum(signal.to(dtype), 0.5)
        got, autocast_on = wrapped(signal.to(dtype), scale=0.5)
        assert got.dtype == expected.dtype and torch.equal(got, expected) and not autocast_on
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, autocast_on = wrapped(signal.bfloat16(), 0.5)
        assert torch.is_autocast_enabled("cpu")  # turned off inside only
    expected, _ = spectrum(signal.bfloat16().float(), 0.5)
    assert not autocast_on and got.dtype == torch.complex64 and torch.equal(got, expected)


def test_validation_nsdr_is_the_same_under_autocast():
    from sepzoo.evaluation.nsdr_metric import NSDR

    generator = torch.Generator().manual_seed(3)
    reference = torch.randn(1, 4, 2, 5000, generator=generator)
    estimate = reference + 0.3 * torch.randn(1, 4, 2, 5000, generator=generator)
    plain, mixed = NSDR(["drums", "bass", "other", "vocals"]), NSDR(["drums", "bass", "other", "vocals"])
    plain.update(estimate, reference)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed.update(estimate, reference)
    assert torch.equal(plain.compute(), mixed.compute())


def test_float16_mixed_precision_is_refused_on_the_cpu_and_auto_picks_full_precision():
    assert resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"
    assert resolve_precision("16-mixed", "gpu") == "16-mixed"  # Lightning checks the GPU itself
    if not torch.cuda.is_available():
        assert resolve_precision("auto", "auto") == "32-true"
    for value in ("16-mixed", "16", 16):
        with pytest.raises(ConfigError) as error:
            resolve_precision(value, "cpu", "r.yaml: trainer.precision")
        assert str(error.value) == (
            f"r.yaml: trainer.precision: {value!r} (float16 mixed precision) needs a CUDA GPU and training "
            "would run on the CPU; use 'bf16-mixed' (bfloat16 mixed precision, which CPUs run) or '32-true'"
        )


def test_a_float16_recipe_on_the_cpu_fails_in_one_line_before_anything_is_written(tiny_recipe):
    with pytest.raises(
        ConfigError, match=r"^.*tiny\.yaml: trainer\.precision: '16-mixed' .*'bf16-mixed'"
    ) as error:
        train(tiny_recipe, ["trainer.precision=16-mixed"])
    assert "\n" not in str(error.value)
    assert not list((tiny_recipe.parent / "runs").glob("*"))  # no run directory


def _metrics(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "logs" / "metrics.csv").open(newline="") as stream:
        return list(csv.DictReader(stream))


SPECTROGRAM_RECIPE = """\
extends: {base}
model:
  name: open_unmix
  n_fft: 256
  hop_length: 64
  hidden_size: 8
  lstm_layers: 1
  wiener_iterations: 1
  segment: 0.5
data:
  name: musdb
  root: {root}
  segment: 0.5
  batch_size: 2
  num_workers: 0
  samples_per_epoch: 8
  valid: train-tail
  valid_count: 1
  valid_max_seconds: 2.0
loss:
  name: magnitude_mse
  n_fft: 256
  hop_length: 64
trainer:
  max_steps: 4
  accelerator: cpu
  precision: bf16-mixed
  log_every_n_steps: 1
  enable_progress_bar: false
train:
  audio_examples: 0
  ema_decay: 0.9
logger:
  name: csv
run:
  root: {runs}
"""


def test_a_spectrogram_model_trains_and_validates_at_bf16_mixed_through_a_recipe(tmp_path, toy_root):
    from sepzoo.models.files import safe_load

    recipe = tmp_path / "spectrogram.yaml"
    recipe.write_text(
        SPECTROGRAM_RECIPE.format(
            base=REPO_ROOT / "recipes" / "base.yaml", root=toy_root, runs=tmp_path / "runs"
        )
    )
    run_dir = train(recipe)
    assert (run_dir / DONE_MARKER).is_file()
    rows = _metrics(run_dir)
    losses = [float(row["train/loss"]) for row in rows if row.get("train/loss")]
    scores = [float(row["valid/nSDR"]) for row in rows if row.get("valid/nSDR")]
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
    assert scores and all(math.isfinite(v) for v in scores)
    checkpoint = safe_load(run_dir / "checkpoints" / "last.ckpt")
    weights = [v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")]
    assert weights and all(v.dtype == torch.float32 for v in weights if v.is_floating_point())


def test_compile_without_a_cxx_compiler_fails_in_one_line_before_anything_is_written(
    tiny_recipe, monkeypatch
):
    monkeypatch.setenv("CXX", "/nonexistent/g++")
    with pytest.raises(ConfigError) as error:
        train(tiny_recipe, ["train.compile=true"])
    assert str(error.value) == (
        f"{tiny_recipe}: train.compile: torch.compile needs a C++ compiler and $CXX ('/nonexistent/g++') "
        "is not found; install one (scripts/setup.sh installs g++) or set train.compile=false"
    )
    assert not list((tiny_recipe.parent / "runs").glob("*"))  # no run directory


@pytest.mark.skipif(sys.platform != "linux", reason="Python.h is checked where inductor needs it found")
def test_compile_without_python_headers_fails_in_one_line(tiny_recipe, tmp_path, monkeypatch):
    import sysconfig

    monkeypatch.setattr(sysconfig, "get_path", lambda name, *args, **kwargs: str(tmp_path))
    with pytest.raises(ConfigError) as error:
        train(tiny_recipe, ["train.compile=true"])
    assert str(error.value) == (
        f"{tiny_recipe}: train.compile: torch.compile's C++ code includes Python.h, which is not in "
        f"{tmp_path}; install Python's headers (python3-dev; scripts/setup.sh does) or set "
        "train.compile=false"
    )


def test_compiling_leaves_the_run_hash_and_existing_runs_alone(tiny_recipe):
    from sepzoo.training.rundir import run_hash

    resolved = load_recipe(tiny_recipe).resolved
    assert resolved["train"]["compile"] is False
    without = {**resolved, "train": {k: v for k, v in resolved["train"].items() if k != "compile"}}
    assert run_hash(resolved, "data") == run_hash(without, "data")  # as runs written before the key
    plain = run_directory(load_recipe(tiny_recipe))
    assert run_directory(load_recipe(tiny_recipe, ["train.compile=true"])) == plain


def test_a_compiled_run_trains_and_keeps_the_uncompiled_checkpoint_ema_and_export(tiny_recipe, tmp_path):
    from torch._dynamo.utils import counters

    from sepzoo.models.files import export_model_file, load_model_file, safe_load
    from sepzoo.training.train import build_components

    overrides = ["train.compile=true", "train.ema_decay=0.9", "logger.name=csv"]
    graphs = counters["stats"]["unique_graphs"]
    run_dir = train(tiny_recipe, overrides)
    assert counters["stats"]["unique_graphs"] > graphs  # the training step did go through dynamo
    assert (run_dir / DONE_MARKER).is_file()
    losses = [float(row["train/loss"]) for row in _metrics(run_dir) if row.get("train/loss")]
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses)
    checkpoint = safe_load(run_dir / "checkpoints" / "last.ckpt")
    _, eager = build_components(load_recipe(tiny_recipe, ["train.ema_decay=0.9"]))
    assert list(checkpoint["state_dict"]) == list(eager.state_dict())  # no "_orig_mod." anywhere
    assert list(checkpoint["sepzoo"]["ema"]["state"]) == list(eager.model.state_dict())
    exported, used_ema = export_model_file(run_dir, tmp_path / "compiled.sepzoo")
    model = load_model_file(exported)
    best = safe_load(run_dir / "checkpoints" / "best.ckpt")
    assert used_ema and model.registry_name == "conv_tasnet"
    for key, value in model.state_dict().items():
        assert torch.equal(value, best["sepzoo"]["ema"]["state"][key])


@pytest.mark.slow
@pytest.mark.parametrize("name", TRAINABLE)
def test_every_model_trains_through_the_compiled_training_forward(name):
    from sepzoo.training.task import SeparationTask

    torch.manual_seed(0)
    model = create_model(name, **get_model_class(name).test_kwargs).train()
    loss = build_loss("l1", list(model.sources))
    task = SeparationTask(model, loss, optimizer=lambda params: torch.optim.Adam(params), compile=True)
    mix, stems = _inputs(model, model.valid_length(600))
    for _ in range(2):  # the second call runs the compiled graph without compiling again
        estimate = task._training_forward(mix, None)
        total, _ = loss(estimate, stems)
        total.backward()
    assert math.isfinite(total.item())
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
