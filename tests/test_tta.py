"""Test-time augmentation: every combination of flip and polarity runs, is undone and averaged,
at every shift, the same way in the whole-tensor and the streaming engine."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_compare import GOOD, write_recipe
from test_inference import LocalConv, Pointwise
from test_streaming import blocks
from torch import Tensor

from sepzoo.cli.main import main
from sepzoo.engine.apply import apply_model
from sepzoo.engine.streaming import stream_model
from sepzoo.engine.tta import parse_tta, tta_variants
from sepzoo.errors import ConfigError, SepzooError
from sepzoo.experiments.compare import load_comparison_recipe


class Counting(LocalConv):
    """A local convolution (with bias, mixing channels unevenly) followed by tanh: neither
    symmetric in its channels nor odd, so flip and polarity both change what it gives."""

    def __init__(self, segment: float | None = None) -> None:
        super().__init__(segment)
        self.calls = 0
        self.seen = 0

    def forward(self, mix: Tensor, references: Tensor | None = None) -> Tensor:
        self.calls += 1
        self.seen += mix.shape[0]
        return torch.tanh(3 * super().forward(mix))


@pytest.fixture
def model() -> Counting:
    torch.manual_seed(0)
    return Counting().eval()


@pytest.fixture
def mix() -> Tensor:
    return torch.randn(2, 257, generator=torch.Generator().manual_seed(3))


def run(model: Counting, mix: Tensor) -> Tensor:
    with torch.no_grad():
        return model(mix[None])[0]  # S, C, T


def test_the_model_is_neither_channel_symmetric_nor_odd(model, mix):
    assert not torch.allclose(run(model, mix.flip(0)).flip(-2), run(model, mix), atol=1e-3)
    assert not torch.allclose(-run(model, -mix), run(model, mix), atol=1e-3)


def test_flip_averages_the_model_on_the_mix_and_the_swapped_mix_swapped_back(model, mix):
    expected = (run(model, mix) + run(model, mix[[1, 0]])[:, [1, 0]]) / 2
    torch.testing.assert_close(apply_model(model, mix, tta=["flip"]), expected, rtol=0, atol=1e-6)


def test_polarity_averages_the_model_on_the_mix_and_the_negated_mix_negated(model, mix):
    expected = (run(model, mix) - run(model, -mix)) / 2
    torch.testing.assert_close(apply_model(model, mix, tta="polarity"), expected, rtol=0, atol=1e-6)


def test_flip_and_polarity_run_four_passes_and_average_them(model, mix):
    swap = [1, 0]
    expected = (
        run(model, mix) + run(model, mix[swap])[:, swap] - run(model, -mix) - run(model, -mix[swap])[:, swap]
    ) / 4
    model.calls = 0
    out = apply_model(model, mix, tta="flip,polarity")
    assert model.calls == 4
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    model.calls = 0
    apply_model(model, mix, tta="polarity,flip,flip")  # order and repeats do not matter
    assert model.calls == 4


def test_polarity_leaves_an_odd_model_unchanged(mix):
    torch.manual_seed(0)
    odd = LocalConv(segment=0.6).eval()
    odd.conv.bias.data.zero_()  # linear without offset: model(-x) == -model(x)
    plain = apply_model(odd, mix)
    torch.testing.assert_close(apply_model(odd, mix, tta=["polarity"]), plain, rtol=0, atol=1e-6)
    assert not torch.allclose(apply_model(odd, mix, tta=["flip"]), plain, atol=1e-3)


def test_shifts_nest_inside_every_variant(model, mix):
    shifted = apply_model(model, mix, shifts=2, seed=5)
    flipped = apply_model(model, mix[[1, 0]], shifts=2, seed=5)[:, [1, 0]]
    model.calls = 0
    out = apply_model(model, mix, shifts=2, seed=5, tta=["flip"])
    assert model.calls == 4  # 2 variants x 2 shifts, the same shifts in each
    torch.testing.assert_close(out, (shifted + flipped) / 2, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("tta", "shifts"), [(["flip"], 0), (["flip", "polarity"], 2)])
def test_the_streaming_engine_gives_apply_models_stems(mix, tta, shifts):
    torch.manual_seed(0)
    chunked = Counting(segment=0.6).eval()
    whole = apply_model(chunked, mix, shifts=shifts, tta=tta, batch_size=2)
    streamed = torch.cat(
        list(stream_model(chunked, blocks(mix, [37, 100]), shifts=shifts, tta=tta, batch_size=2)), dim=-1
    )
    torch.testing.assert_close(streamed, whole, rtol=0, atol=1e-6)
    assert not torch.allclose(whole, apply_model(chunked, mix, shifts=shifts, batch_size=2), atol=1e-3)


def test_unknown_names_and_flip_of_a_mono_model_are_one_line_errors(mix):
    with pytest.raises(SepzooError, match=r"--tta: unknown augmentation 'flop'; known: flip, polarity"):
        parse_tta("flip,flop")
    mono = Pointwise(audio_channels=1).eval()
    with pytest.raises(SepzooError, match="has 1 audio channel") as caught:
        apply_model(mono, mix[:1], tta="flip")
    assert "\n" not in str(caught.value)
    assert apply_model(mono, mix[:1], tta="polarity").shape == (2, 1, 257)
    assert [v.name for v in tta_variants("polarity,flip", 2)] == [
        "identity",
        "polarity",
        "flip",
        "flip+polarity",
    ]


def test_the_cli_refuses_an_unknown_name_in_one_line(tmp_path, toy_root, capsys):
    out = tmp_path / "out"
    song = tmp_path / "song.wav"
    song.write_bytes(b"")
    assert main(["separate", str(song), "-n", "irm2", "-o", str(out), "--tta", "flop"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--tta: unknown augmentation 'flop'" in err
    assert not out.exists()
    args = ["eval", "-n", "irm2", "--root", str(toy_root), "-o", str(out), "--tta", "flip,flop"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "known: flip, polarity" in err
    assert not out.exists()


def test_a_comparison_recipe_takes_eval_tta_and_refuses_a_bad_name(tmp_path: Path):
    recipe = load_comparison_recipe(write_recipe(tmp_path, GOOD + "eval: {tta: [flip]}\n"))
    assert recipe.eval.tta == ["flip"] and recipe.eval.identity()["tta"] == ["flip"]
    recipe = load_comparison_recipe(write_recipe(tmp_path, GOOD + "eval: {tta: 'polarity, flip'}\n"))
    assert recipe.eval.tta == ["flip", "polarity"]
    assert "tta" not in load_comparison_recipe(write_recipe(tmp_path, GOOD)).eval.identity()
    with pytest.raises(ConfigError) as caught:
        load_comparison_recipe(write_recipe(tmp_path, GOOD + "eval: {tta: [flip, flop]}\n"))
    message = str(caught.value)
    assert "eval.tta" in message and "flip, polarity" in message and "\n" not in message


def test_separate_writes_the_tta_stems_of_apply_model(tmp_path, capsys):
    from test_separate import noise, read_stem, tiny, write

    from sepzoo.io.audio import read_audio
    from sepzoo.models.files import save_model_file

    model_file = save_model_file(tiny("conv_tasnet"), tmp_path / "tasnet.sepzoo")
    song = write(tmp_path / "song.wav", noise(0.2))
    args = ["separate", str(song), "-n", str(model_file), "-o", str(tmp_path / "out"), "--float32"]
    assert main([*args, "--tta", "flip,polarity", "--clip-mode", "none"]) == 0, capsys.readouterr().err
    mix, _ = read_audio(song)
    expected = apply_model(tiny("conv_tasnet"), mix, tta=["flip", "polarity"])
    assert not torch.allclose(expected, apply_model(tiny("conv_tasnet"), mix), atol=1e-4)
    scale = float(expected.abs().max())
    for source, stem in zip(tiny("conv_tasnet").sources, expected):
        got = read_stem(tmp_path / "out" / "song" / f"{source}.wav")
        torch.testing.assert_close(got, stem, atol=1e-5 * scale, rtol=0)


def test_eval_records_tta_and_an_oracle_given_augmented_references_scores_the_same(tmp_path, toy_root):
    import json

    plain, augmented = tmp_path / "plain", tmp_path / "tta"
    assert main(["eval", "-n", "irm2", "--root", str(toy_root), "-o", str(plain), "--tracks", "1"]) == 0
    args = ["eval", "-n", "irm2", "--root", str(toy_root), "-o", str(augmented), "--tracks", "1"]
    assert main([*args, "--tta", "flip,polarity"]) == 0
    first, second = (json.loads((p / "summary.json").read_text()) for p in (plain, augmented))
    assert "tta" not in first["settings"] and second["settings"]["tta"] == ["flip", "polarity"]
    # An IRM oracle is channel-wise and its mask ignores the sign, so undoing each variant gives
    # back the plain estimates: the scores agree, while a wrong undo would ruin them.
    assert set(second["nSDR"]) == set(first["nSDR"])
    for source, score in first["nSDR"].items():
        assert second["nSDR"][source] == pytest.approx(score, abs=1e-3)
