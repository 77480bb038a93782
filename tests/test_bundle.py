"""What students receive outside the hub: `sit471 bundle` (one zip for an LMS), the student
install without the instructor tools, and nbgrader's terminal validator keeping whole
messages with the student configuration."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import nbformat
import numpy as np
import pytest
from conftest import ASSIGNMENTS, COURSE, HIDDEN_MARKER, nbgrader_meta

from autograde import bundle as bundle_module
from autograde.bundle import TOP, bundle, student_config
from autograde.course import CourseError
from autograde.demo import solution_text
from sit471.checks import check_array

# off in a student install: the instructor tools, and the Assignment List (no exchange
# outside the hub; the hub turns it back on, tests/test_hub.py)
OFF_SERVER = ("nbgrader.server_extensions.formgrader", "nbgrader.server_extensions.course_list",
              "nbgrader.server_extensions.assignment_list")
STUDENT_SERVER = ("nbgrader.server_extensions.validate_assignment",)
OFF_LAB = ("@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment",
           "@jupyter/nbgrader:course-list", "@jupyter/nbgrader:assignment-list")


@pytest.fixture(scope="module")
def course_zip(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "sit471-course.zip"
    bundle(COURSE, ASSIGNMENTS, out)
    return out


def _answers(nb: nbformat.NotebookNode) -> list[str]:
    """The source's solution texts, long enough to be told apart from the stubs."""
    texts = [solution_text(c.source) for c in nb.cells if nbgrader_meta(c).get("solution")]
    return [t.strip() for t in texts if len(t.strip()) > 40]


def test_bundle_holds_the_release_the_wheel_and_the_student_config(course_zip):
    archive = zipfile.ZipFile(course_zip)
    names = set(archive.namelist())
    for name in ASSIGNMENTS:
        release = COURSE / "release" / name
        for path in release.rglob("*"):
            if path.is_file():
                member = f"{TOP}/{name}/{path.relative_to(release).as_posix()}"
                assert member in names, f"{member} missing from the bundle"
                assert archive.read(member) == path.read_bytes(), member
    (wheel,) = [n for n in names if n.endswith(".whl")]
    assert {f"{TOP}/README.txt", f"{TOP}/nbgrader_config.py"} <= names
    assert "pip install torch==2.13.0 " + wheel.split("/")[-1] in archive.read(
        f"{TOP}/README.txt").decode()
    assert "c.Validator.width = 500" in archive.read(f"{TOP}/nbgrader_config.py").decode()


def test_bundle_has_no_answer(course_zip, tmp_path):
    archive = zipfile.ZipFile(course_zip)
    names = archive.namelist()
    assert not [n for n in names if "solutions/" in n or "/source/" in n or "autograde" in n]
    (wheel,) = [n for n in names if n.endswith(".whl")]
    (tmp_path / "w.whl").write_bytes(archive.read(wheel))
    in_wheel = zipfile.ZipFile(tmp_path / "w.whl").namelist()
    assert "sit471/checks.py" in in_wheel
    assert not [n for n in in_wheel if "reference" in n or n.startswith("autograde/")]
    for name in ASSIGNMENTS:
        (source,) = (COURSE / "source" / name).glob("*.ipynb")
        text = archive.read(f"{TOP}/{name}/{source.name}").decode()
        assert "### BEGIN SOLUTION" not in text and HIDDEN_MARKER not in text
        answers = _answers(nbformat.read(source, as_version=4))
        assert answers, name
        leaked = [a for a in answers if a in text]
        assert not leaked, f"{name}: answers in the bundle: {leaked[:1]}"


def test_bundle_refuses_a_wheel_with_staff_files(tmp_path, monkeypatch):
    """The check that guards the zip: a build that slipped the reference in is refused."""

    def leaky_build(cmd, **kwargs):
        dest = Path(cmd[cmd.index("-w") + 1])
        with zipfile.ZipFile(dest / "sit471-0.1.0-py3-none-any.whl", "w") as whl:
            whl.writestr("sit471/checks.py", "")
            whl.writestr("sit471/reference/backprop.py", "answers")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(bundle_module.subprocess, "run", leaky_build)
    with pytest.raises(CourseError, match="sit471/reference/backprop.py"):
        bundle(COURSE, ["01_backprop"], tmp_path / "b.zip")
    assert not (tmp_path / "b.zip").exists()
    with pytest.raises(CourseError, match="unknown assignment 99_none"):
        bundle(COURSE, ["99_none"], tmp_path / "b.zip")


def _jupyter_state(python: Path) -> tuple[dict[str, bool], list[str]]:
    """(server extension -> enabled, disabled JupyterLab plugins) as that Python's Jupyter
    computes them (the server's extension manager, the page config JupyterLab serves)."""
    code = (
        "import sys, json\n"
        "from jupyter_server.extension.config import ExtensionConfigManager\n"
        "from jupyter_core.paths import jupyter_config_path\n"
        "from jupyterlab_server.config import get_page_config\n"
        "m = ExtensionConfigManager(read_config_path=jupyter_config_path())\n"
        "page = get_page_config([sys.prefix + '/share/jupyter/labextensions'])\n"
        "print(json.dumps([m.get_jpserver_extensions(), page['disabledExtensions']]))\n"
    )
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True,
                          env={"PATH": str(python.parent), "HOME": str(python.parents[2])})
    server, disabled = json.loads(proc.stdout.strip().splitlines()[-1])
    return server, disabled


def test_student_install_turns_the_instructor_tools_off(course_zip, tmp_path):
    """The bundle's wheel installed with pip into a fresh venv. That venv sees the staff
    venv's packages (a .pth line) and gets their Jupyter config and data as pip would have
    installed them there, so that JupyterLab and nbgrader need not be installed afresh."""
    archive = zipfile.ZipFile(course_zip)
    (wheel,) = [n for n in archive.namelist() if n.endswith(".whl")]
    wheel_file = tmp_path / wheel.split("/")[-1]
    wheel_file.write_bytes(archive.read(wheel))
    venv = tmp_path / "student-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig;"
                              "print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "staff-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    staff_jupyter = Path(sys.prefix)
    (venv / "etc").mkdir()
    subprocess.run(["cp", "-r", str(staff_jupyter / "etc" / "jupyter"), str(venv / "etc")],
                   check=True)
    (venv / "share").mkdir()
    (venv / "share" / "jupyter").symlink_to(staff_jupyter / "share" / "jupyter")

    before, before_lab = _jupyter_state(python)  # the control: nbgrader as it installs itself
    assert all(before[e] for e in OFF_SERVER + STUDENT_SERVER)
    assert not set(OFF_LAB) & set(before_lab)

    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", str(wheel_file)], check=True, capture_output=True)
    after, after_lab = _jupyter_state(python)
    assert not [e for e in OFF_SERVER if after[e]], after
    assert all(after[e] for e in STUDENT_SERVER), after
    assert set(OFF_LAB) <= set(after_lab), after_lab
    assert not [p for p in after_lab if "validate" in p]
    proc = subprocess.run([str(python), "-c", "import sit471, importlib.util as u;"
                           "print(sit471.__file__, u.find_spec('sit471.reference'),"
                           " u.find_spec('autograde'))"],
                          capture_output=True, text=True, check=True, cwd=tmp_path)
    assert proc.stdout.split()[0].startswith(str(venv)) and proc.stdout.split()[1:] == [
        "None", "None"]


LONG_NAME = "sigmoid_prime(z) for the hidden layer's pre-activations"


def _validate_output(folder: Path, config: str | None) -> str:
    """Terminal `nbgrader validate` on a one-test notebook whose check fails at z = 1."""
    nb = nbformat.v4.new_notebook()
    test = nbformat.v4.new_code_cell(
        "import numpy as np\nfrom sit471.checks import check_array\n"
        f"check_array(np.array([0.25, 0.2]), np.array([0.25, 0.19661193324148185]), "
        f"{LONG_NAME!r}, inputs=np.array([0.0, 1.0]), input_name='z')\n"
    )
    test.metadata["nbgrader"] = {"grade": True, "grade_id": "test_sigmoid_prime", "points": 1,
                                 "solution": False, "locked": True, "schema_version": 3}
    nb.cells = [test]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    folder.mkdir()
    nbformat.write(nb, folder / "nb.ipynb")
    if config is not None:
        (folder / "nbgrader_config.py").write_text(config)
    proc = subprocess.run([str(Path(sys.executable).parent / "nbgrader"), "validate",
                           "nb.ipynb"], cwd=folder, capture_output=True, text=True, timeout=120)
    return re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout)


def test_terminal_validate_shows_whole_messages_with_the_student_config(tmp_path):
    try:
        check_array(np.array([0.25, 0.2]), np.array([0.25, 0.19661193324148185]), LONG_NAME,
                    inputs=np.array([0.0, 1.0]), input_name="z")
    except AssertionError as exc:
        message = f"AssertionError: {exc}"
    assert message.endswith("got 0.2, expected 0.1966119332") and len(message) > 90

    whole = _validate_output(tmp_path / "configured", student_config(COURSE))
    assert "The following cell failed" in whole
    assert message in whole

    cut = _validate_output(tmp_path / "default", None)  # nbgrader's default width, 90
    assert "The following cell failed" in cut
    assert message not in cut and message[:60] in cut and "expected 0.19" not in cut
