"""The ``sit471`` command (release, grade, bundle, demo): staff tools from ``autograde/``.

The student install has the library only (no ``autograde``); there the command says so in
one line instead of failing with an import error.
"""

from __future__ import annotations

import importlib.util
import sys

NOT_INSTALLED = (
    "sit471: the staff tools (release, grade, bundle, demo) are not part of the student install; "
    "they run from the course repository (`make setup` installs them)"
)


def main(argv: list[str] | None = None) -> int:
    if importlib.util.find_spec("autograde") is None:
        print(NOT_INSTALLED, file=sys.stderr)
        return 2
    from autograde.cli import main as staff_main

    return staff_main(argv)


def run() -> None:
    """The console script: the staff command where it is installed (which exits without the
    interpreter's teardown, ``autograde.cli.run``), else the one-line message."""
    if importlib.util.find_spec("autograde") is None:
        sys.exit(main())
    from autograde.cli import run as staff_run

    staff_run()
