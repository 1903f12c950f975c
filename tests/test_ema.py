"""The weight average is unbiased, as demucs's ModelEMA is: the initial weights weigh nothing."""

from __future__ import annotations

import pytest
import torch

from sepzoo.training.task import WeightAverage


def _module(value: float) -> torch.nn.Module:
    module = torch.nn.Linear(1, 1, bias=False)
    module.register_buffer("steps", torch.tensor(0))
    with torch.no_grad():
        module.weight.fill_(value)
    return module


def test_the_average_of_known_weights_is_their_decay_weighted_mean():
    module = _module(100.0)  # the random start: it must not show in the average
    average = WeightAverage(module, decay=0.5)
    expected = []
    for step, value in enumerate([1.0, 2.0, 3.0], start=1):
        with torch.no_grad():
            module.weight.fill_(value)
            module.steps.fill_(step)
        average.update(module)
        expected.append(float(average.state["weight"]))
    # (1), (0.5*1 + 2) / 1.5, (0.25*1 + 0.5*2 + 3) / 1.75
    assert expected == pytest.approx([1.0, 5 / 3, 17 / 7], abs=1e-6)
    assert average.count == pytest.approx(1.75) and int(average.state["steps"]) == 3


def test_after_100_steps_at_0_99_nothing_of_the_start_remains():
    module = _module(1000.0)
    average = WeightAverage(module, decay=0.99)
    with torch.no_grad():
        module.weight.fill_(1.0)
    for _ in range(100):
        average.update(module)
    # A plain average from the start would still be 0.99**100 = 37% start: 367 here.
    assert float(average.state["weight"]) == pytest.approx(1.0, abs=1e-5)


def test_a_restored_average_continues_exactly_and_an_old_one_keeps_its_rule():
    module = _module(0.0)
    first = WeightAverage(module, decay=0.9)
    for value in (1.0, 4.0):
        with torch.no_grad():
            module.weight.fill_(value)
        first.update(module)
    second = WeightAverage(_module(7.0), decay=0.9)
    second.restore(first.checkpoint(), torch.device("cpu"))
    with torch.no_grad():
        module.weight.fill_(2.0)
    first.update(module)
    second.update(module)
    assert torch.equal(first.state["weight"], second.state["weight"]) and first.count == second.count
    # A checkpoint from before the average was unbiased has no count: it continues at 1 - decay.
    old = WeightAverage(_module(0.0), decay=0.9)
    old.restore({"decay": 0.9, "state": {"weight": torch.tensor([[10.0]]), "steps": torch.tensor(0)}}, "cpu")
    old.update(module)
    assert float(old.state["weight"]) == pytest.approx(0.9 * 10 + 0.1 * 2)


def test_an_average_of_some_entries_leaves_the_others_out():
    module = _module(0.0)
    average = WeightAverage(module, decay=0.5, keys=["weight"])
    with torch.no_grad():
        module.weight.fill_(2.0)
        module.steps.fill_(5)
    average.update(module)
    assert list(average.state) == ["weight"] and float(average.state["weight"]) == 2.0
