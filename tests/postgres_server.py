"""A throw-away PostgreSQL server for the tests, started and stopped by them.

The server runs from Debian's binaries (package ``postgresql``: ``initdb`` and ``pg_ctl``
in ``/usr/lib/postgresql/<version>/bin``) in a temporary folder, listening on loopback
only, with trust authentication for local users. PostgreSQL refuses to run as root: as
root the server runs as the unprivileged ``postgres`` user (made by the Debian package),
else as the current user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

PACKAGE_HINT = ("PostgreSQL's server binaries (initdb, pg_ctl) were not found: install "
                "Debian's package `postgresql` (sudo apt-get install postgresql), as .ci/run does")


def find_bin() -> Path | None:
    """The folder with initdb and pg_ctl: Debian's newest version, else on PATH."""
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if versions:
        return Path(versions[-1]).parent
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``start()`` a server on 127.0.0.1; ``database()`` a new empty database's URL."""

    def __init__(self) -> None:
        self.bin = find_bin()
        self.folder: Path | None = None
        self.port = _free_port()
        self.user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name

    def _run(self, *cmd: str) -> subprocess.CompletedProcess:
        if os.geteuid() == 0:  # the server refuses root: run as the postgres user
            entry = pwd.getpwnam(self.user)
            cmd = ("setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}",
                   "--clear-groups", *cmd)
        return subprocess.run(cmd, capture_output=True, text=True, check=False)

    def start(self) -> None:
        if self.bin is None:
            raise RuntimeError(PACKAGE_HINT)
        # not under pytest's own temp folder: that one is private to its owner
        self.folder = Path(tempfile.mkdtemp(prefix="sit471-pg-"))
        if os.geteuid() == 0:
            entry = pwd.getpwnam(self.user)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        data = self.folder / "data"
        init = self._run(str(self.bin / "initdb"), "-D", str(data), "-U", self.user,
                         "--auth=trust", "-E", "UTF8", "--no-sync")
        if init.returncode:
            raise RuntimeError(f"initdb failed: {init.stderr.strip()}")
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder} "
                   "-c fsync=off -c synchronous_commit=off -c max_connections=300")
        started = self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-l",
                            str(self.folder / "server.log"), "-o", options, "-w", "start")
        if started.returncode:
            log = (self.folder / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"pg_ctl start failed: {started.stderr.strip()}\n{log}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def database(self) -> str:
        """A new, empty database on this server; returns its SQLAlchemy URL."""
        import psycopg2

        name = f"gradebook_{uuid.uuid4().hex[:12]}"
        conn = psycopg2.connect(self.url())
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name}")
        conn.close()
        return self.url(name)

    def stop(self) -> None:
        if self.folder is None:
            return
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate",
                  "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = None
