"""The one place where the course chooses where torch code runs.

CPU by default; the first CUDA GPU when torch can see one. Set ``SIT471_DEVICE`` (for example
``cpu`` or ``cuda:1``) to override the choice. The answer is computed once per process and
then reused, so every model and tensor of a session ends up on the same device.
"""

from __future__ import annotations

import functools
import os

import torch


@functools.cache
def device() -> torch.device:
    """The device for models and tensors: $SIT471_DEVICE, else ``cuda`` if available, else cpu.

    Cached: the choice is made on the first call. ``device.cache_clear()`` forgets it (tests).
    """
    if name := os.environ.get("SIT471_DEVICE"):
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
