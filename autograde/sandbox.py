"""The sandbox a student's grading kernel runs in (bubblewrap), built for one kernel.

Why bubblewrap and not ``unshare`` + ``setpriv``: bwrap does in one small, audited program
what the util-linux pair would need a shell script for — a fresh root made only of the
binds we list (``unshare`` keeps the whole host file system and we would have to mount over
every secret), ``--die-with-parent`` (the sandbox dies with the grading worker, however the
worker dies), ``--new-session`` (no TIOCSTI, no signal to our process group), a size-capped
tmpfs, a cleared environment. It is packaged everywhere (Debian ``bubblewrap``, Flatpak's
sandbox) and works both as root and as an ordinary user.

What the kernel sees (everything else does not exist for it):

* the system read-only (/usr, /bin, /lib*, /sbin, /etc), the Python installation
  (``sys.base_prefix``, ``sys.prefix``) read-only, and the ``sit471`` package folder
  read-only at its own path — not the repository (course/source holds hidden tests);
  ``sit471/reference`` is covered by an empty read-only tmpfs unless
  ``LimitedKernelManager.hide_reference`` is off; the ``autograde`` package is never there;
  nor is ``debugpy``, covered so: ipykernel then starts without its debugger, which
  grading never uses (importing it took about 0.06 s of each kernel's start);
* its own PID, network (loopback only, nothing listens), IPC and UTS namespaces;
* ``/run/sit471/submission``: the scratch copy of the submission, read-only; the launcher
  (``autograde/kernel.py``, bound alone at ``/run/sit471/launch.py``) copies it into the
  working directory ``/home/student/work`` (a size-capped tmpfs, also HOME) and starts the
  kernel there; ``/tmp`` is a private size-capped tmpfs;
* its connection sockets (jupyter_client's ``ipc`` transport) in a private directory bound
  read-write at the same path;
* ``/run/sit471/matplotlib``: matplotlib's font list, built once by the grader
  (:func:`matplotlib_cache`), read-only; the launcher copies it into the kernel's own
  MPLCONFIGDIR.

The user: RLIMIT_NPROC does not bind uid 0, even inside a user namespace (the kernel exempts
the initial root user), and a root grader's Python often lives under /root (mode 0700),
which an unprivileged bwrap cannot bind. So:

* grader running as root: bwrap runs privileged (no user namespace); the launcher, still
  root inside, sets the limits, chowns the writable tmpfs to a uid from a pool
  (``UID_BASE + k``) and drops to it (``setgroups([])``, ``setgid``, ``setuid``; bwrap has
  set no_new_privs). Each uid is held with an ``flock`` on a lock file for the kernel's
  life, so two concurrent kernels never share a uid (RLIMIT_NPROC counts per uid);
* grader running as an ordinary user: ``--unshare-user`` (the kernel keeps the grader's uid
  inside a new user namespace); RLIMIT_NPROC set inside it counts per user namespace
  (Linux >= 5.14), so the grader's own processes do not count against the kernel.

Memory is RLIMIT_AS per process. A cgroup v2 memory/pids controller would bound the sandbox
as a whole, but needs a delegated cgroup (systemd) that a TA's laptop or a container often
lacks; RLIMIT_NPROC per uid / user namespace bounds the process count instead.
"""

from __future__ import annotations

import fcntl
import functools
import importlib.metadata
import importlib.util
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

#: first uid of the pool used when the grader is root; the pool never overlaps a real user
UID_BASE = 61000
UID_POOL = 2000
#: one place for every grading run on the machine (not $TMPDIR, which may differ per run)
LOCK_DIR = Path("/run/sit471-uids" if os.access("/run", os.W_OK) else "/tmp/sit471-uids")

HOME = "/home/student"
WORKDIR = HOME + "/work"
SUBMISSION = "/run/sit471/submission"
LAUNCHER = "/run/sit471/launch.py"
#: matplotlib's font list, prepared once (:func:`matplotlib_cache`), bound read-only; the
#: launcher copies it into the kernel's own MPLCONFIGDIR
MPL_CACHE = "/run/sit471/matplotlib"
#: the only variables a kernel gets (SIT471_CASES is rewritten to the copy it can read)
ENV_WHITELIST = ("LANG", "LC_ALL", "NBGRADER_EXECUTION", "NBGRADER_VALIDATING",
                 "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "MPLBACKEND")
NAMESPACES = ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts"]
ADVICE = "pass --no-sandbox to grade without it (student code then runs as you, unconfined)"


@dataclass
class Limits:
    """Per kernel: address space, processes + threads, file size, CPU time, tmpfs sizes."""

    memory_mb: int = 2048
    nproc: int = 256
    fsize_mb: int = 64
    cpu_s: int = 300
    work_mb: int = 256
    tmp_mb: int = 256


@functools.cache
def unavailable_reason() -> str | None:
    """None when a sandbox can be had here, else one line saying why not."""
    if not sys.platform.startswith("linux"):
        return f"the kernel sandbox needs Linux (bubblewrap); this is {sys.platform}"
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return ("bubblewrap (`bwrap`) is not installed (Debian/Ubuntu: "
                "`sudo apt-get install bubblewrap`)")
    user = [] if os.geteuid() == 0 else ["--unshare-user"]
    try:
        probe = subprocess.run(
            [bwrap, *user, *NAMESPACES, "--ro-bind", "/", "/", "--proc", "/proc", "true"],
            capture_output=True, text=True, timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap cannot run: {exc}"
    if probe.returncode != 0:
        why = (probe.stderr.strip().splitlines() or ["no message"])[-1]
        return f"bwrap cannot create namespaces on this machine ({why})"
    return None


class UidLease:
    """An unprivileged uid from the pool, held (flock) until ``release()``.

    A uid is taken only if no lock holder has it, no account uses it and no process runs
    under it (a left-over from a grader that crashed), so concurrent kernels — of this run
    or of another grading run on the machine — never share one.
    """

    def __init__(self) -> None:
        LOCK_DIR.mkdir(mode=0o700, exist_ok=True)
        busy = _uids_with_processes()
        for uid in range(UID_BASE, UID_BASE + UID_POOL):
            if uid in busy or _is_account(uid):
                continue
            fd = os.open(LOCK_DIR / f"{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self.uid, self._fd = uid, fd
            return
        raise RuntimeError(f"no free sandbox uid in {UID_BASE}..{UID_BASE + UID_POOL - 1}")

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _is_account(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def _uids_with_processes() -> set[int]:
    uids = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                uids.add(entry.stat().st_uid)
            except OSError:
                pass
    return uids


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


def build_command(
    kernel_cmd: list[str], *, scratch: str, ipc_dir: str, env: dict[str, str],
    limits: Limits, uid: int | None, hide_reference: bool = True,
) -> list[str]:
    """The bwrap command line that runs ``kernel_cmd`` sandboxed (see the module doc).

    ``uid``: the pool uid the launcher drops to (grader is root), or None for
    ``--unshare-user`` (grader is an ordinary user).
    """
    cmd = [shutil.which("bwrap") or "bwrap", "--die-with-parent", "--new-session", *NAMESPACES,
           "--hostname", "sit471-kernel"]
    if uid is None:
        cmd += ["--unshare-user"]
    # private, size-capped writable places first: binds below may lie under /tmp
    cmd += ["--perms", "1777", "--size", str(limits.tmp_mb << 20), "--tmpfs", "/tmp",
            "--size", str(limits.work_mb << 20), "--tmpfs", HOME]
    head = len(cmd)
    cmd += ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            cmd += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            cmd += ["--ro-bind", top, top]
    cmd += ["--ro-bind", "/etc", "/etc"]
    bound = [Path("/usr")]
    for prefix in (sys.base_prefix, sys.prefix):  # a symlinked prefix: both paths
        for path in dict.fromkeys([Path(prefix).resolve(), Path(prefix).absolute()]):
            if not _inside(path, bound):
                cmd += ["--ro-bind", str(path), str(path)]
                bound.append(path)
    package = _package_dir("sit471")
    if package is not None and not _inside(package, bound):
        cmd += ["--ro-bind", str(package), str(package)]
        bound.append(package)
    hidden = [_package_dir("autograde"), _package_dir("debugpy")]
    if hide_reference and package is not None:
        hidden.append(package / "reference")
    for folder in hidden:
        if folder is not None and folder.is_dir() and _inside(folder, bound):
            cmd += ["--perms", "0555", "--tmpfs", str(folder), "--remount-ro", str(folder)]
    launcher = Path(__file__).with_name("kernel.py")
    cmd += ["--proc", "/proc", "--dev", "/dev",
            "--ro-bind", scratch, SUBMISSION,
            "--ro-bind", str(launcher), LAUNCHER,
            "--bind", ipc_dir, ipc_dir,
            "--chdir", "/"]
    caches = {}
    fonts = matplotlib_cache()
    if fonts is not None:
        cmd[-2:-2] = ["--ro-bind", str(fonts), MPL_CACHE]
        caches[MPL_CACHE] = HOME + "/.config/matplotlib"  # MPLCONFIGDIR (sandbox_env)
    cmd[head:head] = _parent_dirs(cmd[head:])
    cmd += ["--clearenv"]
    for name, value in sandbox_env(env, scratch).items():
        cmd += ["--setenv", name, value]
    settings = {"limits": asdict(limits), "uid": uid, "submission": SUBMISSION,
                "workdir": WORKDIR, "home": HOME, "caches": caches}
    cmd += [sys.executable, "-I", "-S", LAUNCHER, "--sandbox", json.dumps(settings), "--",
            *kernel_cmd]
    return cmd


@functools.cache
def matplotlib_cache() -> Path | None:
    """A folder holding matplotlib's font list, built once per grader user and matplotlib
    version (``~/.cache/sit471/matplotlib-VERSION``), or None (no matplotlib, or it could not
    be built). Each kernel starts with a copy of it: a kernel's MPLCONFIGDIR is a fresh
    folder of its own, where matplotlib would scan the system's fonts again at the first
    import (with fc-list: about 0.2 s of each kernel's start). It is built with an empty
    HOME, as the kernel's is, so that it lists the fonts a kernel can see: the system's and
    matplotlib's.
    """
    try:
        version = importlib.metadata.version("matplotlib")
    except importlib.metadata.PackageNotFoundError:
        return None
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sit471"
    folder = cache / f"matplotlib-{version}"
    if not any(folder.glob("fontlist-*.json")):
        try:
            cache.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=cache) as tmp:
                build, home = Path(tmp, "build"), Path(tmp, "home")
                home.mkdir()
                subprocess.run([sys.executable, "-c", "import matplotlib.font_manager"],
                               env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                    "HOME": str(home), "MPLCONFIGDIR": str(build)},
                               check=True, capture_output=True, timeout=300)
                for path in [build, *build.iterdir()]:
                    os.chmod(path, 0o755 if path.is_dir() else 0o644)
                # onto nothing or an empty folder; where another grader was first, its
                # folder stays (kernels may be binding it) and this one is dropped
                os.rename(build, folder)
        except (OSError, subprocess.SubprocessError):
            pass
    return folder if any(folder.glob("fontlist-*.json")) else None


def _parent_dirs(ops: list[str]) -> list[str]:
    """``--dir`` (mode 0755) for every folder above a mount point: bwrap run as root makes
    missing ones 0700, which the unprivileged kernel could not walk through."""
    made: list[str] = []
    two = {"--ro-bind", "--bind", "--symlink"}
    for k, op in enumerate(ops):
        dest = ops[k + 2] if op in two else ops[k + 1] if op == "--tmpfs" else None
        if dest is None:
            continue
        for parent in reversed(Path(dest).parents):
            if str(parent) not in ("/", "/tmp") and str(parent) not in made:
                made.append(str(parent))
    return [x for d in made for x in ("--perms", "0755", "--dir", d)]


def sandbox_env(env: dict[str, str], scratch: str) -> dict[str, str]:
    """The kernel's whole environment: the whitelist, HOME and caches in its tmpfs."""
    out = {name: env[name] for name in ENV_WHITELIST if name in env}
    out.setdefault("LANG", "C.UTF-8")
    out["PATH"] = f"{Path(sys.prefix) / 'bin'}:/usr/local/bin:/usr/bin:/bin"
    out["HOME"] = HOME
    out["IPYTHONDIR"] = HOME + "/.ipython"
    out["MPLCONFIGDIR"] = HOME + "/.config/matplotlib"
    out["JUPYTER_RUNTIME_DIR"] = HOME + "/.local/share/jupyter/runtime"
    cases = env.get("SIT471_CASES")
    if cases:
        # the grader wrote it into the scratch folder, which the launcher copies to WORKDIR
        rel = os.path.relpath(os.path.realpath(cases), os.path.realpath(scratch))
        if not rel.startswith(".."):
            out["SIT471_CASES"] = f"{WORKDIR}/{rel}"
    return out
