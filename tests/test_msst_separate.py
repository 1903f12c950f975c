"""Converted MSST checkpoints through the whole command line: ``sepzoo convert msst`` on weights and
a YAML config as MSST writes them, then ``sepzoo separate`` on a file of exactly one chunk, against
the reference class's forward pass on the same samples."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from cli_helpers import assert_one_line_error, run
from parity import randomize, relative_error

bs_roformer = pytest.importorskip("audio_separator.separator.uvr_lib_v5.roformer.bs_roformer")
mel_band_roformer = pytest.importorskip("audio_separator.separator.uvr_lib_v5.roformer.mel_band_roformer")

# 7680 samples at 44.1 kHz: a chunk size that seconds cannot carry back exactly, since
# int(7680 / 44100 * 44100) is 7679; the converted model must still run it as one chunk.
CHUNK_SIZE = 7680

CASES = {
    "bs_roformer": (
        bs_roformer.BSRoformer,
        {
            "dim": 16,
            "depth": 1,
            "stereo": True,
            "num_stems": 2,
            "time_transformer_depth": 1,
            "freq_transformer_depth": 1,
            "freqs_per_bands": (4, 6, 8, 8, 7),
            "dim_head": 8,
            "heads": 2,
            "mask_estimator_depth": 2,
            "mlp_expansion_factor": 2,
            "stft_n_fft": 64,
            "stft_hop_length": 16,
            "stft_win_length": 64,
        },
        {"instruments": ["vocals", "other"], "target_instrument": None},
    ),
    "mel_band_roformer": (
        mel_band_roformer.MelBandRoformer,
        {
            "dim": 16,
            "depth": 1,
            "stereo": True,
            "num_stems": 1,
            "time_transformer_depth": 1,
            "freq_transformer_depth": 1,
            "num_bands": 6,
            "dim_head": 8,
            "heads": 2,
            "sample_rate": 44100,
            "stft_n_fft": 64,
            "stft_hop_length": 16,
            "stft_win_length": 64,
        },
        {"instruments": ["vocals", "other"], "target_instrument": "vocals"},
    ),
}


class _TupleDumper(yaml.SafeDumper):
    """Writes tuples with ``!!python/tuple``, as MSST's configs hold band lists."""


_TupleDumper.add_representer(
    tuple, lambda dumper, value: dumper.represent_sequence("tag:yaml.org,2002:python/tuple", value)
)


def write_msst_files(folder: Path, model_type: str) -> tuple[Path, Path, torch.nn.Module]:
    reference_class, model, training = CASES[model_type]
    torch.manual_seed(0)
    reference = randomize(reference_class(**model), seed=1)
    config = {
        "audio": {"chunk_size": CHUNK_SIZE, "num_channels": 2, "sample_rate": 44100, "min_mean_abs": 0.0},
        "model": model,
        "training": {**training, "batch_size": 2, "use_amp": True},
        "inference": {"batch_size": 1, "num_overlap": 2},
    }
    config_path = folder / f"config_{model_type}.yaml"
    config_path.write_text(yaml.dump(config, Dumper=_TupleDumper, sort_keys=False))
    checkpoint = folder / f"model_{model_type}.ckpt"
    torch.save(reference.state_dict(), checkpoint)
    return checkpoint, config_path, reference


@pytest.mark.parametrize("model_type", list(CASES))
def test_one_chunk_through_sepzoo_separate_matches_the_reference(model_type, tmp_path, capsys):
    import soundfile as sf

    checkpoint, config, reference = write_msst_files(tmp_path, model_type)
    model_file = tmp_path / f"{model_type}.sepzoo"
    argv = ["convert", "msst", str(checkpoint), str(model_file), "--config", str(config)]
    code, out, err = run(capsys, *argv, "--model-type", model_type)
    assert code == 0, err
    assert model_type in out

    song = tmp_path / "song.wav"
    generator = torch.Generator().manual_seed(3)
    sf.write(song, (0.2 * torch.randn(CHUNK_SIZE, 2, generator=generator)).numpy(), 44100, subtype="FLOAT")
    mix = torch.from_numpy(sf.read(song, dtype="float32")[0].T.copy())[None]
    argv = ["separate", str(song), "-n", str(model_file), "-o", str(tmp_path / "stems"), "--overlap", "0"]
    code, _, err = run(capsys, *argv, "--shifts", "0", "--float32", "--clip-mode", "none")
    assert code == 0, err

    with torch.no_grad():
        expected = reference(mix)
    expected = expected if expected.dim() == 4 else expected[:, None]  # one stem: [B, C, T]
    _, _, training = CASES[model_type]
    names = [training["target_instrument"]] if training["target_instrument"] else training["instruments"]
    for index, name in enumerate(names):
        stem = torch.from_numpy(sf.read(tmp_path / "stems" / "song" / f"{name}.wav", dtype="float32")[0].T)
        assert stem.shape[-1] == CHUNK_SIZE  # the reference trims to whole hops; sepzoo keeps the length
        length = expected.shape[-1]
        error = relative_error(stem[:, :length], expected[0, index])
        assert error <= 1e-4, f"{name}: {error:.2e}"


def test_a_checkpoint_of_another_model_type_is_refused_in_one_line(tmp_path, capsys):
    checkpoint, _, _ = write_msst_files(tmp_path, "mel_band_roformer")
    _, config, _ = write_msst_files(tmp_path, "bs_roformer")
    argv = ["convert", "msst", str(checkpoint), str(tmp_path / "m.sepzoo"), "--config", str(config)]
    code, _, err = run(capsys, *argv, "--model-type", "bs_roformer")
    assert_one_line_error(code, err, "model_mel_band_roformer.ckpt")
    assert not (tmp_path / "m.sepzoo").exists()


def test_a_misspelled_model_key_is_refused_naming_it(tmp_path, capsys):
    checkpoint, config, _ = write_msst_files(tmp_path, "bs_roformer")
    config.write_text(config.read_text().replace("  heads: 2", "  haeds: 2"))
    argv = ["convert", "msst", str(checkpoint), str(tmp_path / "m.sepzoo"), "--config", str(config)]
    code, _, err = run(capsys, *argv, "--model-type", "bs_roformer")
    assert_one_line_error(code, err, "config_bs_roformer.yaml", "model.haeds", "heads")


def test_bands_that_do_not_cover_the_bins_are_refused_naming_the_key(tmp_path, capsys):
    checkpoint, config, _ = write_msst_files(tmp_path, "bs_roformer")
    config.write_text(config.read_text().replace("- 7\n", "- 6\n"))
    argv = ["convert", "msst", str(checkpoint), str(tmp_path / "m.sepzoo"), "--config", str(config)]
    code, _, err = run(capsys, *argv, "--model-type", "bs_roformer")
    assert_one_line_error(code, err, "model.freqs_per_bands")
