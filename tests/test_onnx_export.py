"""ONNX export framework: the exported folder, its checks, the torch-free runtime and the CLI.

The architectures' own export plans are tested with their models; here two test-local
separators stand in for them: a small convolutional one whose plan uses the "waveform" adapter,
and one whose exported core deliberately differs from its forward (parity must refuse it).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from torch import Tensor, nn

from sepzoo.cli.main import main
from sepzoo.deploy.runtime import MANIFEST_NAME, ExportedFolderError, file_digest, load_exported
from sepzoo.engine.apply import apply_model
from sepzoo.errors import OutputExistsError, SepzooError
from sepzoo.export.onnx import export_onnx
from sepzoo.models import MODELS, register_model
from sepzoo.models.bag import BagOfModels
from sepzoo.models.base import Separator
from sepzoo.models.files import TRAIN_FORMAT, load_separator, save_model_file
from sepzoo.models.onnx_core import OnnxExport
from sepzoo.models.onnx_model import OnnxSeparator

REPO_ROOT = Path(__file__).resolve().parents[1]
RATE = 8000


class _Core(nn.Module):
    """The exported core: the model's own network, its first stem optionally scaled (to break parity)."""

    def __init__(self, model: TinyExportable, scale: float = 1.0) -> None:
        super().__init__()
        self.model = model
        self.scale = scale

    def forward(self, mix: Tensor) -> Tensor:
        stems = self.model.network(mix)
        return torch.cat([stems[:, :1] * self.scale, stems[:, 1:]], dim=1)


class TinyExportable(Separator):
    """A convolution and a per-sample linear map; valid lengths are multiples of 64 samples."""

    def __init__(self, hidden: int = 8, segment: float | None = 0.25) -> None:
        super().__init__(sources=["a", "b"], sample_rate=RATE, audio_channels=2, segment=segment)
        self.conv = nn.Conv1d(2, hidden, 5, padding=2)
        self.mix_down = nn.Linear(hidden, 4)

    def valid_length(self, length: int) -> int:
        return -(-length // 64) * 64

    def network(self, mix: Tensor) -> Tensor:
        hidden = torch.tanh(self.conv(mix)).transpose(1, 2)  # B, T, H
        out = self.mix_down(hidden).transpose(1, 2)  # B, S*C, T
        return out.reshape(mix.shape[0], 2, 2, mix.shape[-1])

    def forward(self, mix: Tensor, references: Tensor | None = None) -> Tensor:
        return self.network(mix)

    def onnx_export(self, length: int) -> OnnxExport:
        return OnnxExport(_Core(self), "waveform", {})


class DriftingExportable(TinyExportable):
    """Its exported core makes stem "a" 0.1% louder than its forward does."""

    def onnx_export(self, length: int) -> OnnxExport:
        return OnnxExport(_Core(self, scale=1.001), "waveform", {})


@pytest.fixture(scope="module")
def registered() -> object:
    names = {"onnx_test_tiny": TinyExportable, "onnx_test_drift": DriftingExportable}
    for name, cls in names.items():
        register_model(name)(cls)
    yield names
    for name in names:
        MODELS._entries.pop(name, None)


@pytest.fixture(scope="module")
def model_file(registered: object, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return save_model_file(TinyExportable(), tmp_path_factory.mktemp("model") / "tiny.sepzoo")


@pytest.fixture(scope="module")
def exported(model_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("exports") / "tiny-onnx"
    export_onnx(model_file, out)
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_manifest_records_the_model_the_graph_and_their_digests(exported, model_file):
    import onnx

    manifest = json.loads((exported / MANIFEST_NAME).read_text())
    assert manifest["format"] == "sepzoo-onnx" and manifest["format_version"] == 1
    assert manifest["architecture"] == "onnx_test_tiny" and manifest["domain"] == "waveform"
    assert manifest["sources"] == ["a", "b"] and manifest["sample_rate"] == RATE
    assert manifest["audio_channels"] == 2 and manifest["opset"] == 17
    # 0.25 s is 2000 samples, widened to the model's valid length.
    assert manifest["segment"] == 0.25 and manifest["segment_samples"] == 2048
    assert manifest["adapter"] == "waveform" and manifest["settings"] == {}
    assert manifest["inputs"] == ["mix"] and manifest["outputs"] == ["stems"]
    assert manifest["quantize"] is None
    assert manifest["source"] == {"path": str(model_file), "sha256": _sha256(model_file)}
    assert sorted(manifest["files"]) == ["model.onnx"]
    assert manifest["files"]["model.onnx"] == _sha256(exported / "model.onnx")
    assert set(manifest["parity"]["relative_l2"]) == {"a", "b"}
    assert max(manifest["parity"]["relative_l2"].values()) <= 1e-4
    onnx.checker.check_model(str(exported / "model.onnx"))
    graph = onnx.load(str(exported / "model.onnx"))
    assert graph.opset_import[0].version == 17
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert not [p for p in exported.parent.iterdir() if p.name.startswith(".")]  # no temporary left


def test_run_directory_export_records_the_checkpoint_it_read(registered, tmp_path):
    model = TinyExportable()
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    checkpoint = run / "checkpoints" / "best.ckpt"
    content = {
        "sepzoo": {"format": TRAIN_FORMAT, "version": 1, "model": {"name": "onnx_test_tiny", "kwargs": {}}},
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
    }
    torch.save(content, checkpoint)
    manifest = export_onnx(run, tmp_path / "out", segment=0.1)
    assert manifest["source"] == {"path": str(checkpoint), "sha256": file_digest(checkpoint)}
    assert manifest["segment"] == 0.1 and manifest["segment_samples"] == 832  # 800 -> 13 * 64
    separator = load_separator(tmp_path / "out")
    assert isinstance(separator, OnnxSeparator)
    assert separator.source_digest == file_digest(checkpoint)
    assert separator.manifest == manifest


def test_export_refuses_a_graph_that_differs_from_torch_and_leaves_no_output(registered, tmp_path):
    path = save_model_file(DriftingExportable(), tmp_path / "drift.sepzoo")
    out = tmp_path / "out"
    with pytest.raises(SepzooError, match=r"differs from torch on 'a' by 0\.001\d* relative L2") as info:
        export_onnx(path, out)
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drift.sepzoo"]  # no OUT, no temporary


def test_models_without_an_export_path_are_refused(registered, tmp_path, capsys):
    assert main(["export-onnx", "irm1", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert "no ONNX export path" in error and "\n" not in error
    bag = BagOfModels([TinyExportable(), TinyExportable()])
    path = save_model_file(bag, tmp_path / "bag.sepzoo")
    with pytest.raises(SepzooError, match="bag of models has no ONNX export path"):
        export_onnx(path, tmp_path / "out")
    no_segment = save_model_file(TinyExportable(segment=None), tmp_path / "free.sepzoo")
    with pytest.raises(SepzooError, match="pass --segment SECONDS"):
        export_onnx(no_segment, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_existing_output_is_refused_without_force(model_file, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError):
        export_onnx(model_file, out)
    assert (out / "keep.txt").read_text() == "mine"
    assert main(["export-onnx", str(model_file), str(out), "--force", "--segment", "0.1"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "kB" in printed and "relative L2 vs torch: a " in printed
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", MANIFEST_NAME]


def test_missing_or_altered_graph_is_refused(exported, tmp_path, capsys):
    missing = tmp_path / "missing"
    shutil.copytree(exported, missing)
    (missing / "model.onnx").unlink()
    with pytest.raises(ExportedFolderError, match=r"model\.onnx: missing"):
        load_exported(missing)
    altered = tmp_path / "altered"
    shutil.copytree(exported, altered)
    data = bytearray((altered / "model.onnx").read_bytes())
    data[-1] ^= 1
    (altered / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ExportedFolderError, match="sha256 does not match the manifest"):
        load_separator(altered)
    # An exported folder is not a model file: it cannot be saved into one, nor into a bag file.
    bag = tmp_path / "bag.sepzoo"
    assert main(["bag", str(exported), str(exported), "-o", str(bag)]) == 2
    assert "cannot be saved in a model or bag file" in capsys.readouterr().err
    assert not bag.exists()
    wav = tmp_path / "mix.wav"
    soundfile.write(wav, np.zeros((800, 2), dtype=np.float32), RATE)
    assert main(["separate", str(wav), "-n", str(altered), "-o", str(tmp_path / "stems")]) == 2
    error = capsys.readouterr().err.strip()
    assert "sha256 does not match" in error and "\n" not in error
    assert not (tmp_path / "stems").exists()


def test_backend_must_fit_the_model(exported, model_file, tmp_path, capsys):
    wav = tmp_path / "mix.wav"
    soundfile.write(wav, np.zeros((800, 2), dtype=np.float32), RATE)
    out = str(tmp_path / "stems")
    assert main(["separate", str(wav), "-n", str(model_file), "-o", out, "--backend", "onnxruntime"]) == 2
    assert "--backend onnxruntime needs an exported folder (sepzoo export-onnx)" in capsys.readouterr().err
    assert main(["separate", str(wav), "-n", str(exported), "-o", out, "--backend", "torch"]) == 2
    assert "is an exported folder" in capsys.readouterr().err
    code = main(
        ["eval", "-n", str(model_file), "--root", str(tmp_path), "-o", out, "--backend", "onnxruntime"]
    )
    assert code == 2 and "needs an exported folder" in capsys.readouterr().err
    assert not Path(out).exists()


def test_torch_engine_runs_the_export_as_the_numpy_runtime_does(exported):
    separator = load_separator(exported)
    runtime = load_exported(exported)
    mix = torch.from_numpy((0.3 * np.random.default_rng(1).standard_normal((2, 2, 7001))).astype(np.float32))
    for options in ({}, {"segment": 0.2, "overlap": 0.5}):
        ours = apply_model(separator, mix, batch_size=3, **options).numpy()
        theirs = runtime.separate(mix.numpy(), batch_size=2, **options)
        assert ours.shape == theirs.shape == (2, 2, 2, 7001)
        assert np.abs(ours - theirs).max() <= 1e-4 * np.abs(theirs).max()
    # Whole chunks see what the torch model sees: the middle of the track matches it.
    reference = apply_model(_torch_model(exported), mix)
    middle = slice(1000, 5000)
    difference = np.abs(apply_model(separator, mix).numpy()[..., middle] - reference.numpy()[..., middle])
    assert difference.max() <= 1e-4 * np.abs(reference.numpy()).max()
    with pytest.raises(SepzooError, match="longer than"):
        apply_model(separator, mix, segment=0.3)


def test_runtime_threads_set_the_sessions_intra_op_threads(exported):
    mix = (0.3 * np.random.default_rng(2).standard_normal((2, 3000))).astype(np.float32)
    one = load_exported(exported, threads=1)
    assert one.session.get_session_options().intra_op_num_threads == 1
    assert np.abs(one.separate(mix) - load_exported(exported, threads=2).separate(mix)).max() <= 1e-6
    with pytest.raises(ValueError, match="threads must be >= 1"):
        load_exported(exported, threads=0)


def _torch_model(folder: Path) -> Separator:
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    return load_separator(manifest["source"]["path"]).eval()


def test_int8_export_is_smaller_and_runs(registered, tmp_path):
    torch.manual_seed(0)
    path = save_model_file(TinyExportable(hidden=256), tmp_path / "wide.sepzoo")
    fp32 = export_onnx(path, tmp_path / "fp32")
    int8 = export_onnx(path, tmp_path / "int8", quantize="int8")
    assert int8["quantize"] == "int8"
    assert (tmp_path / "int8" / "model.onnx").stat().st_size < 0.6 * (
        tmp_path / "fp32" / "model.onnx"
    ).stat().st_size
    assert int8["parity"]["fp32_relative_l2"] == fp32["parity"]["relative_l2"]
    errors = list(int8["parity"]["relative_l2"].values())
    assert all(0 < e < 0.1 for e in errors)  # measured, not refused
    mix = (0.3 * np.random.default_rng(2).standard_normal((2, 3000))).astype(np.float32)
    stems = load_exported(tmp_path / "int8").separate(mix)
    reference = load_exported(tmp_path / "fp32").separate(mix)
    assert np.isfinite(stems).all()
    assert np.linalg.norm(stems - reference) < 0.1 * np.linalg.norm(reference)


_NO_TORCH = textwrap.dedent(
    """
    import runpy, sys

    class NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is not installed here: " + name)
            return None

    sys.meta_path.insert(0, NoTorch())
    sys.argv = ["python -m sepzoo.deploy", *sys.argv[1:]]
    try:
        runpy.run_module("sepzoo.deploy", run_name="__main__", alter_sys=True)
    finally:
        assert not [m for m in sys.modules if m == "torch" or m.startswith("torch.")]
    """
)


def test_deploy_separates_without_torch_as_sepzoo_separate_does(exported, tmp_path):
    rng = np.random.default_rng(3)
    wav = tmp_path / "song.wav"
    soundfile.write(wav, (0.2 * rng.standard_normal((5000, 2))).astype(np.float32), RATE, subtype="FLOAT")
    torch_out, deploy_out = tmp_path / "torch", tmp_path / "deploy"
    assert main(["separate", str(wav), "-n", str(exported), "-o", str(torch_out), "--float32"]) == 0
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-c", _NO_TORCH, "separate", str(wav), "-n", str(exported)]
    done = subprocess.run(
        [*command, "-o", str(deploy_out), "--float32"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    for source in ("a", "b"):
        ours, rate = soundfile.read(deploy_out / "song" / f"{source}.wav", dtype="float32")
        theirs, _ = soundfile.read(torch_out / "song" / f"{source}.wav", dtype="float32")
        assert rate == RATE and ours.shape == theirs.shape == (5000, 2)
        assert np.abs(ours - theirs).max() <= 1e-4 * np.abs(theirs).max()
    # Bad input is one line and exit status 2, still without torch.
    done = subprocess.run(
        [*command, "-o", str(deploy_out)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "already exists; pass --force" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("quantize", [None, "int8"])
def test_large_graphs_keep_their_weights_in_an_external_data_file(
    model_file, tmp_path, monkeypatch, quantize
):
    import onnx

    import sepzoo.export.onnx as exporter

    monkeypatch.setattr(exporter, "EXTERNAL_DATA_BYTES", 0)  # every graph counts as large
    out = tmp_path / "out"
    manifest = export_onnx(model_file, out, quantize=quantize)
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "model.onnx.data", MANIFEST_NAME]
    assert manifest["files"] == {name: file_digest(out / name) for name in ("model.onnx", "model.onnx.data")}
    onnx.checker.check_model(str(out / "model.onnx"))
    chunks = (0.3 * np.random.default_rng(4).standard_normal((3, 2, 2048))).astype(np.float32)
    stems = load_exported(out).run(chunks)
    with torch.no_grad():
        expected = load_separator(model_file).eval()(torch.from_numpy(chunks)).numpy()
    tolerance = 1e-4 if quantize is None else 0.1
    assert np.linalg.norm(stems - expected) <= tolerance * np.linalg.norm(expected)
    (out / "model.onnx.data").write_bytes((out / "model.onnx.data").read_bytes() + b"\0")
    with pytest.raises(ExportedFolderError, match=r"model\.onnx\.data: sha256 does not match"):
        load_exported(out)


class FourStems(Separator):
    """A convolution into the toy set's four stems at 44.1 kHz."""

    def __init__(self, segment: float = 0.5) -> None:
        super().__init__(sources=["drums", "bass", "other", "vocals"], sample_rate=44100, segment=segment)
        self.conv = nn.Conv1d(2, 8, 5, padding=2)

    def forward(self, mix: Tensor, references: Tensor | None = None) -> Tensor:
        return self.conv(mix).view(mix.shape[0], 4, 2, mix.shape[-1])

    def onnx_export(self, length: int) -> OnnxExport:
        return OnnxExport(_Forward(self), "waveform", {})


class _Forward(nn.Module):
    def __init__(self, model: Separator) -> None:
        super().__init__()
        self.model = model

    def forward(self, mix: Tensor) -> Tensor:
        return self.model(mix)


def test_eval_scores_an_exported_folder_as_its_model(tmp_path, capsys):
    from sepzoo.data.toy import generate_toy_musdb

    register_model("onnx_test_four")(FourStems)
    try:
        root = generate_toy_musdb(tmp_path / "toy", tracks=1, test_tracks=1, seconds=1.5, seed=0)
        path = save_model_file(FourStems(), tmp_path / "four.sepzoo")
        assert main(["export-onnx", str(path), str(tmp_path / "four-onnx")]) == 0
        scores = []
        for model, out in ((path, "torch"), (tmp_path / "four-onnx", "onnx")):
            command = [
                "eval",
                "-n",
                str(model),
                "--root",
                str(root),
                "-o",
                str(tmp_path / out),
                "--shifts",
                "1",
            ]
            assert main(command) == 0, capsys.readouterr().err
            scores.append(json.loads((tmp_path / out / "summary.json").read_text())["nSDR"])
    finally:
        MODELS._entries.pop("onnx_test_four", None)
    assert scores[0].keys() == scores[1].keys()
    assert all(abs(scores[0][s] - scores[1][s]) < 1e-3 for s in scores[0])


def test_every_deploy_module_and_adapter_imports_without_torch():
    script = textwrap.dedent(
        """
        import importlib, pkgutil, sys

        class NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is not installed here: " + name)
                return None

        sys.meta_path.insert(0, NoTorch())
        import sepzoo.deploy
        from sepzoo.deploy.adapters import ADAPTER_MODULES

        names = [m.name for m in pkgutil.iter_modules(sepzoo.deploy.__path__, "sepzoo.deploy.")]
        for name in sorted({*names, *ADAPTER_MODULES.values()}):
            importlib.import_module(name)
        print(len(names))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 4  # adapters, dsp, runtime, __main__


def test_training_cannot_start_from_an_exported_folder(exported, tiny_recipe):
    from sepzoo.errors import CheckpointError
    from sepzoo.training.recipe import load_recipe
    from sepzoo.training.train import build_components

    overrides = [f"train.init_from={exported}", "train.init_strict=false"]
    with pytest.raises(CheckpointError, match="exported \\(ONNX\\) folder, which holds no torch weights"):
        build_components(load_recipe(tiny_recipe, overrides))


def _trainable_architectures() -> list[str]:
    from sepzoo.models import get_model_class, list_models

    return [name for name in list_models() if get_model_class(name).domain != "oracle"]


@pytest.mark.parametrize("name", _trainable_architectures())
def test_exported_architecture_separates_tracks_as_torch_does(name, tmp_path):
    """Every trainable architecture exports. At track level, through the export folder and both
    engines, the onnxruntime path equals the NumPy runtime, and equals the torch model wherever a
    track is covered by full chunks only (everywhere for a fixed_chunk_length model)."""
    from sepzoo.deploy.plan import plan_chunks, seconds_to_samples
    from sepzoo.export.graph import relative_errors
    from sepzoo.models import get_model_class

    cls = get_model_class(name)
    torch.manual_seed(0)
    model = cls(**cls.test_kwargs).eval()
    segment = min(model.segment or 0.25, 0.25, model.max_segment or 0.25)
    chunk = seconds_to_samples(segment, model.sample_rate)
    # Every trainable architecture must export: a new one without an export plan fails here.
    path = save_model_file(model, tmp_path / f"{name}.sepzoo")
    out = tmp_path / "onnx"
    manifest = export_onnx(path, out, segment=segment)
    assert max(manifest["parity"]["relative_l2"].values()) <= 1e-4
    length = int(2.5 * chunk)
    mix = torch.from_numpy(
        (0.3 * np.random.default_rng(5).standard_normal((model.audio_channels, length))).astype(np.float32)
    )
    separator = load_separator(out)
    ours = apply_model(separator, mix, segment=segment).numpy()
    runtime = load_exported(out).separate(mix.numpy(), segment=segment)
    assert max(relative_errors(runtime[None], ours[None])) <= 1e-4
    reference = apply_model(model, mix, segment=segment).numpy()
    short = [offset for offset in plan_chunks(length, chunk, 0.25) if offset + chunk > length]
    end = length if model.fixed_chunk_length else short[0]
    assert max(relative_errors(reference[None, ..., :end], ours[None, ..., :end])) <= 1e-4
