"""The error hierarchy and the exit codes every rbench command shares.

The library raises these; the CLI turns each into one line on stderr and its exit code, so a user's mistake never
shows a traceback (unless ``--debug``).
"""

from __future__ import annotations


class RbenchError(Exception):
    """Base class of every error rbench raises on purpose."""

    exit_code: int = 2


class ParityError(RbenchError):
    """Outputs of two backends disagree beyond tolerance, or a regression was found."""

    exit_code = 1


class BadInputError(RbenchError):
    """Missing or corrupt file, unknown model, wrong shape or dtype, unsupported precision."""

    exit_code = 2


class ArtifactError(RbenchError):
    """An artifact is incompatible with this machine or was tampered with: rebuild required."""

    exit_code = 3


class EnvironmentProblem(RbenchError):
    """A backend, library or device this command needs is missing."""

    exit_code = 4


def missing_dependency(package: str, extra: str) -> EnvironmentProblem:
    """The one message for an optional library that is not installed."""
    return EnvironmentProblem(f"{package} is not installed: pip install 'rbench[{extra}]'")


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
