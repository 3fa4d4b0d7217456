"""The one table -> dataclass coercer (``placement_search.fields``), on its edge cases."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import pytest

from placement_search.errors import UserError
from placement_search.fields import coerce, from_table


@pytest.mark.parametrize(
    ("value", "tp", "expected"),
    [
        (3, float, 3.0),
        (None, int | None, None),
        (2, int | None, 2),
        ([1, 2], tuple[int, ...], (1, 2)),
        ("b", Literal["a", "b"], "b"),
        ("x", str | int, "x"),
    ],
)
def test_accepted(value, tp, expected):
    got = coerce(value, tp, "f")
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    ("value", "tp", "said"),
    [
        (True, int, "expected an integer, got True"),  # a boolean is not a number in a file
        (1, bool, "expected true or false"),
        (math.nan, float, "expected a number"),
        (math.inf, float, "expected a number"),
        ([1, True], tuple[int, ...], "a list of integers"),
        ("c", Literal["a", "b"], "one of 'a', 'b'"),
        (1.5, int | None, "expected an integer"),
    ],
)
def test_refused_with_the_field_and_what_was_expected(value, tp, said):
    with pytest.raises(UserError) as e:
        coerce(value, tp, "[x].y")
    assert str(e.value).startswith("[x].y: ") and said in str(e.value)


@dataclass(frozen=True)
class Section:
    steps: int = 1
    lr: float = 0.1

    def check(self, where: str) -> None:
        if self.steps < 1:
            raise UserError(f"{where}.steps: expected a positive integer, got {self.steps}")


def test_from_table_names_unknown_fields_checks_and_special():
    assert from_table(Section, {"steps": 3}, "[s]") == Section(3, 0.1)
    with pytest.raises(
        UserError, match=r"\[s\]: unknown field 'step' \(did you mean 'steps'\?\); allowed fields: steps, lr"
    ):
        from_table(Section, {"step": 3}, "[s]")
    with pytest.raises(UserError, match=r"\[s\]\.steps: expected a positive integer, got 0"):
        from_table(Section, {"steps": 0}, "[s]")
    assert from_table(Section, {"steps": 0}, "[s]", check=False) == Section(0, 0.1)
    assert from_table(Section, {"lr": "1e-3"}, "[s]", special={"lr": lambda v, w: float(v)}).lr == 1e-3
    with pytest.raises(UserError, match=r"unknown field 'lr'"):
        from_table(Section, {"lr": 1}, "[s]", skip=("lr",))
    with pytest.raises(UserError, match=r"\[s\]: expected a table of fields"):
        from_table(Section, [1], "[s]")
