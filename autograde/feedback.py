"""Feedback that names each failed test and its message, and never shows hidden test code.

nbgrader's ClearHiddenTests removes the hidden lines from a test cell's source, but the
traceback stored in the cell's output still quotes the code around the failing line, which
can be hidden test code. ``ShortTracebacks`` keeps only the last line of each error in a
graded cell: ``AssertionError: dJdW2 looks transposed``.

``FeedbackExporter`` writes the HTML nbconvert's exporter writes, compiling its templates
once per grading worker instead of once per student, and highlighting a cell's code once per
worker (most cells are the same in every student's notebook); ``warm_up`` pays a worker's
one-off costs of writing feedback before its first student (see there).
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import nbformat
from jinja2 import BytecodeCache
from jinja2.bccache import Bucket
from nbconvert.exporters import HTMLExporter
from nbconvert.filters import Highlight2HTML
from nbconvert.preprocessors import Preprocessor
from nbformat import NotebookNode
from traitlets import Bool

from autograde.timeline import mark


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


#: highlighted code by everything its HTML depends on; emptied when it grows past
#: :data:`HIGHLIGHTED_MAX` entries
HIGHLIGHTED: dict[tuple, str] = {}
HIGHLIGHTED_MAX = 4096


def remembered(highlight: Highlight2HTML) -> Callable[..., str]:
    """nbconvert's highlighting filter ``highlight``, answering from :data:`HIGHLIGHTED` for
    code it (or one with the same settings) has highlighted before in this process."""
    settings = (highlight.pygments_lexer,
                json.dumps(highlight.extra_formatter_options, sort_keys=True, default=repr))

    def highlight_code(source: str, language: str | None = None, metadata=None) -> str:
        magics = (metadata or {}).get("magics_language")  # all of the metadata it reads
        key = (*settings, language, magics, source)
        if key not in HIGHLIGHTED:
            if len(HIGHLIGHTED) >= HIGHLIGHTED_MAX:
                HIGHLIGHTED.clear()
            HIGHLIGHTED[key] = highlight(source, language=language, metadata=metadata)
        return HIGHLIGHTED[key]

    return highlight_code


class FeedbackExporter(HTMLExporter):
    """nbconvert's HTML exporter (configured as ``HTMLExporter``) whose compiled templates and
    highlighted code outlive it. nbgrader makes a new exporter for every student's feedback,
    which compiled the same templates again each time (about 0.08 s of 0.4 s per student)
    and highlighted the same cells again (about 0.05 s)."""

    def _create_environment(self):
        environment = super()._create_environment()
        environment.bytecode_cache = TEMPLATES
        return environment

    def register_filter(self, name, jinja_filter):
        if name == "highlight_code" and type(jinja_filter) is Highlight2HTML:
            jinja_filter = remembered(jinja_filter)  # nbconvert's own, not a configured one
        return super().register_filter(name, jinja_filter)


def warm_up(root: Path, assignment: str) -> None:
    """Write one feedback page in memory, for the assignment's source notebook, with the
    course's feedback settings (``root``: the course), so that this process has compiled
    what every page needs before its first student: the templates, Pygments' and
    soupsieve's regular expressions, BeautifulSoup's entity tables. The first page of a
    process costs about 0.85 s and each further one about 0.3 s; in a grading worker this
    runs while the first student's kernel starts. Nothing is written and no gradebook read.
    """
    from nbgrader.converters import GenerateFeedback
    from nbgrader.coursedir import CourseDirectory

    from autograde.course import load_config

    notebooks = sorted((root / "source" / assignment).glob("*.ipynb"))
    if not notebooks:
        return
    config = load_config(root)
    app = GenerateFeedback(coursedir=CourseDirectory(config=config), config=config)
    exporter = app.exporter_class(parent=app, config=app.config)
    nb = nbformat.read(notebooks[0], as_version=nbformat.NO_CONVERT)
    for cell in nb.cells:  # as GetGrades leaves them, and with the outputs a student's have
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade"):
            cell.metadata.nbgrader.score = 0.0
        if cell.cell_type == "code":
            cell.outputs = [
                nbformat.v4.new_output("stream", name="stdout", text="loss 0.25\n"),
                nbformat.v4.new_output("execute_result", data={"text/plain": "0.5"},
                                       execution_count=1),
                nbformat.v4.new_output("error", ename="AssertionError", evalue="wrong",
                                       traceback=["\x1b[0;31mAssertionError\x1b[0m: wrong"]),
            ]
    scores = {"notebook": notebooks[0].stem, "score": 0.0, "max_score": 0.0, "late_penalty": 0.0}
    exporter.from_notebook_node(nb, resources={"nbgrader": scores})


_WARMING: list[threading.Thread] = []


def warm_up_in_background(root: Path, assignment: str) -> None:
    """:func:`warm_up` in a thread of this process, so that it runs while the first
    student's kernel starts and executes (the process only waits for the kernel then);
    :func:`wait_for_warm_up` before writing feedback."""
    def run() -> None:
        try:
            warm_up(root, assignment)
        except Exception as exc:  # the first student's feedback then pays for it
            print(f"sit471: feedback not warmed up: {type(exc).__name__}: {exc}", file=sys.stderr)
        mark("worker: feedback warmed up")

    thread = threading.Thread(target=run, name="feedback warm-up", daemon=True)
    thread.start()
    _WARMING.append(thread)


def wait_for_warm_up() -> None:
    """Wait until a warm-up this process started has finished (at once when there is none)."""
    while _WARMING:
        _WARMING.pop().join()
