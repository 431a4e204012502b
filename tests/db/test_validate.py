"""db.validate: the one check of names, notes, numbers and bands (what it accepts and refuses)."""

from __future__ import annotations

import math

import pytest

from db import validate
from db.errors import ValidationError


@pytest.mark.parametrize("value", ["line 3", "Ünïcode-Teil_2", "j.doe@plant", " padded "])
def test_names_accepted_stripped(value: str) -> None:
    assert validate.name(value, "dataset name") == value.strip()


@pytest.mark.parametrize(("value", "reason"), [
    ("", "empty"), ("   ", "empty"), ("../x", "path separator"), ("a/b", "path separator"),
    ("a\\b", "path separator"), ("..", "path separator"), ("a\nb", "line break"), ("a\u2028b", "line break"),
    ("nul\0", "control character"), ("tab\tname", "control character"), ("x" * 101, "too long"), (7, "text"),
])
def test_names_refused_with_the_reason(value: object, reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        validate.name(value, "user name", 100)


def test_a_long_value_is_not_echoed_back_in_full() -> None:
    with pytest.raises(ValidationError) as exc:
        validate.name("y" * 5_000, "dataset name", 200)
    assert len(str(exc.value)) < 200 and "5000 characters" in str(exc.value)


def test_notes_keep_lines_but_not_other_control_characters_and_have_a_limit() -> None:
    assert validate.text("  first\nsecond\t(tab)  ") == "first\nsecond\t(tab)"
    assert validate.text("   ") is None and validate.text(None) is None
    with pytest.raises(ValidationError, match="too long"):
        validate.text("n" * (validate.NOTE_MAX + 1))
    with pytest.raises(ValidationError, match="control character"):
        validate.text("bell\a")


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, "0.5", None, True])
def test_numbers_must_be_finite(value: object) -> None:
    with pytest.raises(ValidationError):
        validate.finite(value, "image threshold")


def test_bands_are_ordered_and_contain_the_threshold() -> None:
    assert validate.band((0.2, 0.8), 0.5) == (0.2, 0.8)
    assert validate.band((0.5, 0.5), 0.5) == (0.5, 0.5)
    assert validate.band(None, 0.5) is None
    with pytest.raises(ValidationError, match="low end is above"):
        validate.band((0.8, 0.2), 0.5)  # refused, not swapped
    with pytest.raises(ValidationError, match="does not contain"):
        validate.band((0.6, 0.9), 0.5)
    with pytest.raises(ValidationError, match="two numbers"):
        validate.band((0.1,), 0.5)
