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
