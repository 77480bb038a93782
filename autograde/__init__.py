"""SIT471 staff tooling: release, grade and demo, with nbgrader underneath."""

import os
import sys
from pathlib import Path

# nbgrader runs helper programs (alembic) by name: make sure the ones installed beside this
# Python are found even when its bin folder is not on PATH (e.g. `.venv/bin/sit471`).
_bin = str(Path(sys.executable).parent)
if _bin not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _bin + os.pathsep + os.environ.get("PATH", "")

# nbformat imports jsonschema, whose format checks import rfc3987_syntax if it is installed:
# that module builds an IRI grammar at import, about 1 s on a laptop, paid by every grading
# process. No notebook or gradebook schema uses IRI formats, so staff tooling goes without it
# (jsonschema skips a format whose checker cannot be imported). Has no effect if something
# imported it already.
sys.modules.setdefault("rfc3987_syntax", None)
