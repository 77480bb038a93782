"""Executing a submission under limits: memory, time per cell, time per notebook, output size.

nbgrader's ``Execute`` stops a cell after ``Execute.timeout`` seconds and nothing else. The
``LimitedExecute`` preprocessor (set in ``course/nbgrader_config.py``) adds:

* a memory limit for the student's kernel (``LimitedKernelManager.memory_limit_mb``): an
  allocation beyond it raises ``MemoryError`` in that cell, the grader is not affected;
* a wall-clock limit for the whole notebook (``LimitedExecute.notebook_timeout``): once it
  is used up, the remaining cells are not run and each says why;
* a cap on the output one cell may produce (``LimitedExecute.max_output_bytes``), so a
  student printing gigabytes cannot exhaust the grader's memory;
* a kernel that dies (os._exit, a segfault) costs the cell that killed it: a fresh kernel
  runs the remaining cells, so the tests before it keep their points;
* the kernel runs in a scratch copy of the submission folder, away from the grading tree;
* every hidden test is decided here, in the grader's process, from the outputs the kernel
  sent for this run's inputs (``autograde/verdict.py``), never by the kernel itself.

A tripped limit becomes an error output in that cell, which costs the points of the test
that needed it, and grading goes on with the next cell.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time

from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync
from nbclient.exceptions import DeadKernelError
from nbformat import NotebookNode
from nbformat.v4 import new_output
from nbgrader.preprocessors import Execute
from traitlets import Bool, Integer

from autograde import sandbox, verdict
from sit471.channel import CASES_ENV, write_cases

#: Name of the grader's file of inputs in the kernel's working directory.
CASES_FILE = ".sit471-cases.json"


#: ``grade(..., sandbox=False)`` (``sit471 grade --no-sandbox``) turns this off in its workers
SANDBOX = {"on": True}


class LimitedKernelManager(AsyncKernelManager):
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

    def limits(self) -> sandbox.Limits:
        return sandbox.Limits(self.memory_limit_mb, self.nproc_limit, self.fsize_limit_mb,
                              self.cpu_limit_s, self.work_size_mb, self.tmp_size_mb)

    async def _async_pre_start_kernel(self, **kw):
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


def _error(ename: str, evalue: str) -> NotebookNode:
    return new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


class LimitedExecute(Execute):
    """nbgrader's Execute with a notebook time limit and an output cap (see module doc)."""

    notebook_timeout = Integer(300, help="seconds for the whole notebook").tag(config=True)
    max_output_bytes = Integer(1_000_000, help="output bytes kept per cell").tag(config=True)

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("kernel_manager_class", LimitedKernelManager)
        super().__init__(*args, **kwargs)
        self.error_on_timeout = {
            "ename": "CellTimeoutError",
            "evalue": f"the cell ran longer than its time limit ({self.timeout} s per cell, "
            f"{self.notebook_timeout} s per notebook) and was interrupted",
            "traceback": ["CellTimeoutError: the cell ran longer than its time limit"],
        }
        self._deadline = float("inf")
        self._output_bytes = 0

    def preprocess(self, nb, resources=None, km=None):
        """Run in a scratch copy of the submission folder, outside the grading tree.

        The student's code then starts far from the gradebook, the hidden tests and other
        submissions: relative paths such as ``../../gradebook.db`` lead nowhere, and files
        the notebook writes are thrown away with the copy.
        """
        self._deadline = time.monotonic() + self.notebook_timeout
        resources = resources if resources is not None else {}
        metadata = resources.setdefault("metadata", {})
        original = metadata.get("path")
        grading = resources.get("nbgrader", {})
        tests = verdict.hidden_tests(grading["assignment"]) if "assignment" in grading else None
        with tempfile.TemporaryDirectory(prefix="sit471-kernel-") as scratch:
            if original and os.path.isdir(original):
                shutil.copytree(original, scratch, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("*.ipynb"))
            metadata["path"] = scratch
            cases = {}
            if tests is not None:  # this run's inputs for the hidden tests (see verdict.py)
                seed = verdict.run_seed(verdict.GRADING_SECRET, grading.get("student", ""),
                                        grading.get("notebook", ""))
                cases = tests.make_cases(seed)
                path = os.path.join(scratch, CASES_FILE)
                write_cases(path, cases)
                os.environ[CASES_ENV] = path
            try:
                nb, resources = super().preprocess(nb, resources=resources, km=km)
            finally:
                metadata["path"] = original
                os.environ.pop(CASES_ENV, None)
        verdict.judge(nb, tests, cases)  # in this process: the kernel decides no point
        return nb, resources

    def _get_timeout(self, cell):
        per_cell = super()._get_timeout(cell)
        remaining = max(1, int(self._deadline - time.monotonic()))
        return remaining if per_cell is None else min(per_cell, remaining)

    async def async_execute_cell(self, cell, cell_index, execution_count=None,
                                 store_history=True):
        if cell.cell_type == "code" and time.monotonic() >= self._deadline:
            cell.outputs = [_error(
                "NotebookTimeoutError",
                f"not run: the notebook used up its {self.notebook_timeout} s time limit",
            )]
            return cell
        self._output_bytes = 0
        try:
            return await super().async_execute_cell(cell, cell_index, execution_count,
                                                    store_history)
        except DeadKernelError:
            cell.outputs.append(_error(
                "DeadKernelError",
                "the kernel died while running this cell (a crash, os._exit or no memory "
                "left); the cells after it run in a fresh kernel",
            ))
            await self._async_cleanup_kernel()
            self.km = self.create_kernel_manager()
            await self.async_start_new_kernel()
            await self.async_start_new_kernel_client()
            return cell

    # nbclient binds the synchronous wrapper to its own coroutine: rebind it to ours
    execute_cell = run_sync(async_execute_cell)

    def output(self, outs, msg, display_id, cell_index):
        if msg["msg_type"] in ("stream", "display_data", "execute_result", "update_display_data"):
            already_over = self._output_bytes > self.max_output_bytes
            self._output_bytes += len(json.dumps(msg.get("content", {})))
            if self._output_bytes > self.max_output_bytes:
                if not already_over:
                    outs.append(new_output(
                        "stream", name="stderr",
                        text=f"[output cut: this cell printed more than "
                        f"{self.max_output_bytes:,} bytes]\n",
                    ))
                return None
        return super().output(outs, msg, display_id, cell_index)
