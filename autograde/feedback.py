"""Feedback that names each failed test and its message, and never shows hidden test code.

nbgrader's ClearHiddenTests removes the hidden lines from a test cell's source, but the
traceback stored in the cell's output still quotes the code around the failing line, which
can be hidden test code. ``ShortTracebacks`` keeps only the last line of each error in a
graded cell: ``AssertionError: dJdW2 looks transposed``.

``FeedbackExporter`` writes the HTML nbconvert's exporter writes, compiling its templates
once per grading worker instead of once per student.
"""

from __future__ import annotations

from jinja2 import BytecodeCache
from jinja2.bccache import Bucket
from nbconvert.exporters import HTMLExporter
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


class _MemoryBytecodeCache(BytecodeCache):
    """Compiled Jinja templates kept in memory, by template name and source checksum (jinja2
    compares the checksum: a template whose file changed is compiled again)."""

    def __init__(self) -> None:
        self.store: dict[str, bytes] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        if bucket.key in self.store:
            bucket.bytecode_from_string(self.store[bucket.key])

    def dump_bytecode(self, bucket: Bucket) -> None:
        self.store[bucket.key] = bucket.bytecode_to_string()


TEMPLATES = _MemoryBytecodeCache()


class FeedbackExporter(HTMLExporter):
    """nbconvert's HTML exporter (configured as ``HTMLExporter``) whose compiled templates
    outlive it: nbgrader makes a new exporter for every student's feedback, which compiled
    the same templates again each time (about 0.08 s of 0.4 s per student)."""

    def _create_environment(self):
        environment = super()._create_environment()
        environment.bytecode_cache = TEMPLATES
        return environment
