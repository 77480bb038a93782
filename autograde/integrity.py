"""Patterns in a submission that a TA should look at (reported, never scored).

The scan reads the code a student wrote (every cell that is not locked) and flags:
imports of the reference answers, reassigned test helpers or builtins, overridden
equality, file access outside the submission, shell commands and mentions of the
gradebook. Cells repaired by ``autograde.sanitize`` are listed as well. A flag is a
reason to read the notebook, not proof of misconduct.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

PATTERNS = [
    (r"sit471\.reference|from\s+sit471\s+import\s+reference", "imports the reference answers"),
    (r"\b(check_array|check_scalar|check_gradient|relative_error)\s*=(?!=)"
     r"|sit471\.checks\.\w+\s*=(?!=)|setattr\s*\(",
     "reassigns test helpers"),
    (r"\bnp\.testing\.\w+\s*=(?!=)|numpy\.testing\.\w+\s*=(?!=)|\bnp\.\w+\s*=(?!=)",
     "reassigns NumPy functions"),
    (r"\bbuiltins\b|__builtins__", "touches builtins"),
    (r"def\s+__eq__|__eq__\s*=(?!=)", "overrides equality"),
    (r"open\(\s*f?['\"](/|\.\.)|Path\(\s*f?['\"](/|\.\.)|os\.(remove|unlink|rename|chdir)\b"
     r"|shutil\.", "accesses files outside the submission"),
    (r"\bsubprocess\b|os\.system|os\.popen|\bos\._exit|ctypes", "runs commands or low-level code"),
    (r"gradebook|autograded/|submitted/|source/", "mentions grading files"),
]
_COMPILED = [(re.compile(p), what) for p, what in PATTERNS]


def scan(notebook: Path) -> list[str]:
    """Flags for one submitted notebook: 'cell <id>: <what> (<matched text>)'."""
    try:
        cells = json.loads(notebook.read_text())["cells"]
    except Exception:
        return []
    flags = []
    for k, cell in enumerate(cells):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("locked"):
            continue  # restored from the source by nbgrader, whatever the student wrote
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        name = meta.get("grade_id", f"#{k + 1}")
        for pattern, what in _COMPILED:
            match = pattern.search(source)
            if match:
                flags.append(f"cell {name}: {what} ({match.group(0).strip()[:40]})")
    return flags
