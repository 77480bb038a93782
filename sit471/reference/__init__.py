"""Reference answers for every graded exercise (graders only; not in the student wheel)."""
