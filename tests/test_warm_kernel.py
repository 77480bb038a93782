"""Grading's fast paths keep grading's meaning: warm kernels (autograde/kernels.py), the
gradebook's creation without a subprocess (autograde/course.py) and feedback templates
compiled once (autograde/feedback.py).

A warm kernel is started before its submission is known. These tests check that it behaves
as a fresh kernel would for the notebook (no preloaded name, the submission's files there,
the grader's inputs found), that one of other settings is never used, and that none is left
behind. Each runs a kernel or two through ``LimitedExecute`` directly, with and without the
sandbox.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import nbformat
import pytest
from conftest import COURSE
from nbformat.v4 import new_code_cell, new_notebook
from traitlets.config import Config

from autograde import kernels, sandbox
from autograde.course import alembic_head, load_config, make_work_root
from autograde.execute import LimitedExecute, prestart_kernel
from autograde.workers import start_pool

NAME = "01_backprop"
MODES = [pytest.param(True, id="sandbox"), pytest.param(False, id="no-sandbox")]


@pytest.fixture(params=MODES)
def mode(request, monkeypatch):
    if request.param and sandbox.unavailable_reason():
        pytest.skip(sandbox.unavailable_reason())
    monkeypatch.setitem(kernels.SANDBOX, "on", request.param)
    yield request.param
    kernels.discard()


def _executor(**limits) -> LimitedExecute:
    config = Config()
    config.Execute.timeout = 30
    for trait, value in limits.items():
        setattr(config.LimitedKernelManager, trait, value)
    return LimitedExecute(config=config)


def _notebook(*sources: str) -> nbformat.NotebookNode:
    nb = new_notebook(cells=[new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    return nb


def _warm(executor: LimitedExecute, nb, preload: list[str]) -> kernels.WarmKernel:
    env = {**os.environ, "NBGRADER_EXECUTION": "autograde"}
    kernels.prestart(executor.kernel_manager_for(nb), preload, env, executor.kernel_arguments())
    return kernels._warm[0]


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def _errors(cell) -> list[str]:
    return [o.ename for o in cell.outputs if o.output_type == "error"]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_a_warm_kernel_is_used_and_its_preloads_bind_no_name(mode, tmp_path):
    nb = _notebook(
        "import sys\nprint('numpy' in sys.modules, 'numpy' in dir(), 'np' in dir(),"
        " [n for n in dir() if 'sit471' in n])",
        "np.zeros(1)",  # a notebook that forgot `import numpy as np` fails as in a fresh kernel
        "import numpy as np, os\nprint(np.zeros(2).sum(), os.environ.get('SIT471_CASES'))",
    )
    executor = _executor()
    warm = _warm(executor, nb, ["numpy"])
    used = []
    take = kernels.take
    kernels.take = lambda *key: used.append(take(*key)) or used[-1]
    try:
        executor.preprocess(nb, {"metadata": {"path": str(tmp_path)}})
    finally:
        kernels.take = take
    assert used == [warm]
    assert _text(nb.cells[0]).split() == ["True", "False", "False", "[]"]
    assert _errors(nb.cells[1]) == ["NameError"]
    assert _text(nb.cells[2]).split() == ["0.0", "None"]  # no hidden tests: no cases file
    assert not kernels._warm and not Path(warm.folder).exists()


def test_the_submission_files_and_the_cases_reach_the_warm_kernel(mode, tmp_path):
    (tmp_path / "data.txt").write_text("forty-two")
    (tmp_path / "helper.py").write_text("X = 42\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep.txt").write_text("deep")
    os.chmod(tmp_path / "data.txt", 0o600)  # the kernel's uid must still read it
    nb = _notebook(
        "import helper, os\nprint(open('data.txt').read(), helper.X, open('sub/deep.txt').read())",
        "import json\nprint('test_sigmoid' in json.load(open(os.environ['SIT471_CASES'])),"
        " os.environ['NBGRADER_EXECUTION'])",
        "open('written.txt', 'w').write('x')",
    )
    executor = _executor()
    warm = _warm(executor, nb, ["numpy"])
    resources = {"metadata": {"path": str(tmp_path)},
                 "nbgrader": {"assignment": NAME, "student": "s", "notebook": "backprop"}}
    executor.preprocess(nb, resources)
    assert _text(nb.cells[0]).split() == ["forty-two", "42", "deep"]
    assert _text(nb.cells[1]).split() == ["True", "autograde"], nb.cells[1].outputs
    assert not _errors(nb.cells[2])
    assert not (tmp_path / "written.txt").exists()  # the grading tree is untouched
    assert not Path(warm.folder).exists()


def test_a_warm_kernel_of_other_settings_is_shut_down_not_used(mode, tmp_path):
    nb = _notebook("import resource\nprint(resource.getrlimit(resource.RLIMIT_AS)[0] >> 20)")
    warm = _warm(_executor(memory_limit_mb=1024), nb, [])
    pid = warm.km.provisioner.process.pid
    _executor(memory_limit_mb=1536).preprocess(nb, {"metadata": {"path": str(tmp_path)}})
    assert _text(nb.cells[0]).strip() == "1536"
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid) and not kernels._warm


def test_a_warm_kernel_for_the_course_fits_its_grading(tmp_path):
    """The kernel a worker starts ahead has the settings grading then asks for (else it
    would be shut down unused every time, and grading would lose its head start)."""
    if sandbox.unavailable_reason():
        pytest.skip(sandbox.unavailable_reason())
    work = make_work_root(COURSE, tmp_path / "work", NAME)
    for start in (prestart_kernel, kernels.prestart_for):  # with the course's settings, and
        try:                                              # with the defaults, before imports
            start(work, NAME)
            notebook = next((work / "source" / NAME).glob("*.ipynb"))
            nb = nbformat.read(notebook, as_version=4)
            executor = LimitedExecute(config=load_config(work))
            key = executor.kernel_manager_for(nb).settings_key()
            warm = kernels.take(key, executor.kernel_arguments())
            assert warm is not None, start
            warm.shutdown()
        finally:
            kernels.discard()


def test_a_grading_worker_leaves_no_warm_kernel_behind():
    if sandbox.unavailable_reason():
        pytest.skip(sandbox.unavailable_reason())

    def warm_processes() -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    cmdline = (entry / "cmdline").read_bytes()
                except OSError:
                    continue
                if b"sit471-warm-" in cmdline and _alive(int(entry.name)):
                    found.append(int(entry.name))
        return found

    before = set(warm_processes())
    pool = start_pool(1, warm=(COURSE, NAME, True))
    deadline = time.monotonic() + 60
    while not set(warm_processes()) - before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert set(warm_processes()) - before, "the worker started no kernel ahead"
    pool.close()
    pool.join()
    deadline = time.monotonic() + 15
    while set(warm_processes()) - before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not set(warm_processes()) - before


def test_preloaded_modules_are_the_notebooks_top_level_imports(tmp_path):
    nb = _notebook("import numpy as np\nimport matplotlib.pyplot as plt, os",
                   "from sit471.checks import check_array\nfrom . import x\nimport helper",
                   "def f():\n    import torch\n", "%matplotlib inline\nimport scipy")
    (tmp_path / "a.ipynb").write_text(json.dumps(nb))
    (tmp_path / "helper.py").write_text("")
    assert kernels.preload_modules([tmp_path / "a.ipynb"]) == [
        "numpy", "matplotlib.pyplot", "os", "sit471.checks"]


def test_the_gradebook_is_stamped_with_the_revision_nbgrader_finds_itself():
    from nbgrader.dbutil import _temp_alembic_ini

    with _temp_alembic_ini("sqlite:///unused.db") as ini:  # what nbgrader's own code runs
        heads = subprocess.check_output(["alembic", "-c", ini, "heads"], text=True)
    assert alembic_head() == heads.split()[0]


def test_the_feedback_exporter_writes_what_nbconvert_writes_and_compiles_once(monkeypatch):
    from nbconvert.exporters import HTMLExporter

    from autograde import feedback

    nb = _notebook("print('hello')", "x = 1")
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="hello\n")]
    monkeypatch.setattr(feedback, "TEMPLATES", feedback._MemoryBytecodeCache())
    compiled = []
    monkeypatch.setattr(feedback.TEMPLATES, "dump_bytecode",
                        lambda bucket, dump=feedback.TEMPLATES.dump_bytecode:
                        compiled.append(bucket.key) or dump(bucket))
    monkeypatch.setattr(feedback, "HIGHLIGHTED", {})
    highlighted = []
    monkeypatch.setattr(feedback.Highlight2HTML, "__call__",
                        lambda self, source, call=feedback.Highlight2HTML.__call__, **kw:
                        highlighted.append(source) or call(self, source, **kw))
    plain, _ = HTMLExporter().from_notebook_node(nb)
    highlighted.clear()
    first, _ = feedback.FeedbackExporter().from_notebook_node(nb)
    n, cells = len(compiled), sorted(highlighted)
    again, _ = feedback.FeedbackExporter().from_notebook_node(nb)
    assert first == plain == again
    assert n > 0 and len(compiled) == n  # the second exporter compiled nothing
    assert cells == ["print('hello')", "x = 1"] and sorted(highlighted) == cells  # nor highlighted


def test_the_feedback_warm_up_compiles_the_pages_templates_and_writes_nothing(tmp_path):
    """A worker's feedback warm-up (autograde/feedback.py) renders the source notebook in
    memory with the course's feedback template: the template's compiled code is then kept
    for the students' pages, and nothing is written into the course."""
    from autograde import feedback

    course = tmp_path / "course"
    make_work_root(COURSE, course, NAME)
    before = sorted(p.relative_to(course) for p in course.rglob("*"))
    feedback.TEMPLATES.store.clear()
    feedback.warm_up_in_background(course, NAME)
    feedback.wait_for_warm_up()
    # the feedback page's templates: nbgrader's index, nbconvert's base, null, display_priority...
    assert len(feedback.TEMPLATES.store) >= 5, "the warm-up compiled no template"
    assert sorted(p.relative_to(course) for p in course.rglob("*")) == before
    feedback.wait_for_warm_up()  # none left: returns at once
