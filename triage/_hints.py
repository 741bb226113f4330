"""Hints of the form "did you mean …?": one rule for every message, so only close names are suggested."""

from __future__ import annotations

import difflib
from typing import Iterable

CUTOFF = 0.75  # below this, difflib pairs names that share only a common word ("mri_…", "…_assessment")


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice closest to ``word``, or ``None`` when none is close enough to be a likely typo."""
    options = list(choices)
    lowered = {c.lower(): c for c in options}
    if word.lower() in lowered:
        return lowered[word.lower()]
    found = difflib.get_close_matches(word, options, n=1, cutoff=CUTOFF)
    return found[0] if found else None


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """``"did you mean 'x'?"`` for the closest choice, or ``None``."""
    close = closest(word, choices)
    return f"did you mean '{close}'?" if close else None
