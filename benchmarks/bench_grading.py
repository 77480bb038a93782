"""Grading speed, as a TA meets it: `sit471 grade` run as a command, all in one run.

Reports, for submissions of 01_backprop (the demo's four variants in turn), each command's
time (`sit471 grade`, plain nbgrader) but the timeline's the fastest of ``ROUNDS`` rounds (the
grade commands interleaved, so that a slow spell of the host falls on every one alike):

* the fixed cost: one submission at ``--jobs 1`` into a fresh output folder, and again into
  the same folder (a regrade: the grading copy of the course is kept);
* scaling: 8 and 16 submissions at ``--jobs 1`` and ``--jobs 2``; and with cores: the same
  batches at ``--jobs 1`` confined to one core (every process of the run, kernels included,
  by CPU affinity) against ``--jobs 2`` on two. The first compares two ways of using the same
  machine, where ``--jobs 1`` already keeps a second core partly busy (its next warm
  kernel); the second is what a second core adds, the question a TA buying cores asks;
* the cores each run keeps busy (its CPU seconds, kernels included, over its wall time),
  where the machine lets this process make a cgroup (root, cgroup v1 or v2), and the cost per
  submission at ``--jobs 2`` against the limit ``notebook's run / cores``;
* the overhead per submission beyond the notebook's own run: the slope between 1 and 16
  submissions at ``--jobs 1``, minus the notebook's execution time (nbclient, fresh kernel);
* what the sandbox costs (16 at ``--jobs 2`` with ``--no-sandbox``) and what the grader's
  verdicts cost (cases and checks of one submission, timed in this process);
* what warm kernels save, and the scaling without them (8 and 16 at ``--jobs 1`` and ``2``
  with ``c.LimitedKernelManager.warm_kernels = False`` in a copy of the course);
* plain ``nbgrader autograde`` on the same 16 submissions (no sandbox, no feedback);
* how steady the host was: a fixed loop timed before every run, its spread stated with the
  figures (a shared virtual machine can change speed twofold within seconds);
* where the fixed cost goes: the phases of the one-submission regrade, from the marks the
  main process, the worker and the kernel leave in ``$SIT471_TIMELINE``.

    PYTHONPATH=. python benchmarks/bench_grading.py [--out benchmarks/results/grading.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from autograde import timeline
from autograde.course import CONFIG_FILE, find_course_root, make_work_root, run_step
from autograde.demo import VARIANTS, write_submissions
from autograde.verdict import hidden_tests, judge, take_results
from benchmarks.notebook_times import time_execution

NAME = "01_backprop"
SIT471 = [sys.executable, "-m", "autograde.cli"]


def _submissions(demo: Path, dest: Path, n: int) -> Path:
    notebooks = sorted((demo / "reference").glob("*.ipynb"))
    for k in range(n):
        (dest / f"s{k:02d}").mkdir(parents=True)
        for nb in notebooks:
            shutil.copy2(demo / VARIANTS[k % len(VARIANTS)] / nb.name, dest / f"s{k:02d}" / nb.name)
    return dest


class CpuMeter:
    """CPU seconds of a command's whole process tree, from a cgroup made for it (cgroup v1's
    cpuacct or v2's cpu.stat); unavailable (``None`` readings) where none can be made."""

    def __init__(self) -> None:
        self.group: Path | None = None
        for root, name in ((Path("/sys/fs/cgroup/cpuacct"), "cpuacct.usage"),
                           (Path("/sys/fs/cgroup"), "cpu.stat")):
            group = root / f"sit471-bench-{os.getpid()}"
            try:
                group.mkdir()
            except OSError:
                continue
            if (group / name).is_file():
                self.group, self.file = group, name
                break
            group.rmdir()

    def enter(self) -> None:
        """In the child, before its command runs (``preexec_fn``)."""
        if self.group is not None:
            (self.group / "cgroup.procs").write_text(str(os.getpid()))

    def seconds(self) -> float | None:
        if self.group is None:
            return None
        text = (self.group / self.file).read_text()
        if self.file == "cpuacct.usage":
            return int(text) / 1e9
        return int(text.split("usage_usec ")[1].split()[0]) / 1e6

    def close(self) -> None:
        if self.group is not None:
            self.group.rmdir()


METER = CpuMeter()
#: each timed run's seconds and cores busy (label -> [(seconds, CPU seconds / seconds)]),
#: when METER can measure
RUNS: dict[str, list[tuple[float, float]]] = {}
#: rounds of every timed command, interleaved; each figure is its fastest round (the host's
#: noise only ever slows a run)
ROUNDS = 2
#: seconds of the same fixed loop, timed before every graded run (see :func:`_probe`)
PROBES: list[float] = []


def _probe() -> None:
    """Time a fixed pure-Python loop (about 40 ms) into :data:`PROBES`: the host's speed just
    before a run. On a shared virtual machine it can change twofold within seconds, and then
    a ratio of two runs measures the host as much as the grader."""
    start = time.perf_counter()
    total = 0
    for k in range(1_000_000):
        total += k
    PROBES.append(time.perf_counter() - start)


def _grade(subs: Path, out: Path, jobs: int, *flags: str, env: dict | None = None,
           cores: set[int] | None = None, label: str | None = None) -> float:
    """Seconds of one `sit471 grade` command; ``cores``: the only cores its processes may
    use (they inherit the affinity); ``label``: record it in :data:`RUNS`."""

    def child() -> None:
        METER.enter()
        if cores is not None:
            os.sched_setaffinity(0, cores)

    _probe()
    cpu = METER.seconds()
    start = time.perf_counter()
    subprocess.run([*SIT471, "grade", NAME, str(subs), "--jobs", str(jobs), "--out", str(out),
                    *flags], check=True, capture_output=True, env=env, preexec_fn=child)
    seconds = time.perf_counter() - start
    if cpu is not None and label is not None:
        RUNS.setdefault(label, []).append((seconds, (METER.seconds() - cpu) / seconds))
    return seconds


def _keep_fastest(t: dict[str, float], label: str, seconds: float) -> None:
    """Record ``seconds`` under ``label`` in ``t`` unless an earlier round was faster."""
    t[label] = min(t.get(label, seconds), seconds)


def _profile(subs: Path, out: Path) -> tuple[float, list[str]]:
    """One regrade of one submission with a timeline: (seconds, a line per mark)."""
    path = out.parent / "timeline.txt"
    seconds = _grade(subs, out, 1, env={**os.environ, timeline.ENV: str(path)})
    marks = timeline.read(str(path))
    main_pid = marks[0][1]
    lines, before = [], 0.0
    for t, pid, label in marks:
        lines.append(f"| {t:.2f} | +{t - before:.2f} | {'main' if pid == main_pid else 'worker'}"
                     f" | {label.split(': ', 1)[-1]} |")
        before = t
    lines.append(f"| {seconds:.2f} | +{seconds - before:.2f} | main | process exit (the "
                 "workers' shutdown, the interpreter's) |")
    return seconds, lines


def _verdict_cost(reference: Path, tmp: Path) -> tuple[float, float]:
    """Seconds to draw one submission's cases, and to judge its executed notebook."""
    from nbclient import NotebookClient

    from sit471.channel import CASES_ENV, write_cases

    tests = hidden_tests(NAME)
    start = time.perf_counter()
    cases = tests.make_cases(1)
    drawn = time.perf_counter() - start
    folder = tmp / "verdict"
    folder.mkdir()
    write_cases(folder / "cases.json", cases)
    nb = nbformat.read(reference, as_version=4)
    env = {**os.environ, "NBGRADER_EXECUTION": "autograde", CASES_ENV: str(folder / "cases.json")}
    NotebookClient(nb, resources={"metadata": {"path": str(folder)}}).execute(env=env)
    start = time.perf_counter()
    judge(nb, tests, cases)
    judged = time.perf_counter() - start
    assert not any(take_results(c) for c in nb.cells)
    return drawn, judged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "grading.md")
    args = parser.parse_args()
    course = find_course_root()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        demo = tmp / "demo"
        write_submissions(course, NAME, demo)
        subs = {n: _submissions(demo, tmp / f"subs{n}", n) for n in (1, 8, 16)}
        reference = demo / "reference" / "backprop.ipynb"
        # the fastest of three runs, like every figure here: one run alone varied 2.3-5.0 s
        # on a shared machine
        execution = min(time_execution(reference) for _ in range(3))
        t = {}
        for r in range(ROUNDS):
            for label in ("1 submission, --jobs 1, new output folder",
                          "1 submission, --jobs 1, regrade (same folder)"):
                _keep_fastest(t, label, _grade(subs[1], tmp / f"o1-{r}", 1))
        one_core = {min(os.sched_getaffinity(0))}
        cold = tmp / "cold-course"  # the course with warm kernels off
        shutil.copytree(course, cold, ignore=shutil.ignore_patterns("release", "runs"))
        with (cold / CONFIG_FILE).open("a") as fh:
            fh.write("\nc.LimitedKernelManager.warm_kernels = False\n")
        cold_env = {**os.environ, "SIT471_COURSE": str(cold)}
        batches = {}  # label -> (submissions, jobs, flags, _grade's keywords)
        for n in (8, 16):
            batches[f"{n} submissions, --jobs 1"] = (n, 1, (), {})
            batches[f"{n} submissions, --jobs 2"] = (n, 2, (), {})
            batches[f"{n} submissions, --jobs 1, one core"] = (n, 1, (), {"cores": one_core})
        batches["16 submissions, --jobs 2, --no-sandbox"] = (16, 2, ("--no-sandbox",), {})
        for n in (8, 16):
            for jobs in (1, 2):
                batches[f"{n} submissions, --jobs {jobs}, no warm kernels"] = (
                    n, jobs, (), {"env": cold_env})
        for r in range(ROUNDS):
            for k, (label, (n, jobs, flags, kw)) in enumerate(batches.items()):
                _keep_fastest(t, label, _grade(subs[n], tmp / f"batch{k}-{r}", jobs, *flags,
                                               label=label, **kw))
        t["1 submission, --jobs 1, regrade with a timeline"], profile = _profile(
            subs[1], tmp / "o1-0")

        label = "16 submissions, plain nbgrader autograde (sequential)"
        for r in range(ROUNDS):  # plain nbgrader, same config, a new grading copy each round
            work = make_work_root(course, tmp / f"plain{r}", NAME)
            _probe()
            start = time.perf_counter()
            run_step(work, "generate_assignment", NAME)
            for student in sorted(p.name for p in subs[16].iterdir()):
                shutil.copytree(subs[16] / student, work / "submitted" / student / NAME)
            subprocess.run([sys.executable, "-m", "nbgrader", "autograde", NAME, "--create",
                            "--force"], cwd=work, check=True, capture_output=True)
            _keep_fastest(t, label, time.perf_counter() - start)
        drawn, judged = _verdict_cost(reference, tmp)

    METER.close()
    scale8 = t["8 submissions, --jobs 1"] / t["8 submissions, --jobs 2"]
    scale16 = t["16 submissions, --jobs 1"] / t["16 submissions, --jobs 2"]
    cores = {n: t[f"{n} submissions, --jobs 1, one core"] / t[f"{n} submissions, --jobs 2"]
             for n in (8, 16)}
    slope2 = (t["16 submissions, --jobs 2"] - t["8 submissions, --jobs 2"]) / 8
    slope = (t["16 submissions, --jobs 1"] - t["1 submission, --jobs 1, new output folder"]) / 15
    sandbox = (t["16 submissions, --jobs 2"] - t["16 submissions, --jobs 2, --no-sandbox"]) / 16
    warm = {jobs: (t[f"16 submissions, --jobs {jobs}, no warm kernels"]
                   - t[f"16 submissions, --jobs {jobs}"]) / 16 for jobs in (1, 2)}
    cold = {n: t[f"{n} submissions, --jobs 1, no warm kernels"]
            / t[f"{n} submissions, --jobs 2, no warm kernels"] for n in (8, 16)}
    spread = max(PROBES) / min(PROBES)
    steadiness = (
        f"Host speed: a fixed loop timed before each of the {len(PROBES)} graded runs took "
        f"{min(PROBES) * 1000:.0f}-{max(PROBES) * 1000:.0f} ms (median "
        f"{statistics.median(PROBES) * 1000:.0f} ms, spread {spread:.2f}). "
        + ("The host held its speed: the ratios below compare the grader's runs."
           if spread <= 1.15 else
           "**The host's speed changed during the run: the ratios below are not reliable; "
           "rerun on a quieter machine.**"))
    lines = [
        "# Grading speed",
        "",
        f"Machine: {platform.system()} {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load average before the run "
        f"{os.getloadavg()[0]:.1f}. Submissions of {NAME} (the demo's four variants in turn), "
        f"graded by the `sit471 grade` command with the sandbox and the grader's verdicts, "
        f"unless said otherwise. Measured {time.strftime('%Y-%m-%d')} in one run of "
        f"`benchmarks/bench_grading.py`; each command's time but the timeline's is the fastest "
        f"of {ROUNDS} rounds (the grade commands interleaved).",
        "",
        steadiness,
        "",
        "| run | seconds | cores busy |",
        "|---|---:|---:|",
        *[f"| {label} | {seconds:.1f} | "
          f"{f'{min(RUNS[label])[1]:.2f}' if label in RUNS else ''} |"
          for label, seconds in t.items()],
        "",
        "Cores busy: the run's CPU seconds, every process of it counted (its workers, their "
        "sandboxed kernels), over its wall time"
        + ("." if RUNS else " (not measured: this process could not make a cgroup)."),
        "",
        f"- notebook's own execution (nbclient, fresh kernel, no sandbox; fastest of 3): "
        f"{execution:.2f} s",
        f"- scaling, `--jobs 2` vs `--jobs 1`: {scale8:.2f}× on 8, {scale16:.2f}× on 16",
        f"- scaling with cores, `--jobs 2` on two cores vs `--jobs 1` confined to one: "
        f"{cores[8]:.2f}× on 8, {cores[16]:.2f}× on 16",
        f"- scaling without warm kernels (each job then uses one core): {cold[8]:.2f}× on 8, "
        f"{cold[16]:.2f}× on 16",
        f"- cost per additional submission at `--jobs 2` (slope from 8 to 16): {slope2:.2f} s, "
        f"against {execution / 2:.2f} s for the notebook's own run shared by the two jobs "
        f"({execution / 2 / slope2:.0%} of that limit)",
        f"- cost per additional submission at `--jobs 1` (slope from 1 to 16): {slope:.2f} s, "
        f"of which {slope - execution:.2f} s beyond the notebook's own run",
        f"- the sandbox: {sandbox:+.2f} s per submission at `--jobs 2` (16 with vs without)",
        f"- warm kernels save {warm[1]:.2f} s per submission at `--jobs 1` (the next kernel "
        f"starts on the idle core) and {warm[2]:.2f} s at `--jobs 2` (no core is idle) "
        "(16 without vs with)",
        f"- the grader's verdicts per submission: {drawn * 1000:.0f} ms to draw the cases, "
        f"{judged * 1000:.0f} ms to judge the outputs",
        f"- plain nbgrader, 16 sequential: "
        f"{t['16 submissions, plain nbgrader autograde (sequential)'] / 16:.2f} s per submission "
        f"(no sandbox, no verdicts, no feedback)",
        "",
        "Where the one-submission regrade's time goes (marks in `$SIT471_TIMELINE`: time since "
        "the command started, since the mark before, process, what had just finished):",
        "",
        "| s | step | process | mark |",
        "|---:|---:|---|---|",
        *profile,
    ]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
