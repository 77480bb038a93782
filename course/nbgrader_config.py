"""nbgrader configuration for SIT471.

Every nbgrader command run from this folder (and every `sit471` command, which loads this
file) uses these settings, so a plain `nbgrader generate_solution` gives the same result
as `sit471 release`.
"""

from autograde.feedback import ShortTracebacks
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import (
    ClearHiddenTests,
    ClearMarkScheme,
    ClearOutput,
    GetGrades,
    IncludeHeaderFooter,
    LockCells,
)

c = get_config()  # noqa: F821 - provided by nbgrader when it loads this file

c.CourseDirectory.course_id = "sit471"

# Solution notebooks are published to students after the deadline: they carry the answers
# and the visible tests, never the hidden tests, and are not executed (so that generating
# them is fast and byte-for-byte repeatable).
c.GenerateSolution.preprocessors = [
    IncludeHeaderFooter,
    LockCells,
    ClearOutput,
    ClearMarkScheme,
    ClearHiddenTests,
]

# Feedback returned to students names each test and its message; the hidden test code is
# removed from the cells and from the tracebacks.
c.GenerateFeedback.preprocessors = [
    GetGrades,
    ClearHiddenTests,
    ShortTracebacks,
    CSSHTMLHeaderPreprocessor,
]

# Per-cell limit while autograding. Every graded cell of the course runs in well under
# a second on a 2-core laptop; exploration cells are skipped when NBGRADER_EXECUTION is set.
c.Execute.timeout = 30
