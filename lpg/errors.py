"""Typed errors of the Python API.

Every error a user can cause by their input (an unknown name, an invalid
number, an unwritable folder, a mismatching checkpoint) is a ``UserInputError``.
The command line prints its message as one line on stderr and exits with
status 2; Python callers can catch the specific subclass.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence


class UserInputError(ValueError):
    """Invalid input from the user: the message says what and how to fix it."""


class UnknownNameError(UserInputError):
    """An environment, objective, method, experiment or preset name is not registered."""


def closest_names(name: str, known: Iterable[str], cutoff: float = 0.6) -> list[str]:
    """The names of ``known`` closest to ``name`` (ignoring case), for a "did you mean" hint.

    A name equal but for case is the only answer; otherwise the names whose
    ``difflib`` similarity is at least ``cutoff`` and within 0.05 of the best
    (so 'atari/Pongg' gives 'atari/Pong' alone, not every 'atari/...').
    """
    known = list(known)
    exact = [k for k in known if k.lower() == name.lower()]
    if exact:
        return exact
    scores = {k: difflib.SequenceMatcher(None, name.lower(), k.lower()).ratio() for k in known}
    best = max(scores.values(), default=0.0)
    if best < cutoff:
        return []
    return sorted((k for k, r in scores.items() if r >= best - 0.05), key=lambda k: -scores[k])


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``"did you mean 'a' or 'b'? "`` for the ``closest_names`` of ``name`` (with a trailing space), or ``""``."""
    suggestions = closest_names(name, known)
    return f"did you mean {' or '.join(map(repr, suggestions))}? " if suggestions else ""


def unknown_name_error(what: str, name: str, known: Sequence[str], listing: str | None = None) -> UnknownNameError:
    """The error for ``name``, not one of ``known``: ``unknown {what} 'name'; did you mean ...? {listing}``.

    ``listing`` (what to choose from) defaults to ``choose a, b or c``; the
    "did you mean" part is left out when no known name is close.
    """
    known = list(known)
    if listing is None:
        listing = "choose " + (f"{', '.join(known[:-1])} or {known[-1]}" if len(known) > 1 else "".join(known))
    return UnknownNameError(f"unknown {what} {name!r}; {did_you_mean(name, known)}{listing}")


class InvalidConfigError(UserInputError):
    """A configuration value is out of its valid range."""


class OutputDirError(UserInputError):
    """The output folder cannot be written, or already holds a different run."""


class CheckpointError(UserInputError):
    """A checkpoint is missing, corrupted, incompatible or does not fit the agent."""


class RunFailedError(RuntimeError):
    """A run stopped itself (not the user's input); the CLI prints one line and exits with status 1."""


class NonFiniteError(RunFailedError):
    """Too many consecutive updates had non-finite gradients, meta-gradients or fitness."""


class RunInterrupted(RunFailedError):
    """SIGINT or SIGTERM stopped the run after a checkpoint was saved; exit status 128 + signal number."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
