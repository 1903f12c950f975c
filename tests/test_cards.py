"""Zoo cards: every shipped card is valid, and broken cards fail with a message naming the problem."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import yaml

from sepzoo.errors import ConfigError
from sepzoo.experiments.cards import (
    MeasuredResult,
    ZooCard,
    card_table,
    load_card,
    load_cards,
    parse_card,
    replace_measured_results,
    short_label,
    validate_card,
)
from sepzoo.models import create_model, list_models

REPO_ROOT = Path(__file__).resolve().parents[1]
CARDS_DIR = REPO_ROOT / "zoo_cards"
CARD_PATHS = sorted(CARDS_DIR.glob("*.yaml"))


@pytest.fixture(scope="module")
def good_card_data() -> dict:
    return yaml.safe_load((CARDS_DIR / "conv_tasnet.yaml").read_text(encoding="utf-8"))


def write_card(directory: Path, data: dict, name: str | None = None) -> Path:
    path = directory / f"{name or data['name']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def repo_with_recipe(tmp_path: Path, recipe: str = "recipes/musdb/conv_tasnet.yaml") -> Path:
    root = tmp_path / "repo"
    (root / recipe).parent.mkdir(parents=True)
    (root / recipe).write_text("# recipe\n", encoding="utf-8")
    (root / "zoo_cards").mkdir()
    return root


def test_there_are_cards():
    assert CARD_PATHS, "zoo_cards/ holds no cards"
    assert "conv_tasnet.yaml" in [p.name for p in CARD_PATHS]


@pytest.mark.parametrize("path", CARD_PATHS, ids=lambda p: p.stem)
def test_every_card_loads_and_names_a_registered_model(path):
    # Each card is validated against its model by the registry-wide test in test_zoo.py.
    card = load_card(path)
    assert isinstance(card, ZooCard)
    assert card.name == path.stem
    assert card.name in list_models()
    for result in card.published_results:
        assert result.source.strip() and result.metric.strip()


def test_conv_tasnet_card_numbers():
    card = load_card(CARDS_DIR / "conv_tasnet.yaml")
    assert card.parameters == create_model("conv_tasnet").num_parameters()
    assert card.recipe == "recipes/musdb/conv_tasnet.yaml"
    assert all(r.command.startswith("sepzoo compare recipes/compare/") for r in card.measured_results)
    assert card.model_file is None
    values = card.published_results[0].values
    # "all" in the paper's table is the mean of the four sources.
    per_source = [values[s] for s in ("drums", "bass", "other", "vocals")]
    assert values["all"] == pytest.approx(sum(per_source) / 4, abs=0.01)


def test_load_cards_and_table():
    cards = load_cards(CARDS_DIR)
    assert [c.name for c in cards] == [p.stem for p in CARD_PATHS]
    table = card_table(cards)
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["name", "domain", "params", "dataset"]
    conv_row = next(line for line in lines if line.startswith("conv_tasnet"))
    assert "waveform" in conv_row and "5.73" in conv_row and "10.98M" in conv_row


def test_copy_of_good_card_validates_in_a_tmp_repo(tmp_path, good_card_data):
    root = repo_with_recipe(tmp_path)
    card = load_card(write_card(root / "zoo_cards", good_card_data))
    validate_card(card, root)


def test_misspelled_key_names_file_path_and_closest_key(tmp_path, good_card_data):
    data = dict(good_card_data)
    data["publised_results"] = data.pop("published_results")
    path = write_card(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_card(path)
    message = str(info.value)
    assert str(path) in message
    assert "'publised_results'" in message and "did you mean 'published_results'" in message
    assert "\n" not in message


def test_misspelled_nested_key_gives_dotted_path(tmp_path, good_card_data):
    data = yaml.safe_load(yaml.safe_dump(good_card_data))
    data["published_results"][0]["valeus"] = data["published_results"][0].pop("values")
    with pytest.raises(
        ConfigError, match=r"published_results\[0\]\.valeus.*did you mean 'published_results\[0\]\.values'"
    ):
        load_card(write_card(tmp_path, data))
    data = yaml.safe_load(yaml.safe_dump(good_card_data))
    data["paper"]["yaer"] = data["paper"].pop("year")
    with pytest.raises(ConfigError, match=r"paper\.yaer.*did you mean 'paper\.year'"):
        load_card(write_card(tmp_path, data))


def test_missing_key_is_named(tmp_path, good_card_data):
    data = dict(good_card_data)
    del data["recipe"]
    with pytest.raises(ConfigError, match="recipe: must be set"):
        load_card(write_card(tmp_path, data))


def test_wrong_type_names_key_expected_and_got(tmp_path, good_card_data):
    data = dict(good_card_data, parameters="ten million")
    with pytest.raises(ConfigError, match=r"parameters: expected int, got str 'ten million'"):
        load_card(write_card(tmp_path, data))
    data = yaml.safe_load(yaml.safe_dump(good_card_data))
    data["published_results"][0]["values"]["drums"] = "high"
    with pytest.raises(ConfigError, match=r"published_results\[0\]\.values\.drums: expected float"):
        load_card(write_card(tmp_path, data))
    data = dict(good_card_data, model_file={"path": "w.th", "sha256": "abc"})
    with pytest.raises(ConfigError, match="sha256: expected 64 lowercase hex digits"):
        load_card(write_card(tmp_path, data))


def test_wrong_parameter_count_fails_validation(tmp_path, good_card_data):
    root = repo_with_recipe(tmp_path)
    actual = good_card_data["parameters"]
    card = load_card(write_card(root / "zoo_cards", dict(good_card_data, parameters=actual + 1)))
    with pytest.raises(ConfigError, match=rf"parameters is {actual + 1} but .* has {actual}"):
        validate_card(card, root)


def test_wrong_domain_fails_validation(tmp_path, good_card_data):
    root = repo_with_recipe(tmp_path)
    card = load_card(write_card(root / "zoo_cards", dict(good_card_data, domain="spectrogram")))
    expected = "domain is 'spectrogram' but model 'conv_tasnet' has domain 'waveform'"
    with pytest.raises(ConfigError, match=expected):
        validate_card(card, root)


def test_unknown_model_name_fails_validation_with_suggestion(tmp_path, good_card_data):
    root = repo_with_recipe(tmp_path)
    card = load_card(write_card(root / "zoo_cards", dict(good_card_data, name="conv_tasnt")))
    expected = "'conv_tasnt' is not a registered model; did you mean 'conv_tasnet'"
    with pytest.raises(ConfigError, match=expected):
        validate_card(card, root)


def test_name_must_equal_file_stem(tmp_path, good_card_data):
    root = repo_with_recipe(tmp_path)
    card = load_card(write_card(root / "zoo_cards", good_card_data, name="other_name"))
    with pytest.raises(ConfigError, match="must equal the file name stem 'other_name'"):
        validate_card(card, root)


def test_missing_recipe_fails_validation(tmp_path, good_card_data):
    root = repo_with_recipe(tmp_path, recipe="recipes/musdb/something_else.yaml")
    card = load_card(write_card(root / "zoo_cards", good_card_data))
    with pytest.raises(ConfigError, match="recipe 'recipes/musdb/conv_tasnet.yaml' does not exist"):
        validate_card(card, root)


def test_unknown_source_in_values_fails_validation(tmp_path, good_card_data):
    root = repo_with_recipe(tmp_path)
    data = yaml.safe_load(yaml.safe_dump(good_card_data))
    data["published_results"][0]["values"]["vocal"] = 1.0
    card = load_card(write_card(root / "zoo_cards", data))
    with pytest.raises(ConfigError, match="unknown source 'vocal'; did you mean 'vocals'"):
        validate_card(card, root)


def test_model_file_checksum_is_checked_when_present(tmp_path, good_card_data):
    root = repo_with_recipe(tmp_path)
    weights = root / "weights.th"
    weights.write_bytes(b"not really weights")
    digest = hashlib.sha256(b"not really weights").hexdigest()
    good = dict(good_card_data, model_file={"path": "weights.th", "sha256": digest})
    validate_card(load_card(write_card(root / "zoo_cards", good)), root)
    bad = dict(good_card_data, model_file={"path": "weights.th", "sha256": "0" * 64})
    with pytest.raises(ConfigError, match="has sha256"):
        validate_card(load_card(write_card(root / "zoo_cards", bad)), root)


def test_measured_results_are_parsed(tmp_path, good_card_data):
    root = repo_with_recipe(tmp_path)
    measured = {
        "dataset": "MUSDB18 test",
        "metric": "cSDR median over tracks (BSSEval v4)",
        "values": {"all": 5.0, "vocals": 6},
        "command": "sepzoo evaluate runs/x/checkpoints/best.ckpt",
        "date": "2024-05-01",
        "sepzoo_version": "0.1.0",
    }
    path = write_card(root / "zoo_cards", dict(good_card_data, measured_results=[measured]))
    path.write_text(path.read_text(encoding="utf-8").replace("'2024-05-01'", "2024-05-01"), encoding="utf-8")
    card = load_card(path)
    validate_card(card, root)
    assert card.measured_results[0].date == "2024-05-01"
    assert card.measured_results[0].values == {"all": 5.0, "vocals": 6.0}


def test_duplicate_names_in_a_folder_are_rejected(tmp_path, good_card_data):
    write_card(tmp_path, good_card_data)
    write_card(tmp_path, good_card_data, name="copy")
    with pytest.raises(ConfigError, match="already used"):
        load_cards(tmp_path)


def test_invalid_yaml_is_one_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_card(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_only_an_oracle_card_may_go_without_a_recipe(tmp_path, good_card_data):
    oracle = load_card(CARDS_DIR / "irm2.yaml")
    assert oracle.recipe is None and oracle.domain == "oracle"
    validate_card(oracle, REPO_ROOT)
    root = repo_with_recipe(tmp_path)
    data = {**good_card_data, "recipe": None}
    card = load_card(write_card(root / "zoo_cards", data))
    with pytest.raises(ConfigError, match="only an oracle trains without a recipe"):
        validate_card(card, root)


MEASURED = MeasuredResult(
    dataset="sepzoo toy set (synthetic), 4 test tracks",
    metric="cSDR: BSSEval v4 SDR; median over tracks",
    values={"all": 2.5, "drums": 1.0, "vocals": 4.0},
    command="sepzoo compare recipes/compare/toy.yaml",
    date="2026-11-25",
    sepzoo_version="1.10",
    notes="a note: with a colon",
)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda card: card["published_results"][0]["values"].update(drums=float("inf")),
            r"published_results\[0\]\.values\.drums: expected a finite number, got float inf$",
        ),
        (
            lambda card: card.update(measured_results=[dict(vars(MEASURED), date="26 Nov 2026")]),
            r"measured_results\[0\]\.date: expected an ISO date \(YYYY-MM-DD\), got str '26 Nov 2026'$",
        ),
        (
            lambda card: card["paper"].update(authors=[]),
            r"paper\.authors: expected a non-empty list of strings, got list \[\]$",
        ),
        (lambda card: card.update(title="  "), r"title: expected a non-empty string, got str '  '$"),
        (lambda card: card.update(sources="drums"), r"sources: expected list, got str 'drums'$"),
    ],
    ids=["infinite", "date", "no-authors", "blank", "not-a-list"],
)
def test_a_bad_card_value_is_one_line_naming_the_file_and_the_dotted_key(
    tmp_path, good_card_data, change, expected
):
    data = yaml.safe_load(yaml.safe_dump(good_card_data))
    change(data)
    path = write_card(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_card(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert re.search(expected, message), message


def test_measured_notes_are_optional_and_parsed(tmp_path, good_card_data):
    entry = {key: value for key, value in vars(MEASURED).items() if key != "notes"}
    card = load_card(write_card(tmp_path, dict(good_card_data, measured_results=[entry])))
    assert card.measured_results[0].notes is None
    card = load_card(write_card(tmp_path, dict(good_card_data, measured_results=[vars(MEASURED)])))
    assert card.measured_results == [MEASURED]


def test_measured_values_may_name_any_musdb_stem_but_not_a_misspelt_one(tmp_path):
    # bsrnn estimates vocals at default settings; its toy recipe trains all four stems.
    root = repo_with_recipe(tmp_path, "recipes/musdb/bsrnn_vocals.yaml")
    text = (CARDS_DIR / "bsrnn.yaml").read_text(encoding="utf-8")
    measured = MEASURED.model_copy(update={"values": {"all": 2.5, "drums": 1.0, "bass": 2.0, "vocals": 4.0}})
    path = root / "zoo_cards" / "bsrnn.yaml"
    validate_card(parse_card(replace_measured_results(text, [measured], path), path), root)
    misspelt = MEASURED.model_copy(update={"values": {"drum": 1.0}})
    card = parse_card(replace_measured_results(text, [misspelt], path), path)
    with pytest.raises(
        ConfigError, match=r"measured_results\[0\]\.values has unknown source 'drum'; did you mean"
    ):
        validate_card(card, root)


def test_rewriting_measured_results_keeps_everything_else_as_written(tmp_path):
    original = replace_measured_results(
        (CARDS_DIR / "conv_tasnet.yaml").read_text(encoding="utf-8"), [], "conv_tasnet.yaml"
    )
    text = original.replace("model_file: null", "# Weights are not released yet.\n\nmodel_file: null")
    rewritten = replace_measured_results(text, [MEASURED, MEASURED], "conv_tasnet.yaml")
    head, _, rest = rewritten.partition("measured_results:\n")
    assert text.startswith(head) and head.startswith("# Conv-TasNet adapted")
    assert rest.endswith("'a note: with a colon'\n# Weights are not released yet.\n\nmodel_file: null\n")
    card = parse_card(rewritten, CARDS_DIR / "conv_tasnet.yaml")
    assert card.measured_results == [MEASURED, MEASURED]
    unmeasured = {"measured_results": []}
    assert card.model_copy(update=unmeasured) == load_card(CARDS_DIR / "conv_tasnet.yaml").model_copy(
        update=unmeasured
    )
    assert all(len(line) <= 100 for line in rewritten.splitlines())
    assert replace_measured_results(rewritten, [], "conv_tasnet.yaml") == text


def test_rewriting_needs_exactly_one_measured_results_line():
    with pytest.raises(
        ConfigError, match="card.yaml: expected one top-level 'measured_results:' line to rewrite, found 0"
    ):
        replace_measured_results("name: x\n", [], "card.yaml")


def test_table_shows_only_the_latest_measured_results(tmp_path, good_card_data):
    older = dict(vars(MEASURED), date="2026-01-02", values={"all": 1.0})
    newer = [dict(vars(MEASURED), metric="nSDR: mean"), vars(MEASURED)]
    path = write_card(tmp_path, dict(good_card_data, measured_results=[older, *newer]))
    rows = card_table([load_card(path)]).splitlines()[2:]
    assert [row.split()[3:8] for row in rows] == [
        ["MUSDB18", "test", "published", "5.73", "6.08"],
        ["sepzoo", "toy", "set", "measured", "nSDR"],
        ["sepzoo", "toy", "set", "measured", "cSDR"],
    ]
    assert rows[2].split()[-5:] == ["2.50", "1.00", "-", "-", "4.00"]


def test_short_labels_cut_descriptions_at_their_first_clause():
    assert short_label("sepzoo toy set (synthetic; a smoke test), 4 test tracks") == "sepzoo toy set"
    assert short_label("cSDR: BSSEval v4 SDR") == "cSDR"
    assert short_label("MUSDB18 test, 50 tracks") == "MUSDB18 test"
    assert short_label("x" * 40) == "x" * 25 + "..."
