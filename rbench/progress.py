"""How long-running library calls report progress without knowing who listens (the CLI draws it with rich)."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Steps in order; a step may have a count (a bar) and may end in failure (✗ rather than ✓)."""

    def step(self, name: str, total: int | None = None) -> None:
        """Start a step (and finish the previous one); ``total`` makes it a bar of that many units."""

    def advance(self, count: int = 1) -> None:
        """Units of the current step done."""

    def describe(self, text: str) -> None:
        """Live figures for the current step (loss, accuracy, images/s), redrawn in place."""

    def fail(self, why: str = "") -> None:
        """The current step failed: it is shown as failed when it finishes."""

    def note(self, message: str) -> None:
        """A line for the user about the step that just ran (a file replaced, a row's figures); it ends that step."""


class Silent:
    """A ``Progress`` that shows nothing (the API's default)."""

    def step(self, name: str, total: int | None = None) -> None:
        pass

    def advance(self, count: int = 1) -> None:
        pass

    def describe(self, text: str) -> None:
        pass

    def fail(self, why: str = "") -> None:
        pass

    def note(self, message: str) -> None:
        pass
