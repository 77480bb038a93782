"""Two installs from one project (the rest of the configuration is in pyproject.toml).

* ``pip install .`` and ``pip wheel .`` (the student install, ``make student-wheel``): the
  ``sit471`` library only; pyproject's package list leaves out ``sit471/reference`` and
  ``autograde/`` (staff tooling). Each such build starts from an empty ``build/lib``, so a
  copy left there by an earlier build cannot slip into the wheel.
* ``pip install -e .`` (the staff install, ``make setup``): the repository itself, with
  ``sit471.reference`` and ``autograde`` importable. The editable command below adds
  ``autograde`` to the packages the editable install maps; nothing is copied.

The student install also puts ``deploy/student``'s Jupyter configuration under its
environment's ``etc/jupyter`` (nbgrader's formgrader, create-assignment and course list off,
and the assignment list, which needs the hub's exchange: the hub turns it back on); the
staff install leaves it out, so the instructor keeps those tools.
"""

import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

STAFF_PACKAGES = find_packages(include=["autograde", "autograde.*"])
STUDENT_JUPYTER_CONFIG = [
    ("etc/jupyter/jupyter_server_config.d",
     ["deploy/student/jupyter_server_config.d/sit471-student.json"]),
    ("etc/jupyter/labconfig/page_config.d",
     ["deploy/student/labconfig/page_config.d/sit471-student.json"]),
]


class fresh_build_py(build_py):  # noqa: N801 - setuptools' command naming
    def run(self) -> None:
        if not self.editable_mode:
            shutil.rmtree(self.build_lib, ignore_errors=True)
        super().run()


class staff_editable_wheel(editable_wheel):  # noqa: N801
    def run(self) -> None:
        dist = self.distribution
        dist.packages = [*(dist.packages or []), *STAFF_PACKAGES]
        dist.data_files = []  # the instructor keeps formgrader and create-assignment
        super().run()


setup(
    cmdclass={"build_py": fresh_build_py, "editable_wheel": staff_editable_wheel},
    data_files=STUDENT_JUPYTER_CONFIG,
)
