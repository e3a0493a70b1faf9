"""The ``rbench`` command line: thin commands that parse, call the library and render with rich.

One module per command; what they share (errors and exit codes, progress, tables, choices) is in ``_common``.
"""

from __future__ import annotations

from rbench.cli import build, compare, doctor, export, inspect, parity, run  # noqa: F401  (each registers its command)
from rbench.cli._common import app

__all__ = ["app"]
