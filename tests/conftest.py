"""Shared paths and helpers for the test suite."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest
from filelock import FileLock
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
COURSE = REPO / "course"
ASSIGNMENTS = sorted(p.name for p in (COURSE / "source").iterdir() if p.is_dir())
SOURCE_NOTEBOOKS = sorted((COURSE / "source").glob("*/*.ipynb"))


def nbgrader_meta(cell: nbformat.NotebookNode) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def execute(
    nb: nbformat.NotebookNode, cwd: Path, grading: bool = True, allow_errors: bool = False
) -> nbformat.NotebookNode:
    """Run a notebook top to bottom in a fresh kernel, as nbgrader does (in place)."""
    env = dict(os.environ)
    if grading:
        env["NBGRADER_EXECUTION"] = "autograde"
    else:
        env.pop("NBGRADER_EXECUTION", None)
    client = NotebookClient(
        nb,
        timeout=60,
        kernel_name="python3",
        allow_errors=allow_errors,
        resources={"metadata": {"path": str(cwd)}},
    )
    old = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    return nb


def errors(cell: nbformat.NotebookNode) -> list[str]:
    return [
        f"{o['ename']}: {o['evalue']}"
        for o in cell.get("outputs", [])
        if o.get("output_type") == "error"
    ]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


def shared(tmp_path_factory, name: str, compute: Callable[[Path], object]) -> object:
    """Compute an expensive result once per test session, even across xdist workers.

    ``compute(folder)`` runs in the first worker that asks; the others wait for it and
    read its pickled result. (A session-scoped fixture alone would run once per worker.)
    """
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    target = root / f"{name}.pickle"
    with FileLock(str(target) + ".lock"):
        if target.is_file():
            return pickle.loads(target.read_bytes())
        result = compute(root / name)
        target.write_bytes(pickle.dumps(result))
        return result
