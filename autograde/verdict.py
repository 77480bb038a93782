"""The grader's side of every hidden test: inputs chosen per run, verdicts decided here.

A student's kernel can change anything about itself — rebind the check helpers, swallow
exceptions, rewrite later cells before they run — so no point may depend on what it reports
about itself. Each hidden test therefore has two halves:

* in the notebook, a *probe* (``sit471.channel.send(grade_id, probe)``) that runs the
  student's functions on inputs from the grader and sends the outputs back as data;
* in ``autograde/hidden/<topic>.py`` (staff only), the *cases* (inputs for one grading run,
  drawn from a seed the student cannot know) and the *check* (the reference answer and the
  comparison, with messages that name the likely mistake).

While autograding, :class:`autograde.execute.LimitedExecute` writes the cases next to the
submission before the kernel starts and, after the notebook has run, calls :func:`judge`
on it: every test cell with a hidden half gets the grader's verdict as an error output when
its results are wrong, missing ("the test did not run to the end"), sent twice, sent for
another test or unreadable. nbgrader then scores the cell as usual (no error output: full
points), so the gradebook, feedback and exports are unchanged. The results outputs are
removed, so feedback never shows them.

A topic module defines its hidden tests with one registry::

    hidden = HiddenTests()

    @hidden.cases("test_forward")
    def _(rng):                      # -> list of probe keyword arguments
        return [dict(X=..., W1=..., W2=...) for ...]

    @hidden.check("test_forward")
    def _(case, got):                # raise AssertionError with a helpful message
        check_array(got["z2"], ref.forward(**case)[0], "z2")
"""

from __future__ import annotations

import hashlib
import importlib
import secrets
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from nbformat import NotebookNode
from nbformat.v4 import new_output

from sit471.channel import MIME, decode

Case = dict[str, Any]
CaseMaker = Callable[[np.random.Generator], list[Case]]
Checker = Callable[[Case, Any], None]

#: The ename of every verdict the grader writes into a cell.
VERDICT_ERROR = "GraderVerdict"

#: Set by `sit471 grade` in each worker (never in the environment, so no kernel sees it):
#: the secret of this output folder, from which each student's inputs are drawn.
GRADING_SECRET: str | None = None


@dataclass
class HiddenTests:
    """The hidden tests of one assignment: grade id -> (cases, check)."""

    makers: dict[str, CaseMaker] = field(default_factory=dict)
    checkers: dict[str, Checker] = field(default_factory=dict)

    def cases(self, grade_id: str) -> Callable[[CaseMaker], CaseMaker]:
        def register(fn: CaseMaker) -> CaseMaker:
            self.makers[grade_id] = fn
            return fn
        return register

    def check(self, grade_id: str) -> Callable[[Checker], Checker]:
        def register(fn: Checker) -> Checker:
            self.checkers[grade_id] = fn
            return fn
        return register

    @property
    def grade_ids(self) -> list[str]:
        return sorted(self.checkers)

    def make_cases(self, seed: int) -> dict[str, list[Case]]:
        """Inputs for one grading run: each test draws from its own stream of ``seed``."""
        out = {}
        for gid in self.grade_ids:
            digest = hashlib.sha256(f"{seed}:{gid}".encode()).digest()
            rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
            out[gid] = self.makers[gid](rng) if gid in self.makers else [{}]
        return out


def topic_module(assignment: str) -> str:
    """``01_backprop`` -> ``autograde.hidden.backprop``."""
    return "autograde.hidden." + assignment.split("_", 1)[-1]


def hidden_tests(assignment: str) -> HiddenTests | None:
    """The assignment's hidden tests, or None if it has no grader-side half."""
    try:
        module = importlib.import_module(topic_module(assignment))
    except ModuleNotFoundError as exc:
        if exc.name == topic_module(assignment):
            return None
        raise
    return module.hidden


def run_seed(secret: str | None, student: str, notebook: str) -> int:
    """The seed of one student's grading: fixed by the grading secret (so regrading gives
    the same inputs and the same grade), unknowable without it; fresh when there is none."""
    if not secret:
        return secrets.randbits(63)
    digest = hashlib.sha256(f"{secret}:{student}:{notebook}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _verdict(message: str) -> NotebookNode:
    message = message.strip() or "the answer is wrong"
    return new_output("error", ename=VERDICT_ERROR, evalue=message,
                      traceback=[f"{VERDICT_ERROR}: {message}"])


def take_results(cell: NotebookNode) -> list[Any]:
    """Remove the results outputs from ``cell``; return their contents."""
    found, kept = [], []
    for out in cell.get("outputs", []):
        data = out.get("data", {}) if out.get("output_type") in (
            "display_data", "execute_result", "update_display_data") else {}
        if MIME in data:
            found.append(data[MIME])
        else:
            kept.append(out)
    cell["outputs"] = kept
    return found


def judge_cell(grade_id: str, payloads: list[Any], cases: list[Case],
               check: Checker) -> str | None:
    """The grader's verdict on one test cell: None when it passes, else the reason."""
    if not payloads:
        return ("the test did not run to the end: its results never reached the grader "
                "(the cell was changed, skipped, crashed or timed out)")
    if len(payloads) > 1:
        return f"results were sent {len(payloads)} times from this cell; only one is accepted"
    payload = payloads[0]
    if not isinstance(payload, dict) or not isinstance(payload.get("results"), list):
        return "the results sent to the grader could not be read"
    if payload.get("grade_id") != grade_id:
        return (f"results for {str(payload.get('grade_id'))[:40]!r} were sent from this cell; "
                f"{grade_id} expects its own")
    results = payload["results"]
    if len(results) != len(cases):
        return (f"the grader sent {len(cases)} inputs but received {len(results)} results; "
                "results must come from this run's inputs")
    for case, result in zip(cases, results, strict=True):
        if not isinstance(result, dict) or len(result) != 1:
            return "the results sent to the grader could not be read"
        if "error" in result:
            return f"on the grader's inputs your code raised {str(result['error'])[:300]}"
        try:
            got = decode(result.get("ok"))
        except (ValueError, TypeError, KeyError) as exc:
            return f"the results sent to the grader could not be read: {exc}"
        try:
            check(case, got)
        except AssertionError as exc:
            return str(exc) or "the answer is wrong"
        except Exception as exc:  # wrong structure: a tuple too short, a missing key
            return f"the results have the wrong form ({type(exc).__name__}: {exc})"[:300]
    return None


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Checks run on tiny tensors: one thread is far faster than a pool on a busy machine."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def judge(nb: NotebookNode, tests: HiddenTests | None, cases: dict[str, list[Case]]) -> None:
    """Write the grader's verdict into every test cell of ``nb`` that has a hidden half (in
    place); remove every results output. A cell that already shows an error keeps it."""
    with _one_torch_thread():
        _judge(nb, tests, cases)


def _judge(nb: NotebookNode, tests: HiddenTests | None, cases: dict[str, list[Case]]) -> None:
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        payloads = take_results(cell)
        meta = cell.get("metadata", {}).get("nbgrader", {})
        gid = meta.get("grade_id")
        if tests is None or gid not in tests.checkers or not meta.get("grade"):
            continue
        if any(o.get("output_type") == "error" for o in cell.outputs):
            continue
        reason = judge_cell(gid, payloads, cases.get(gid, []), tests.checkers[gid])
        if reason is not None:
            cell.outputs.append(_verdict(reason))


