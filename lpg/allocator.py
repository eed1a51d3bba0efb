"""glibc malloc settings the ``lpg`` command applies at start-up: big buffers reused, not mapped afresh per call.

XLA:CPU allocates the temporary buffer of every call of a compiled program
with malloc (51.7 MB for the offline meta-step at 32 lifetimes x 8
environments). glibc serves a request above its mmap threshold (dynamic, at
most 32 MiB by default) with a fresh ``mmap`` that ``free`` unmaps again, so
every call paid the kernel's page faults and zeroing for the whole buffer once
more: about a tenth of that meta-step on 2 CPU cores (README, "Running fast
on CPU"). ``keep_large_buffers`` raises the mmap threshold and the trim
threshold to ``THRESHOLD`` bytes through ``mallopt``, so such buffers come
from the heap and the next call reuses the freed memory.

The cost: up to ``THRESHOLD`` bytes of freed heap stay with the process
instead of going back to the operating system, and the peak resident memory
can grow a little (farm-bench, three pairs against ``LPG_MALLOC_DEFAULTS=0``:
``lpg discover offline --envs chain/short,gridworld/sparse --meta-steps 30
--eval-every 0`` 1,251 MiB against 1,218; ``lpg train catch --objective a2c
--steps 100000`` 591 against 589).
``LPG_MALLOC_DEFAULTS=0`` opts out. Elsewhere than glibc (macOS, musl) it does
nothing. Python code that runs ``lpg``'s functions without the command may call
it first. It changes where memory comes from, never a result.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Mapping

__all__ = ["OPT_OUT", "THRESHOLD", "keep_large_buffers"]

OPT_OUT = "LPG_MALLOC_DEFAULTS"
THRESHOLD = 1 << 30  # 1 GiB: above any per-call temporary buffer of the CPU runs measured
_M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
_M_MMAP_THRESHOLD = -3


def keep_large_buffers(environ: Mapping[str, str] = os.environ) -> bool:
    """Sets glibc's mmap and trim thresholds to ``THRESHOLD``; True when both were set.

    False when ``environ`` opts out or the C library is not glibc (no ``mallopt``).
    """
    if environ.get(OPT_OUT) == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, THRESHOLD))
