"""The course on a real JupyterHub, end to end in a real browser (Debian's Chromium driven by
Playwright).

The test starts everything itself and stops it again: Unix accounts for an instructor and two
students (marked, and removed afterwards with their homes), nbgrader's exchange and the
server's state in a temporary folder, JupyterHub with configurable-http-proxy on loopback
ports (deploy/jupyterhub, as a course server runs it), each user's JupyterLab as that user.
The journey:

1. the instructor releases 01_backprop to the exchange (and has the instructor tools);
2. student A logs in, sees 01 in the Assignment List, fetches it, types the source's solution
   into every answer cell, presses Validate (success) and submits;
3. student B fetches and submits the untouched release;
4. the TA collects, grades with `sit471 grade` and releases the feedback;
5. A fetches the feedback in the browser and sees full marks; B sees 0 with the reasons.

Screenshots of each step (and the hub's log, the TA's terminal, the feedback as text) go to
$SIT471_SCREENSHOTS, else to sit471-hub-screenshots in the system's temporary folder (printed
at the end); a failure adds what each browser page showed at that moment.

Where the staff venv's interpreter cannot be run by other users (a Python installed under
/root, mode 0700, as on some CI machines), the hub runs in a private mount namespace in which
that folder is an empty tmpfs (mode 0755) holding only the Python installation; the TA's
commands enter the same namespace. Nothing changes outside it. A course server installs the
course into an environment every user can read instead (deploy/jupyterhub/README.md).
"""

from __future__ import annotations

import csv
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from conftest import COURSE, REPO, nbgrader_meta

from autograde.bundle import build_wheel
from autograde.demo import solution_text

sys.path.insert(0, str(REPO / "deploy" / "jupyterhub"))
from course_server import CourseServer, remove_users, setup  # noqa: E402

CHROMIUM = shutil.which("chromium")
NAME = "01_backprop"
INSTRUCTOR, ALICE, BOB = "t471-instr", "t471-alice", "t471-bob"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (Unix accounts, a multi-user hub)"),
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed"),
    pytest.mark.skipif(shutil.which("configurable-http-proxy") is None,
                       reason="configurable-http-proxy (npm) is not installed"),
    pytest.mark.skipif(shutil.which("useradd") is None, reason="no useradd"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="Python playwright not installed")
pytest.importorskip("jupyterhub", reason="jupyterhub not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _hidden_python() -> tuple[Path, Path] | None:
    """Where the staff venv's interpreter lies below a folder other users cannot enter:
    (that folder, its child on the way to the interpreter); None when every user can run it."""
    python = Path(sys.executable).resolve()
    for folder in reversed(python.parents):  # from / down
        if not folder.stat().st_mode & stat.S_IXOTH:
            return folder, folder / python.relative_to(folder).parts[0]
    return None


def _in_namespace(base: Path, command: list[str]) -> list[str]:
    """``command`` in a private mount namespace where the staff Python can be run by the
    hub's users (the module docstring); ``command`` itself when it already can."""
    hidden = _hidden_python()
    if hidden is None:
        return command
    closed, keep = hidden
    hold = base / "python-view"
    hold.mkdir()
    script = (f"mount --bind {keep} {hold} && mount -t tmpfs -o mode=755 tmpfs {closed} && "
              f"mkdir -p {keep} && mount --move {hold} {keep} && exec \"$@\"")
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh",
            *command]


def _student_env(base: Path) -> Path:
    """The students' environment: the student wheel installed by pip into a fresh venv. That
    venv sees the staff venv's other packages (a .pth line, which does not run the staff
    install's own .pth files, so neither sit471.reference nor autograde is importable) and
    gets their Jupyter config and data as pip would have put them there, so that JupyterLab,
    nbgrader and torch need not be installed afresh."""
    staff = Path(sys.prefix)
    env = base / "student-env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    site = env / "lib" / "python3.11" / "site-packages"
    (site / "staff-packages.pth").write_text(f"{staff / 'lib' / 'python3.11' / 'site-packages'}\n")
    shutil.copytree(staff / "etc", env / "etc")
    (env / "share").mkdir()
    for item in (staff / "share").iterdir():
        (env / "share" / item.name).symlink_to(item)
    wheel = build_wheel(REPO, base / "wheel")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(env / "bin" / "python"),
                    "install", "-q", "--no-deps", str(wheel)], check=True, capture_output=True)
    shebang = f"#!{staff}/bin/python".encode()
    for script in (staff / "bin").iterdir():  # jupyterhub-singleuser, jupyter, nbgrader, ...
        target = env / "bin" / script.name
        if script.is_file() and not target.exists():
            with open(script, "rb") as fh:
                if fh.readline().startswith(shebang):
                    target.write_bytes(f"#!{env}/bin/python\n".encode() + fh.read())
                    target.chmod(0o755)
    return env


@dataclass
class Hub:
    url: str
    server: CourseServer
    pid: int  # the hub's process (its mount namespace is the one the users' servers have)
    student_env: Path
    password: str
    shots: Path
    log: Path

    def as_user(self, user: str, command: str, cwd: Path) -> subprocess.CompletedProcess:
        """Run a shell command as ``user`` with the server's environment for their role."""
        role = "instructor" if user == self.server.instructor else "student"
        prefix = sys.prefix if role == "instructor" else self.student_env
        env = {"HOME": str(self.server.homes / user), "USER": user, "LANG": "C.UTF-8",
               "PATH": f"{prefix}/bin:/usr/bin:/bin",
               "JUPYTER_CONFIG_PATH": str(self.server.state / role)}
        entry = pwd.getpwnam(user)
        cmd = ["nsenter", f"--target={self.pid}", "--mount", f"--setuid={entry.pw_uid}",
               f"--setgid={entry.pw_gid}", f"--wd={cwd}", "--", "sh", "-c", command]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)


def _processes_of(users: list[str]) -> list[int]:
    pids = []
    for user in users:
        proc = subprocess.run(["pgrep", "-u", user], capture_output=True, text=True)
        pids += [int(p) for p in proc.stdout.split()]
    return pids


@pytest.fixture(scope="module")
def hub():
    base = Path(tempfile.mkdtemp(prefix="sit471-hub-"))
    base.chmod(0o755)  # the users' homes lie below it
    shots = Path(os.environ.get("SIT471_SCREENSHOTS")
                 or Path(tempfile.gettempdir()) / "sit471-hub-screenshots")
    shutil.rmtree(shots, ignore_errors=True)  # this run's only
    shots.mkdir(parents=True)
    server = CourseServer(state=base / "state", exchange=base / "exchange",
                          instructor=INSTRUCTOR, students=[ALICE, BOB], homes=base / "home")
    remove_users(server.users)  # the marked accounts of an interrupted run
    (base / "home").mkdir()
    password = secrets.token_urlsafe(12)
    proc = None
    try:
        setup(server, password)
        student_env = _student_env(base)
        url = f"http://127.0.0.1:{_free_port()}"
        log = shots / "jupyterhub.log"
        hub_env = {"PATH": f"{sys.prefix}/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
                   "SIT471_HUB_STATE": str(server.state), "SIT471_HUB_URL": url,
                   "SIT471_HUB_API": f"http://127.0.0.1:{_free_port()}",
                   "SIT471_PROXY_API": f"http://127.0.0.1:{_free_port()}",
                   "SIT471_STUDENT_ENV": str(student_env)}
        with open(log, "w") as out:
            proc = subprocess.Popen(
                _in_namespace(base, [str(Path(sys.prefix) / "bin" / "jupyterhub"), "-f",
                              str(REPO / "deploy" / "jupyterhub" / "jupyterhub_config.py")]),
                cwd=server.state / "hub", env=hub_env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/hub/health", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterHub did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield Hub(url, server, proc.pid, student_env, password, shots, log)
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)  # the hub stops the users' servers and the proxy
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # the users' servers and kernels get a moment to finish exiting after the hub
        left, grace = _processes_of(server.users), time.monotonic() + 15
        while left and time.monotonic() < grace:
            time.sleep(0.5)
            left = _processes_of(server.users)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        remove_users(server.users)
        shutil.rmtree(base, ignore_errors=True)
        print(f"\nhub screenshots and log: {shots}")
        assert not left, f"processes left behind by the hub's users: {left}"


def _shot(hub: Hub, page, step: str) -> None:
    page.screenshot(path=str(hub.shots / f"{step}.png"))


def _log_in(hub: Hub, browser, user: str):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(90_000)
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", hub.password)
    page.click("#login_submit")
    page.wait_for_selector(".jp-LabShell", timeout=150_000)  # the user's JupyterLab started
    return page


def _nbgrader_menu(page) -> str:
    page.locator(".lm-MenuBar-item", has_text="Nbgrader").click()
    return page.locator(".lm-Menu").inner_text().lower()


def _assignment_list(page):
    _nbgrader_menu(page)
    page.locator(".lm-Menu-item", has_text="Assignment List").click()
    page.wait_for_selector("#released_assignments_list")
    return page


def _fetch(page) -> None:
    page.locator("#released_assignments_list .list_item", has_text=NAME).get_by_role(
        "button", name="Fetch").click()
    page.locator("#fetched_assignments_list .list_item", has_text=NAME).wait_for()


def _submit(page) -> None:
    page.locator(".lm-TabBar-tab", has_text="Assignments").click()
    page.locator("#fetched_assignments_list .list_item", has_text=NAME).get_by_role(
        "button", name="Submit").first.click()
    page.locator("#submitted_assignments_list .list_item", has_text=NAME).wait_for()


def _type_into(page, index: int, text: str) -> None:
    """Replace code cell ``index``'s text as a student would: arrow keys to the cell (command
    mode), Enter, select all, paste, Escape. JupyterLab renders only the cells in view, so
    the cell is reached by keyboard and checked by its index, not found by DOM order."""
    notebook = page.locator(".jp-NotebookPanel:visible .jp-Notebook")
    active = notebook.locator(".jp-Cell.jp-mod-active")
    last = [line for line in text.splitlines() if line.strip()][-1].strip()
    for _ in range(3):
        page.keyboard.press("Escape")
        current = int(active.get_attribute("data-windowed-list-index"))
        for _ in range(abs(index - current)):
            page.keyboard.press("ArrowDown" if index > current else "ArrowUp")
        if active.get_attribute("data-windowed-list-index") != str(index):
            continue
        page.keyboard.press("Enter")
        editor = active.locator(".cm-content")
        editor.wait_for()
        page.keyboard.press("Control+A")
        page.keyboard.insert_text(text)
        page.keyboard.press("Escape")
        if last in editor.inner_text():
            return
    raise AssertionError(f"could not type into cell {index}: {text[:60]!r}")


def _open_feedback(page) -> str:
    """Fetch the feedback in the Assignment List, follow its link to the feedback folder and
    open the HTML there in JupyterLab's HTML viewer; returns the text the student sees."""
    _assignment_list(page)
    submitted = page.locator("#submitted_assignments_list")
    submitted.get_by_role("button", name="Fetch Feedback").first.click()
    submitted.get_by_text("(view feedback)").first.click()  # the file browser goes there
    page.locator(".jp-DirListing-item", has_text="backprop.html").dblclick()
    body = page.frame_locator(".jp-HTMLViewer:visible iframe").locator("body")
    body.get_by_text("Score").first.wait_for()
    return body.inner_text()


def _save(page, path: Path, answers: dict[int, str], timeout: float = 60.0) -> None:
    """Save the notebook (Ctrl+S) until the file holds ``answers`` {cell index: source}, as a
    student saves again when unsure. The last keystrokes may reach the notebook's model after
    the save has begun, and jupyter_server writes a notebook in place (its "atomic" writing
    keeps a backup copy), so one read may find an older save, or the file empty or cut."""
    deadline = time.monotonic() + timeout
    while True:
        page.keyboard.press("Control+S")
        page.locator(".jp-NotebookPanel:visible .jp-mod-dirty").wait_for(state="detached")
        for _ in range(10):
            try:
                saved = nbformat.read(path, as_version=4)
                got = {i: saved.cells[i].source for i in answers}
            except (nbformat.reader.NotJSONError, ValueError, IndexError):
                got = None
            if got == answers:
                return
            time.sleep(0.3)
        if time.monotonic() > deadline:
            assert got == answers, f"the saved notebook does not hold the typed answers: {got}"


def test_course_journey_on_jupyterhub(hub):
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            _journey(hub, browser)
        except BaseException:
            for k, context in enumerate(browser.contexts):  # what each user saw at the end
                for page in context.pages:
                    _shot(hub, page, f"failed-{k}")
            raise
        finally:
            browser.close()


def _journey(hub: Hub, browser) -> None:
    server = hub.server
    instructor_home = server.homes / INSTRUCTOR
    course = instructor_home / "course"
    source = nbformat.read(next((COURSE / "source" / NAME).glob("*.ipynb")), as_version=4)
    answers = {i: solution_text(c.source) for i, c in enumerate(source.cells)
               if nbgrader_meta(c).get("solution")}
    full = sum(nbgrader_meta(c).get("points", 0) for c in source.cells)
    assert len(answers) == 9 and full == 15

    # 1. The instructor releases 01 to the exchange; their JupyterLab has the tools.
    done = hub.as_user(INSTRUCTOR, f"nbgrader release_assignment {NAME}", cwd=course)
    assert "Released as: sit471 01_backprop" in done.stdout + done.stderr, done.stderr
    teacher = _log_in(hub, browser, INSTRUCTOR)
    menu = _nbgrader_menu(teacher)
    items = {line.strip() for line in menu.splitlines()}
    assert {"formgrader", "create assignment", "course list", "assignment list"} <= items
    _shot(hub, teacher, "1-instructor-lab-with-formgrader")
    teacher.context.close()

    # 2. Student A: Assignment List, fetch, answers typed into the cells, Validate, submit.
    probe = hub.as_user(ALICE, "python -c 'import sit471, importlib.util as u; print("
                        "sit471.__file__, u.find_spec(\"sit471.reference\"), "
                        "u.find_spec(\"autograde\"))'", cwd=server.homes / ALICE)
    assert probe.stdout.split() == [
        str(hub.student_env / "lib" / "python3.11" / "site-packages" / "sit471" / "__init__.py"),
        "None", "None"], probe.stdout + probe.stderr
    alice = _log_in(hub, browser, ALICE)
    menu = _nbgrader_menu(alice)
    assert "assignment list" in menu
    assert not [t for t in ("formgrader", "create assignment", "course list") if t in menu]
    alice.keyboard.press("Escape")
    _assignment_list(alice)
    released = alice.locator("#released_assignments_list .list_item", has_text=NAME)
    assert "sit471" in released.inner_text()
    _shot(hub, alice, "2a-student-a-assignment-list")
    _fetch(alice)
    _shot(hub, alice, "2b-student-a-fetched")
    fetched = alice.locator("#fetched_assignments_list")
    fetched.locator("a.assignment-notebooks-link", has_text=NAME).click()
    fetched.locator(".nested_list_item a", has_text="backprop").click()

    first = alice.locator(".jp-NotebookPanel:visible .jp-Cell[data-windowed-list-index='0']")
    first.click()  # the notebook has the focus, cell 0 is active
    for index, text in answers.items():
        _type_into(alice, index, text)
    _save(alice, server.homes / ALICE / NAME / "backprop.ipynb", answers)
    _shot(hub, alice, "2c-student-a-answers-typed")

    alice.locator(".jp-NotebookPanel:visible .jp-Toolbar").get_by_text("Validate").click()
    dialog = alice.locator(".jp-Dialog")
    dialog.wait_for(timeout=150_000)
    assert "Success! Your notebook passes all the tests." in dialog.inner_text()
    _shot(hub, alice, "2d-student-a-validated")
    dialog.get_by_role("button", name="Ok").click()
    _submit(alice)
    _shot(hub, alice, "2e-student-a-submitted")

    # 3. Student B submits the release untouched.
    bob = _log_in(hub, browser, BOB)
    _assignment_list(bob)
    _fetch(bob)
    _submit(bob)
    _shot(hub, bob, "3-student-b-submitted")

    # 4. The TA collects, grades with `sit471 grade`, releases the feedback.
    grading = instructor_home / "grading"
    steps = [f"nbgrader collect {NAME}",
             f"sit471 grade {NAME} submitted --out {grading} --jobs 2",
             f"nbgrader release_feedback {NAME} --CourseDirectory.root={grading}/nbgrader"]
    for command in steps:
        done = hub.as_user(INSTRUCTOR, command, cwd=course)
        with open(hub.shots / "4-ta-terminal.txt", "a") as transcript:
            transcript.write(f"$ {command}\n{done.stdout}{done.stderr}\n")
        assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
    with open(grading / "grades.csv") as fh:
        scores = {row["student_id"]: float(row["score"]) for row in csv.DictReader(fh)}
    assert scores == {ALICE: full, BOB: 0.0}

    # 5. Feedback in the browser: A has full marks, B has 0 and the reasons.
    def errors(text: str) -> list[str]:  # the error output under each failed test cell
        return [line for line in text.splitlines() if line.startswith("NotImplementedError")]

    tests = [c for c in source.cells if nbgrader_meta(c).get("grade")]
    text = _open_feedback(alice)
    (hub.shots / "5a-student-a-feedback.txt").write_text(text)
    _shot(hub, alice, "5a-student-a-feedback")
    assert f"backprop (Score: {full:.1f} / {full:.1f})" in text, text[:500]
    assert text.count("(Score: 1.0 / 1.0)") + text.count("(Score: 2.0 / 2.0)") == len(tests)
    assert not errors(text)
    text = _open_feedback(bob)
    (hub.shots / "5b-student-b-feedback.txt").write_text(text)
    _shot(hub, bob, "5b-student-b-feedback")
    assert f"backprop (Score: 0.0 / {full:.1f})" in text, text[:500]
    assert len(errors(text)) == len(tests)  # the reason, under every test
