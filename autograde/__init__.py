"""SIT471 staff tooling: release, grade and demo, with nbgrader underneath."""

import os
import sys
from pathlib import Path

# nbgrader runs helper programs (alembic) by name: make sure the ones installed beside this
# Python are found even when its bin folder is not on PATH (e.g. `.venv/bin/sit471`).
_bin = str(Path(sys.executable).parent)
if _bin not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _bin + os.pathsep + os.environ.get("PATH", "")
