"""Grading speed: `sit471 grade --jobs 1` vs `--jobs 2` vs plain `nbgrader autograde`.

Each `sit471 grade` figure is measured with the kernel sandbox (the default) and without it
(`--no-sandbox`), unless `--sandbox on` or `--sandbox off` picks one.

All three grade the same N submissions of 01_backprop (the demo's four variants, repeated)
in one run of this script, each into a fresh output folder. Also reported: the notebook's
own execution time (nbclient, as autograding runs it) and so the grading overhead per
submission beyond it.

    python benchmarks/bench_grading.py [--n 8] [--sandbox both|on|off]
                                       [--out benchmarks/results/grading.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from autograde.course import find_course_root, make_work_root, run_step
from autograde.demo import VARIANTS, write_submissions
from autograde.grade import grade
from benchmarks.notebook_times import time_execution

NAME = "01_backprop"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--sandbox", choices=["both", "on", "off"], default="both",
                        help="grade with the kernel sandbox, without it, or both (default)")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "grading.md")
    args = parser.parse_args()
    course = find_course_root()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        demo = tmp / "demo"
        write_submissions(course, NAME, demo)
        subs = tmp / "subs"
        notebooks = sorted((demo / "reference").glob("*.ipynb"))
        for k in range(args.n):
            variant = VARIANTS[k % len(VARIANTS)]
            (subs / f"s{k:02d}").mkdir(parents=True)
            for nb in notebooks:
                shutil.copy2(demo / variant / nb.name, subs / f"s{k:02d}" / nb.name)

        execution = time_execution(demo / "reference" / notebooks[0].name)
        times = {}
        modes = {"both": (True, False), "on": (True,), "off": (False,)}[args.sandbox]
        for jobs in (1, 2):  # with and without the sandbox back to back: same machine load
            for sandboxed in modes:
                flag = "" if sandboxed else " --no-sandbox"
                start = time.perf_counter()
                grade(course, NAME, subs, tmp / f"out{jobs}{flag}", jobs=jobs, progress=False,
                      sandbox=sandboxed)
                times[f"sit471 grade --jobs {jobs}{flag}"] = time.perf_counter() - start

        # plain nbgrader: the same course config, every submission in one autograde call
        work = make_work_root(course, tmp / "plain", NAME)
        start = time.perf_counter()
        run_step(work, "generate_assignment", NAME)
        for student in sorted(p.name for p in subs.iterdir()):
            shutil.copytree(subs / student, work / "submitted" / student / NAME)
        subprocess.run([sys.executable, "-m", "nbgrader", "autograde", NAME, "--create",
                        "--force"], cwd=work, check=True, capture_output=True)
        times["nbgrader autograde (sequential)"] = time.perf_counter() - start

    times = dict(sorted(times.items(), key=lambda kv: ("nbgrader autograde" in kv[0],
                                                       "no-sandbox" in kv[0])))
    first = next(iter(times))
    base = {label: times[label.replace("--jobs 2", "--jobs 1")] if "sit471" in label
            else times[first] for label in times}
    lines = [
        "# Grading speed",
        "",
        f"Machine: {platform.system()} {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}. {args.n} submissions of {NAME} (the demo's four "
        f"variants in turn). Measured {time.strftime('%Y-%m-%d')} in one run of "
        "`benchmarks/bench_grading.py`.",
        "",
        "| command | total (s) | per submission (s) | speed-up vs the same at --jobs 1 |",
        "|---|---:|---:|---:|",
    ]
    for label, seconds in times.items():
        per = seconds / args.n
        lines.append(f"| {label} | {seconds:.1f} | {per:.2f} | {base[label] / seconds:.2f}× |")
    lines += [""]
    for label in times:
        if "--jobs 1" in label:
            lines.append(
                f"`{label}` adds {times[label] / args.n - execution:.1f} s per submission "
                f"beyond the notebook's own {execution:.1f} s (fresh kernel included): "
                "nbgrader's sanitising and saving, feedback HTML, the gradebook"
                + ("." if "no-sandbox" in label else ", and starting the sandbox."))
    lines += ["", f"(`{first}` is the base of the plain nbgrader row; plain nbgrader does not "
              "write feedback.)"]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
