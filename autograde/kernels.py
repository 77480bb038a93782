"""The student's kernel: started under limits, in the sandbox, and ahead of time.

:class:`LimitedKernelManager` starts a kernel in the bubblewrap sandbox
(``autograde/sandbox.py``) with the limits of ``autograde/kernel.py``.

A *warm kernel* is one such kernel started before its submission is known, so that its
start-up (about a second: bubblewrap, Python, ipykernel) and the imports the assignment's
notebooks begin with (NumPy, matplotlib, torch: up to several seconds) overlap other work —
the grading worker's own imports, the previous student's feedback. Each grading worker holds
at most one (:func:`prestart`, :func:`take`):

* it is started with an empty folder of its own as the submission folder (bound read-only in
  the sandbox as usual); when a student's turn comes, their files are copied into that folder
  and the kernel copies them into its working directory before the first cell runs
  (:data:`DELIVER`). The working directory, its uid, its limits and its namespaces are its
  own, as for any kernel; nothing of it is shared with another student's kernel;
* its preloaded modules are imported by a start-up file (:data:`PRELOAD`) that binds no name
  in the notebook's namespace: a notebook that forgets an import still fails as it would in a
  fresh kernel; only the time of the import is saved;
* it is used only if its settings (sandbox, limits, kernel) are those the course asks for
  now, and is shut down with the worker otherwise (``--die-with-parent`` in the sandbox,
  ipykernel's parent poller without it).
"""

from __future__ import annotations

import ast
import asyncio
import functools
import json
import math
import os
import shutil
import sys
import tempfile
import time
from multiprocessing.util import Finalize
from pathlib import Path
from queue import Empty

import zmq
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync
from traitlets import Bool, DottedObjectName, Integer, Type

from autograde import sandbox
from sit471.channel import CASES_ENV

#: Name of the grader's file of inputs in the kernel's working directory.
CASES_FILE = ".sit471-cases.json"

#: ``grade(..., sandbox=False)`` (``sit471 grade --no-sandbox``) turns this off in its workers
SANDBOX = {"on": True}

#: Run by the warm kernel at start-up (``--IPKernelApp.exec_files``), in the notebook's
#: namespace: imports the modules, then removes every name it made.
PRELOAD = """\
def _sit471_preload(names):
    import importlib
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:
            pass


_sit471_preload({names!r})
del _sit471_preload
"""

#: Sent to a warm kernel (silently: no output, no history, no execution count) before the
#: first cell: the submission's files into the working directory, fresh import caches so
#: that the student's own modules among them are found, and no cases file named when this
#: run has none (as a kernel started for the submission would have it).
DELIVER = """\
def _sit471_deliver(source):
    import importlib
    import os
    import shutil
    if source != os.getcwd():
        shutil.copytree(source, os.getcwd(), symlinks=True, dirs_exist_ok=True)
    importlib.invalidate_caches()
    if not os.path.isfile(os.environ.get("SIT471_CASES", "")):
        os.environ.pop("SIT471_CASES", None)


_sit471_deliver({source!r})
del _sit471_deliver
"""


class PromptKernelClient(AsyncKernelClient):
    """jupyter_client's asynchronous client, ready as soon as its kernel answers.

    jupyter_client's ``wait_for_ready`` ends by reading IOPub until it has been quiet for
    0.2 s: every kernel start (one per submission) waited 0.2 s with nothing to do. This one
    ends by dropping only the IOPub messages already received. A status message of the
    handshake that comes later changes nothing: nbclient reads only the IOPub messages that
    answer its own requests.
    """

    async def wait_for_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (math.inf if timeout is None else timeout)
        while True:
            self.kernel_info()
            try:
                reply = await self.shell_channel.get_msg(timeout=1)
            except Empty:
                reply = None
            if reply is not None and reply["msg_type"] == "kernel_info_reply":
                try:  # IOPub is connected once one of its messages (the welcome) arrives
                    await self.iopub_channel.get_msg(timeout=0.2)
                except Empty:
                    pass
                else:
                    self._handle_kernel_info_reply(reply)
                    break
            if not await self._async_is_alive():  # jupyter_client's messages, word for word
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {int(timeout)} seconds")
        while True:  # the messages already there, without waiting for more
            try:
                await self.iopub_channel.get_msg(timeout=0)
            except Empty:
                return


class PromptKernelManager(AsyncKernelManager):
    """jupyter_client's asynchronous kernel manager with :class:`PromptKernelClient`, and a
    stop that ends as soon as the kernel process has.

    Two waits of jupyter_client's made every stop (one per submission) take 0.11 s, idle,
    for a kernel that is gone within milliseconds of its kill:

    * it checks whether the process has ended every 0.1 s, the first check after the first
      sleep; this one checks after 1 ms, then twice as long each time, up to 0.1 s;
    * it sends an interrupt on the control socket before the kill, and when the kernel dies
      before reading it, closing the socket waits 0.1 s (its linger) to deliver it. The
      socket is closed only once the kernel is gone, so there is no one to deliver to: this
      one closes it without waiting.
    """

    client_class = DottedObjectName("autograde.kernels.PromptKernelClient")
    client_factory = Type(klass=PromptKernelClient)

    async def _async_wait(self, pollinterval: float = 0.1) -> None:
        delay = 0.001
        while await self._async_is_alive():
            await asyncio.sleep(delay)
            delay = min(2 * delay, pollinterval)

    def _close_control_socket(self) -> None:
        if self._control_socket is not None:
            self._control_socket.close(linger=0)
            self._control_socket = None


class LimitedKernelManager(PromptKernelManager):
    """Starts the kernel in the bubblewrap sandbox (``autograde/sandbox.py``) under limits.

    The kernel talks to us over unix sockets (``ipc`` transport) in a private directory,
    the only host folder it may write; ``autograde/kernel.py`` applies the limits inside.
    Without the sandbox (``--no-sandbox``) only the memory limit applies, as before.
    """

    memory_limit_mb = Integer(2048, help="address-space limit of the kernel (0: none)").tag(
        config=True
    )
    nproc_limit = Integer(256, help="processes + threads the kernel may run").tag(config=True)
    fsize_limit_mb = Integer(64, help="largest file the kernel may write (MiB)").tag(config=True)
    cpu_limit_s = Integer(300, help="CPU seconds per kernel process").tag(config=True)
    work_size_mb = Integer(256, help="size of the writable working directory (MiB)").tag(
        config=True
    )
    tmp_size_mb = Integer(256, help="size of the kernel's private /tmp (MiB)").tag(config=True)
    hide_reference = Bool(True, help="sit471/reference invisible in the sandbox").tag(
        config=True
    )
    warm_kernels = Bool(True, help="start each grading worker's next kernel ahead of time "
                        "(autograde/kernels.py)").tag(config=True)

    def limits(self) -> sandbox.Limits:
        return sandbox.Limits(self.memory_limit_mb, self.nproc_limit, self.fsize_limit_mb,
                              self.cpu_limit_s, self.work_size_mb, self.tmp_size_mb)

    def settings_key(self) -> tuple:
        """What a warm kernel must share with the kernel asked for to stand in for it."""
        return (SANDBOX["on"], self.limits(), self.hide_reference, self.kernel_name)

    #: set on a warm kernel before it starts: the start-up code of :data:`PRELOAD`
    preload_script: str | None = None

    async def _async_pre_start_kernel(self, **kw):
        if self.preload_script and not SANDBOX["on"]:
            self._release_sandbox()
            self._ipc_dir = tempfile.mkdtemp(prefix="sit471-ipc-")  # for the script only
        if SANDBOX["on"]:
            reason = sandbox.unavailable_reason()
            if reason:
                raise RuntimeError(f"cannot sandbox the kernel: {reason}; {sandbox.ADVICE}")
            self._release_sandbox()  # a restart gets a fresh directory and uid
            self._ipc_dir = tempfile.mkdtemp(prefix="sit471-ipc-")
            self._lease = sandbox.UidLease() if os.geteuid() == 0 else None
            if self._lease is not None:
                os.chown(self._ipc_dir, self._lease.uid, self._lease.uid)
            # a signal to our child would reach only bwrap (the kernel has its own session):
            # interrupts go as a message on the control channel
            self.kernel_spec.interrupt_mode = "message"
            self.transport = "ipc"
            self.ip = os.path.join(self._ipc_dir, "k")
            self.connection_file = os.path.join(self._ipc_dir, "kernel.json")
        if self.preload_script:  # in the socket folder: the one host folder the kernel sees
            script = os.path.join(self._ipc_dir, "preload.py")
            Path(script).write_text(self.preload_script)
            os.chmod(script, 0o644)
            kw["extra_arguments"] = [*(kw.get("extra_arguments") or []),
                                     f"--IPKernelApp.exec_files={script}"]
        return await super()._async_pre_start_kernel(**kw)

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        cmd = super().format_kernel_cmd(extra_arguments)
        if SANDBOX["on"] or self.memory_limit_mb <= 0:
            return cmd  # sandboxed: the launcher sets the limits (see _async_launch_kernel)
        return [sys.executable, "-m", "autograde.kernel", str(self.memory_limit_mb), "--", *cmd]

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw) -> None:
        if SANDBOX["on"]:
            uid = self._lease.uid if self._lease is not None else None
            if uid is not None:
                os.chown(self.connection_file, uid, uid)
            scratch = kw.get("cwd") or os.path.join(self._ipc_dir, "empty")
            os.makedirs(scratch, exist_ok=True)
            kernel_cmd = sandbox.build_command(
                kernel_cmd, scratch=scratch, ipc_dir=self._ipc_dir,
                env=kw.get("env") or dict(os.environ), limits=self.limits(), uid=uid,
                hide_reference=self.hide_reference,
            )
            kw["env"] = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}  # bwrap clears it
        await super()._async_launch_kernel(kernel_cmd, **kw)

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if not restart:
            self._release_sandbox()

    cleanup_resources = _async_cleanup_resources  # AsyncKernelManager's is the coroutine

    def _release_sandbox(self) -> None:
        """After the kernel is gone: its uid back to the pool, its socket directory away."""
        lease, self._lease = getattr(self, "_lease", None), None
        if lease is not None:
            lease.release()
        ipc_dir, self._ipc_dir = getattr(self, "_ipc_dir", None), None
        if ipc_dir:
            shutil.rmtree(ipc_dir, ignore_errors=True)


class WarmKernel:
    """A started kernel waiting for its submission: its manager, its command-line arguments
    and its own folder."""

    def __init__(self, km: LimitedKernelManager, arguments: list[str], folder: str) -> None:
        self.km = km
        self.arguments = arguments
        self.folder = folder  # holds submission/, the kernel's submission folder

    @property
    def submission(self) -> str:
        return os.path.join(self.folder, "submission")

    def deliver_code(self) -> str:
        """What the kernel runs to take its submission (see :data:`DELIVER`)."""
        source = sandbox.SUBMISSION if SANDBOX["on"] else self.submission
        return DELIVER.format(source=source)

    def shutdown(self) -> None:
        """Stop the kernel if it still runs (nbclient may have stopped it), free its uid and
        remove its folders."""
        try:
            if self.km.has_kernel and run_sync(self.km.is_alive)():
                run_sync(self.km.shutdown_kernel)(now=True)
        except (RuntimeError, zmq.ZMQError):  # it died meanwhile: nothing left to stop
            pass
        finally:
            self.km._release_sandbox()
            shutil.rmtree(self.folder, ignore_errors=True)


_warm: list[WarmKernel] = []  # at most one per process


def worker_setup(sandboxed: bool = True) -> None:
    """A grading worker's settings: sandbox or not, one math thread per kernel (parallel
    graders share the cores instead of fighting over them)."""
    SANDBOX["on"] = sandboxed
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


#: the kernel's arguments nbclient gives by default (no history file)
DEFAULT_ARGUMENTS = ["--HistoryManager.hist_file=:memory:"]


def prestart_for(root: Path, assignment: str, km: LimitedKernelManager | None = None,
                 arguments: list[str] = DEFAULT_ARGUMENTS) -> None:
    """Start this process's next kernel for ``assignment`` of the course at ``root``: with
    ``km`` (the course's settings) and ``arguments``, or else with the default settings —
    which a worker can do before it has imported nbgrader, the course's configuration being
    a Python file that imports it (:func:`take` then uses it only if they are the course's).
    """
    notebooks = sorted((root / "source" / assignment).glob("*.ipynb"))
    if not notebooks:
        return
    if km is None:
        spec = json.loads(notebooks[0].read_text()).get("metadata", {}).get("kernelspec", {})
        km = LimitedKernelManager(**({"kernel_name": spec["name"]} if "name" in spec else {}))
    if not km.warm_kernels:
        return
    env = {**os.environ, "NBGRADER_EXECUTION": "autograde"}
    prestart(km, preload_modules(notebooks), env, arguments)


def preload_modules(notebooks: list[Path]) -> list[str]:
    """The modules the notebooks import at the top level of their code cells, in order,
    except those a file or folder beside the notebooks could stand for (the student's own)."""
    names: list[str] = []
    for notebook in notebooks:
        local = {p.stem if p.suffix == ".py" else p.name for p in notebook.parent.iterdir()}
        for cell in json.loads(notebook.read_text())["cells"]:
            if cell["cell_type"] != "code":
                continue
            try:
                tree = ast.parse("".join(cell["source"]))
            except SyntaxError:  # IPython magics, or a broken cell
                continue
            for node in tree.body:
                if isinstance(node, ast.Import):
                    found = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found = [node.module]
                else:
                    continue
                names += [n for n in found if n.split(".")[0] not in local]
    return list(dict.fromkeys(names))


def prestart(km: LimitedKernelManager, preload: list[str], env: dict[str, str],
             extra_arguments: list[str]) -> None:
    """Start ``km``'s kernel now, for a submission that comes later (see the module doc).

    ``env``: the environment a kernel of this grading run gets (its cases file is named where
    the kernel will find it, :data:`CASES_FILE` in its submission folder);
    ``extra_arguments``: the kernel's command-line arguments, as nbclient would give them.
    Returns once the kernel process is launched, without waiting for it to be ready.
    """
    discard()
    folder = tempfile.mkdtemp(prefix="sit471-warm-")
    os.chmod(folder, 0o755)
    warm = WarmKernel(km, list(extra_arguments), folder)
    os.mkdir(warm.submission)
    _warm.append(warm)
    km.preload_script = PRELOAD.format(names=list(preload))
    env = {**env, CASES_ENV: os.path.join(warm.submission, CASES_FILE)}
    run_sync(km.start_kernel)(extra_arguments=list(extra_arguments), cwd=warm.submission,
                              env=env)
    _shut_down_at_exit()


@functools.cache
def _shut_down_at_exit() -> None:
    # a pool worker ends without running atexit handlers, but with multiprocessing's
    # finalizers (which the main process runs at exit too)
    Finalize(None, discard, exitpriority=10)


def take(key: tuple, arguments: list[str]) -> WarmKernel | None:
    """This process's warm kernel if its settings are ``key`` and its command-line arguments
    ``arguments`` (then it is yours to shut down), else None; a warm kernel of other
    settings, or one that died, is shut down."""
    if not _warm:
        return None
    warm = _warm.pop()
    if (warm.km.settings_key() == key and warm.arguments == list(arguments)
            and run_sync(warm.km.is_alive)()):
        return warm
    warm.shutdown()
    return None


def discard() -> None:
    """Shut down this process's warm kernel, if any."""
    while _warm:
        _warm.pop().shutdown()
