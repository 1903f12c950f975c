"""``sepzoo report``: a self-contained HTML page, checked in headless Chromium.

The pages are made from real outputs: ``sepzoo eval`` folders of oracles on a tiny toy set, a
comparison folder written by ``sepzoo compare`` on the same set, and a comparison folder in the
same schema whose systems are given waveform, spectrogram and hybrid domains so that the domain
panel, the scatter plots and the paired tests are drawn. Chromium opens each page from a
``file://`` URL with the network off; every figure must decode, every audio player must load,
and the page must log no error.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from sepzoo.cli.main import main
from sepzoo.experiments.records import Comparison

CHROMEDRIVER = Path("/usr/bin/chromedriver")
SOURCES = ["drums", "bass", "other", "vocals"]
ORACLES = ["irm2", "ibm2", "mix"]
DOMAINS = {"irm2": "waveform", "ibm2": "spectrogram", "mix": "hybrid"}


# ---------------------------------------------------------------------------------------------
# Real outputs, made once


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One training and three test tracks of 2 s: enough for a Wilcoxon test to run."""
    from sepzoo.data.toy import generate_toy_musdb

    return generate_toy_musdb(tmp_path_factory.mktemp("report-data") / "toy", 1, 3, 2.0, 0)


@pytest.fixture(scope="module")
def evals(toy: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``sepzoo eval --save-estimates`` folders of three oracles, named after them."""
    from sepzoo.evaluation.evaluate import evaluate

    root = tmp_path_factory.mktemp("evals")
    for name in ORACLES:
        evaluate(name, toy, out=root / name, save_estimates=True, progress=False)
    return {name: root / name for name in ORACLES}


@pytest.fixture(scope="module")
def domains_comparison(evals: dict[str, Path], toy: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A comparison folder whose three systems are the oracles' scores under trained domains."""
    from sepzoo.evaluation.stats import compare_systems

    folder = tmp_path_factory.mktemp("domains")
    summaries = {name: json.loads((path / "summary.json").read_text()) for name, path in evals.items()}
    tracks = list(summaries["irm2"]["per_track"])
    systems = [_trained_system(name, summaries[name], tracks) for name in ORACLES]
    statistics = compare_systems(systems, SOURCES, resamples=1000)
    excerpt = _copy_excerpt(folder, toy / "test" / tracks[0], evals, tracks[0])
    mixture = {
        s: sum(r["mixture_nSDR"][s] for r in summaries["mix"]["per_track"].values()) / 3 for s in SOURCES
    }
    comparison = {
        "format": "sepzoo-comparison/1",
        "name": "oracles_as_domains",
        "recipe": "recipes/compare/oracles_as_domains.yaml",
        "recipe_text": "name: oracles_as_domains\nseeds: [0, 1]\n",
        "command": "sepzoo compare oracles_as_domains.yaml",
        "date": "2026-01-01",
        "sepzoo_version": "0.1.0",
        "toy": True,
        "dataset": {"root": str(toy), "subset": "test", "tracks": tracks},
        "sources": SOURCES,
        "budget": {"steps": 300},
        "seeds": [0, 1],
        "confidence": 0.95,
        "alpha": 0.05,
        "statistic": {"cSDR": "median", "nSDR": "mean"},
        "systems": systems,
        "mixture": {"nSDR": mixture},
        "excerpt": excerpt,
        **statistics,
    }
    (folder / "comparison.json").write_text(json.dumps(_json_safe(comparison)))
    return folder


def _trained_system(name: str, summary: dict, tracks: list[str]) -> dict:
    rows = summary["per_track"]
    per_track = {
        metric: {s: [rows[t][key][s] for t in tracks] for s in SOURCES}
        for metric, key in (("cSDR", "SDR"), ("nSDR", "nSDR"))
    }
    return {
        "label": f"{DOMAINS[name]}-{name}",
        "model": name,
        "domain": DOMAINS[name],
        "kind": "trained",
        "recipe": f"recipes/toy/{name}.yaml",
        "parameters": 1234567,
        "config": {"model": {"name": name}, "trainer": {"max_steps": 300}},
        "runs": [{"seed": 0, "steps": 300}, {"seed": 1, "steps": 296}],
        "per_track": per_track,
        "per_seed": {m: {s: [v[0], v[0] + 0.5] for s, v in per_track[m].items()} for m in per_track},
    }


def _copy_excerpt(folder: Path, track_folder: Path, evals: dict[str, Path], track: str) -> dict:
    excerpts = folder / "excerpts"
    (excerpts / "reference").mkdir(parents=True)
    shutil.copy(track_folder / "mixture.wav", excerpts / "mixture.wav")
    excerpt = {"track": track, "start": 0.0, "seconds": 2.0, "sample_rate": 44100}
    excerpt.update(mixture="excerpts/mixture.wav", reference={}, systems={})
    for source in SOURCES:
        shutil.copy(track_folder / f"{source}.wav", excerpts / "reference" / f"{source}.wav")
        excerpt["reference"][source] = f"excerpts/reference/{source}.wav"
    for name, path in evals.items():
        label = f"{DOMAINS[name]}-{name}"
        (excerpts / label).mkdir()
        excerpt["systems"][label] = {}
        for source in SOURCES:
            shutil.copy(
                path / "estimates" / "test" / track / f"{source}.wav", excerpts / label / f"{source}.wav"
            )
            excerpt["systems"][label][source] = f"excerpts/{label}/{source}.wav"
    return excerpt


def _json_safe(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


ORACLE_RECIPE = """\
name: report_oracles
data: {{root: {root}, subset: test}}
budget: {{steps: 1}}
models: []
oracles: [irm2, mix]
statistics: {{resamples: 1000}}
excerpt: {{seconds: 1.5}}
wandb: {{mode: disabled}}
out: {out}
"""


@pytest.fixture(scope="module")
def compared(toy: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A comparison folder written by ``sepzoo compare`` (oracles only: nothing to train)."""
    folder = tmp_path_factory.mktemp("compare")
    recipe = folder / "oracles.yaml"
    recipe.write_text(ORACLE_RECIPE.format(root=toy, out=folder / "out"))
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("WANDB_MODE", raising=False)  # the recipe turns W&B off; offline would not
        assert main(["compare", str(recipe)]) == 0
    return folder / "out"


# ---------------------------------------------------------------------------------------------
# Headless Chromium


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium through its own chromedriver: nothing is downloaded, no network is used."""
    if not CHROMEDRIVER.is_file():
        pytest.fail(f"{CHROMEDRIVER} is missing; bash scripts/setup.sh installs chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="sepzoo-chromium-")
    options = webdriver.ChromeOptions()
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


WAIT_FOR_MEDIA = """
const done = arguments[arguments.length - 1];
const images = Array.from(document.images).map(
  (img) => img.decode().then(() => img.naturalWidth, () => 0));
const audio = Array.from(document.querySelectorAll("audio")).map((player) =>
  player.readyState >= 1 ? Promise.resolve(player.duration) : new Promise((resolve) => {
    player.addEventListener("loadedmetadata", () => resolve(player.duration), {once: true});
    player.addEventListener("error", () => resolve(0), {once: true});
  }));
Promise.all([Promise.all(images), Promise.all(audio)])
  .then(([widths, durations]) => done({widths, durations}));
"""

READ_PAGE = """
const rows = Array.from(document.querySelectorAll("#comparison-table tr.system"));
const banner = document.getElementById("toy-banner");
return {
  systems: rows.map((row) => row.dataset.system),
  sources: Array.from(document.querySelectorAll("#comparison-table th[data-source]"))
    .map((th) => th.dataset.source),
  cells: rows.map((row) => row.querySelectorAll("td[data-metric]").length),
  baseline: document.querySelectorAll("#comparison-table tr.baseline").length,
  banner: banner !== null && banner.offsetHeight > 0,
  panel: document.querySelectorAll("#domain-panel-table tbody tr").length,
  paired: document.querySelectorAll("#paired-table tbody tr").length,
  errors: window.reportErrors,
  text: document.body.innerText,
};
"""


def open_report(driver, page: Path) -> dict:
    """Open a report and return what the tests check: table, media, errors and text."""
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(page.resolve().as_uri())
    found = driver.execute_script(READ_PAGE)
    found.update(driver.execute_async_script(WAIT_FOR_MEDIA))
    found["severe"] = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    return found


def assert_sound_page(found: dict) -> None:
    assert found["widths"] and all(width > 0 for width in found["widths"]), found["widths"]
    assert all(duration > 0 for duration in found["durations"]), found["durations"]
    assert found["severe"] == []
    assert found["errors"] == []
    assert found["sources"] == SOURCES
    assert all(count == 2 * len(SOURCES) for count in found["cells"])
    assert found["baseline"] == 1
    assert not re.search(r"\bnan\b", found["text"], re.IGNORECASE)


# ---------------------------------------------------------------------------------------------
# The pages


def test_report_of_evaluations_opens_in_chromium(evals, browser, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert main(["report", *(str(evals[name]) for name in ORACLES), "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    found = open_report(browser, out)
    assert_sound_page(found)
    assert found["systems"] == ORACLES
    assert found["banner"]
    assert len(found["widths"]) == len(SOURCES)  # oracles only: bar charts, no panel or scatter
    assert len(found["durations"]) == 1 + len(SOURCES) * (1 + len(ORACLES))  # mixture, reference, systems
    assert "No paired tests" in found["text"]


def test_report_written_by_compare_opens_in_chromium(compared, browser):
    found = open_report(browser, compared / "report.html")
    assert_sound_page(found)
    assert found["systems"] == ["irm2", "mix"]
    assert found["banner"]
    assert len(found["durations"]) == 1 + len(SOURCES) * 3
    assert all(abs(duration - 1.5) < 0.1 for duration in found["durations"])
    assert "report_oracles" in found["text"] and "sepzoo compare" in found["text"]


def test_report_of_a_comparison_with_domains_opens_in_chromium(domains_comparison, browser, tmp_path):
    out = tmp_path / "report.html"
    assert main(["report", str(domains_comparison), "-o", str(out)]) == 0
    found = open_report(browser, out)
    assert_sound_page(found)
    assert found["systems"] == ["waveform-irm2", "spectrogram-ibm2", "hybrid-mix"]
    assert found["banner"]
    assert len(found["widths"]) == 2 * len(SOURCES) + 1  # bars, scatter per source, and the panel
    assert len(found["durations"]) == 1 + len(SOURCES) * 4
    comparison = json.loads((domains_comparison / "comparison.json").read_text())
    assert found["panel"] == len(comparison["domain_panel"]) > 0
    assert found["paired"] == len(comparison["paired"]) > 0
    assert "over seeds" in found["text"]  # two seeds: their spread is shown
    assert "With 3 tracks the smallest two-sided Wilcoxon p-value is 0.25" in found["text"]


def test_report_of_an_evaluation_and_a_comparison_merges_them(domains_comparison, evals, browser, tmp_path):
    out = tmp_path / "report.html"
    assert main(["report", str(domains_comparison), str(evals["irm2"]), "-o", str(out)]) == 0
    found = open_report(browser, out)
    assert_sound_page(found)
    assert found["systems"] == ["waveform-irm2", "spectrogram-ibm2", "hybrid-mix", "irm2"]
    assert len(found["durations"]) == 1 + len(SOURCES) * 5  # the evaluation's estimates play too


# ---------------------------------------------------------------------------------------------
# Merging, statistics and text


def test_merge_prefixes_clashing_labels_and_keeps_common_tracks_and_sources(evals, tmp_path):
    from sepzoo.experiments.report import load_comparison

    first, second = tmp_path / "a" / "irm2", tmp_path / "b" / "irm2"
    shutil.copytree(evals["irm2"], first)
    shutil.copytree(evals["ibm2"], second)
    summary = json.loads((second / "summary.json").read_text())
    summary["sources"] = ["drums", "bass", "other"]
    summary["per_track"].pop(sorted(summary["per_track"])[0])
    (second / "summary.json").write_text(json.dumps(summary))
    comparison, excerpt = load_comparison([first, second])
    assert [s.label for s in comparison.systems] == ["a/irm2", "b/irm2"]
    assert comparison.sources == ["drums", "bass", "other"]
    assert comparison.dataset.tracks == sorted(summary["per_track"])
    assert all(s.summary["nSDR"]["drums"].count == 2 for s in comparison.systems)
    assert excerpt.track == comparison.dataset.tracks[0]
    assert set(excerpt.systems) == {"a/irm2", "b/irm2"}  # both saved their estimates of that track
    assert comparison.toy and comparison.domains == {"oracle": ["a/irm2", "b/irm2"]}


PAIR = ["drums", "bass"]


def _synthetic(tracks: int = 12, gap: float = 2.0) -> dict:
    """Two trained systems of different domains, the first ``gap`` dB better on average.

    The per-track differences are all distinct: with ties, scipy's Wilcoxon test falls back to a
    permutation test that takes seconds.
    """
    from sepzoo.evaluation.stats import compare_systems

    base = [float(i % 5) for i in range(tracks)]
    systems = [
        {
            "label": label,
            "domain": domain,
            "kind": "trained",
            "per_track": {
                m: {s: [v + shift * (1 + i / 100) for i, v in enumerate(base)] for s in PAIR}
                for m in ("cSDR", "nSDR")
            },
        }
        for label, domain, shift in (("<b>wave</b>", "waveform", gap), ("spec", "spectrogram", 0.0))
    ]
    systems[1]["per_track"]["nSDR"]["bass"] = [None] * tracks  # no score at all
    comparison = {
        "name": "synthetic & small",
        "toy": False,
        "dataset": {"root": "nowhere", "tracks": [f"t{i}" for i in range(tracks)]},
        "sources": PAIR,
        "systems": systems,
        "mixture": {"nSDR": {s: None for s in PAIR}},
    }
    comparison.update(compare_systems(systems, PAIR, resamples=500))
    return comparison


def test_page_names_significant_differences_escapes_text_and_shows_no_nan():
    from sepzoo.experiments.report import render_report

    page = render_report(Comparison.from_data(_synthetic()))
    assert "&lt;b&gt;wave&lt;/b&gt; above spec by 2.11 dB" in page
    assert "<b>wave</b>" not in page
    assert "synthetic &amp; small" in page
    assert not re.search(r"\bnan\b", page, re.IGNORECASE)
    assert 'id="toy-banner"' not in page
    assert "n/a" in page  # the p-value of the pair with no scores


HOSTILE = """<script>alert(1)</script>"quoted" & 'single' <img src=x onerror=alert(2)>"""


def _hostile(toy: Path) -> tuple[dict, object]:
    """A comparison whose name, command, recipe, notes, a label, a config and a track are hostile."""
    from sepzoo.experiments.report import Clip, Excerpt

    comparison = _synthetic(tracks=4)
    comparison.update(name=HOSTILE, command=HOSTILE, recipe_text=HOSTILE, recipe=HOSTILE)
    comparison["metrics"] = {"cSDR": HOSTILE, "nSDR": HOSTILE}
    comparison["systems"][1].update(label=HOSTILE, model=HOSTILE, config={"model": {"name": HOSTILE}})
    for test in comparison["paired"] + comparison["domain_panel"]:
        test.update({key: HOSTILE for key in ("a", "b") if test[key] == "spec"})
    track = toy / "test" / sorted(p.name for p in (toy / "test").iterdir())[0]
    excerpt = Excerpt(
        track=HOSTILE,
        start=0.0,
        seconds=1.0,
        mixture=Clip(track / "mixture.wav", 0.0, 1.0),
        systems={HOSTILE: {"drums": Clip(track / "drums.wav", 0.0, 1.0)}},
    )
    return comparison, excerpt


@pytest.mark.filterwarnings("ignore:constrained_layout not applied")  # the long label squeezes the bars
def test_hostile_text_is_escaped_and_no_script_from_data_runs(toy, browser, tmp_path):
    from sepzoo.experiments.report import render_report

    comparison, excerpt = _hostile(toy)
    page = render_report(Comparison.from_data(comparison), excerpt)
    assert page.count("<script") == 1  # the page's own error collector, nothing from the data
    assert "alert(1)</script>" not in page and "<img src=x" not in page
    assert '"quoted"' not in page and "'single'" not in page  # no quote can end an attribute
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    out = tmp_path / "report.html"
    out.write_text(page, encoding="utf-8")
    found = open_report(browser, out)
    assert found["severe"] == [] and found["errors"] == []
    assert found["systems"] == ["<b>wave</b>", HOSTILE]  # attributes hold the text exactly
    assert all(width > 0 for width in found["widths"]) and len(found["durations"]) == 2
    shown = browser.execute_script(
        """return {
          scripts: document.scripts.length,
          images: Array.from(document.images).map((img) => img.getAttribute("src").slice(0, 22)),
          title: document.title,
          heading: document.querySelector("h1").textContent,
          caption: document.querySelector("#audio-table caption").textContent,
          summaries: Array.from(document.querySelectorAll("details summary")).map((s) => s.textContent),
          recipe: document.querySelector("details pre").textContent,
        };"""
    )
    assert shown["scripts"] == 1
    assert set(shown["images"]) == {"data:image/png;base64,"}
    assert shown["title"] == f"sepzoo report: {HOSTILE}" and shown["heading"] == HOSTILE
    assert shown["caption"].startswith(f"{HOSTILE}, 0.0–1.0 s")
    assert shown["summaries"][0] == f"comparison recipe ({HOSTILE})" and shown["recipe"] == HOSTILE
    assert f"{HOSTILE} ({HOSTILE})" in shown["summaries"]
    assert found["text"].count(HOSTILE) >= 10


def test_comparison_figures_follow_the_domains_present():
    from sepzoo.experiments.report import comparison_figures

    figures = comparison_figures(Comparison.from_data(_synthetic(tracks=4)))
    expected = [f"bars/{s}" for s in PAIR] + ["domain_panel"] + [f"scatter/{s}" for s in PAIR if s != "bass"]
    assert list(figures) == expected  # bass: the spectrogram system has no nSDR to plot
    only_waveform = _synthetic(tracks=4)
    only_waveform["systems"] = only_waveform["systems"][:1]
    only_waveform["domain_panel"] = []
    assert list(comparison_figures(Comparison.from_data(only_waveform))) == [f"bars/{s}" for s in PAIR]


# ---------------------------------------------------------------------------------------------
# Bad input: one line, exit status 2, nothing written


def _corrupt(folder: Path) -> Path:
    folder.mkdir()
    (folder / "comparison.json").write_text('{"format": "sepzoo-comparison/1", "name": ')
    return folder / "comparison.json"


def _other_format(folder: Path) -> Path:
    folder.mkdir()
    (folder / "comparison.json").write_text(json.dumps({"format": "another-tool/3"}))
    return folder / "comparison.json"


def _not_an_object(folder: Path) -> Path:
    folder.mkdir()
    (folder / "summary.json").write_text("[1, 2]")
    return folder / "summary.json"


def _wrong_layout(folder: Path) -> Path:
    folder.mkdir()
    (folder / "summary.json").write_text(json.dumps({"sources": ["drums"], "per_track": [], "model": "x"}))
    return folder / "summary.json"


def _unknown_key(folder: Path) -> Path:
    folder.mkdir()
    system = {"lable": "a", "domain": "waveform", "kind": "trained"}
    comparison = {"format": "sepzoo-comparison/1", "name": "x", "dataset": {"tracks": ["t"]}, "sources": []}
    (folder / "comparison.json").write_text(json.dumps({**comparison, "systems": [system]}))
    return folder / "comparison.json"


def _empty(folder: Path) -> Path:
    folder.mkdir()
    return folder


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda f: f, "no such folder"),
        (_empty, "neither comparison.json"),
        (_corrupt, "not valid JSON"),
        (_other_format, "expected 'sepzoo-comparison/1'"),
        (_not_an_object, "expected a JSON object"),
        (_wrong_layout, "not laid out as sepzoo eval writes it"),
        (_unknown_key, "unknown key 'systems[0].lable' for a system; did you mean 'systems[0].label'?"),
    ],
    ids=["missing", "empty", "corrupt", "format", "not-object", "layout", "unknown-key"],
)
def test_bad_input_is_one_line_naming_the_file(make, expected, tmp_path, capsys):
    named = make(tmp_path / "input")
    out = tmp_path / "out" / "report.html"
    assert main(["report", str(tmp_path / "input"), "-o", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("sepzoo report: error: ") and error.count("\n") == 1
    assert str(named) in error and expected in error
    assert not out.parent.exists()


def test_compare_writes_comparison_json_in_the_layout_of_earlier_versions(compared):
    comparison = json.loads((compared / "comparison.json").read_text())
    assert sorted(comparison) == [
        "alpha",
        "budget",
        "command",
        "confidence",
        "dataset",
        "date",
        "domain_panel",
        "domains",
        "excerpt",
        "format",
        "metrics",
        "mixture",
        "name",
        "paired",
        "recipe",
        "recipe_text",
        "seeds",
        "sepzoo_version",
        "sources",
        "statistic",
        "systems",
        "toy",
        "wandb",
    ]
    system_keys = ["config", "domain", "kind", "label", "model", "parameters", "per_seed", "per_track"]
    for system in comparison["systems"]:
        assert sorted(system) == [*system_keys, "recipe", "runs", "summary"]
        assert [sorted(run) for run in system["runs"]] == [["eval_dir", "seed"]]  # oracles: no training
        assert sorted(system["summary"]["cSDR"]["drums"]) == ["count", "estimate", "high", "low", "seed_std"]
    assert comparison["budget"] == {"steps": 1}
    assert sorted(comparison["dataset"]) == ["root", "subset", "tracks"]
    excerpt = ["mixture", "reference", "sample_rate", "seconds", "start", "systems", "track"]
    assert sorted(comparison["excerpt"]) == excerpt
    assert comparison["wandb"] == {"group": "report_oracles", "project": "sepzoo", "summary_dir": None}


def test_missing_excerpt_file_is_named(domains_comparison, tmp_path, capsys):
    folder = tmp_path / "comparison"
    shutil.copytree(domains_comparison, folder)
    missing = folder / "excerpts" / "spectrogram-ibm2" / "vocals.wav"
    missing.unlink()
    assert main(["report", str(folder), "-o", str(tmp_path / "report.html")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and str(missing) in error and "missing" in error
    assert list(tmp_path.glob("*.html")) == []


def test_unreadable_excerpt_file_is_named(domains_comparison, tmp_path, capsys):
    folder = tmp_path / "comparison"
    shutil.copytree(domains_comparison, folder)
    broken = folder / "excerpts" / "reference" / "bass.wav"
    broken.write_bytes(b"RIFF but not audio")
    assert main(["report", str(folder), "-o", str(tmp_path / "report.html")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and str(broken) in error and "ffmpeg could not encode" in error
    assert list(tmp_path.glob("*.html")) == []


def test_existing_report_is_kept_without_force_and_replaced_with_it(evals, tmp_path, capsys):
    scores = tmp_path / "scores"
    scores.mkdir()
    shutil.copy(evals["mix"] / "summary.json", scores)  # no saved estimates: a page without audio
    out = tmp_path / "report.html"
    out.write_text("earlier")
    assert main(["report", str(scores), "-o", str(out)]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert out.read_text() == "earlier"
    assert main(["report", str(scores), "-o", str(out), "--force"]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "scores"]  # no temporary file left


def test_page_shows_each_equivalence_test_and_what_its_verdicts_mean():
    import copy

    from sepzoo.evaluation.stats import compare_equivalence
    from sepzoo.experiments.report import render_report

    comparison = _synthetic()
    assert 'id="equivalence"' not in render_report(Comparison.from_data(comparison))
    wave, spec = comparison["systems"]
    exports = [
        {**copy.deepcopy(wave), "label": "wave-int8", "kind": "exported"},
        {**copy.deepcopy(spec), "label": "spec-int8", "kind": "exported"},
    ]
    pairs = [("wave-int8", "<b>wave</b>"), ("spec-int8", "spec")]
    comparison["systems"] += exports
    comparison["equivalence"] = compare_equivalence(comparison["systems"], pairs, PAIR, margin=0.25)
    comparison["equivalence_margin_db"] = 0.25
    page = render_report(Comparison.from_data(comparison))
    section = page[page.index('id="equivalence"') : page.index('id="audio"')]
    assert "TOST with a margin of ± 0.25 dB" in section and "not shown" in section
    rows = re.findall(r'<tr class="test (\w+)">(.*?)</tr>', section)
    assert len(rows) == 2 * len(PAIR)
    cells = [re.findall(r"<td>(.*?)</td>", row) for _, row in rows]
    # Identical scores on 12 tracks: p = 1/4096 on each side, equivalent on every source.
    assert cells[0][:5] == ["wave-int8", "&lt;b&gt;wave&lt;/b&gt;", PAIR[0], "12", "0.00"]
    assert all(c[-1] == "equivalent within the margin" for c in cells[: len(PAIR)])
    assert rows[0][0] == "yes"
    no_scores = [c for c in cells if c[1] == "spec" and c[2] == "bass"]
    assert no_scores[0][3] == "0" and no_scores[0][-1] == "not shown (n too small)"
    assert not re.search(r"\bnan\b", section, re.IGNORECASE)
