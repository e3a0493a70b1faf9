"""What every command shares: the app, one-line errors and exit codes, warnings, progress, tables, choices.

Exit codes, the same for every command: 0 ok, 1 parity or regression failure, 2 bad input, 3 incompatible or
tampered artifact (rebuild required), 4 environment problem (missing backend or device).
"""

from __future__ import annotations

import functools
import signal
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from enum import Enum
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from rbench.errors import RbenchError, RbenchWarning, plain

try:  # newer typer vendors its own click, whose exceptions are not the click package's
    from typer._click import core as click_core
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover
    from click import core as click_core
    from click import exceptions as click_errors

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
_state: dict[str, Any] = {"debug": False, "argv": ["rbench"]}
F = TypeVar("F", bound=Callable[..., Any])


class Terminated(BaseException):
    """SIGTERM, raised like Ctrl-C so every ``finally`` and cleanup runs (no temp folder is left behind)."""


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated()


class RbenchGroup(TyperGroup):
    """Click's usage errors in one line, ``--debug`` anywhere on the line, SIGTERM handled like SIGINT."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        args = list(sys.argv[1:] if args is None else args)
        end = args.index("--") if "--" in args else len(args)
        _state["debug"] = "--debug" in args[:end]
        args = [a for i, a in enumerate(args) if not (a == "--debug" and i < end)]
        _state["argv"] = ["rbench", *args]  # the command line, as reports record it
        previous = signal.signal(signal.SIGTERM, _terminate)
        try:
            code = self._run(args, prog_name, complete_var, **extra)
        finally:
            signal.signal(signal.SIGTERM, previous)
        if standalone_mode:
            sys.exit(code)
        return code

    def _run(self, args: list[str], prog_name: str | None, complete_var: str | None, **extra: Any) -> int:
        try:
            rv = super().main(args, prog_name or "rbench", complete_var, standalone_mode=False, **extra)
        except click_errors.NoArgsIsHelpError as exc:
            err.print(exc.ctx.get_help() if exc.ctx else str(exc), markup=False)
            return 2
        except click_errors.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx else "rbench"
            message = plain(exc.format_message()).replace("Value error, ", "").rstrip(".")
            err.print(f"error: {message} (try '{where} --help')", markup=False, soft_wrap=True)
            return 2
        except click_errors.ClickException as exc:
            err.print(f"error: {plain(exc.format_message())}", markup=False, soft_wrap=True)
            return exc.exit_code
        except typer.Abort:
            err.print("interrupted", markup=False)
            return 130
        return rv if isinstance(rv, int) else 0


app = typer.Typer(
    cls=RbenchGroup,
    help="Export, check and benchmark ResNets across PyTorch, torch.compile, ONNX Runtime, OpenVINO and TensorRT.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
)


@app.callback()
def main(
    debug: bool = typer.Option(
        False, "--debug", help="Show tracebacks and every library warning (anywhere on the line)."
    ),
) -> None:
    """rbench: ResNet deployment and benchmarking."""
    _state["debug"] = _state["debug"] or debug


def _show_warning(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    err.print(f"warning: {plain(str(message))}", markup=False, soft_wrap=True)


def handle_errors(fn: F) -> F:
    """Turn an ``RbenchError`` into one line on stderr and its exit code (a traceback only with ``--debug``).

    rbench's own warnings are always shown, one line each; other libraries' only with ``--debug``.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with warnings.catch_warnings():
            if not _state["debug"]:
                warnings.simplefilter("ignore")
                warnings.simplefilter("always", RbenchWarning)
                warnings.showwarning = _show_warning
            try:
                return fn(*args, **kwargs)
            except RbenchError as exc:
                if _state["debug"]:
                    traceback.print_exc()
                err.print(f"error: {plain(str(exc))}", markup=False, soft_wrap=True)
                raise typer.Exit(exc.exit_code) from None
            except KeyboardInterrupt:
                err.print("interrupted", markup=False)
                raise typer.Exit(130) from None
            except Terminated:
                err.print("terminated", markup=False)
                raise typer.Exit(143) from None

    return wrapper  # type: ignore[return-value]


def choices(name: str, values: Sequence[str]) -> type[Enum]:
    """A ``str`` Enum for typer, generated from a library registry (never a copied list)."""
    return Enum(name, {v.replace("-", "_"): v for v in values}, type=str)  # type: ignore[return-value]


def choice_list(text: str, allowed: Sequence[str], kind: str) -> list[str]:
    """A comma list of names from ``allowed`` (or ``all``), in ``allowed``'s order; an unknown name is bad input."""
    from rbench.errors import unknown_choice

    names = [t.strip() for t in text.split(",") if t.strip()]
    names = list(allowed) if names == ["all"] else names
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise unknown_choice(kind, ", ".join(bad) or text, [*allowed, "all"])
    return [n for n in allowed if n in names]


def explicit(ctx: typer.Context, name: str) -> bool:
    """Whether the user gave option ``name`` on the command line (rather than its default)."""
    return ctx.get_parameter_source(name) == click_core.ParameterSource.COMMANDLINE


def table(title: str | None = None, caption: str | None = None, **kwargs: Any) -> Table:
    """A table whose cells fold rather than end in "…": an 80-column CI log loses nothing."""
    return Table(title=title, caption=caption, title_justify="left", caption_justify="left", **kwargs)


def add_columns(t: Table, names: Sequence[str], left: Sequence[str] = ()) -> None:
    for name in names:
        t.add_column(name, justify="left" if name in left else "right", overflow="fold")


def mark(text: str, ok: bool) -> str:
    """A cell that is failing reads in red with a ✗, so it shows without colour too."""
    return text if ok else f"[red]{text} ✗[/]"


class RichProgress:
    """``rbench.progress.Progress`` on stderr: a spinner or a bar with counts per step, then ✓ or ✗ and its time."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

        self.bars = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=err,
            transient=True,
        )
        self.live = err.is_terminal  # a log or a pipe gets the finished steps only, no redrawn bars
        self.task: Any = None
        self.name = ""
        self.start = 0.0
        self.failed = False

    def step(self, name: str, total: int | None = None) -> None:
        self.finish()
        self.name, self.start, self.failed = name, time.perf_counter(), False
        self.task = self.bars.add_task(name, total=total)

    def advance(self, count: int = 1) -> None:
        if self.task is not None:
            self.bars.advance(self.task, count)

    def describe(self, text: str) -> None:
        if self.task is not None:
            self.bars.update(self.task, description=text)

    def fail(self, why: str = "") -> None:
        self.failed = True

    def note(self, message: str) -> None:
        """A line under the step that just ran (which it closes first, so the ✓ comes above its note)."""
        self.finish()
        err.print(f"  {message}", markup=False, soft_wrap=True)

    def finish(self, silently: bool = False) -> None:
        """Close the current step: ✓ or ✗ with its time; ``silently`` when an error ends the command, whose one
        line says what went wrong."""
        if self.task is None:
            return
        self.bars.remove_task(self.task)
        self.task = None
        if silently:
            return
        seconds = time.perf_counter() - self.start
        sign = "[red]✗[/]" if self.failed else "[green]✓[/]"
        err.print(f"{sign} {self.name} [dim]({seconds:.1f} s)[/]")


@contextmanager
def progress(enabled: bool = True) -> Iterator[Any]:
    """A ``Progress`` for the library (silent when ``enabled`` is false, as with ``--json``)."""
    if not enabled:
        from rbench.progress import Silent

        yield Silent()
        return
    shown = RichProgress()
    if shown.live:
        shown.bars.start()
    try:
        yield shown
    except BaseException:
        shown.finish(silently=True)
        raise
    else:
        shown.finish()
    finally:
        if shown.live:
            shown.bars.stop()


def model_config_for(
    model: str | None,
    weights: str,
    seed: int,
    num_classes: int | None = None,
    class_names: tuple[str, ...] | None = None,
) -> Any:
    """The model a command builds: ``--model`` (default resnet50) and ``--weights``, completed from an rbench
    checkpoint's metadata (architecture, classes, class names, preprocessing) where ``--weights`` is one."""
    from rbench.models import ModelConfig, with_checkpoint

    config = ModelConfig(model or "resnet50", weights, seed, num_classes, {}, class_names)
    return with_checkpoint(config, model_given=model is not None)
