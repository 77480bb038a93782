"""Feedback that names each failed test and its message, and never shows hidden test code.

nbgrader's ClearHiddenTests removes the hidden lines from a test cell's source, but the
traceback stored in the cell's output still quotes the code around the failing line, which
can be hidden test code. ``ShortTracebacks`` keeps only the last line of each error in a
graded cell: ``AssertionError: dJdW2 looks transposed``.
"""

from __future__ import annotations

from nbconvert.preprocessors import Preprocessor
from nbformat import NotebookNode
from traitlets import Bool


class ShortTracebacks(Preprocessor):
    """Replace the traceback of every error in a graded cell by 'ErrorName: message'."""

    enabled = Bool(True).tag(config=True)

    def preprocess_cell(self, cell: NotebookNode, resources: dict, index: int):
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade"):
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    out["traceback"] = [f"{out.get('ename')}: {out.get('evalue')}"]
        return cell, resources
