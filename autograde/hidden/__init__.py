"""Grader-side halves of the hidden tests, one module per assignment topic (staff only).

``autograde.hidden.<topic>`` (``backprop`` for ``01_backprop``) defines ``hidden``, an
:class:`autograde.verdict.HiddenTests`: for each hidden test, the inputs of a grading run
and the check of the outputs that the notebook's probe sent back. See ``autograde/verdict.py``.
"""
