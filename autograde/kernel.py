"""Start a kernel under a memory limit: ``python -m autograde.kernel MB -- KERNEL COMMAND``.

The limit (address space, in MiB) is set on this process and then the kernel command
replaces it, so the kernel and everything it starts inherit the limit. A student's
allocation beyond it fails with MemoryError inside their cell.
"""

from __future__ import annotations

import os
import resource
import sys


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--":
        sys.exit("usage: python -m autograde.kernel MEMORY_MB -- KERNEL COMMAND...")
    limit = int(argv[0]) << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    os.execvp(argv[2], argv[2:])


if __name__ == "__main__":
    main(sys.argv[1:])
