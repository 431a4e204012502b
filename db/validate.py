"""The one check of values before they are stored: names, free text, numbers, review bands.

Every db write function that takes such a value calls these, so the command line, the dashboard
and any later caller get the same ValidationError (one clear sentence) on SQLite and PostgreSQL,
never a raw IntegrityError or DataError. Limits match the column sizes in db/models.py.
"""

from __future__ import annotations

import math
import unicodedata
from typing import Any

from db.errors import ValidationError

DATASET_NAME_MAX = 200  # datasets.name
USER_NAME_MAX = 100  # created_by, author, reviewer, set_by, users.name
LABEL_MAX = 100  # defect types, tags
RULE_MAX = 32  # thresholds.rule
NOTE_MAX = 2000  # notes: enough for a paragraph, not a pasted file
_SEPARATORS = ("/", "\\")
_LINE_BREAKS = "\n\r\v\f\x85\u2028\u2029"


def shown(value: Any, limit: int = 40) -> str:
    """A value as it appears in a message: repr, shortened (a 5 MB note is not echoed back)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(str(value))} characters)"


def _control(value: str, allowed: str = "") -> str | None:
    """The first control / format character not in `allowed`, or None."""
    for ch in value:
        if ch in allowed:
            continue
        if ch in _LINE_BREAKS or unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co"):
            return ch
    return None


def name(value: Any, what: str, max_len: int = USER_NAME_MAX) -> str:
    """A name (dataset, user): non-empty after strip, one line, no path separator, no control
    character, at most `max_len` characters. Returns it stripped."""
    if not isinstance(value, str):
        raise ValidationError(f"{what} {shown(value)}: must be text")
    stripped = value.strip()
    if not stripped:
        raise ValidationError(f"{what} {shown(value)}: must not be empty")
    if len(stripped) > max_len:
        raise ValidationError(f"{what} {shown(stripped)}: too long (at most {max_len} characters)")
    bad = _control(stripped)
    if bad is not None:
        kind = "a line break" if bad in _LINE_BREAKS else f"the control character {bad!r}"
        raise ValidationError(f"{what} {shown(stripped)}: must not contain {kind}")
    if any(sep in stripped for sep in _SEPARATORS) or stripped in (".", ".."):
        raise ValidationError(f"{what} {shown(stripped)}: must not contain a path separator (/ or \\) "
                              "or be . or ..")
    return stripped


def label(value: Any, what: str, max_len: int = LABEL_MAX) -> str | None:
    """A short one-line label (defect type, tag, rule); empty after strip -> None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{what} {shown(value)}: must be text")
    stripped = value.strip()
    if len(stripped) > max_len:
        raise ValidationError(f"{what} {shown(stripped)}: too long (at most {max_len} characters)")
    if _control(stripped) is not None:
        raise ValidationError(f"{what} {shown(stripped)}: must be one line without control characters")
    return stripped or None


def text(value: Any, what: str = "note", max_len: int = NOTE_MAX) -> str | None:
    """Free text (notes): line breaks and tabs allowed, other control characters not; empty -> None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{what} {shown(value)}: must be text")
    stripped = value.strip()
    if len(stripped) > max_len:
        raise ValidationError(f"{what} is too long ({len(stripped)} characters, at most {max_len})")
    bad = _control(stripped, allowed="\n\r\t")
    if bad is not None:
        raise ValidationError(f"{what} {shown(stripped)}: must not contain the control character {bad!r}")
    return stripped or None


def finite(value: Any, what: str) -> float:
    """A finite real number (thresholds, band ends): not NaN, not ±inf, not a bool or text."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise ValidationError(f"{what} {shown(value)}: must be a number")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ValidationError(f"{what} {shown(value)}: must be a number") from None
    if not math.isfinite(number):
        raise ValidationError(f"{what} {number}: must be a finite number "
                              "(±inf or NaN would pass or reject every part)")
    return number


def optional_finite(value: Any, what: str) -> float | None:
    return None if value is None else finite(value, what)


def band(review_band: Any, threshold: float) -> tuple[float, float] | None:
    """A review band (lo, hi) with lo <= threshold <= hi; lo > hi is refused, never swapped."""
    if review_band is None:
        return None
    try:
        lo_raw, hi_raw = review_band
    except (TypeError, ValueError):
        raise ValidationError(f"review band {shown(review_band)}: must be two numbers (low, high)") from None
    lo, hi = finite(lo_raw, "review band low end"), finite(hi_raw, "review band high end")
    if lo > hi:
        raise ValidationError(f"review band {lo:g} – {hi:g}: the low end is above the high end")
    if not lo <= threshold <= hi:
        raise ValidationError(f"review band {lo:g} – {hi:g} does not contain the image threshold "
                              f"{threshold:g}: parts between the band and the threshold would get no "
                              "consistent verdict")
    return lo, hi


def choice(value: Any, what: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValidationError(f"{what} {shown(value)}: must be one of {', '.join(choices)}")
    return str(value)
