"""User-facing errors.

Every problem caused by what a user handed us (a recipe, a data set, an audio file, a
checkpoint, an output path) is raised as a :class:`SepzooError`. The command-line entry point
prints its message as one line and exits with status 2; library callers can catch it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SepzooError(Exception):
    """An error in user input, reported as one line without a traceback."""


class ConfigError(SepzooError):
    """A recipe or override is invalid (unknown key, wrong type, missing file)."""


class DataError(SepzooError):
    """A data set or audio file is missing, malformed or inconsistent."""


class CheckpointError(SepzooError):
    """A checkpoint or model file cannot be used."""


class OutputExistsError(SepzooError):
    """An output path exists and ``--force`` was not given."""


def closest(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Return up to ``n`` candidates that look like ``name``, best first.

    Args:
        name: The misspelled or unknown name.
        candidates: The valid names.
        n: How many suggestions to return at most. (Default: ``3``)
    """
    pool = sorted(set(candidates))
    found = difflib.get_close_matches(name, pool, n=n, cutoff=0.5)
    if not found:
        lowered = name.lower()
        found = [c for c in pool if lowered in c.lower() or c.lower() in lowered][:n]
    return found


def suggestion(name: str, candidates: Iterable[str]) -> str:
    """Format a "did you mean" clause for an error message (empty if nothing is close).

    Args:
        name: The misspelled or unknown name.
        candidates: The valid names.
    """
    found = closest(name, candidates)
    if not found:
        return ""
    return "; did you mean " + " or ".join(repr(f) for f in found) + "?"
