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
tfc_tdf_v3 = pytest.importorskip("audio_separator.separator.uvr_lib_v5.tfc_tdf_v3")
ml_collections = pytest.importorskip("ml_collections")

# audio-separator's MDX23C STFT asks torch for real-valued output, which torch warns is deprecated.
pytestmark = pytest.mark.filterwarnings("ignore:stft with return_complex=False:UserWarning")

# Chunk sizes that seconds cannot carry back exactly (int(7680 / 44100 * 44100) is 7679, and
# 8160 gives 8159); the converted models must still run them as one chunk. MDX23C's is
# hop_length * (dim_t - 1) with dim_t = 256, as MSST sizes its chunks.
CHUNK_SIZES = {"bs_roformer": 7680, "mel_band_roformer": 7680, "mdx23c": 8160}

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
    "mdx23c": (
        lambda **config: tfc_tdf_v3.TFC_TDF_net(ml_collections.ConfigDict(config), "cpu"),
        {
            "act": "gelu",
            "bottleneck_factor": 2,
            "growth": 4,
            "norm": "InstanceNorm",
            "num_blocks_per_scale": 1,
            "num_channels": 8,
            "num_scales": 2,
            "num_subbands": 2,
            "scale": [2, 2],
        },
        {"instruments": ["drums", "bass", "other", "vocals"], "target_instrument": None},
    ),
}
AUDIO = {"mdx23c": {"n_fft": 256, "hop_length": 32, "dim_f": 64, "dim_t": 256}}


class _TupleDumper(yaml.SafeDumper):
    """Writes tuples with ``!!python/tuple``, as MSST's configs hold band lists."""


_TupleDumper.add_representer(
    tuple, lambda dumper, value: dumper.represent_sequence("tag:yaml.org,2002:python/tuple", value)
)


def write_msst_files(folder: Path, model_type: str) -> tuple[Path, Path, torch.nn.Module]:
    build, model, training = CASES[model_type]
    audio = {
        "chunk_size": CHUNK_SIZES[model_type],
        "num_channels": 2,
        "sample_rate": 44100,
        "min_mean_abs": 0.0,
    }
    config = {
        "audio": {**audio, **AUDIO.get(model_type, {})},
        "model": model,
        "training": {**training, "batch_size": 2, "use_amp": True},
        "inference": {"batch_size": 1, "num_overlap": 2},
    }
    torch.manual_seed(0)
    reference = randomize(build(**config) if model_type == "mdx23c" else build(**model), seed=1)
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
    chunk_size = CHUNK_SIZES[model_type]
    sf.write(song, (0.2 * torch.randn(chunk_size, 2, generator=generator)).numpy(), 44100, subtype="FLOAT")
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
        assert stem.shape[-1] == chunk_size  # the reference trims to whole hops; sepzoo keeps the length
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
