"""Packaging: conda file in step with pyproject, student wheel without reference answers or
staff tooling, staff install with both, ruff over every Python file."""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from conftest import REPO

from sit471 import command
from sit471.command import NOT_INSTALLED

# pip name -> conda-forge name, where they differ
CONDA_NAMES = {"torch": "pytorch-cpu"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower()


def test_environment_yml_names_every_runtime_dependency():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    conda = {
        _name(line.strip()[2:])
        for line in (REPO / "environment.yml").read_text().splitlines()
        if re.match(r"\s+- [A-Za-z]", line)
    }
    missing = [
        d for d in project["dependencies"] if CONDA_NAMES.get(_name(d), _name(d)) not in conda
    ]
    assert not missing, f"environment.yml lacks {missing}"
    assert "python" in conda
    torch_pin = next(d for d in project["dependencies"] if _name(d) == "torch")
    assert torch_pin == "torch==2.13.0"
    assert "pytorch-cpu=2.13.0" in (REPO / "environment.yml").read_text()


def test_student_wheel_has_library_but_no_reference(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("sit471-*.whl")
    archive = zipfile.ZipFile(wheel)
    names = archive.namelist()
    assert "sit471/checks.py" in names and "sit471/data.py" in names
    assert not [n for n in names if "reference" in n], "reference answers leaked into the wheel"
    assert not [n for n in names if n.startswith("autograde/")], "staff tooling in the wheel"
    assert not [n for n in names if n.startswith(("tests/", "course/", "solutions/"))]
    # every console script points at a module the wheel ships
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    scripts = configparser.ConfigParser()
    scripts.read_string(archive.read(entry_points).decode())
    targets = dict(scripts["console_scripts"])
    assert targets == {"sit471": "sit471.command:run"}
    for target in targets.values():
        assert target.split(":")[0].replace(".", "/") + ".py" in names, target


def test_sit471_command_without_staff_tools_says_so():
    """The student install's `sit471`: one line and status 2, not a traceback."""
    code = (
        "import sys; sys.modules['autograde'] = None\n"
        "from sit471.command import main; sys.exit(main(['release', '--all']))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [NOT_INSTALLED]


def test_sit471_command_runs_the_staff_tools(capsys):
    with pytest.raises(SystemExit) as exit_:
        command.main(["--help"])
    assert exit_.value.code == 0
    assert "release" in capsys.readouterr().out


def test_staff_install_has_reference_and_autograde(tmp_path):
    """The editable install maps both (not just the working directory: -I, run elsewhere)."""
    code = "import autograde.cli, sit471.reference.backprop; print(autograde.__file__)"
    proc = subprocess.run(
        [sys.executable, "-I", "-c", code], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(REPO / "autograde" / "__init__.py")


def test_ruff_lints_the_nbgrader_config_but_not_notebooks():
    ruff = Path(sys.executable).with_name("ruff")
    proc = subprocess.run(
        [str(ruff), "check", "--show-files", "."], cwd=REPO, capture_output=True, text=True
    )
    files = {Path(line).relative_to(REPO).as_posix() for line in proc.stdout.split()}
    assert "course/nbgrader_config.py" in files
    assert "autograde/grade.py" in files
    assert not [f for f in files if f.endswith(".ipynb")]


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    assert "make test" in readme and "make demo" in readme
    assert "make test" in (REPO / ".ci" / "run").read_text()
