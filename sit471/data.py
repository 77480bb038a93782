"""Small datasets the notebooks use. Everything is embedded or generated: nothing downloads."""

from __future__ import annotations

import numpy as np

#: Hours of sleep and hours of study for three students, and their test scores.
SLEEP_STUDY_X = ((3.0, 5.0), (5.0, 1.0), (10.0, 2.0))
SLEEP_STUDY_Y = ((75.0,), (82.0,), (93.0,))


def sleep_study(scaled: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The toy data of assignment 01: X (3, 2) = [sleep, study] hours, y (3, 1) = score.

    With ``scaled`` (the default) every column of X is divided by its maximum and y by 100,
    so that all values lie in [0, 1], where a sigmoid output can reach them.
    """
    X = np.array(SLEEP_STUDY_X)
    y = np.array(SLEEP_STUDY_Y)
    if scaled:
        X = X / X.max(axis=0)
        y = y / 100.0
    return X, y
