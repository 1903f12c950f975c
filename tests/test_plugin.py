"""Third-party models register through the `sepzoo.models` entry-point group, without forking."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

PLUGIN_MODULE = '''
"""A third-party separator: each source gets an equal share of the mixture, times a gain."""

import torch
from torch import nn

from sepzoo.models import Separator, register_model


@register_model("{name}")
class EqualShare(Separator):
    domain = "waveform"
    test_kwargs = {{}}

    def __init__(self, sources=("drums", "bass", "other", "vocals"), sample_rate=44100, audio_channels=2):
        super().__init__(sources=list(sources), sample_rate=sample_rate, audio_channels=audio_channels)
        self.gain = nn.Parameter(torch.ones(len(self.sources)))

    def forward(self, mix, references=None):
        self.check_input(mix, references)
        share = mix.unsqueeze(1) / len(self.sources)  # B, 1, C, T
        return share * self.gain.view(1, -1, 1, 1)  # B, S, C, T
'''


def install_plugin(site: Path, package: str, model_name: str, body: str | None = None) -> None:
    """Lay out an installed distribution: its package and a dist-info with an entry point."""
    (site / package).mkdir(parents=True)
    (site / package / "__init__.py").write_text(
        body if body is not None else PLUGIN_MODULE.format(name=model_name)
    )
    dist_info = site / f"{package}-0.1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1.0\n")
    (dist_info / "entry_points.txt").write_text(f"[sepzoo.models]\n{model_name} = {package}\n")


def run_python(site: Path, code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=300
    )


def test_an_installed_plugin_is_found_built_and_listed(tmp_path):
    install_plugin(tmp_path, "sepzoo_equal_share", "equal_share")
    done = run_python(
        tmp_path,
        """
        import torch
        from sepzoo.models import create_model, list_models
        from sepzoo.cli.main import main
        assert "equal_share" in list_models() and "conv_tasnet" in list_models()
        model = create_model("equal_share")
        out = model(torch.ones(1, 2, 10))
        assert out.shape == (1, 4, 2, 10) and torch.allclose(out, torch.full_like(out, 0.25))
        main(["models"])
    """,
    )
    assert done.returncode == 0, done.stderr
    assert any(line.startswith("equal_share") and "waveform" in line for line in done.stdout.splitlines())


def test_a_plugin_that_reuses_a_name_is_refused(tmp_path):
    install_plugin(tmp_path, "sepzoo_clash", "conv_tasnet")
    done = run_python(
        tmp_path,
        """
        from sepzoo.models import list_models
        list_models()
    """,
    )
    assert done.returncode != 0
    assert "'conv_tasnet' is already registered" in done.stderr


def test_a_broken_plugin_is_named_in_one_line(tmp_path):
    install_plugin(tmp_path, "sepzoo_broken", "broken", body="raise ImportError('needs libfoo')\n")
    done = run_python(
        tmp_path,
        """
        import sys
        from sepzoo.cli.main import main
        sys.exit(main(["models"]))
    """,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "model plugin 'broken'" in done.stderr and "needs libfoo" in done.stderr


TWO_DOMAIN_PLUGIN = '''
"""Two tiny third-party separators, one per domain, for comparisons."""

import torch
from torch import nn

from sepzoo.models import Separator, register_model


@register_model("plugin_gain")
class PluginGain(Separator):
    """Each source is the mixture through a short learned filter."""

    domain = "waveform"
    test_kwargs = {}

    def __init__(self, sources=("drums", "bass", "other", "vocals"), sample_rate=44100, audio_channels=2,
                 segment=1.0):
        super().__init__(sources=list(sources), sample_rate=sample_rate, audio_channels=audio_channels,
                         segment=segment)
        self.filters = nn.Conv1d(1, len(self.sources), kernel_size=9, padding=4)

    def forward(self, mix, references=None):
        self.check_input(mix, references)
        batch, channels, length = mix.shape
        out = self.filters(mix.reshape(batch * channels, 1, length))  # B*C, S, T
        return out.reshape(batch, channels, len(self.sources), length).transpose(1, 2)  # B, S, C, T


@register_model("plugin_mask")
class PluginMask(Separator):
    """Each source is the mixture's STFT through a learned mask per frequency bin."""

    domain = "spectrogram"
    test_kwargs = {}

    def __init__(self, sources=("drums", "bass", "other", "vocals"), sample_rate=44100, audio_channels=2,
                 segment=1.0, n_fft=512):
        super().__init__(sources=list(sources), sample_rate=sample_rate, audio_channels=audio_channels,
                         segment=segment)
        self.n_fft = n_fft
        self.logits = nn.Parameter(torch.zeros(len(self.sources), n_fft // 2 + 1))

    def forward(self, mix, references=None):
        self.check_input(mix, references)
        batch, channels, length = mix.shape
        window = torch.hann_window(self.n_fft, device=mix.device)
        spec = torch.stft(mix.reshape(-1, length), self.n_fft, self.n_fft // 4, window=window,
                          return_complex=True)  # B*C, F, N
        masks = torch.softmax(self.logits, dim=0)  # S, F
        masked = spec.unsqueeze(1) * masks[None, :, :, None]  # B*C, S, F, N
        frames = masked.shape[-1]
        wave = torch.istft(masked.reshape(-1, masked.shape[-2], frames), self.n_fft, self.n_fft // 4,
                           window=window, length=length)  # B*C*S, T
        return wave.reshape(batch, channels, len(self.sources), length).transpose(1, 2)  # B, S, C, T
'''

PLUGIN_RECIPE = """
extends: {base}
model:
  name: {name}
data:
  name: musdb
  root: {root}
  segment: 1.0
  batch_size: 2
  num_workers: 0
  samples_per_epoch: 8
  valid: train-tail
  valid_count: 1
  valid_max_seconds: 2.0
trainer:
  max_steps: 100
  accelerator: cpu
  precision: 32-true
  log_every_n_steps: 1
train:
  audio_examples: 0
"""


def test_a_plugin_architecture_trains_and_is_compared_through_recipes(tmp_path):
    """Two architectures from a plugin package, trained and compared with no edit to sepzoo."""
    import json

    repo = Path(__file__).resolve().parents[1]
    site = tmp_path / "site"
    site.mkdir()
    (site / "sepzoo_tiny").mkdir()
    (site / "sepzoo_tiny" / "__init__.py").write_text(TWO_DOMAIN_PLUGIN)
    dist_info = site / "sepzoo_tiny-0.1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: sepzoo_tiny\nVersion: 0.1.0\n")
    (dist_info / "entry_points.txt").write_text(
        "[sepzoo.models]\nplugin_gain = sepzoo_tiny\nplugin_mask = sepzoo_tiny\n"
    )
    data = tmp_path / "toy"
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    for name in ("plugin_gain", "plugin_mask"):
        (recipes / f"{name}.yaml").write_text(
            PLUGIN_RECIPE.format(base=repo / "recipes" / "base.yaml", name=name, root=data)
        )
    (recipes / "compare.yaml").write_text(
        f"""
name: plugin_wave_vs_spec
data:
  root: {data}
  generate: {{tracks: 2, test_tracks: 3, seconds: 3, seed: 0}}
budget: {{steps: 4}}
seeds: [0]
models: [plugin_gain.yaml, plugin_mask.yaml]
oracles: [irm2]
statistics: {{resamples: 500}}
excerpt: {{seconds: 2}}
wandb: {{mode: offline}}
out: {tmp_path / "comparison"}
"""
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
        "WANDB_MODE": "offline",
    }
    command = [sys.executable, "-m", "sepzoo.cli.main", "compare", str(recipes / "compare.yaml")]
    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]

    out = tmp_path / "comparison"
    comparison = json.loads((out / "comparison.json").read_text())
    systems = {s["label"]: s for s in comparison["systems"]}
    assert list(systems) == ["plugin_gain", "plugin_mask", "irm2"]
    assert [systems[n]["domain"] for n in systems] == ["waveform", "spectrogram", "oracle"]
    assert comparison["toy"] is True and len(comparison["dataset"]["tracks"]) == 3
    for system in systems.values():
        for metric in ("cSDR", "nSDR"):
            for source in ("drums", "bass", "other", "vocals"):
                assert len(system["per_track"][metric][source]) == 3
                summary = system["summary"][metric][source]
                assert summary["low"] <= summary["estimate"] <= summary["high"]
    # The oracle, which sees the stems, is far above two architectures trained for four steps.
    assert systems["irm2"]["summary"]["nSDR"]["vocals"]["estimate"] > (
        systems["plugin_gain"]["summary"]["nSDR"]["vocals"]["estimate"] + 5
    )
    assert {(t["a"], t["b"]) for t in comparison["paired"]} == {("plugin_gain", "plugin_mask")}
    assert len(comparison["paired"]) == 8 and len(comparison["domain_panel"]) == 8
    assert all(run["steps"] == 4 for s in systems.values() if s["kind"] == "trained" for run in s["runs"])

    # Training runs are in the comparison's W&B group, tagged with model, domain and seed.
    for label, domain in (("plugin_gain", "waveform"), ("plugin_mask", "spectrogram")):
        run_dir = Path(systems[label]["runs"][0]["run_dir"])
        assert run_dir.parent == out / "runs" and run_dir.name.startswith(f"{label}-seed0-")
        config = (run_dir / "config.yaml").read_text()
        assert "group: plugin_wave_vs_spec" in config
        assert all(tag in config for tag in (label, domain, "seed0"))
        assert list((run_dir / "wandb").glob("offline-run-*"))
    assert list((out / "wandb").glob("offline-run-*"))
    for files in [comparison["excerpt"]["reference"], *comparison["excerpt"]["systems"].values()]:
        assert sorted(files) == ["bass", "drums", "other", "vocals"]
        assert all((out / path).is_file() for path in files.values())
    assert (out / "report.html").is_file() and (out / "table.txt").is_file()
    assert "plugin_mask" in first.stdout and "waveform vs spectrogram" in first.stdout

    # A second call finds the finished runs by their directories and trains nothing.
    done_times = {p: p.stat().st_mtime for p in (out / "runs").glob("*/DONE")}
    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("reusing the finished run") == 2
    assert {p: p.stat().st_mtime for p in (out / "runs").glob("*/DONE")} == done_times
    again = json.loads((out / "comparison.json").read_text())
    assert [s["per_track"] for s in again["systems"]] == [s["per_track"] for s in comparison["systems"]]
