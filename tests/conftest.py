"""Shared paths and helpers for the test suite."""

from __future__ import annotations

import atexit
import json
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest
from filelock import FileLock
from nbclient import NotebookClient

from autograde.execute import CASES_FILE
from autograde.kernels import PromptKernelManager
from autograde.verdict import hidden_tests, judge, judge_cell, take_results
from sit471.channel import CASES_ENV, write_cases

# One math thread per process, in the test workers and every kernel they start, as grading
# workers have it (autograde/kernels.py worker_setup): `make test` runs two workers on two
# cores, and a second torch thread per process only spins (04's student run alone took 69
# CPU-seconds with two threads for the same 40 s it takes with one).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

REPO = Path(__file__).resolve().parents[1]
COURSE = REPO / "course"
ASSIGNMENTS = sorted(p.name for p in (COURSE / "source").iterdir() if p.is_dir())
SOURCE_NOTEBOOKS = sorted((COURSE / "source").glob("*/*.ipynb"))
HIDDEN_MARKER = "### BEGIN HIDDEN TESTS"


def nbgrader_meta(cell: nbformat.NotebookNode) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def kernel_env(grading: bool = True, cases: Path | None = None) -> dict[str, str]:
    """The environment a notebook's kernel starts with, as autograding (or a student) has it."""
    env = {k: v for k, v in os.environ.items() if k not in ("NBGRADER_EXECUTION", CASES_ENV)}
    if grading:
        env["NBGRADER_EXECUTION"] = "autograde"
    if cases is not None:
        env[CASES_ENV] = str(cases)
    return env


def hidden_cases(assignment: str, folder: Path, seed: int = 12345):
    """Write the grader's inputs for ``assignment`` into ``folder`` as autograding does.

    Returns (hidden tests, cases, path), or (None, {}, None) when it has no hidden tests."""
    tests = hidden_tests(assignment)
    if tests is None:
        return None, {}, None
    cases = tests.make_cases(seed)
    path = folder / CASES_FILE
    write_cases(path, cases)
    return tests, cases, path


def execute(
    nb: nbformat.NotebookNode, cwd: Path, grading: bool = True, allow_errors: bool = False,
    judge_as: str | None = None, timeout: int = 60,
) -> nbformat.NotebookNode:
    """Run a notebook top to bottom in a fresh kernel, as nbgrader does (in place); a cell
    running longer than ``timeout`` seconds fails.

    With ``judge_as`` (an assignment name) the grader's inputs are given to the kernel and
    the grader's verdicts written into the test cells afterwards, as in autograding."""
    tests, cases, path = hidden_cases(judge_as, cwd) if judge_as else (None, {}, None)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        kernel_manager_class=PromptKernelManager,  # as grading's: no 0.2 s wait at start
        allow_errors=allow_errors,
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute(env=kernel_env(grading, path))
    if judge_as:
        judge(nb, tests, cases)
    return nb


def assert_quoted(notebook: Path, table: str, min_rows: int = 1) -> None:
    """Every row of the markdown ``table`` (its header left out) stands in ``notebook``'s
    text, and it has at least ``min_rows`` rows: a notebook quotes its cached results."""
    text = "\n".join(c.source for c in nbformat.read(notebook, as_version=4).cells)
    rows = [r for r in table.splitlines() if r.startswith("| ")][1:]
    assert len(rows) >= min_rows, f"{len(rows)} rows, expected at least {min_rows}"
    for row in rows:
        assert row in text, f"the notebook does not quote the cached result {row}"


def errors(cell: nbformat.NotebookNode) -> list[str]:
    return [
        f"{o['ename']}: {o['evalue']}"
        for o in cell.get("outputs", [])
        if o.get("output_type") == "error"
    ]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


# The slowest single tests: they start first, so that no worker is left running one of them
# alone at the end of a parallel run (pytest -n 2).
SLOW_FIRST = ("tests/test_notebooks.py::test_source_notebook_runs_and_passes_every_test",
              "tests/test_hub.py::")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Under ``make test`` (``pytest -n 2 --dist loadgroup``): the tests of a module that read
    a module- or session-scoped fixture of that module form one group (the module's path),
    and tests with an ``xdist_group`` mark form that group; a group runs on one worker, so
    that its fixture is computed once and no worker waits for another's. The slowest tests
    start first."""
    groups = {}
    for item in items:
        mark = item.get_closest_marker("xdist_group")
        if mark:
            groups[item.nodeid] = mark.args[0]
            continue
        for name in item.fixturenames:
            defs = item._fixtureinfo.name2fixturedefs.get(name) or ()
            if defs and defs[-1].scope != "function" and defs[-1].baseid.endswith(".py"):
                groups[item.nodeid] = defs[-1].baseid
                break
    items.sort(key=lambda item: not item.nodeid.startswith(SLOW_FIRST))
    worker = getattr(config, "workerinput", {}).get("workerid")
    if worker and config.getvalue("loadgroup"):  # for the controller's scheduler, below
        _groups_file(Path(config.option.basetemp).parent, worker).write_text(json.dumps(groups))


def _groups_file(base: Path, worker: str) -> Path:
    return base / f"xdist-groups-{worker}.json"


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist's loadgroup scheduling, with the groups the workers wrote at collection.
    (xdist 3.8 marks a group by renaming the test's node id, which pytest 9 no longer allows:
    its own loadgroup runs every test on whichever worker is free.)"""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    base = config._tmp_path_factory.getbasetemp()

    class GroupScheduling(LoadScopeScheduling):
        groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:  # every worker has finished collecting by now
                self.groups = {}
                for path in base.glob(_groups_file(Path(), "*").name):
                    self.groups.update(json.loads(path.read_text()))
            return self.groups.get(nodeid, nodeid)

    return GroupScheduling(config, log)


_POOL: list = []


def grading_pool():
    """One pool of two grading workers for the batches of well-behaved submissions a test
    process grades in itself (the demo's, tests/test_grading.py's, PostgreSQL's), as
    `sit471 demo` grades every assignment with one pool: a pool of each batch's own started
    two workers again, about 3-4 CPU-seconds of imports and warm-up per batch. The batches
    that attack the grader (hostile, sandbox, verdicts) keep pools of their own."""
    if not _POOL:
        from autograde.workers import start_pool

        pool = start_pool(2)
        atexit.register(lambda: (pool.stop(), pool.join()))
        _POOL.append(pool)
    return _POOL[0]


def shared(tmp_path_factory, name: str, compute: Callable[[Path], object]) -> object:
    """Compute an expensive result once per test session, even across xdist workers.

    ``compute(folder)`` runs in the first worker that asks; the others wait for it and
    read its pickled result. (A session-scoped fixture alone would run once per worker.)
    """
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    target = root / f"{name}.pickle"
    with FileLock(str(target) + ".lock"):
        if target.is_file():
            return pickle.loads(target.read_bytes())
        result = compute(root / name)
        target.write_bytes(pickle.dumps(result))
        return result


class MistakeKernel:
    """One kernel that has run a source notebook up to its last graded test.

    A common mistake is tried by redefining an answer with the mistake in it, running the
    test cell that must catch it (visible tests in the kernel, then the grader's verdict on
    the hidden results), then redefining the answer correctly again. Later answers look
    functions up by name, so they use the mistaken version too, as in a student's notebook.
    Much faster than one fresh kernel per mistake.
    """

    def __init__(self, client: NotebookClient, cells: dict[str, nbformat.NotebookNode],
                 tests=None, cases=None):
        self.client, self.cells = client, cells
        self.tests, self.cases = tests, cases or {}

    def run(self, source: str, grade_id: str | None = None) -> list[str]:
        """Errors of ``source`` run as a cell; as test ``grade_id``, with the grader's verdict."""
        cell = nbformat.v4.new_code_cell(source)
        self.client.execute_cell(cell, 0)
        found = errors(cell)
        payloads = take_results(cell)
        if found or self.tests is None or grade_id not in self.tests.checkers:
            return found
        reason = judge_cell(grade_id, payloads, self.cases.get(grade_id, []),
                            self.tests.checkers[grade_id])
        return [] if reason is None else [f"GraderVerdict: {reason}"]

    def half(self, test_id: str, which: str) -> str:
        """The "visible" or "hidden" half of a test cell (split at its hidden-tests marker)."""
        visible, _, hidden = self.cells[test_id].source.partition(HIDDEN_MARKER)
        return {"visible": visible, "hidden": HIDDEN_MARKER + hidden}[which]

    def run_with_mistake(self, mistake: tuple, source: str, test_id: str | None) -> list[str]:
        """Errors of ``source`` (run as test ``test_id``) while the answer has the mistake
        (answer id, correct text, mistaken text, ...); the correct answer is restored after."""
        from autograde.demo import solution_text

        grade_id, old, new = mistake[:3]
        answer = solution_text(self.cells[grade_id].source)
        assert answer.count(old) == 1, (grade_id, old)
        assert not self.run(answer.replace(old, new))
        try:
            return self.run(source, test_id)
        finally:
            assert not self.run(answer)  # the correct answer again, for the next mistake

    def failing_tests(self, mistake: tuple, test_ids: list[str]) -> dict[str, str]:
        """{test id: its first error} of the tests in ``test_ids`` (whole cells, run in that
        order, with the grader's verdicts) that fail while the answer has the mistake."""
        from autograde.demo import solution_text

        grade_id, old, new = mistake[:3]
        answer = solution_text(self.cells[grade_id].source)
        assert answer.count(old) == 1, (grade_id, old)
        assert not self.run(answer.replace(old, new))
        try:
            found = {test_id: self.run(self.cells[test_id].source, test_id) for test_id in test_ids}
        finally:
            assert not self.run(answer)
        return {test_id: errs[0] for test_id, errs in found.items() if errs}

    def check_mistake(self, mistake: tuple[str, str, str, str, str], part: str = "all") -> str:
        """(answer id, correct text, mistaken text, test id, message regex) -> the message.

        ``part``: run the whole test cell, or only its "hidden" half (as a kernel that skips
        its visible tests would; the message must then be the grader's verdict)."""
        import re

        grade_id, _, new, test_id, message = mistake
        source = self.cells[test_id].source if part == "all" else self.half(test_id, part)
        found = self.run_with_mistake(mistake, source, test_id)
        assert found, f"{test_id} passed although {grade_id} has the mistake {new!r}"
        if part == "hidden":
            assert found[0].startswith("GraderVerdict: "), found[0]
        assert re.search(message, found[0], re.S), found[0]
        return found[0]


def mistake_kernel(notebook: Path, last_test: str, skipped: set[str], tmp: Path):
    """Context manager: a MistakeKernel over ``notebook`` (run in a copy of its folder, as
    autograding runs it, with the grader's inputs for the hidden tests), with the cells in
    ``skipped`` (figures, explorations) left out."""
    import contextlib
    import shutil

    @contextlib.contextmanager
    def manager():
        folder = tmp / notebook.parent.name
        shutil.copytree(notebook.parent, folder, dirs_exist_ok=True)
        tests, cases, path = hidden_cases(notebook.parent.name, folder)
        nb = nbformat.read(notebook, as_version=4)
        ids = [nbgrader_meta(c).get("grade_id", "") for c in nb.cells]
        cells = dict(zip(ids, nb.cells, strict=True))
        nb.cells = [c for c, gid in zip(nb.cells[: ids.index(last_test) + 1], ids, strict=False)
                    if c.cell_type == "code" and gid not in skipped]
        client = NotebookClient(nb, timeout=60, kernel_name="python3", allow_errors=True,
                                kernel_manager_class=PromptKernelManager,
                                resources={"metadata": {"path": str(folder)}})
        kernel = MistakeKernel(client, cells, tests, cases)
        with client.setup_kernel(env=kernel_env(True, path)):
            for cell in nb.cells:
                gid = nbgrader_meta(cell).get("grade_id")
                found = kernel.run(cell.source, gid)
                assert not found, (gid, found)
            yield kernel

    return manager()


def mistake_tests(notebook: Path, mistakes: list[tuple], grader_only: list[tuple] = (),
                  grader_alone: bool = True) -> dict[str, Callable]:
    """The common-mistake tests of one assignment, from its table: one set of tests for every
    notebook. In a test module::

        globals().update(mistake_tests(NOTEBOOK, MISTAKES_08, GRADER_ONLY_08))

    They use the module's ``kernel`` fixture (a :class:`MistakeKernel`). ``mistakes``: every
    (answer id, correct text, mistaken text, test id, message regex) that the test cell must
    catch with that message; ``grader_only``: those of them the visible tests let through
    (the grader's verdict catches them); ``grader_alone``: also check that the hidden half
    alone fails on every mistake (a kernel that skips the visible tests gains nothing).
    """
    ids = [f"{m[0]}-{i}" for i, m in enumerate(mistakes)]
    tests: dict[str, Callable] = {}

    @pytest.mark.parametrize("mistake", mistakes, ids=ids)
    def test_catches_common_mistakes(kernel, mistake):
        print(f"{mistake[0]} with {mistake[2]!r} -> {kernel.check_mistake(mistake)}")

    tests["test_catches_common_mistakes"] = test_catches_common_mistakes

    if grader_only:
        @pytest.mark.parametrize("mistake", grader_only, ids=[m[0] for m in grader_only])
        def test_grader_only_mistakes_pass_the_visible_tests(kernel, mistake):
            """The visible tests alone let these through; the grader's verdict catches them."""
            assert not kernel.run_with_mistake(mistake, kernel.half(mistake[3], "visible"),
                                               None), (
                f"the visible tests of {mistake[3]} catch this mistake already")
            assert kernel.check_mistake(mistake).startswith("GraderVerdict: ")

        tests["test_grader_only_mistakes_pass_the_visible_tests"] = (
            test_grader_only_mistakes_pass_the_visible_tests)

    if grader_alone:
        @pytest.mark.parametrize("mistake", mistakes, ids=ids)
        def test_the_grader_alone_catches_every_mistake(kernel, mistake):
            found = kernel.run_with_mistake(mistake, kernel.half(mistake[3], "hidden"),
                                            mistake[3])
            assert found and found[0].startswith("GraderVerdict: "), (mistake, found)
            print(f"{mistake[0]} with {mistake[2]!r} -> {found[0]}")

        tests["test_the_grader_alone_catches_every_mistake"] = (
            test_the_grader_alone_catches_every_mistake)

    def test_every_test_passes_again_after_the_mistakes(kernel):
        for test_id in sorted({m[3] for m in mistakes}):
            assert not kernel.run(kernel.cells[test_id].source, test_id), test_id

    def test_mistake_table_covers_every_exercise():
        nb = nbformat.read(notebook, as_version=4)
        answers = {nbgrader_meta(c).get("grade_id") for c in nb.cells
                   if nbgrader_meta(c).get("solution") and c.cell_type == "code"}
        assert answers == {m[0] for m in mistakes}

    tests["test_every_test_passes_again_after_the_mistakes"] = (
        test_every_test_passes_again_after_the_mistakes)
    tests["test_mistake_table_covers_every_exercise"] = test_mistake_table_covers_every_exercise
    return tests
