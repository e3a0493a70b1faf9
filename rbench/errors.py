"""The error hierarchy and the exit codes every rbench command shares.

The library raises these; the CLI turns each into one line on stderr and its exit code, so a user's mistake never
shows a traceback (unless ``--debug``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable


class RbenchError(Exception):
    """Base class of every error rbench raises on purpose."""

    exit_code: int = 2


class ParityError(RbenchError):
    """Outputs of two backends disagree beyond tolerance, or a regression was found."""

    exit_code = 1


class BadInputError(RbenchError):
    """Missing or corrupt file, unknown model, wrong shape or dtype, unsupported precision, nonsense numbers."""

    exit_code = 2


class ArtifactError(RbenchError):
    """An artifact is incompatible with this machine or was tampered with: rebuild required."""

    exit_code = 3


class EnvironmentProblem(RbenchError):
    """A backend, library or device this command needs is missing."""

    exit_code = 4


class RbenchWarning(UserWarning):
    """A warning of rbench's own (a BatchNorm left unfolded, a file replaced): the CLI always shows these."""


def missing_dependency(package: str, extra: str) -> EnvironmentProblem:
    """The one message for an optional library that is not installed."""
    return EnvironmentProblem(f"{package} is not installed: pip install 'rbench[{extra}]'")


def unknown_choice(kind: str, value: object, choices: Iterable[str]) -> BadInputError:
    """The one message for a name that is not among the valid ones: ``unknown precision 'fp8'; choose from …``."""
    return BadInputError(f"unknown {kind} {value!r}; choose from {', '.join(choices)}")


_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07")


def plain(text: str) -> str:
    """``text`` without terminal escape sequences (some libraries colour their messages)."""
    return _ANSI.sub("", text)


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message without escapes, or its type name when it has none."""
    lines = [line.strip() for line in plain(str(exc)).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
