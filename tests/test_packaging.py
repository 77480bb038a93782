"""Packaging: conda file in step with pyproject, student wheel without reference answers."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile

from conftest import REPO

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
    names = zipfile.ZipFile(wheel).namelist()
    assert "sit471/checks.py" in names and "sit471/data.py" in names
    assert "autograde/cli.py" in names
    assert not [n for n in names if "reference" in n], "reference answers leaked into the wheel"
    assert not [n for n in names if n.startswith(("tests/", "course/", "solutions/"))]


def test_staff_install_has_reference():
    import sit471.reference.backprop  # noqa: F401


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    assert "make test" in readme and "make demo" in readme
    assert "make test" in (REPO / ".ci" / "run").read_text()
