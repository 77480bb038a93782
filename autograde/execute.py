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
* the kernel may have been started ahead of time, while the worker did other work (a warm
  kernel, ``autograde/kernels.py``): :func:`prestart_kernel` starts the next one;
* every hidden test is decided here, in the grader's process, from the outputs the kernel
  sent for this run's inputs (``autograde/verdict.py``), never by the kernel itself.

A tripped limit becomes an error output in that cell, which costs the points of the test
that needed it, and grading goes on with the next cell.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

from jupyter_core.utils import run_sync
from nbclient.exceptions import DeadKernelError
from nbformat import NotebookNode
from nbformat.v4 import new_output
from nbgrader.preprocessors import Execute
from traitlets import Integer

from autograde import kernels, verdict
from autograde.kernels import CASES_FILE, SANDBOX, LimitedKernelManager
from autograde.timeline import mark
from sit471.channel import CASES_ENV, write_cases

__all__ = ["CASES_FILE", "SANDBOX", "LimitedExecute", "LimitedKernelManager"]


def _readable(folder: str) -> None:
    """Everything in ``folder`` readable by the kernel's unprivileged uid (it copies them)."""
    os.chmod(folder, 0o755)
    for parent, dirs, files in os.walk(folder):
        for name in dirs:
            os.chmod(os.path.join(parent, name), 0o755)
        for name in files:
            path = os.path.join(parent, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode | 0o444)


def _error(ename: str, evalue: str) -> NotebookNode:
    return new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


class LimitedExecute(Execute):
    """nbgrader's Execute with a notebook time limit and an output cap (see module doc)."""

    notebook_timeout = Integer(300, help="seconds for the whole notebook").tag(config=True)
    max_output_bytes = Integer(1_000_000, help="output bytes kept per cell").tag(config=True)

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("kernel_manager_class", LimitedKernelManager)
        # the kernel is thrown away with its sandbox once the last cell's outputs are in:
        # stop it at once instead of asking it to shut down and waiting
        kwargs.setdefault("shutdown_kernel", "immediate")
        super().__init__(*args, **kwargs)
        self.error_on_timeout = {
            "ename": "CellTimeoutError",
            "evalue": f"the cell ran longer than its time limit ({self.timeout} s per cell, "
            f"{self.notebook_timeout} s per notebook) and was interrupted",
            "traceback": ["CellTimeoutError: the cell ran longer than its time limit"],
        }
        self._deadline = float("inf")
        self._output_bytes = 0
        self._warm: kernels.WarmKernel | None = None

    def preprocess(self, nb, resources=None, km=None):
        """Run in a scratch copy of the submission folder, outside the grading tree.

        The student's code then starts far from the gradebook, the hidden tests and other
        submissions: relative paths such as ``../../gradebook.db`` lead nowhere, and files
        the notebook writes are thrown away with the copy. The kernel is this worker's warm
        kernel when it has one of the right settings (``autograde/kernels.py``), whose own
        submission folder is then the scratch copy.
        """
        self._deadline = time.monotonic() + self.notebook_timeout
        resources = resources if resources is not None else {}
        metadata = resources.setdefault("metadata", {})
        original = metadata.get("path")
        grading = resources.get("nbgrader", {})
        tests = verdict.hidden_tests(grading["assignment"]) if "assignment" in grading else None
        self._warm = (kernels.take(self.kernel_manager_for(nb).settings_key(),
                                   self.kernel_arguments()) if km is None else None)
        folder = (nullcontext(self._warm.submission) if self._warm is not None
                  else tempfile.TemporaryDirectory(prefix="sit471-kernel-"))
        try:
            with folder as scratch:
                if original and os.path.isdir(original):
                    shutil.copytree(original, scratch, dirs_exist_ok=True,
                                    ignore=shutil.ignore_patterns("*.ipynb"))
                    _readable(scratch)
                metadata["path"] = scratch
                cases = {}
                if tests is not None:  # this run's inputs for the hidden tests (verdict.py)
                    seed = verdict.run_seed(verdict.GRADING_SECRET, grading.get("student", ""),
                                            grading.get("notebook", ""))
                    cases = tests.make_cases(seed)
                    path = os.path.join(scratch, CASES_FILE)
                    write_cases(path, cases)
                    os.environ[CASES_ENV] = path
                try:
                    nb, resources = super().preprocess(
                        nb, resources=resources,
                        km=self._warm.km if self._warm is not None else km)
                    mark("worker: cells run")
                finally:
                    metadata["path"] = original
                    os.environ.pop(CASES_ENV, None)
                    if self._warm is not None and self.km is not None:
                        self._cleanup_kernel()  # nbclient leaves a kernel it was given
        finally:
            if self._warm is not None:
                self._warm.shutdown()
                self._warm = None
        verdict.judge(nb, tests, cases)  # in this process: the kernel decides no point
        mark("worker: verdicts written")
        return nb, resources

    def kernel_manager_for(self, nb: NotebookNode) -> LimitedKernelManager:
        """A kernel manager (not started) for ``nb`` with this course's settings."""
        name = self.kernel_name or nb.metadata.get("kernelspec", {}).get("name")
        return self.kernel_manager_class(config=self.config, **(
            {"kernel_name": name} if name else {}))

    def kernel_arguments(self) -> list[str]:
        """The kernel's command-line arguments, as nbclient gives them."""
        return [*self.extra_arguments, f"--HistoryManager.hist_file={self.ipython_hist_file}"]

    async def async_start_new_kernel_client(self):
        kc = await super().async_start_new_kernel_client()
        mark("worker: kernel ready" + (" (warm)" if self._warm is not None else ""))
        if self._warm is not None and self.km is self._warm.km:
            # the warm kernel takes its submission before the first cell (kernels.DELIVER)
            msg_id = kc.execute(self._warm.deliver_code(), silent=True, store_history=False,
                                allow_stdin=False)
            content = (await self.async_wait_for_reply(msg_id) or {}).get("content", {})
            if content.get("status") != "ok":
                raise RuntimeError(f"the kernel could not take the submission's files: "
                                   f"{content.get('ename')}: {content.get('evalue')}")
        return kc

    start_new_kernel_client = run_sync(async_start_new_kernel_client)

    def _get_timeout(self, cell):
        per_cell = super()._get_timeout(cell)
        # rounded up: a cell stopped for the notebook's budget stops at or after the deadline,
        # so the cells after it are not run (rounded down, they ran in the second left)
        remaining = max(1, math.ceil(self._deadline - time.monotonic()))
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


def prestart_kernel(root: Path, assignment: str) -> None:
    """Start this worker's next kernel for ``assignment`` of the course copy at ``root`` now,
    with the course's settings (a warm kernel, ``autograde/kernels.py``)."""
    from autograde.course import load_config

    executor = LimitedExecute(config=load_config(root))
    notebooks = sorted((root / "source" / assignment).glob("*.ipynb"))
    if notebooks:
        nb = NotebookNode(json.loads(notebooks[0].read_text()))
        kernels.prestart_for(root, assignment, executor.kernel_manager_for(nb),
                             executor.kernel_arguments())
