"""Set up (and take down) a SIT471 course server for deploy/jupyterhub/jupyterhub_config.py.

Run as root, with the course's Python (the staff install of this repository):

    python deploy/jupyterhub/course_server.py setup --instructor ta1 --students s1 s2 s3
    python deploy/jupyterhub/course_server.py teardown --remove-users   # what setup made

``setup`` makes (defaults in brackets):

* the Unix accounts that do not exist yet (``useradd -m``; ``--password`` sets one password
  for the new accounts, else set them with ``passwd``; accounts made here are marked
  ``sit471 course server`` in their GECOS field, and only those are ever removed);
* the exchange [/srv/nbgrader/exchange]: mode 0777 as nbgrader requires, with the course's
  folder ``sit471/`` made and owned by the instructor (mode 0755), so that no student can
  take the course id; nbgrader itself makes ``outbound`` (0755), ``inbound`` (2733: students
  can write, not list) and ``feedback`` (0755, files named by a hash of each submission);
* the instructor's course folder [~INSTRUCTOR/course]: a copy of this repository's
  ``course/`` (source, release, nbgrader_config.py), owned by the instructor;
* the state folder [/srv/sit471] that jupyterhub_config.py reads: ``roster.json``,
  ``student/`` (the student Jupyter config with the Assignment List on, and the student
  nbgrader_config.py made from the course's, plus the exchange), ``instructor/`` (the
  exchange and the course folder), ``hub/``.
"""

from __future__ import annotations

import argparse
import json
import pwd
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from autograde.bundle import student_config  # noqa: E402 - after the repository is on the path

MARK = "sit471 course server"
COURSE_ID = "sit471"
#: A student's Jupyter on the hub: deploy/student's settings (the student wheel's), with the
#: Assignment List on (the hub has an exchange). First on JUPYTER_CONFIG_PATH, so it wins.
HUB_STUDENT_JUPYTER = {
    "jupyter_server_config.d/sit471-hub-student.json": {"ServerApp": {"jpserver_extensions": {
        "nbgrader.server_extensions.formgrader": False,
        "nbgrader.server_extensions.course_list": False,
        "nbgrader.server_extensions.assignment_list": True,
        "nbgrader.server_extensions.validate_assignment": True,
    }}},
    "labconfig/page_config.d/sit471-hub-student.json": {"disabledExtensions": {
        "@jupyter/nbgrader:formgrader": True,
        "@jupyter/nbgrader:create-assignment": True,
        "@jupyter/nbgrader:course-list": True,
        "@jupyter/nbgrader:assignment-list": False,
    }},
}


@dataclass
class CourseServer:
    state: Path = Path("/srv/sit471")
    exchange: Path = Path("/srv/nbgrader/exchange")
    instructor: str = "instructor"
    students: list[str] = field(default_factory=list)
    homes: Path | None = None  # where new accounts' homes go (None: useradd's default)

    @property
    def users(self) -> list[str]:
        return [self.instructor, *self.students]

    def course_dir(self) -> Path:
        return Path(pwd.getpwnam(self.instructor).pw_dir) / "course"


def _chown(path: Path, user: str) -> None:
    subprocess.run(["chown", "-R", f"{user}:{user}", str(path)], check=True)


def create_users(server: CourseServer, password: str | None = None) -> list[str]:
    """Make the accounts that do not exist yet; returns their names."""
    made = []
    for user in server.users:
        try:
            pwd.getpwnam(user)
            continue
        except KeyError:
            pass
        cmd = ["useradd", "--create-home", "--shell", "/bin/bash", "--comment", MARK]
        if server.homes is not None:
            cmd += ["--home-dir", str(server.homes / user)]
        subprocess.run([*cmd, user], check=True, capture_output=True)
        made.append(user)
    if password is not None and made:
        subprocess.run(["chpasswd"], input="".join(f"{u}:{password}\n" for u in made),
                       text=True, check=True)
    return made


def setup(server: CourseServer, password: str | None = None) -> None:
    create_users(server, password)
    course = REPO / "course"

    server.exchange.mkdir(parents=True, exist_ok=True)
    server.exchange.chmod(0o777)  # nbgrader checks for exactly this mode
    (server.exchange / COURSE_ID).mkdir(exist_ok=True)
    (server.exchange / COURSE_ID).chmod(0o755)
    _chown(server.exchange / COURSE_ID, server.instructor)

    dest = server.course_dir()
    if not dest.exists():
        shutil.copytree(course, dest, ignore=shutil.ignore_patterns("__pycache__", ".*"))
        _chown(dest, server.instructor)

    for role in ("student", "instructor", "hub"):
        (server.state / role).mkdir(parents=True, exist_ok=True)
    server.state.chmod(0o755)
    (server.state / "hub").chmod(0o700)
    for name, text in HUB_STUDENT_JUPYTER.items():
        path = server.state / "student" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(text, indent=2) + "\n")
    (server.state / "student" / "nbgrader_config.py").write_text(
        student_config(course, exchange=server.exchange))
    (server.state / "instructor" / "nbgrader_config.py").write_text(
        '"""nbgrader settings for the instructor\'s server (course_server.py setup)."""\n\n'
        "c = get_config()  # noqa: F821\n\n"
        f"c.CourseDirectory.course_id = {COURSE_ID!r}\n"
        f"c.CourseDirectory.root = {str(dest)!r}\n"
        f"c.Exchange.root = {str(server.exchange)!r}\n"
    )
    for path in (server.state / "student", server.state / "instructor"):
        subprocess.run(["chmod", "-R", "a+rX", str(path)], check=True)
    (server.state / "roster.json").write_text(
        json.dumps({"instructor": server.instructor, "students": server.students}, indent=1))


def remove_users(names: list[str]) -> list[str]:
    """Remove the accounts among ``names`` that setup made (and their homes)."""
    removed = []
    for user in names:
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            continue
        if entry.pw_gecos != MARK:
            continue  # an account this script did not make is never touched
        subprocess.run(["userdel", "--remove", user], capture_output=True)
        shutil.rmtree(entry.pw_dir, ignore_errors=True)
        removed.append(user)
    return removed


def teardown(server: CourseServer, users: bool = False) -> None:
    """Remove the state folder (and, with ``users``, the accounts setup made)."""
    if users:
        remove_users(server.users)
    shutil.rmtree(server.state, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=["setup", "teardown"])
    p.add_argument("--state", type=Path, default=CourseServer.state)
    p.add_argument("--exchange", type=Path, default=CourseServer.exchange)
    p.add_argument("--instructor", default=CourseServer.instructor)
    p.add_argument("--students", nargs="*", default=None)
    p.add_argument("--password", default=None, help="password of the accounts made now")
    p.add_argument("--remove-users", action="store_true", help="teardown: the accounts too")
    args = p.parse_args(argv)
    if args.students is None and (args.state / "roster.json").is_file():
        roster = json.loads((args.state / "roster.json").read_text())
        args.students = roster["students"]
    server = CourseServer(args.state, args.exchange, args.instructor, args.students or [])
    if args.command == "setup":
        setup(server, args.password)
        print(f"course server ready: state {server.state}, exchange {server.exchange}, "
              f"course {server.course_dir()}; start it with\n"
              f"  SIT471_HUB_STATE={server.state} jupyterhub -f {Path(__file__).parent}/"
              "jupyterhub_config.py")
    else:
        teardown(server, args.remove_users)
    return 0


if __name__ == "__main__":
    sys.exit(main())
