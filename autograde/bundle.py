"""`sit471 bundle NAME...`: one zip for an LMS with everything a student needs and no answer.

Layout of the zip (one top folder, so that unzipping makes one folder)::

    sit471-course/README.txt                   how to install and work (below: README)
    sit471-course/nbgrader_config.py           the student nbgrader settings (validator width)
    sit471-course/sit471-VERSION-py3-none-any.whl   the student wheel: sit471 without
                                               sit471/reference, no autograde; installs the
                                               Jupyter config that turns instructor tools off
    sit471-course/NAME/...                     course/release/NAME: notebooks and data files

The student configuration is made from the course's own ``nbgrader_config.py`` (the single
source of settings): the settings a student's nbgrader uses (``Validator``, the course id)
are copied from it, nothing else (the grading settings import ``autograde``, which a student
does not have). The hub (deploy/jupyterhub) uses the same text, plus the exchange.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from autograde.course import CourseError, assignments, load_config

TOP = "sit471-course"
#: The project the student wheel is built from (the repository this module lies in).
REPO = Path(__file__).resolve().parents[1]
#: Paths a student must never receive (checked in the wheel and in the notebook folders).
FORBIDDEN = ("sit471/reference", "autograde/", "solutions/", "source/")
#: The nbgrader settings a student's install uses: (section, trait).
STUDENT_TRAITS = [("CourseDirectory", "course_id"), ("Validator", "width")]

README = """\
SIT471 - Statistical Methods in AI: Transfer Learning and the Landscape of CNNs

What is here: the course library (a wheel: no answers in it), the assignments {names}
and nbgrader_config.py (settings for nbgrader validate).

1. Install, once (Python 3.11):
       python3.11 -m venv .venv
       .venv/bin/pip install torch==2.13.0 {wheel}
   (Windows: .venv\\Scripts\\pip). JupyterLab and nbgrader come with it; the instructor
   tools (formgrader, create assignment) and the Assignment List (it needs the course's
   JupyterHub) are off in this install.
2. Start JupyterLab in this folder: .venv/bin/jupyter lab
3. Open an assignment's notebook, replace each `raise NotImplementedError()` with your code;
   the cell after each exercise runs the visible tests.
4. Before you submit, validate (from this folder, so that nbgrader_config.py is read):
       .venv/bin/nbgrader validate 01_backprop/backprop.ipynb
   or press Validate in the notebook's toolbar. Submit the .ipynb file to the LMS.
"""


def student_config(course_root: Path, exchange: Path | None = None) -> str:
    """The text of the nbgrader_config.py a student receives, from the course's config.

    ``exchange``: nbgrader's exchange folder on a JupyterHub (none for an LMS bundle).
    """
    config = load_config(course_root)
    lines = [
        '"""nbgrader settings for SIT471 students (made by `sit471 bundle` from the course\'s',
        'nbgrader_config.py; edit that file, not this one)."""',
        "",
        "c = get_config()  # noqa: F821 - provided by nbgrader when it loads this file",
        "",
    ]
    for section, trait in STUDENT_TRAITS:
        if trait in config.get(section, {}):
            lines.append(f"c.{section}.{trait} = {config[section][trait]!r}")
    if exchange is not None:
        lines.append(f"c.Exchange.root = {str(exchange)!r}")
    return "\n".join(lines) + "\n"


def build_wheel(repo: Path, dest: Path) -> Path:
    """The student wheel (``pip wheel .``, as `make student-wheel`), checked for answers."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(dest), str(repo)],
        capture_output=True, text=True,
    )
    wheels = sorted(dest.glob("sit471-*.whl"))
    if proc.returncode or len(wheels) != 1:
        raise CourseError(f"the student wheel could not be built: {proc.stderr.strip()[-500:]}")
    names = zipfile.ZipFile(wheels[0]).namelist()
    leaked = [n for n in names if n.startswith(FORBIDDEN)]
    if leaked:
        raise CourseError(f"the student wheel holds staff files: {', '.join(leaked[:5])}")
    return wheels[0]


def bundle(course_root: Path, names: list[str], out: Path) -> list[str]:
    """Write the zip ``out`` for ``names`` (assignments); returns the paths it holds.

    The notebooks are the committed release copies (``sit471 release`` makes them): no
    solution, no hidden test.
    """
    known = assignments(course_root)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise CourseError(f"unknown assignment {', '.join(unknown)} (known: {', '.join(known)})")
    missing = [n for n in names if not any((course_root / "release" / n).glob("*.ipynb"))]
    if missing:
        raise CourseError(f"not released yet (run `sit471 release`): {', '.join(missing)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = build_wheel(REPO, Path(tmp))
        partial = out.with_name(out.name + ".partial")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(f"{TOP}/README.txt",
                             README.format(names=", ".join(names), wheel=wheel.name))
            archive.writestr(f"{TOP}/nbgrader_config.py", student_config(course_root))
            archive.write(wheel, f"{TOP}/{wheel.name}")
            for name in names:
                release = course_root / "release" / name
                for path in sorted(release.rglob("*")):
                    rel = path.relative_to(release)
                    if path.is_file() and not any(p.startswith(".") for p in rel.parts):
                        archive.write(path, f"{TOP}/{name}/{rel.as_posix()}")
            held = archive.namelist()
        partial.replace(out)
    return held
