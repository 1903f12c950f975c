"""The zoo: every registered model has a valid card, the rendered pages are current, and
``sepzoo zoo --record`` adds a comparison's results to the cards without losing their comments."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sepzoo.cli.main import main
from sepzoo.experiments import zoo
from sepzoo.experiments.cards import load_card, load_cards, replace_measured_results, validate_card
from sepzoo.experiments.zoo import RENDER_COMMAND, TOY_DATASET, check_zoo, render_markdown
from sepzoo.models import MODELS, Separator, get_model_class, list_models, register_model

REPO_ROOT = Path(__file__).resolve().parents[1]
CARDS_DIR = REPO_ROOT / "zoo_cards"
MARKDOWN_DIR = CARDS_DIR / "md"
BUILTIN_MODELS = [
    name for name in list_models() if get_model_class(name).__module__.startswith("sepzoo.models.")
]
SOURCES = ["drums", "bass", "other", "vocals"]


def run_cli(*args: str) -> int:
    return main(["zoo", *args])


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("sepzoo zoo: error: ") and err.count("\n") == 1, err
    return err


@pytest.fixture
def zoo_copy(tmp_path: Path) -> Path:
    """A copy of the repository's cards (with no measured results yet) and the recipes they name;
    returns its cards folder."""
    shutil.copytree(REPO_ROOT / "recipes" / "musdb", tmp_path / "repo" / "recipes" / "musdb")
    cards = tmp_path / "repo" / "zoo_cards"
    cards.mkdir()
    for path in CARDS_DIR.glob("*.yaml"):
        text = replace_measured_results(path.read_text(encoding="utf-8"), [], path)
        (cards / path.name).write_text(text, encoding="utf-8")
    return cards


def system(label: str, model: str, estimates: dict[str, float | None], recipe: str | None) -> dict:
    def summary(shift: float) -> dict:
        return {
            source: {
                "estimate": None if value is None else value + shift,
                "low": None if value is None else value + shift - 0.5,
                "high": None if value is None else value + shift + 0.5,
                "count": 4,
                "seed_std": None,
            }
            for source, value in estimates.items()
        }

    return {
        "label": label,
        "model": model,
        "domain": "oracle" if recipe is None else "waveform",
        "kind": "oracle" if recipe is None else "trained",
        "recipe": recipe,
        "parameters": None if recipe is None else 1234,
        "config": None,
        "runs": [],
        "per_track": {},
        "per_seed": {},
        "summary": {"cSDR": summary(0.0), "nSDR": summary(1.0)},
    }


COMPARISON = {
    "format": "sepzoo-comparison/1",
    "name": "toy_check",
    "recipe": "recipes/compare/toy_check.yaml",
    "command": "sepzoo compare recipes/compare/toy_check.yaml",
    "date": "2026-11-25",
    "sepzoo_version": "0.1.0",
    "toy": True,
    "dataset": {"root": "data/toy-musdb", "subset": "test", "tracks": ["t0", "t1", "t2", "t3"]},
    "sources": SOURCES,
    "budget": {"minutes": 2.0},
    "seeds": [0],
    "confidence": 0.95,
    "alpha": 0.05,
    "metrics": {
        "cSDR": "BSSEval v4 SDR median over 1-s frames per track; median over tracks",
        "nSDR": "MDX 2021 SDR over the whole track; mean over tracks",
    },
    "statistic": {"cSDR": "median", "nSDR": "mean"},
    "systems": [
        system(
            "conv_tasnet", "conv_tasnet", {"drums": 1.0, "bass": 2.0, "other": 3.0, "vocals": 4.5}, "x.yaml"
        ),
        system("irm2", "irm2", {"drums": 8.0, "bass": 9.0, "other": None, "vocals": 10.0}, None),
        system("mystery", "not_in_the_zoo", {"drums": 0.0}, "recipes/toy/mystery.yaml"),
    ],
}


def write_comparison(folder: Path, data: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    # sepzoo compare writes its keys sorted, so the stems come in alphabetical order.
    (folder / "comparison.json").write_text(json.dumps(data or COMPARISON, sort_keys=True), encoding="utf-8")
    return folder


# ----------------------------------------------------------------------------- coverage


@pytest.mark.parametrize("name", BUILTIN_MODELS)
def test_every_builtin_model_has_a_card_that_validates(name):
    path = CARDS_DIR / f"{name}.yaml"
    assert path.is_file(), f"model {name!r} has no zoo card; add {path.relative_to(REPO_ROOT)}"
    validate_card(load_card(path), REPO_ROOT)


def test_check_zoo_names_a_registered_model_without_a_card(tmp_path):
    @register_model("zoo_test_throwaway")
    class Throwaway(Separator):
        domain = "waveform"

        def __init__(self, sources=tuple(SOURCES), sample_rate: int = 44100) -> None:
            super().__init__(sources=list(sources), sample_rate=sample_rate)

        def forward(self, mix: torch.Tensor, references: torch.Tensor | None = None) -> torch.Tensor:
            return mix.unsqueeze(1).expand(-1, len(self.sources), -1, -1)

    try:
        cards = tmp_path / "zoo_cards"
        cards.mkdir()
        shutil.copy(CARDS_DIR / "mix.yaml", cards / "mix.yaml")
        problems = check_zoo(cards, REPO_ROOT)
    finally:
        MODELS._entries.pop("zoo_test_throwaway", None)
    assert "zoo_test_throwaway" not in list_models()
    missing = [line for line in problems if "'zoo_test_throwaway'" in line]
    assert missing == [
        "model 'zoo_test_throwaway' is registered but has no zoo card: expected"
        f" {cards / 'zoo_test_throwaway.yaml'}"
    ]
    assert not any("'mix'" in line for line in problems)


def test_check_zoo_reports_a_card_that_fails_validation(zoo_copy):
    path = zoo_copy / "conv_tasnet.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("parameters: 10977872", "parameters: 5"))
    for other in zoo_copy.glob("*.yaml"):
        if other.stem not in ("conv_tasnet", "mix"):
            other.unlink()
    problems = check_zoo(zoo_copy, zoo_copy.parent)
    assert problems[0] == f"{path}: parameters is 5 but 'conv_tasnet' at default settings has 10977872"
    assert all("has no zoo card" in line for line in problems[1:])


def test_the_command_prints_problems_instead_of_a_table(zoo_copy, capsys):
    (zoo_copy / "demucs.yaml").unlink()
    mix = zoo_copy / "mix.yaml"
    mix.write_text(mix.read_text(encoding="utf-8").replace("domain: oracle", "domain: waveform"))
    assert run_cli("--cards", str(zoo_copy)) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"sepzoo zoo: error: {mix}: domain is 'waveform' but model 'mix' has domain 'oracle'",
        "sepzoo zoo: error: model 'demucs' is registered but has no zoo card:"
        f" expected {zoo_copy / 'demucs.yaml'}",
    ]


def test_the_command_prints_the_repository_cards_as_a_table(capsys):
    assert run_cli() == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "domain", "params", "dataset", "result", "all", *SOURCES]
    assert {line.split()[0] for line in lines[2:]} == set(list_models())
    conv = next(line for line in lines if line.startswith("conv_tasnet"))
    assert conv.split()[2:] == [
        "10.98M",
        "MUSDB18",
        "test",
        "published",
        "5.73",
        "6.08",
        "5.66",
        "4.37",
        "6.81",
    ]


# ----------------------------------------------------------------------------- Markdown


def test_committed_markdown_matches_a_fresh_render():
    fresh = render_markdown(load_cards(CARDS_DIR))
    committed = {path.name for path in MARKDOWN_DIR.glob("*.md")}
    hint = f"zoo_cards/md is out of date with zoo_cards/*.yaml; run `{RENDER_COMMAND}`"
    assert not set(fresh) - committed, f"{hint} (missing: {sorted(set(fresh) - committed)})"
    assert not committed - set(fresh), (
        f"pages without a card in zoo_cards/md: {sorted(committed - set(fresh))}"
    )
    stale = [
        name for name, text in fresh.items() if (MARKDOWN_DIR / name).read_text(encoding="utf-8") != text
    ]
    assert not stale, f"{hint} (stale: {stale})"


def test_render_writes_a_page_per_card_and_an_index_linking_them(zoo_copy, tmp_path, capsys):
    out = tmp_path / "md"
    assert run_cli("--cards", str(zoo_copy), "--render", str(out)) == 0
    assert capsys.readouterr().out == f"wrote {len(list_models()) + 1} Markdown files to {out}\n"
    assert sorted(path.stem for path in out.glob("*.md")) == sorted([*list_models(), "README"])
    index = (out / "README.md").read_text(encoding="utf-8")
    for name in list_models():
        assert f"| [{name}]({name}.md) |" in index
    page = (out / "conv_tasnet.md").read_text(encoding="utf-8")
    assert page.startswith("# Conv-TasNet")
    assert "[Conv-TasNet: Surpassing Ideal Time-Frequency Magnitude Masking for Speech Separation]" in page
    assert "| dataset | metric | all | drums | bass | other | vocals | source | notes |" in page
    assert "| MUSDB18 test | SDR in dB (BSSEval v4 / museval)" in page and "| 5.73 | 6.08 |" in page
    assert "- **Recipe:** `recipes/musdb/conv_tasnet.yaml`" in page
    assert not list(out.glob(".*"))


def test_render_refuses_existing_pages_without_force_and_writes_nothing(zoo_copy, tmp_path, capsys):
    out = tmp_path / "md"
    out.mkdir()
    (out / "README.md").write_text("mine\n")
    (out / "mix.md").write_text("mine too\n")
    assert run_cli("--cards", str(zoo_copy), "--render", str(out)) == 2
    assert one_line_error(capsys) == (
        f"sepzoo zoo: error: {out / 'mix.md'} exists; pass --force to overwrite the rendered pages\n"
    )
    assert sorted(path.name for path in out.iterdir()) == ["README.md", "mix.md"]
    assert (out / "README.md").read_text() == "mine\n"
    assert run_cli("--cards", str(zoo_copy), "--render", str(out), "--force") == 0
    assert (out / "README.md").read_text(encoding="utf-8").startswith("# The sepzoo model zoo")


def test_render_into_an_unusable_folder_is_one_line(zoo_copy, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert run_cli("--cards", str(zoo_copy), "--render", str(blocker)) == 2
    assert f"render folder {blocker} exists and is not a folder" in one_line_error(capsys)
    assert run_cli("--cards", str(zoo_copy), "--render", str(blocker / "md")) == 2
    assert f"{blocker}" in one_line_error(capsys)
    assert blocker.read_text() == ""


# ----------------------------------------------------------------------------- recording


def measured_block_removed(text: str) -> str:
    lines = text.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith("measured_results:"))
    end = next(i for i, line in enumerate(lines) if line.startswith("model_file:"))
    return "".join(lines[:start] + lines[end:])


def test_record_adds_one_result_per_metric_and_keeps_the_comments(zoo_copy, tmp_path, capsys):
    before = {path.name: path.read_text(encoding="utf-8") for path in zoo_copy.glob("*.yaml")}
    comparison = write_comparison(tmp_path / "cmp")
    assert run_cli("--cards", str(zoo_copy), "--record", str(comparison)) == 0
    out = capsys.readouterr().out.splitlines()
    assert (
        out[0]
        == f"skipped system 'mystery': model 'not_in_the_zoo' has no card ({zoo_copy}/not_in_the_zoo.yaml)"
    )
    assert out[1:] == [
        f"{zoo_copy}/conv_tasnet.yaml: recorded cSDR, nSDR on sepzoo toy set",
        f"{zoo_copy}/irm2.yaml: recorded cSDR, nSDR on sepzoo toy set",
    ]
    after = {path.name: path.read_text(encoding="utf-8") for path in zoo_copy.glob("*.yaml")}
    changed = sorted(name for name in before if before[name] != after[name])
    assert changed == ["conv_tasnet.yaml", "irm2.yaml"]
    for name in changed:
        assert measured_block_removed(after[name]) == measured_block_removed(before[name])
        assert after[name].startswith("# ")

    card = load_card(zoo_copy / "conv_tasnet.yaml")
    validate_card(card, zoo_copy.parent)
    csdr, nsdr = card.measured_results
    expected = [("all", 2.62), ("drums", 1.0), ("bass", 2.0), ("other", 3.0), ("vocals", 4.5)]
    assert list(csdr.values.items()) == expected, "values follow the comparison's source order"
    assert nsdr.values == {"all": 3.62, "drums": 2.0, "bass": 3.0, "other": 4.0, "vocals": 5.5}
    assert csdr.dataset == f"{TOY_DATASET}, 4 test tracks" == nsdr.dataset
    assert csdr.metric == (
        "cSDR: BSSEval v4 SDR median over 1-s frames per track; median over tracks (4 tracks);"
        " recipe x.yaml, budget 2 min, seeds [0]"
    )
    assert nsdr.metric.startswith("nSDR: MDX 2021 SDR over the whole track; mean over tracks (4 tracks);")
    assert (csdr.command, csdr.date, csdr.sepzoo_version) == (COMPARISON["command"], "2026-11-25", "0.1.0")
    assert "'all' is the mean of the per-source values" in csdr.notes
    assert "95% intervals over tracks: drums 0.50 to 1.50" in csdr.notes and "1,234 parameters" in csdr.notes

    oracle = load_card(zoo_copy / "irm2.yaml").measured_results[0]
    assert oracle.values == {"drums": 8.0, "bass": 9.0, "vocals": 10.0}
    assert oracle.metric.endswith("(4 tracks); no training")
    assert "no score for other, so no 'all'" in oracle.notes


def test_recording_the_same_comparison_again_replaces_its_entries(zoo_copy, tmp_path, capsys):
    comparison = write_comparison(tmp_path / "cmp")
    assert run_cli("--cards", str(zoo_copy), "--record", str(comparison)) == 0
    first = (zoo_copy / "conv_tasnet.yaml").read_text(encoding="utf-8")
    assert run_cli("--cards", str(zoo_copy), "--record", str(comparison)) == 0
    assert (zoo_copy / "conv_tasnet.yaml").read_text(encoding="utf-8") == first
    assert "replacing 2 earlier" in capsys.readouterr().out

    rerun = copy.deepcopy(COMPARISON)
    rerun["date"] = "2026-12-01"
    rerun["systems"][0]["summary"]["cSDR"]["drums"]["estimate"] = 1.5
    write_comparison(comparison, rerun)
    longer = copy.deepcopy(rerun)
    longer["budget"] = {"steps": 300}
    write_comparison(tmp_path / "longer", longer)
    assert run_cli("--cards", str(zoo_copy), "--record", str(comparison)) == 0
    assert run_cli("--cards", str(zoo_copy), "--record", str(tmp_path / "longer")) == 0
    results = load_card(zoo_copy / "conv_tasnet.yaml").measured_results
    assert [(r.date, r.values["drums"]) for r in results] == [("2026-12-01", 1.5), ("2026-12-01", 2.0)] * 2
    assert [r.metric.split("; ")[-1] for r in results][1:3] == ["recipe x.yaml, budget 2 min, seeds [0]"] + [
        "recipe x.yaml, budget 300 steps, seeds [0]"
    ]


def test_recorded_results_appear_in_the_table_and_the_pages(zoo_copy, tmp_path, capsys):
    comparison = write_comparison(tmp_path / "cmp")
    out = tmp_path / "md"
    assert run_cli("--cards", str(zoo_copy), "--record", str(comparison), "--render", str(out)) == 0
    page = (out / "conv_tasnet.md").read_text(encoding="utf-8")
    assert "| command | date | sepzoo version | notes |" in page
    assert "| `sepzoo compare recipes/compare/toy_check.yaml` | 2026-11-25 | 0.1.0 |" in page
    assert "| 2.62 | 1.00 | 2.00 | 3.00 | 4.50 |" in page
    assert "| [conv_tasnet](conv_tasnet.md) | Conv-TasNet" in (out / "README.md").read_text(encoding="utf-8")
    capsys.readouterr()
    assert run_cli("--cards", str(zoo_copy)) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("conv_tasnet")]
    assert rows[1][3:] == ["sepzoo", "toy", "set", "measured", "cSDR", "2.62", "1.00", "2.00", "3.00", "4.50"]
    assert rows[2][6:9] == ["measured", "nSDR", "3.62"]


def test_a_result_the_card_cannot_hold_writes_nothing(zoo_copy, tmp_path, capsys):
    broken = copy.deepcopy(COMPARISON)
    broken["systems"][1]["summary"]["nSDR"]["vocal"] = {"estimate": 1.0}
    before = {path.name: path.read_bytes() for path in zoo_copy.glob("*.yaml")}
    assert run_cli("--cards", str(zoo_copy), "--record", str(write_comparison(tmp_path / "cmp", broken))) == 2
    err = one_line_error(capsys)
    assert f"{zoo_copy}/irm2.yaml: measured_results[1].values has unknown source 'vocal'" in err
    assert {path.name: path.read_bytes() for path in zoo_copy.glob("*.yaml")} == before
    assert not list(zoo_copy.glob(".*"))


# ----------------------------------------------------------------------------- bad input


def test_a_missing_cards_folder_is_one_line(tmp_path, capsys):
    assert run_cli("--cards", str(tmp_path / "nope")) == 2
    assert (
        one_line_error(capsys) == f"sepzoo zoo: error: zoo card folder {tmp_path / 'nope'} does not exist\n"
    )


def test_without_a_zoo_cards_folder_beside_the_package_the_default_fails(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(zoo, "repository_root", lambda: tmp_path)
    assert run_cli() == 2
    assert one_line_error(capsys) == (
        f"sepzoo zoo: error: no zoo_cards/ folder in {tmp_path} (above the sepzoo package);"
        " pass --cards DIR\n"
    )


def test_record_with_render_checks_the_pages_before_touching_a_card(zoo_copy, tmp_path, capsys):
    out = tmp_path / "md"
    out.mkdir()
    (out / "bsrnn.md").write_text("mine\n")
    before = {path.name: path.read_bytes() for path in zoo_copy.glob("*.yaml")}
    comparison = write_comparison(tmp_path / "cmp")
    assert run_cli("--cards", str(zoo_copy), "--record", str(comparison), "--render", str(out)) == 2
    assert f"{out / 'bsrnn.md'} exists" in one_line_error(capsys)
    assert {path.name: path.read_bytes() for path in zoo_copy.glob("*.yaml")} == before


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "comparison.json does not exist; `sepzoo compare` writes it"),
        ('{"format": "sepzoo-comparison/1", ', "comparison.json: not valid JSON: Expecting property name"),
        ('["a list"]', "comparison.json: expected a JSON object, got list"),
        ('{"format": "other/2"}', "comparison.json: format is 'other/2', expected 'sepzoo-comparison/1'"),
        ("no systems", "comparison.json: systems: must be set"),
        (
            "estimate as text",
            "comparison.json: systems[0].summary.cSDR.drums.estimate: expected float or null",
        ),
    ],
)
def test_a_missing_or_broken_comparison_is_one_line_and_writes_nothing(
    zoo_copy, tmp_path, capsys, content, expected
):
    folder = tmp_path / "cmp"
    folder.mkdir()
    if content == "no systems":
        content = json.dumps({key: value for key, value in COMPARISON.items() if key != "systems"})
    elif content == "estimate as text":
        data = copy.deepcopy(COMPARISON)
        data["systems"][0]["summary"]["cSDR"]["drums"]["estimate"] = "high"
        content = json.dumps(data)
    if content is not None:
        (folder / "comparison.json").write_text(content)
    before = {path.name: path.read_bytes() for path in zoo_copy.glob("*.yaml")}
    assert run_cli("--cards", str(zoo_copy), "--record", str(folder)) == 2
    assert expected in one_line_error(capsys)
    assert {path.name: path.read_bytes() for path in zoo_copy.glob("*.yaml")} == before


def test_a_missing_comparison_folder_through_the_console_script(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "sepzoo.cli.main", "zoo", "--record", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr == f"sepzoo zoo: error: comparison folder {tmp_path / 'none'} does not exist\n"


# ----------------------------------------------------------------------------- the comparison record


def _summary(estimate: float | None) -> dict:
    if estimate is None:
        return {"count": 0, "estimate": None, "high": None, "low": None, "seed_std": None}
    return {"count": 2, "estimate": estimate, "high": estimate + 0.5, "low": estimate - 0.5, "seed_std": 0.1}


def _summaries(drums: float, vocals: float) -> dict:
    return {metric: {"drums": _summary(drums), "vocals": _summary(vocals)} for metric in ("cSDR", "nSDR")}


def _scores(first: float) -> dict:
    return {
        metric: {"drums": [first, first + 1.0], "vocals": [None, first + 2.0]} for metric in ("cSDR", "nSDR")
    }


def _test(a: str, b: str, source: str) -> dict:
    return {
        "a": a,
        "b": b,
        "count": 1,
        "high": 1.5,
        "low": 0.5,
        "mean_difference": 1.0,
        "metric": "nSDR",
        "p_holm": None,
        "p_value": None,
        "significant": False,
        "source": source,
    }


# comparison.json as `sepzoo compare` writes it today: a trained model (two seeds), a bag of
# one-target members, an oracle, NaN scores as null, the excerpt and the W&B group.
TODAYS_LAYOUT = {
    "alpha": 0.05,
    "budget": {"minutes": 2.0, "steps": 400},
    "command": "sepzoo compare recipes/compare/toy_check.yaml",
    "confidence": 0.95,
    "dataset": {"root": "data/toy-compare", "subset": "test", "tracks": ["t0", "t1"]},
    "date": "2026-12-04",
    "domain_panel": [_test("waveform", "spectrogram", "drums")],
    "domains": {"oracle": ["irm2"], "spectrogram": ["bsrnn"], "waveform": ["conv_tasnet"]},
    "excerpt": {
        "mixture": "excerpts/mixture.wav",
        "reference": {"drums": "excerpts/reference/drums.wav", "vocals": "excerpts/reference/vocals.wav"},
        "sample_rate": 44100,
        "seconds": 4.0,
        "start": 1.0,
        "systems": {"irm2": {"drums": "excerpts/irm2/drums.wav", "vocals": "excerpts/irm2/vocals.wav"}},
        "track": "t0",
    },
    "format": "sepzoo-comparison/1",
    "metrics": COMPARISON["metrics"],
    "mixture": {"nSDR": {"drums": -5.79, "vocals": None}},
    "name": "toy_check",
    "paired": [_test("conv_tasnet", "bsrnn", "vocals")],
    "recipe": "recipes/compare/toy_check.yaml",
    "recipe_text": "name: toy_check\ndata:\n  root: data/toy-compare\n",
    "seeds": [0, 1],
    "sepzoo_version": "0.1.0",
    "sources": ["drums", "vocals"],
    "statistic": {"cSDR": "median", "nSDR": "mean"},
    "systems": [
        {
            "config": {"data": {"name": "musdb"}, "model": {"name": "conv_tasnet"}},
            "domain": "waveform",
            "kind": "trained",
            "label": "conv_tasnet",
            "model": "conv_tasnet",
            "parameters": 1234,
            "per_seed": _scores(1.0),
            "per_track": _scores(1.0),
            "recipe": "recipes/toy/conv_tasnet.yaml",
            "runs": [
                {
                    "eval_dir": f"evals/conv_tasnet-seed{seed}-0a1b2c3d",
                    "run_dir": f"runs/compare/toy_check/runs/conv_tasnet-seed{seed}-abcd1234",
                    "seed": seed,
                    "spec": f"runs/compare/toy_check/runs/conv_tasnet-seed{seed}-abcd1234",
                    "steps": 400,
                    "train_seconds": 118.2,
                    "wandb_dir": None,
                }
                for seed in (0, 1)
            ],
            "summary": {
                "cSDR": {"drums": _summary(1.5), "vocals": _summary(None)},
                "nSDR": {"drums": _summary(None), "vocals": _summary(None)},
            },
        },
        {
            "config": {"bsrnn_drums": {"model": {"name": "bsrnn"}}},
            "domain": "spectrogram",
            "kind": "trained",
            "label": "bsrnn",
            "model": "bsrnn",
            "parameters": 5678,
            "per_seed": {},
            "per_track": _scores(0.0),
            "recipe": "recipes/toy/bsrnn_drums.yaml, recipes/toy/bsrnn_vocals.yaml",
            "runs": [
                {
                    "eval_dir": "evals/bsrnn-seed0-4e5f6a7b",
                    "members": ["runs/bsrnn-bsrnn_drums-seed0-1", "runs/bsrnn-bsrnn_vocals-seed0-2"],
                    "run_dir": None,
                    "seed": 0,
                    "spec": "runs/compare/toy_check/bags/bsrnn-seed0.sepzoo",
                    "steps": [400, None],
                    "train_seconds": None,
                    "wandb_dir": None,
                }
            ],
            "summary": _summaries(0.5, 2.5),
        },
        {
            "config": None,
            "domain": "oracle",
            "kind": "oracle",
            "label": "irm2",
            "model": "irm2",
            "parameters": None,
            "per_seed": _scores(8.0),
            "per_track": _scores(8.0),
            "recipe": None,
            "runs": [{"eval_dir": "evals/irm2-7eb89bf4", "seed": None}],
            "summary": _summaries(8.5, 9.5),
        },
    ],
    "toy": True,
    "wandb": {"group": "toy_check", "project": "sepzoo", "summary_dir": None},
}


def test_a_comparison_in_todays_layout_loads_and_writes_back_unchanged(zoo_copy, tmp_path, capsys):
    from sepzoo.experiments.records import comparison_json, read_comparison_file

    folder = write_comparison(tmp_path / "cmp", TODAYS_LAYOUT)
    comparison = read_comparison_file(folder / "comparison.json")
    bag = comparison.systems[1]
    assert bag.runs[0].members and bag.runs[0].steps == [400, None] and bag.runs[0].run_dir is None
    assert comparison.systems[2].runs[0].model_fields_set == {"seed", "eval_dir"}
    assert comparison.systems[0].summary_of("cSDR", "vocals").estimate is None
    assert comparison.budget is not None and comparison.budget.minutes == 2.0
    assert comparison.excerpt is not None and comparison.excerpt.systems["irm2"]["drums"].endswith(".wav")
    assert comparison_json(comparison) == TODAYS_LAYOUT  # the same keys, nothing added
    assert run_cli("--cards", str(zoo_copy), "--record", str(folder)) == 0
    assert "no finite nSDR estimate" in capsys.readouterr().out
    (recorded,) = load_card(zoo_copy / "conv_tasnet.yaml").measured_results
    assert recorded.metric.endswith("conv_tasnet.yaml, budget 2 min, 400 steps, seeds [0, 1]")
    assert recorded.values == {"drums": 1.5} and "no score for vocals" in str(recorded.notes)
    assert recorded.dataset == f"{TOY_DATASET}, 2 test tracks"


def test_a_comparison_without_the_keys_older_files_lack_loads_with_their_defaults(tmp_path):
    from sepzoo.experiments.records import read_comparison_file

    older = {key: value for key, value in COMPARISON.items() if key not in ("recipe", "statistic")}
    comparison = read_comparison_file(write_comparison(tmp_path / "cmp", older) / "comparison.json")
    assert comparison.paired == [] and comparison.domain_panel == [] and comparison.excerpt is None
    assert comparison.mixture.nSDR == {} and comparison.wandb is None and comparison.statistic is None


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda data: data["systems"][1].update(lable=data["systems"][1].pop("label")),
            "comparison.json: unknown key 'systems[1].lable' for a system; did you mean 'systems[1].label'?"
            " (and 1 more error)",  # the label is missing too
        ),
        (
            lambda data: data["systems"][0]["summary"]["nSDR"]["drums"].update(estimat=1.0),
            "comparison.json: unknown key 'systems[0].summary.nSDR.drums.estimat' for a score summary;"
            " did you mean 'systems[0].summary.nSDR.drums.estimate'?",
        ),
        (
            lambda data: data["dataset"].update(tracks="t0"),
            "comparison.json: dataset.tracks: expected list, got str 't0'",
        ),
        (
            lambda data: data["systems"][0].update(kind="trianed"),
            "comparison.json: systems[0].kind: expected one of 'trained', 'oracle', 'exported', got str "
            "'trianed'; did you mean 'trained'?",
        ),
        (
            lambda data: data.update(date="25 Nov 2026"),
            "comparison.json: date: expected an ISO date (YYYY-MM-DD) or null, got str '25 Nov 2026'",
        ),
    ],
    ids=["unknown-key", "nested-unknown-key", "wrong-type", "kind", "date"],
)
def test_a_malformed_comparison_is_one_line_naming_file_and_dotted_key(
    zoo_copy, tmp_path, capsys, change, expected
):
    data = copy.deepcopy(COMPARISON)
    change(data)
    folder = write_comparison(tmp_path / "cmp", data)
    before = {path.name: path.read_bytes() for path in zoo_copy.glob("*.yaml")}
    assert run_cli("--cards", str(zoo_copy), "--record", str(folder)) == 2
    assert one_line_error(capsys) == f"sepzoo zoo: error: {folder / expected}\n"
    assert {path.name: path.read_bytes() for path in zoo_copy.glob("*.yaml")} == before
