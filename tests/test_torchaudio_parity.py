"""`torchaudio.models.HDemucs` state dicts convert to sepzoo's Hybrid Demucs with the same outputs."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from parity import randomize, relative_error
from torchaudio.models import HDemucs as TorchaudioHDemucs

from sepzoo.convert.torchaudio import convert_torchaudio_file
from sepzoo.engine.apply import apply_model
from sepzoo.errors import CheckpointError
from sepzoo.models.files import load_separator

FOUR = ["drums", "bass", "other", "vocals"]


def torchaudio_model(sources: list[str], seed: int = 0, **settings) -> TorchaudioHDemucs:
    torch.manual_seed(seed)
    model = TorchaudioHDemucs(sources, **settings)
    return randomize(model, seed)


@pytest.mark.parametrize(
    ("sources", "settings"),
    [
        (FOUR, dict(channels=8, nfft=256, depth=4)),
        (["vocals", "accompaniment"], dict(channels=6, nfft=256, depth=5)),
    ],
)
def test_torchaudio_hdemucs_converts_with_the_same_outputs(tmp_path, sources, settings):
    theirs = torchaudio_model(sources, **settings)
    torch.save(theirs.state_dict(), tmp_path / "hdemucs.pt")
    ours = convert_torchaudio_file(tmp_path / "hdemucs.pt", sources, 44100).eval()
    assert ours.registry_name == "hdemucs" and ours.sources == sources
    for length in (4000, 20000):
        mix = torch.randn(1, 2, length)
        with torch.no_grad():
            assert relative_error(ours(mix), theirs(mix)) <= 1e-4
    mix = torch.randn(1, 2, 30000)
    with torch.no_grad():
        expected = theirs(mix)
    assert relative_error(apply_model(ours, mix, segment=None), expected) <= 1e-4


def test_the_default_model_and_its_parameter_count(tmp_path):
    theirs = torchaudio_model(FOUR)
    torch.save(theirs.state_dict(), tmp_path / "full.pt")
    ours = convert_torchaudio_file(tmp_path / "full.pt", FOUR).eval()
    unused = theirs.time_encoder[4].norm1  # the merge layer's norm, which torchaudio never applies
    assert ours.num_parameters() == sum(p.numel() for p in theirs.parameters()) - sum(
        p.numel() for p in unused.parameters()
    )
    mix = torch.randn(1, 2, 20000)
    with torch.no_grad():
        assert relative_error(ours(mix), theirs(mix)) <= 1e-4


def test_the_source_count_must_match_and_sources_are_required(tmp_path):
    torch.save(torchaudio_model(FOUR, channels=8, nfft=256, depth=4).state_dict(), tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="separates 4 sources, but 2 were given"):
        convert_torchaudio_file(tmp_path / "m.pt", ["vocals", "accompaniment"])
    with pytest.raises(CheckpointError, match="pass --sources"):
        convert_torchaudio_file(tmp_path / "m.pt", None)
    state = torchaudio_model(FOUR, channels=8, nfft=256, depth=4).state_dict()
    state["extra.weight"] = torch.zeros(2)
    torch.save(state, tmp_path / "extra.pt")
    with pytest.raises(CheckpointError, match=r"cannot map: extra\.weight"):
        convert_torchaudio_file(tmp_path / "extra.pt", FOUR)


def test_cli_converts_a_torchaudio_state_dict(tmp_path):
    torch.save(torchaudio_model(FOUR, channels=8, nfft=256, depth=4).state_dict(), tmp_path / "m.pt")
    out = tmp_path / "m.sepzoo"
    base = [
        sys.executable,
        "-m",
        "sepzoo.cli.main",
        "convert",
        "torchaudio",
        str(tmp_path / "m.pt"),
        str(out),
    ]
    done = subprocess.run(
        [*base, "--sources", *FOUR, "--sample-rate", "44100"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert load_separator(out).sources == FOUR
    wrong = [*base, "--force", "--sources", "vocals", "accompaniment"]
    done = subprocess.run(wrong, capture_output=True, text=True)
    assert done.returncode == 2 and "separates 4 sources, but 2 were given" in done.stderr
