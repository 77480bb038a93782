"""nbgrader configuration for SIT471.

Every nbgrader command run from this folder (and every `sit471` command, which loads this
file) uses these settings, so a plain `nbgrader generate_solution` gives the same result
as `sit471 release`.
"""

from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import (
    AssignLatePenalties,
    CheckCellMetadata,
    ClearHiddenTests,
    ClearMarkScheme,
    ClearOutput,
    GetGrades,
    IgnorePattern,
    IncludeHeaderFooter,
    LimitOutput,
    LockCells,
    SaveAutoGrades,
)

from autograde.execute import LimitedExecute
from autograde.feedback import FeedbackExporter, ShortTracebacks
from autograde.late import PercentPerDay

c = get_config()  # noqa: F821 - provided by nbgrader when it loads this file

c.CourseDirectory.course_id = "sit471"
# The gradebook: SQLite in the grading copy (OUT/nbgrader/gradebook.db) unless set here or
# given as `sit471 grade --db URL`; any SQLAlchemy URL nbgrader accepts, e.g. PostgreSQL
# for several TAs grading into one database (password in ~/.pgpass, not in the URL):
# c.CourseDirectory.db_url = "postgresql://ta@dbhost/sit471"

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
c.GenerateFeedback.exporter_class = FeedbackExporter  # nbconvert's, templates compiled once

# Limits per submission while autograding (autograde/execute.py). Every graded cell of the
# course runs in well under a second on a 2-core laptop, and exploration cells are skipped
# when NBGRADER_EXECUTION is set, so these only stop broken or hostile submissions.
c.Autograde.autograde_preprocessors = [
    LimitedExecute,  # nbgrader's Execute plus the limits below
    IgnorePattern,
    LimitOutput,
    SaveAutoGrades,
    AssignLatePenalties,
    CheckCellMetadata,
]
c.Execute.timeout = 30  # seconds per cell
c.LimitedExecute.notebook_timeout = 120  # seconds for the whole notebook
c.LimitedExecute.max_output_bytes = 1_000_000  # output kept per cell
c.LimitedKernelManager.memory_limit_mb = 2048  # the student's kernel
# The kernel's sandbox (autograde/sandbox.py): processes + threads, largest file written,
# CPU seconds per process, sizes of its writable working directory and private /tmp.
c.LimitedKernelManager.nproc_limit = 256
c.LimitedKernelManager.fsize_limit_mb = 64
c.LimitedKernelManager.cpu_limit_s = 300
c.LimitedKernelManager.work_size_mb = 256
c.LimitedKernelManager.tmp_size_mb = 256
c.LimitedKernelManager.hide_reference = True  # sit471/reference invisible to the kernel

# Late submissions (the due date comes from `sit471 grade --due`): 10 % of the score per
# started day late.
c.AssignLatePenalties.plugin_class = PercentPerDay
c.PercentPerDay.percent_per_day = 10.0

# `nbgrader validate` in a terminal cuts every line of a failure message at Validator.width
# minus 3 characters (default 90), which loses the numbers at the end of our messages ("got
# ..., expected ..."). Wide enough for every message of the course; students receive this
# setting in their own configuration (`sit471 bundle`, deploy/jupyterhub).
c.Validator.width = 500
