"""Attacks on the grader, the gradebook and the machine from a student's kernel: each fails
inside the sandbox (autograde/sandbox.py), costs only its author, with a clear reason, and
leaves nothing behind. One batch of assignment 01, graded once."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import COURSE, shared

from autograde import sandbox
from autograde.cli import main as cli
from autograde.course import CourseError
from autograde.demo import write_submissions
from autograde.grade import grade

NAME = "01_backprop"
NOTEBOOK = "backprop.ipynb"
LIMITS = """
c.Execute.timeout = 10
c.LimitedExecute.notebook_timeout = 60
"""
MARK = "600.4711"  # the detached process's argument: found in /proc if it survived
FORKS = 10_000
SECRET = "sit471-test-secret-never-in-a-kernel"


def _append(grade_id: str, code: str):
    def change(nb):
        cell = next(c for c in nb["cells"]
                    if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id)
        cell["source"] = "".join(cell["source"]) + "\n" + code

    return change


def _hostile(gradebook: Path, canary: Path, root: Path, port: int) -> dict:
    return {
        "killparent": _append("cost", "import os\nos.kill(os.getppid(), 9)"),
        "killgroup": _append("cost", "import os\nos.killpg(os.getpgid(0), 9)"),
        "detached": _append(
            "cost", f"import subprocess\nsubprocess.Popen(['sleep', '{MARK}'], "
            "start_new_session=True)"),
        # every process's working directory, then the gradebook's absolute path; writes
        # only below this test's folder, so that the attack cannot hurt anyone else when the
        # sandbox is turned off to check this test
        "gradebook": _append("cost", f"""
import glob, os
found = [p for cwd in glob.glob('/proc/*/cwd') for p in
         glob.glob(cwd + '/canary.txt') + glob.glob(cwd + '/gradebook.db')
         + glob.glob(cwd + '/../*/*/gradebook.db')]
for p in found + [{str(gradebook)!r}, {str(canary)!r}]:
    if os.path.realpath(p).startswith({str(root)!r}):
        try:
            open(p, 'w').write('gone')
        except OSError:
            pass
print('reached', len(found))"""),
        "network": _append(
            "cost", f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=3)"),
        "bigfile": _append("cost", "with open('big.bin', 'wb') as f:\n"
                           "    for _ in range(1536):\n        f.write(bytes(1 << 20))"),
        "forkbomb": _append("cost", f"import os, time\nfor _ in range({FORKS}):\n"
                            "    if os.fork() == 0:\n        time.sleep(60)\n        os._exit(0)"),
        # what the kernel can see: printed into its notebook, checked below
        "snoop": _append("cost", f"""
import os, importlib.util
print(json_out := __import__('json').dumps({{
    'env': sorted(os.environ), 'uid': os.getuid(),
    'gradebook': os.path.exists({str(gradebook)!r}),
    'course': os.path.exists({str(COURSE / "source")!r}),
    'repo': sorted(os.listdir({str(COURSE.parent)!r})),
    'reference': os.listdir({str(COURSE.parent / "sit471" / "reference")!r}),
    'autograde': importlib.util.find_spec('autograde') is not None,
    'debugger': importlib.util.find_spec('debugpy.server') is not None,
    'tmp': sorted(os.listdir('/tmp')),
}}))"""),
    }


def _leftovers(marker: str) -> list[str]:
    """Processes of the batch still running: the detached one, or any whose command line
    names this batch's temporary folder (every kernel's connection file lies in it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if MARK in cmdline or marker in cmdline:
                found.append(f"{entry.name}: {cmdline[:200]}")
    return found


def _grade_batch(tmp: Path):
    course = tmp / "course"
    shutil.copytree(COURSE / "source", course / "source")
    (course / "nbgrader_config.py").write_text((COURSE / "nbgrader_config.py").read_text()
                                               + LIMITS)
    out = tmp / "out"
    gradebook = out / "nbgrader" / "gradebook.db"
    cwd = tmp / "grader-cwd"
    cwd.mkdir(parents=True)
    canary = cwd / "canary.txt"
    canary.write_text("canary")
    kernels_tmp = tmp / "kernels-tmp"  # TMPDIR of the workers: scratch and socket folders
    kernels_tmp.mkdir()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    subs = tmp / "subs"
    write_submissions(COURSE, NAME, subs)
    reference = json.loads((subs / "reference" / NOTEBOOK).read_text())
    hostile = _hostile(gradebook, canary, tmp, listener.getsockname()[1])
    for student, change in hostile.items():
        nb = json.loads(json.dumps(reference))
        change(nb)
        (subs / student).mkdir()
        (subs / student / NOTEBOOK).write_text(json.dumps(nb))
    shutil.copytree(subs / "reference", subs / "reference2")
    for variant in ("blank", "partial", "broken"):
        shutil.rmtree(subs / variant)

    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    os.environ.update(TMPDIR=str(kernels_tmp), SIT471_GRADING_SECRET=SECRET)
    os.chdir(cwd)
    try:
        report = grade(course, NAME, subs, out, jobs=2, progress=False)
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    deadline = time.monotonic() + 10
    while (left := _leftovers(str(kernels_tmp))) and time.monotonic() < deadline:
        time.sleep(0.5)
    try:
        listener.accept()
        connected = True
    except BlockingIOError:
        connected = False
    listener.close()
    with sqlite3.connect(gradebook) as db:
        graded = sorted(r[0] for r in db.execute("select student_id from submitted_assignment"))
    db.close()
    snoop = out / "nbgrader" / "autograded" / "snoop" / NAME / NOTEBOOK
    texts = ["".join(o["text"]) for c in json.loads(snoop.read_text())["cells"]
             for o in c.get("outputs", []) if o.get("name") == "stdout"]
    seen = next(json.loads(t) for t in texts if t.startswith('{"env"'))
    return {
        "students": {s.student: s for s in report.students},
        "leftovers": left,
        "connected": connected,
        "graded": graded,
        "canary": canary.read_text(),
        "seen": seen,
        "report": (out / f"report-{NAME}.txt").read_text(),
    }


@pytest.fixture(scope="session")
def batch(tmp_path_factory):
    return shared(tmp_path_factory, "sandbox", _grade_batch)


def _has(lines, text):
    return any(text in line for line in lines)


def test_every_student_is_graded_and_the_correct_ones_keep_full_marks(batch):
    students = batch["students"]
    assert sorted(students) == batch["graded"]
    assert students["reference"].score == students["reference2"].score == 15
    assert students["reference"].reasons == students["reference2"].reasons == []
    for s in students.values():
        assert not _has(s.reasons, "grading failed"), (s.student, s.reasons)


def test_killing_the_parent_only_fails_in_the_cell(batch):
    s = batch["students"]["killparent"]
    assert s.score == 15  # `cost` was defined before the attack
    assert _has(s.reasons, "cell cost: PermissionError")


def test_killing_the_process_group_reaches_only_the_own_sandbox(batch):
    s = batch["students"]["killgroup"]
    assert s.points["test_sigmoid"] == 1 and s.points["test_forward"] == 2
    # the sandbox's session has its own process group: the kernel either kills itself
    # (and is restarted) or finds no such group; the grader's group is out of reach
    assert _has(s.reasons, "cell cost: DeadKernelError: the kernel died") or _has(
        s.reasons, "cell cost: ProcessLookupError")


def test_no_process_of_the_batch_remains(batch):
    assert batch["students"]["detached"].score == 15
    assert batch["leftovers"] == []


def test_the_gradebook_and_the_graders_files_are_out_of_reach(batch):
    assert batch["students"]["gradebook"].score == 15
    assert batch["canary"] == "canary"
    assert batch["graded"]  # the gradebook opened and lists the batch
    seen = batch["seen"]
    assert not seen["gradebook"] and not seen["course"] and not seen["autograde"]
    assert not seen["debugger"], "ipykernel's debugger (debugpy) should not be importable"
    # from the repository: the package folder and the Python environment only
    assert "sit471" in seen["repo"] and set(seen["repo"]) <= {"sit471", ".venv"}
    assert seen["reference"] == []  # hidden: an empty folder
    assert not any(name.startswith("sit471-") for name in seen["tmp"])  # a private /tmp


def test_the_kernel_runs_unprivileged(batch):
    seen = batch["seen"]
    if os.geteuid() == 0:
        assert sandbox.UID_BASE <= seen["uid"] < sandbox.UID_BASE + sandbox.UID_POOL
    else:
        assert seen["uid"] == os.geteuid()  # in its own user namespace


def test_the_kernel_gets_no_secret_from_the_environment(batch):
    seen = batch["seen"]
    assert not any(name.startswith("SIT471_") and name != "SIT471_CASES"
                   for name in seen["env"])
    assert SECRET not in json.dumps(seen)


def test_there_is_no_network(batch):
    s = batch["students"]["network"]
    assert not batch["connected"]
    assert _has(s.reasons, "cell cost: tried to use the network (grading has none)")


def test_a_huge_file_stops_at_the_file_size_limit(batch):
    s = batch["students"]["bigfile"]
    assert s.score == 15
    assert _has(s.reasons, "cell cost: wrote a file larger than 64 MiB (the limit)")


def test_a_fork_bomb_stops_at_the_process_limit(batch):
    s = batch["students"]["forkbomb"]
    assert s.points["test_sigmoid"] == 1
    assert _has(s.reasons, "cell cost: started more than 256 processes or threads (the limit)")
    assert "started more than 256 processes" in batch["report"]


def test_grading_refuses_without_bubblewrap(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on it
    sandbox.unavailable_reason.cache_clear()
    try:
        with pytest.raises(CourseError, match="--no-sandbox"):
            grade(COURSE, NAME, tmp_path, tmp_path / "out", progress=False)
        assert cli(["--course", str(COURSE), "grade", NAME, str(tmp_path),
                    "--out", str(tmp_path / "out")]) == 2
    finally:
        sandbox.unavailable_reason.cache_clear()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bwrap" in err and "--no-sandbox" in err
    assert not (tmp_path / "out").exists()


def test_no_sandbox_grades_as_before_and_a_dead_worker_costs_only_its_student(tmp_path,
                                                                             capsys):
    """Unconfined, a kernel can kill its grading worker: the pool replaces the worker, the
    student is tried once more, then gets 0 with the reason; the others keep their grades."""
    subs = tmp_path / "subs"
    write_submissions(COURSE, NAME, subs)
    for variant in ("blank", "partial", "broken"):
        shutil.rmtree(subs / variant)
    nb = json.loads((subs / "reference" / NOTEBOOK).read_text())
    _append("cost", "import os\nos.kill(os.getppid(), 9)")(nb)
    (subs / "killer").mkdir()
    (subs / "killer" / NOTEBOOK).write_text(json.dumps(nb))
    assert cli(["--course", str(COURSE), "grade", NAME, str(subs), "--out",
                str(tmp_path / "out"), "--jobs", "2", "--no-sandbox"]) == 0
    captured = capsys.readouterr()
    assert "--no-sandbox: student code runs unconfined" in captured.err
    report = (tmp_path / "out" / f"report-{NAME}.txt").read_text()
    assert "reference: 15 / 15" in report
    assert "killer: 0 / 15" in report
    assert "grading failed: the grading process failed twice (the worker died: killed by " \
        "signal 9)" in report


def test_a_kernel_starts_with_matplotlib_s_font_list_and_uses_it(tmp_path):
    """The grader's prepared font list is in the kernel's own MPLCONFIGDIR before matplotlib
    is first imported there, and matplotlib takes it as it is (it scans the system's fonts
    only when it finds none: 0.1-0.2 s of every kernel's start)."""
    fonts = sandbox.matplotlib_cache()
    assert fonts is not None, "matplotlib's font list could not be prepared"
    code = (
        "import glob, logging, os, sys\n"
        "folder = os.environ['MPLCONFIGDIR']\n"
        "before = {p: open(p).read() for p in glob.glob(folder + '/fontlist-*.json')}\n"
        "logging.basicConfig(level=logging.INFO, stream=sys.stdout)\n"
        "import matplotlib.font_manager as fm\n"
        "after = {p: open(p).read() for p in glob.glob(folder + '/fontlist-*.json')}\n"
        "path = fm.findfont('DejaVu Sans', fallback_to_default=False)\n"
        "print('SAME' if before and before == after else 'CHANGED', len(before),\n"
        "      os.path.isfile(path), os.access(folder, os.W_OK))\n"
    )
    scratch, ipc = tmp_path / "scratch", tmp_path / "ipc"
    scratch.mkdir()
    ipc.mkdir()
    lease = sandbox.UidLease() if os.geteuid() == 0 else None
    try:
        cmd = sandbox.build_command(
            [sys.executable, "-c", code], scratch=str(scratch), ipc_dir=str(ipc), env={},
            limits=sandbox.Limits(), uid=lease.uid if lease else None)
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    finally:
        if lease:
            lease.release()
    assert run.returncode == 0, run.stderr
    assert "generated new fontManager" not in run.stdout + run.stderr
    assert run.stdout.split()[-4:] == ["SAME", "1", "True", "True"], run.stdout + run.stderr
