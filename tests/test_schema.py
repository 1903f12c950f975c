"""Declared file shapes: strict values, lists that fill tuples, and one-line messages that name the
file, the dotted key and the closest valid key, for the first problem in the file's own order."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest
from pydantic import ConfigDict, Field

from sepzoo.errors import ConfigError
from sepzoo.schema import StrictModel, expect, validate


class Paper(StrictModel):
    model_config = ConfigDict(title="a paper")

    title: str
    year: Annotated[int, expect(lambda v: v >= 1900, "a year after 1900")]


class Card(StrictModel):
    name: str
    parameters: int | None = None
    window: tuple[float, float] = (0.0, 1.0)
    domain: Literal["waveform", "spectrogram"] = "waveform"
    paper: Paper | None = None
    results: list[Paper] = []


def message(data: dict, origin: object = "card.yaml") -> str:
    with pytest.raises(ConfigError) as error:
        validate(Card, data, origin)
    text = str(error.value)
    assert "\n" not in text
    return text


def test_strings_are_not_numbers_but_lists_fill_tuples():
    assert message({"name": "x", "parameters": "10"}) == (
        "card.yaml: parameters: expected int or null, got str '10'"
    )
    assert message({"name": "x", "parameters": True}).endswith("expected int or null, got bool True")
    card = validate(Card, {"name": "x", "window": [0.5, 2]}, "card.yaml")
    assert card.window == (0.5, 2.0)
    assert message({"name": "x", "window": [1.0]}) == (
        "card.yaml: window: expected a list of 2 items, got list [1.0]"
    )


def test_unknown_keys_name_the_closest_valid_key_at_their_depth():
    assert message({"name": "x", "paper": {"title": "t", "yaer": 2020, "year": 2020}}) == (
        "card.yaml: unknown key 'paper.yaer' for a paper; did you mean 'paper.year'?"
    )
    assert message({"name": "x", "zzz": 1}) == (
        "card.yaml: unknown key 'zzz' (valid keys: name, parameters, window, domain, paper, results)"
    )


def test_list_positions_checks_and_literals_read_as_a_yaml_author_writes_them():
    bad_year = {"name": "x", "results": [{"title": "a", "year": 2000}, {"title": "b", "year": 1066}]}
    assert message(bad_year) == "card.yaml: results[1].year: expected a year after 1900, got int 1066"
    assert message({"name": "x", "domain": "wave"}) == (
        "card.yaml: domain: expected one of 'waveform', 'spectrogram', got str 'wave'; "
        "did you mean 'waveform'?"
    )
    assert message({"name": "x", "paper": {"title": "t"}}) == "card.yaml: paper.year: must be set for a paper"


def test_the_first_problem_in_the_data_order_is_reported_and_the_others_counted():
    # Fields are declared name, parameters, window; the data lists them in another order.
    data = {"window": "wide", "name": 3, "parameters": "many"}
    assert message(data) == "card.yaml: window: expected list, got str 'wide' (and 2 more errors)"


def test_the_origin_of_each_key_comes_from_the_caller():
    asked = []

    def origin(dotted: str) -> str:
        asked.append(dotted)
        return "base.yaml" if dotted.startswith("results") else "leaf.yaml"

    text = message({"name": "x", "results": [{"title": "a", "year": "x"}]}, origin)
    assert text.startswith("base.yaml: results[0].year: expected int")
    assert asked == ["results"]  # list positions are left out of what the caller is asked


class Scores(StrictModel):
    model_config = ConfigDict(populate_by_name=False)

    si_sdr: float = Field(alias="SI-SDR")


def test_keys_with_aliases_are_named_and_suggested_as_the_file_writes_them():
    with pytest.raises(ConfigError) as error:
        validate(Scores, {"SI_SDR": 1.0}, "summary.json")
    assert "did you mean 'SI-SDR'" in str(error.value)
    with pytest.raises(ConfigError, match=r"summary\.json: SI-SDR: expected (float|number), got str 'x'"):
        validate(Scores, {"SI-SDR": "x"}, "summary.json")
