"""The ``rbench`` command line: thin commands that parse, call the library and render with rich.

One module per command; what they share (errors and exit codes, progress, tables, choices) is in ``_common``.
"""

from __future__ import annotations

from rbench.cli import (  # noqa: F401  (each registers its command)
    build,
    compare,
    debug,
    deploy,
    doctor,
    evaluate,
    experiment,
    export,
    fleet,
    inspect,
    parity,
    predict,
    profile,
    run,
    train,
)
from rbench.cli._common import app

__all__ = ["app"]
