"""Grader-side halves of the hidden tests, one module per assignment topic (staff only).

``autograde.hidden.<topic>`` (``backprop`` for ``01_backprop``) defines ``hidden``, an
:class:`autograde.verdict.HiddenTests`: for each hidden test, the inputs of a grading run
and the check of the outputs that the notebook's probe sent back. See ``autograde/verdict.py``.
What several topics' checks share is here.
"""

from __future__ import annotations


def not_raised(got: object, where: str) -> None:
    """AssertionError when the probe reports an exception (``got["raised"]``, the exception's
    name, with ``got["message"]``) on an input the reference accepts."""
    if isinstance(got, dict) and got.get("raised") is not None:
        raise AssertionError(f"{where} raised {got['raised']}: {got.get('message', '')}"[:300])
