"""Start a student's kernel under limits: the last step before the kernel's own code.

Two ways in:

* ``python -m autograde.kernel MB -- KERNEL COMMAND`` (``--no-sandbox``): sets the memory
  limit (address space, MiB) on this process, then the kernel command replaces it;
* ``python -I -S /run/sit471/launch.py --sandbox SETTINGS -- KERNEL COMMAND``: inside the
  bubblewrap sandbox (``autograde/sandbox.py``), where this file is bound alone (the
  ``autograde`` package is not visible there, so it uses the standard library only). It
  copies the read-only submission into the writable working directory (and the grader's
  prepared caches into HOME: matplotlib's font list), sets every limit,
  drops to the unprivileged pool uid when it runs as root, then the kernel replaces it.

Limits: RLIMIT_AS (allocations beyond it raise MemoryError), RLIMIT_NPROC (processes and
threads: fork raises BlockingIOError), RLIMIT_FSIZE (Python ignores SIGXFSZ, so a write
beyond it raises OSError EFBIG), RLIMIT_CPU (a startup file turns the first SIGXCPU into
``CPUTimeLimitError`` in the running cell; the hard limit kills the kernel 10 s later), no
core files. Everything the kernel starts inherits them.
"""

from __future__ import annotations

import json
import os
import resource
import sys

_CPU_HOOK = '''\
import signal as _signal


class CPUTimeLimitError(Exception):
    pass


def _sit471_cpu(signum, frame, _fired=[]):
    # raised in the student's cell (a cell's code object comes from ipykernel's cell files);
    # elsewhere wait for the next SIGXCPU, sent every second until the hard limit
    while frame is not None and not _fired:
        if frame.f_code.co_filename.startswith(("/tmp/ipykernel_", "<ipython-input")):
            _fired.append(1)
            raise CPUTimeLimitError("used more than {cpu} s of CPU time (the limit)")
        frame = frame.f_back


_signal.signal(_signal.SIGXCPU, _sit471_cpu)
del _signal, _sit471_cpu
'''


def _set(limit: int, soft: int, hard: int | None = None) -> None:
    resource.setrlimit(limit, (soft, soft if hard is None else hard))


def sandboxed(settings: dict, cmd: list[str]) -> None:
    import shutil

    limits, uid = settings["limits"], settings["uid"]
    home, workdir = settings["home"], settings["workdir"]
    shutil.copytree(settings["submission"], workdir, symlinks=True, dirs_exist_ok=True)
    for source, dest in settings.get("caches", {}).items():  # prepared by the grader
        shutil.copytree(source, dest, dirs_exist_ok=True)
    startup = os.path.join(home, ".ipython", "profile_default", "startup")
    os.makedirs(startup)
    with open(os.path.join(startup, "00-sit471-limits.py"), "w") as fh:
        fh.write(_CPU_HOOK.format(cpu=limits["cpu_s"]))
    if uid is not None:  # root inside: give the writable places to the pool uid
        for folder, dirs, files in os.walk(home):
            for name in [folder] + [os.path.join(folder, n) for n in dirs + files]:
                os.lchown(name, uid, uid)
    if limits["memory_mb"] > 0:
        _set(resource.RLIMIT_AS, limits["memory_mb"] << 20)
    _set(resource.RLIMIT_NPROC, limits["nproc"])
    _set(resource.RLIMIT_FSIZE, limits["fsize_mb"] << 20)
    _set(resource.RLIMIT_CPU, limits["cpu_s"], limits["cpu_s"] + 10)
    _set(resource.RLIMIT_CORE, 0)
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        if os.getuid() != uid or os.geteuid() != uid:
            sys.exit("sit471 sandbox: could not drop to the sandbox uid")
        try:
            os.setuid(0)
        except PermissionError:
            pass
        else:
            sys.exit("sit471 sandbox: root could be regained")
    os.chdir(workdir)
    os.execvp(cmd[0], cmd)


def main(argv: list[str]) -> None:
    if len(argv) >= 4 and argv[0] == "--sandbox" and argv[2] == "--":
        sandboxed(json.loads(argv[1]), argv[3:])
        return
    if len(argv) < 3 or argv[1] != "--":
        sys.exit("usage: python -m autograde.kernel MEMORY_MB -- KERNEL COMMAND...")
    limit = int(argv[0]) << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    os.execvp(argv[2], argv[2:])


if __name__ == "__main__":
    main(sys.argv[1:])
