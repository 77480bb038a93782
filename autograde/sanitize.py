"""Repair a submitted notebook's structure before nbgrader sees it (grading copy only).

nbgrader restores the source of locked cells it finds, but a deleted test cell is simply
not run and a duplicated cell id stops the whole submission (nbgrader issues #1083,
#1941). Here, against the release notebook:

* a cell whose grade id appears twice keeps its first copy;
* a locked or graded cell that was deleted is put back after its predecessor;
* a locked cell whose text was edited is noted (nbgrader restores it from the gradebook).

Each repair becomes a note in the report and in the integrity report.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path


def _gid(cell: dict) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def _text(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def repair(submitted: Path, released: Path) -> list[str]:
    """Repair ``submitted`` in place against ``released``; returns notes ('' if none)."""
    try:
        nb = json.loads(submitted.read_text())
        cells = nb["cells"]
        assert isinstance(cells, list)
    except Exception:  # not a notebook: nbgrader reports it
        return []
    reference = json.loads(released.read_text())["cells"]
    notes: list[str] = []

    seen: set[str] = set()
    kept = []
    for cell in cells:
        gid = _gid(cell) if isinstance(cell, dict) else None
        if gid is not None and gid in seen:
            notes.append(f"cell {gid} was duplicated: the first copy is graded")
            continue
        if gid is not None:
            seen.add(gid)
        kept.append(cell)

    protected = [c for c in reference if c["metadata"].get("nbgrader", {}).get("locked")
                 or c["metadata"].get("nbgrader", {}).get("grade")]
    for cell in protected:
        gid = _gid(cell)
        if gid in seen:
            theirs = next(c for c in kept if _gid(c) == gid)
            if cell["metadata"]["nbgrader"].get("locked") and _text(theirs) != _text(cell):
                notes.append(f"locked cell {gid} was edited: restored from the source")
            continue
        position = _insert_position(kept, reference, gid)
        kept.insert(position, copy.deepcopy(cell))
        seen.add(gid)
        notes.append(f"cell {gid} was deleted: restored from the source")

    if [id(c) for c in kept] != [id(c) for c in cells]:  # cells removed or put back
        nb["cells"] = kept
        submitted.write_text(json.dumps(nb, indent=1))
    return notes


def _insert_position(kept: list[dict], reference: list[dict], gid: str) -> int:
    """Just after the nearest cell that precedes ``gid`` in the release and is still present."""
    order = [_gid(c) for c in reference]
    for earlier in reversed(order[: order.index(gid)]):
        for k, cell in enumerate(kept):
            if _gid(cell) == earlier:
                return k + 1
    return 0
