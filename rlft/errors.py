"""User-facing errors.

A `UserError` is a mistake in what the user gave us (a recipe key, a data file, a reward path). The CLI prints
its message as one line and exits with code 2, without a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterable


class UserError(Exception):
    """A mistake in user input; the message is one line that names the file, the key and what was expected."""

    exit_code = 2


class RecipeError(UserError):
    """Invalid recipe file, key or value."""


class DataError(UserError):
    """Invalid or unreadable dataset."""


class RewardError(UserError):
    """A reward cannot be loaded, was given bad parameters, or returned bad values."""


def did_you_mean(name: str, allowed: Iterable[str]) -> str:
    """Return ' (did you mean 'x'?)' when a close match exists, else ''."""
    allowed = list(allowed)
    matches = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
    if not matches:  # abbreviations and long forms: 'rank' -> 'r', 'lr' -> 'lr_scheduler' is not offered
        matches = [a for a in allowed if len(a) >= 1 and name.startswith(a) and name[: len(a) + 1] != a + "_"][:1]
    return f" (did you mean '{matches[0]}'?)" if matches else ""


def print_error(message: str) -> None:
    """`error: <message>` on stderr as ONE write: under `accelerate launch --num_processes N` every rank prints the
    same line to the same stream, and print()'s separate write of the newline let two ranks' lines run together."""
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
