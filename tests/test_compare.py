"""Comparison recipes, their checks, and the statistics of a comparison on known numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from sepzoo.cli.main import main
from sepzoo.errors import ConfigError, SepzooError
from sepzoo.evaluation.stats import EQUIVALENT, WORSE, compare_systems
from sepzoo.experiments.compare import (
    equivalence_pairs,
    format_comparison,
    load_comparison_recipe,
    model_digest,
)
from sepzoo.experiments.records import Comparison, Run, System

REPO = Path(__file__).resolve().parents[1]
SOURCES = ["drums", "bass", "other", "vocals"]


def write_recipe(folder: Path, body: str) -> Path:
    path = folder / "compare.yaml"
    path.write_text(body.replace("REPO", str(REPO)))
    return path


GOOD = """
name: check
data: {root: /data/somewhere}
budget: {steps: 10}
models:
  - REPO/recipes/toy/conv_tasnet.yaml
  - {recipe: REPO/recipes/toy/open_unmix.yaml, label: umx, overrides: [model.hidden_size=32]}
oracles: [irm2]
"""


def test_the_shipped_comparison_recipes_load_with_every_model_recipe():
    toy = load_comparison_recipe(REPO / "recipes" / "compare" / "toy_wave_vs_spec.yaml")
    assert [m.label for m in toy.models] == [
        "demucs",
        "conv_tasnet",
        "hdemucs",
        "htdemucs",
        "bsrnn",
        "open_unmix",
        "bs_roformer",
    ]
    assert toy.oracles == ["irm2", "ibm2", "mwf"] and toy.seeds == [0]
    assert toy.budget_overrides() == ["trainer.max_steps=300"]
    assert toy.generate is not None and (toy.generate.test_tracks or 0) >= 10
    musdb = load_comparison_recipe(
        REPO / "recipes" / "compare" / "musdb_wave_vs_spec.yaml", ["data.root=/data/musdb18hq"]
    )
    assert len(musdb.seeds) >= 2 and set(musdb.oracles) == {"irm2", "ibm2", "mwf"}
    bsrnn = next(m for m in musdb.models if m.label == "bsrnn")
    assert bsrnn.is_bag and len(bsrnn.recipes) == 4
    labels = {m.label for m in musdb.models}
    assert {"bs_roformer", "mel_band_roformer", "scnet", "mdx23c"} <= labels
    assert musdb.budget_overrides() == ["trainer.max_time=02:00:00:00"]


@pytest.mark.parametrize("path", sorted((REPO / "recipes" / "compare").glob("*.yaml")), ids=lambda p: p.name)
def test_every_comparison_recipe_loads_with_its_model_recipes(path, tmp_path):
    recipe = load_comparison_recipe(path, [f"data.root={tmp_path}"])
    assert recipe.name == path.stem and recipe.models and recipe.oracles
    assert all(model.recipes and all(r.is_file() for r in model.recipes) for model in recipe.models)


def test_a_good_recipe_gives_labels_overrides_and_defaults(tmp_path):
    recipe = load_comparison_recipe(write_recipe(tmp_path, GOOD))
    assert [m.label for m in recipe.models] == ["conv_tasnet", "umx"]
    assert recipe.models[1].overrides == ("model.hidden_size=32",)
    assert recipe.out == Path("runs/compare/check") and recipe.wandb.group == "check"
    assert (recipe.confidence, recipe.alpha, recipe.subset) == (0.95, 0.05, "test")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("budget: {steps: 10}", "budget: {stepz: 10}"), "unknown key 'budget.stepz'"),
        (("budget: {steps: 10}", "budget: {}"), "budget: expected steps, minutes or both"),
        (("budget: {steps: 10}", "budget: {steps: 0}"), "budget.steps: expected a value >= 1"),
        (("name: check", "name: check\nmodle: x"), "unknown key 'modle'"),
        (("oracles: [irm2]", "oracles: [irm3]"), "'irm3' is not a registered model"),
        (("oracles: [irm2]", "oracles: [conv_tasnet]"), "is a trained model, not an oracle"),
        (("label: umx", "label: conv_tasnet"), "'conv_tasnet' is already used"),
        (("toy/conv_tasnet.yaml", "toy/no_such.yaml"), "no_such.yaml does not exist"),
        (("data: {root: /data/somewhere}", "data:\n  root: ???"), "data.root: expected the data set root"),
        (("name: check", "name: check\nseeds: [0, 0]"), "seeds: expected distinct seeds"),
        (("model.hidden_size=32", "model.hiden_size=32"), "hiden_size"),
        (
            ("name: check", "name: check\nstatistics: {equivalence_margin_db: -0.2}"),
            "statistics.equivalence_margin_db: expected a positive margin in dB",
        ),
        (
            ("name: check", "name: check\nstatistics: {equivalence: [[umx, umz]]}"),
            "statistics.equivalence[0]: 'umz' is not a model label; did you mean 'umx'?",
        ),
        (
            ("name: check", "name: check\nstatistics: {equivalence: [[umx, umx]]}"),
            "statistics.equivalence[0]: expected [exported label, original label], two different labels",
        ),
        (
            (
                "  - {recipe: REPO/recipes/toy/open_unmix",
                "  - {path: /no/such/export}\n  - {recipe: REPO/recipes/toy/open_unmix",
            ),
            "models[1].path: /no/such/export does not exist",
        ),
    ],
)
def test_a_bad_recipe_is_refused_in_one_line_naming_file_and_key(tmp_path, capsys, change, message):
    path = write_recipe(tmp_path, GOOD.replace(*change))
    with pytest.raises(ConfigError) as caught:
        load_comparison_recipe(path)
    assert message in str(caught.value)
    assert main(["compare", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("budget: {steps: 10}", "budget: {stepz: 10}"),
            "unknown key 'budget.stepz' for the `budget` section; did you mean 'budget.steps'?",
        ),
        (
            ("label: umx", "lable: umx"),
            "unknown key 'models[1].lable' for a model entry; did you mean 'models[1].label'?",
        ),
        (
            ("name: check", "name: check\nstatistics: {confidence: high}"),
            "statistics.confidence: expected float, got str 'high'",
        ),
        (
            ("name: check", "name: check\nwandb: {mode: offfline}"),
            "wandb.mode: expected one of 'auto', 'online', 'offline', 'disabled', got str 'offfline';"
            " did you mean 'offline'",
        ),
        (
            ("- REPO/recipes/toy/conv_tasnet.yaml", "- {recipe: a.yaml, members: [b.yaml]}"),
            "models[0]: expected a recipe path, or a mapping with `recipe`, `members` or `path`"
            " (one of them)",
        ),
    ],
    ids=["unknown-key", "nested-unknown-key", "wrong-type", "literal", "recipe-and-members"],
)
def test_a_bad_key_or_value_is_one_line_with_the_file_dotted_key_and_closest_key(tmp_path, change, expected):
    path = write_recipe(tmp_path, GOOD.replace(*change))
    with pytest.raises(ConfigError) as caught:
        load_comparison_recipe(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {expected}") and "\n" not in message


def test_training_runs_are_told_the_comparisons_wandb_mode_even_when_disabled(tmp_path):
    from sepzoo.experiments.compare import _train_overrides
    from sepzoo.training.recipe import load_recipe

    recipe = load_comparison_recipe(write_recipe(tmp_path, GOOD + "wandb: {mode: disabled}\n"))
    entry = recipe.models[0]
    overrides = _train_overrides(recipe, entry, "waveform", entry.recipes[0], tmp_path, 0)
    assert "logger.mode=disabled" in overrides and not any(o.startswith("logger.name") for o in overrides)
    assert load_recipe(entry.recipes[0], overrides).logger.mode == "disabled"


def test_an_output_folder_holding_something_else_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    path = write_recipe(tmp_path, GOOD.replace("/data/somewhere", str(REPO / "tests")))
    (tmp_path / "tests_data").mkdir()
    root = tmp_path / "data"
    (root / "test").mkdir(parents=True)
    path.write_text(path.read_text().replace(str(REPO / "tests"), str(root)))
    assert main(["compare", str(path), "-o", str(out)]) == 2
    assert "does not hold a comparison" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["precious.txt"]


def system(label: str, domain: str, nsdr: np.ndarray, kind: str = "trained") -> dict:
    per_track = {metric: {s: [float(v) for v in nsdr] for s in SOURCES} for metric in ("cSDR", "nSDR")}
    return {"label": label, "domain": domain, "kind": kind, "per_track": per_track}


def test_compare_systems_finds_a_constant_advantage_and_ignores_noise():
    rng = np.random.default_rng(0)
    base = rng.normal(5, 2, size=12)
    systems = [
        system("wave", "waveform", base + 1.0),
        system("spec", "spectrogram", base),
        system("oracle", "oracle", base + 10, kind="oracle"),
    ]
    result = compare_systems(systems, SOURCES, resamples=2000)
    assert result["domains"] == {"waveform": ["wave"], "spectrogram": ["spec"], "oracle": ["oracle"]}
    # Only trained systems of different domains are paired; one pair, 4 sources, 2 metrics.
    assert len(result["paired"]) == 8 and {(t["a"], t["b"]) for t in result["paired"]} == {("wave", "spec")}
    for test in result["paired"]:
        assert test["mean_difference"] == pytest.approx(1.0)
        assert test["low"] == pytest.approx(1.0) and test["high"] == pytest.approx(1.0)
        # Wilcoxon, 12 positive differences: exact two-sided p = 2 / 2**12; one test per family.
        assert test["p_value"] == pytest.approx(2 / 4096)
        assert test["p_holm"] == pytest.approx(2 / 4096) and test["significant"]
    assert [t["a"] for t in result["domain_panel"]] == ["waveform"] * 8
    summary = systems[0]["summary"]["nSDR"]["drums"]
    assert summary["estimate"] == pytest.approx(np.mean(base + 1))
    assert summary["low"] < summary["estimate"] < summary["high"] and summary["count"] == 12
    assert systems[0]["summary"]["cSDR"]["drums"]["estimate"] == pytest.approx(np.median(base + 1))

    noisy = [system("wave", "waveform", base + rng.normal(0, 1, 12)), system("spec", "spectrogram", base)]
    tests = compare_systems(noisy, SOURCES, resamples=500)["paired"]
    assert not any(t["significant"] for t in tests)


def test_the_domain_panel_averages_each_domains_models_per_track():
    base = np.linspace(0, 11, 12)
    systems = [
        system("w1", "waveform", base + 2),
        system("w2", "waveform", base),
        system("s1", "spectrogram", base),
        system("h1", "hybrid", base + 3),
    ]
    panel = compare_systems(systems, SOURCES, resamples=500)["domain_panel"]
    by_pair = {(t["a"], t["b"], t["metric"], t["source"]): t for t in panel}
    assert by_pair[("waveform", "spectrogram", "nSDR", "bass")]["mean_difference"] == pytest.approx(1.0)
    assert by_pair[("hybrid", "waveform", "nSDR", "bass")]["mean_difference"] == pytest.approx(2.0)
    assert by_pair[("hybrid", "spectrogram", "cSDR", "vocals")]["mean_difference"] == pytest.approx(3.0)


def test_seed_spread_is_reported_per_source():
    entry = system("wave", "waveform", np.arange(10.0))
    entry["per_seed"] = {"nSDR": {s: [4.0, 6.0] for s in SOURCES}, "cSDR": {s: [1.0] for s in SOURCES}}
    compare_systems([entry], SOURCES, resamples=200)
    assert entry["summary"]["nSDR"]["bass"]["seed_std"] == pytest.approx(math.sqrt(2))
    assert math.isnan(entry["summary"]["cSDR"]["bass"]["seed_std"])  # one seed: no spread


def test_the_terminal_table_labels_toy_results_and_says_what_is_significant():
    base = np.linspace(0, 11, 12)
    systems = [system("wave", "waveform", base + 1), system("spec", "spectrogram", base)]
    statistics = compare_systems(systems, SOURCES, resamples=500)
    comparison = {
        "name": "table",
        "dataset": {"tracks": [f"t{i}" for i in range(12)]},
        "toy": True,
        "sources": SOURCES,
        "confidence": 0.95,
        "alpha": 0.05,
        "metrics": {"cSDR": "cSDR label", "nSDR": "nSDR label"},
        "systems": systems,
        "mixture": {"nSDR": {s: -5.0 for s in SOURCES}},
        **statistics,
    }
    table = format_comparison(Comparison.from_data(comparison))
    assert table.startswith("TOY DATA: a smoke test")
    assert "waveform - spectrogram: +1.00 dB (significant)" in table
    assert "mixture" in table and "-5.00" in table


def test_holm_families_are_one_metric_and_source_so_ten_tracks_can_reach_significance():
    base = np.linspace(0, 9, 10)
    systems = [
        system("w1", "waveform", base + 1),
        system("w2", "waveform", base + 2),
        system("s1", "spectrogram", base),
        system("s2", "spectrogram", base - 1),
        system("h1", "hybrid", base + 3),
    ]
    paired = compare_systems(systems, SOURCES, resamples=200)["paired"]
    drums = [t for t in paired if t["metric"] == "nSDR" and t["source"] == "drums"]
    assert len(drums) == 8  # 2x2 waveform-spectrogram, 2 hybrid-waveform, 2 hybrid-spectrogram
    # Every pair differs on all 10 tracks: p = 2 / 2**10, times 8 tests at most: still below 0.05.
    assert all(t["p_holm"] == pytest.approx(8 * 2 / 1024) for t in drums[:1])
    assert all(t["significant"] for t in paired)


def test_the_equivalence_margin_and_pairs_validate_with_a_ready_made_model(tmp_path):
    exported = tmp_path / "umx-int8"
    exported.mkdir()
    default = load_comparison_recipe(write_recipe(tmp_path, GOOD))
    assert default.equivalence_margin == 0.2 and default.equivalence == []
    body = GOOD.replace(
        "oracles: [irm2]",
        f"  - {{path: {exported}}}\noracles: [irm2]\n"
        "statistics: {equivalence_margin_db: 0.5, equivalence: [[umx-int8, umx]]}",
    )
    recipe = load_comparison_recipe(write_recipe(tmp_path, body))
    assert recipe.equivalence_margin == 0.5 and recipe.equivalence == [("umx-int8", "umx")]
    ready = recipe.models[2]
    assert (ready.label, ready.path, ready.recipes, ready.model) == ("umx-int8", exported, (), None)


def _export_manifest(folder: Path, source: Path, digest: str) -> Path:
    """An exported folder's manifest as ``sepzoo export-onnx`` writes it (no graph: pairing reads none)."""
    folder.mkdir()
    manifest = {
        "format": "sepzoo-onnx",
        "format_version": 1,
        "sepzoo_version": "0",
        "architecture": "conv_tasnet",
        "domain": "waveform",
        "sources": SOURCES,
        "sample_rate": 44100,
        "audio_channels": 2,
        "segment_samples": 44100,
        "segment": 1.0,
        "opset": 17,
        "adapter": "waveform",
        "settings": {},
        "inputs": ["mix"],
        "outputs": ["stems"],
        "quantize": "int8",
        "source": {"path": str(source), "sha256": digest},
        "files": {"model.onnx": "0" * 64},
        "parity": {"relative_l2": {}},
    }
    (folder / "sepzoo-onnx.json").write_text(json.dumps(manifest))
    return folder


def _system(label: str, *specs: Path | None) -> System:
    runs = [
        Run(seed=i if len(specs) > 1 else None, spec=None if s is None else str(s))
        for i, s in enumerate(specs)
    ]
    return System(label=label, domain="waveform", kind="trained", runs=runs)


def test_exported_folders_pair_with_the_system_whose_model_file_has_the_manifests_digest(tmp_path, caplog):
    import hashlib

    from sepzoo.models import create_model, get_model_class
    from sepzoo.models.files import save_model_file

    model = create_model("conv_tasnet", **get_model_class("conv_tasnet").test_kwargs)
    model_file = save_model_file(model, tmp_path / "tasnet.sepzoo")
    other_file = save_model_file(model, tmp_path / "other.sepzoo", metadata={"note": "another file"})
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "best.ckpt").write_bytes(b"best weights")
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"last weights")
    sha = {
        p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (model_file, *run_dir.glob("checkpoints/*"))
    }
    from_file = _export_manifest(tmp_path / "from-file", model_file, sha[model_file])
    from_run = _export_manifest(tmp_path / "from-run", run_dir, sha[run_dir / "checkpoints" / "best.ckpt"])
    from_last = _export_manifest(tmp_path / "from-last", run_dir, sha[run_dir / "checkpoints" / "last.ckpt"])
    systems = [
        _system("other", other_file),
        _system("tasnet", model_file),
        _system("run", run_dir),
        _system("irm2", None),
        _system("file-int8", from_file),
        _system("run-int8", from_run),
        _system("last-int8", from_last),
    ]
    assert model_digest(model_file) == sha[model_file] and model_digest(from_file) is None
    assert model_digest(run_dir) == sha[run_dir / "checkpoints" / "best.ckpt"]  # best.ckpt before last.ckpt
    with caplog.at_level("WARNING"):
        assert equivalence_pairs(systems) == [("file-int8", "tasnet"), ("run-int8", "run")]
    assert "last-int8: no system in this comparison is the model it was exported from" in caplog.text
    # Pairs the recipe names come first; an exported folder named there is not paired again.
    named = equivalence_pairs(systems, [("file-int8", "other"), ("run", "tasnet")])
    assert named == [("file-int8", "other"), ("run", "tasnet"), ("run-int8", "run")]
    # An original with several seeds has per-track means over seeds: no automatic pair.
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert (
            equivalence_pairs([_system("tasnet", model_file, other_file), _system("file-int8", from_file)])
            == []
        )
    assert "means over 2 seeds" in caplog.text
    # A changed model file no longer matches the digest its export recorded.
    model_file.write_bytes(model_file.read_bytes() + b"\0")
    assert equivalence_pairs(systems) == [("run-int8", "run")]


def test_a_broken_export_manifest_is_refused_in_one_line(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "sepzoo-onnx.json").write_text("{not json")
    with pytest.raises(SepzooError) as caught:
        equivalence_pairs([_system("export", folder)])
    assert str(caught.value).startswith(f"{folder / 'sepzoo-onnx.json'}: cannot be read as JSON")
    assert "\n" not in str(caught.value)


def _equivalence_comparison(tracks: int = 8) -> Comparison:
    from sepzoo.experiments.records import scored_systems

    rng = np.random.default_rng(0)
    base = rng.normal(5, 2, size=tracks)
    exported = system("tasnet-int8", "waveform", base, kind="exported")
    exported["per_track"]["nSDR"]["vocals"] = [float(v) for v in base - 1.0 - 0.01 * np.arange(tracks)]
    systems = [System(**system("tasnet", "waveform", base)), System(**exported)]
    return Comparison.from_data(
        {
            "name": "equivalence",
            "dataset": {"tracks": [f"t{i}" for i in range(tracks)]},
            "sources": SOURCES,
            **scored_systems(systems, SOURCES, 0.95, 0.05, 200, [("tasnet-int8", "tasnet")], 0.2),
        }
    )


def test_the_comparison_records_and_prints_the_equivalence_tests(tmp_path):
    from sepzoo.experiments.records import comparison_json, read_comparison_file

    comparison = _equivalence_comparison()
    # Three sources identical on 8 tracks: p = 1/256 each side, Holm over 4 sources 4/256 < 0.05.
    verdicts = {t.source: t.verdict for t in comparison.equivalence}
    assert verdicts == {"drums": EQUIVALENT, "bass": EQUIVALENT, "other": EQUIVALENT, "vocals": WORSE}
    assert comparison.equivalence_margin_db == 0.2 and comparison.paired == []  # an export is no new domain
    path = tmp_path / "comparison.json"
    path.write_text(json.dumps(comparison_json(comparison)))
    assert read_comparison_file(path).equivalence == comparison.equivalence
    table = format_comparison(comparison)
    assert "margin 0.2 dB, Holm across sources, alpha 0.05" in table
    assert (
        "drums   tasnet-int8 vs tasnet: median +0.00 dB over 8 tracks, Holm p 0.0156: "
        "equivalent within the margin" in table
    )
    assert "vocals  tasnet-int8 vs tasnet: median -1.04 dB over 8 tracks, Holm p 1: worse" in table


@pytest.mark.slow
def test_compare_scores_ready_made_models_and_reports_the_pairs_equivalence(toy_root, tmp_path, monkeypatch):
    from sepzoo.experiments.records import read_comparison_file
    from sepzoo.models import create_model, get_model_class
    from sepzoo.models.files import save_model_file

    model = create_model("conv_tasnet", **get_model_class("conv_tasnet").test_kwargs)
    first = save_model_file(model, tmp_path / "first.sepzoo")
    second = save_model_file(model, tmp_path / "second.sepzoo", metadata={"copy": True})
    recipe = tmp_path / "ready.yaml"
    recipe.write_text(
        f"name: ready\ndata: {{root: {toy_root}}}\nbudget: {{steps: 1}}\n"
        f"models:\n  - {{path: {first}, label: original}}\n  - {{path: {second}, label: copy}}\n"
        "statistics: {resamples: 100, equivalence_margin_db: 0.1, equivalence: [[copy, original]]}\n"
        f"excerpt: {{seconds: 1.0}}\nwandb: {{mode: disabled}}\nout: {tmp_path / 'out'}\n"
    )
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert main(["compare", str(recipe)]) == 0
    comparison = read_comparison_file(tmp_path / "out" / "comparison.json")
    assert [(s.label, s.model, s.kind, s.runs[0].spec) for s in comparison.systems] == [
        ("original", "conv_tasnet", "trained", str(first)),
        ("copy", "conv_tasnet", "trained", str(second)),
    ]
    tests = comparison.equivalence
    assert [(t.exported, t.original, t.source) for t in tests] == [("copy", "original", s) for s in SOURCES]
    # The same weights score the same, but two test tracks cannot reach alpha: 4 / 2**2 >= 0.05.
    assert all(
        t.count == 2 and t.median_difference == 0 and t.verdict == "not shown (n too small)" for t in tests
    )
    page = (tmp_path / "out" / "report.html").read_text()
    assert 'id="equivalence-table"' in page
    assert "not shown (n too small)" in (tmp_path / "out" / "table.txt").read_text()


@pytest.mark.slow
def test_compare_pairs_an_int8_export_with_its_model_file_by_digest(toy_root, tmp_path, monkeypatch):
    import torch

    from sepzoo.experiments.records import read_comparison_file
    from sepzoo.export.onnx import export_onnx
    from sepzoo.models import create_model, get_model_class
    from sepzoo.models.files import save_model_file

    torch.manual_seed(0)
    model = create_model("mdx23c", **get_model_class("mdx23c").test_kwargs)
    model_file = save_model_file(model, tmp_path / "mdx.sepzoo")
    export_onnx(model_file, tmp_path / "mdx-int8", segment=1.0, quantize="int8")
    recipe = tmp_path / "exported.yaml"
    recipe.write_text(
        f"name: exported\ndata: {{root: {toy_root}}}\nbudget: {{steps: 1}}\n"
        f"models:\n  - {{path: {tmp_path / 'mdx-int8'}}}\n  - {{path: {model_file}, label: mdx}}\n"
        f"statistics: {{resamples: 100}}\nexcerpt: {{seconds: 1.0}}\nwandb: {{mode: disabled}}\n"
        f"out: {tmp_path / 'out'}\n"
    )
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert main(["compare", str(recipe)]) == 0
    comparison = read_comparison_file(tmp_path / "out" / "comparison.json")
    assert [(s.label, s.kind, s.domain) for s in comparison.systems] == [
        ("mdx-int8", "exported", "spectrogram"),
        ("mdx", "trained", "spectrogram"),
    ]
    assert comparison.equivalence_margin_db == 0.2
    assert [(t.exported, t.original, t.source) for t in comparison.equivalence] == [
        ("mdx-int8", "mdx", s) for s in SOURCES
    ]
    assert all(t.count == 2 and t.verdict == "not shown (n too small)" for t in comparison.equivalence)
