"""Late submissions: a share of the notebook's score per started day late.

nbgrader compares each submission's ``timestamp.txt`` (written by ``zip_collect`` or by
nbgrader's collect; a folder submission may carry its own) with the assignment's due
date, which ``sit471 grade --due`` sets. This plugin turns the delay into a penalty:
``percent_per_day`` of the score for each started day, never more than the score.
"""

from __future__ import annotations

import math

from nbgrader.plugins import LateSubmissionPlugin
from traitlets import Float


class PercentPerDay(LateSubmissionPlugin):
    percent_per_day = Float(10.0, help="percent of the score lost per started day late").tag(
        config=True
    )

    def late_submission_penalty(self, student_id: str, score: float, total_seconds_late: float):
        if total_seconds_late <= 0:
            return None
        days = math.ceil(total_seconds_late / 86400)
        return min(score, score * self.percent_per_day * days / 100)
