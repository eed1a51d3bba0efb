"""XLA:CPU flags that ``lpg`` sets before JAX's backend starts: one for the pure-JAX commands, one for Atari.

**Every command but Atari's** (``lpg.cli.entry``, before any JAX backend starts) adds
``--xla_cpu_copy_insertion_use_region_analysis=true`` (``REGION_ANALYSIS``).
XLA's copy insertion then analyses ``while`` loops' bodies region by region
and leaves out copies of loop-carried buffers that the default analysis adds
to be safe. The offline meta-step is mostly nested loops (rollouts, the
backward LSTM, its rematerialised gradient) and spent about a sixth of its
kernel time in some 20,000 small copies a step: with the flag it ran 50-51 ms
instead of 55-56 (in-process, 16 meta-steps per call, two runs each; README,
"Running fast on CPU"), with the same objective bit for bit (30 meta-steps of
the default set). Copies move values, they do not compute them, so results
do not change. Atari's A2C was about 5% slower end to end with it (``lpg bench
atari --frames 40000 --no-frodo --no-vtrace``, three runs each: 4,057-4,158
frames/s against 4,332-4,388), so ``for_atari`` takes it back.

**Atari** adds ``--xla_cpu_experimental_ynn_fusion_type=`` (``YNN_OFF``: no YNNPACK
fusions). XLA:CPU in jaxlib 0.10 hands dots and convolutions to YNNPACK
fusions by default. On the project's 2-core CPU machine they made the Atari Nature CNN
slower than XLA's own kernels (``lpg bench atari``, Pong, 16 envs, T = 5: the
learner 61-66 ms per batch and the policy forward 4.4-4.6 ms with them, 48-51
ms and 2.7-3.7 ms without; cleanrl's PPO script gains as much from the same
flag), but not the toy MDPs' small MLPs and LSTMs (``lpg quickstart`` was 1.10x
slower without them; ``lpg train catch`` unchanged). So it is added for Atari
only: ``training/atari.py`` calls ``for_atari`` when it is imported, which
every Atari command does before JAX starts.

A flag is added only when

- the installed jaxlib is one it was measured on (an unknown flag makes XLA
  abort at start-up, and later versions may rename it),
- the user's ``XLA_FLAGS`` does not set it already, and
- ``LPG_XLA_DEFAULTS`` is not ``0`` (the opt-out),

and it has no effect once a JAX backend has started (then ``for_atari`` and
``for_every_command`` say so by returning False), nor on GPU or TPU, whose
compilers ignore CPU flags. Subprocesses inherit them through the environment
(``lpg bench atari --peer`` runs the peer with the same flags as ours). They
change generated code, not programs: results move by float rounding at most.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import MutableMapping

YNN_OFF = "--xla_cpu_experimental_ynn_fusion_type="
REGION_ANALYSIS = "--xla_cpu_copy_insertion_use_region_analysis=true"
OPT_OUT = "LPG_XLA_DEFAULTS"
MEASURED_JAXLIB = ((0, 10),)  # (major, minor) versions whose XLA knows the flags and was measured with them


def _jaxlib_minor() -> tuple[int, int] | None:
    try:
        major, minor = importlib.metadata.version("jaxlib").split(".")[:2]
        return int(major), int(minor)
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return None


def _add(environ: MutableMapping[str, str], flag: str, jaxlib: tuple[int, int] | None) -> bool:
    """Adds ``flag`` to ``environ["XLA_FLAGS"]`` under the rules above; True when it did."""
    flags = environ.get("XLA_FLAGS", "")
    version = jaxlib if jaxlib is not None else _jaxlib_minor()
    if environ.get(OPT_OUT) == "0" or flag.split("=")[0] in flags:
        return False
    if version not in MEASURED_JAXLIB:
        return False
    environ["XLA_FLAGS"] = f"{flags} {flag}".strip()
    return True


def add_ynn_off(environ: MutableMapping[str, str], jaxlib: tuple[int, int] | None = None) -> bool:
    """Adds ``YNN_OFF`` to ``environ["XLA_FLAGS"]`` under the rules above; True when it did."""
    return _add(environ, YNN_OFF, jaxlib)


def add_region_analysis(environ: MutableMapping[str, str], jaxlib: tuple[int, int] | None = None) -> bool:
    """Adds ``REGION_ANALYSIS`` to ``environ["XLA_FLAGS"]`` under the rules above; True when it did."""
    return _add(environ, REGION_ANALYSIS, jaxlib)


def _backend_started() -> bool:
    from jax._src import xla_bridge

    return xla_bridge.backends_are_initialized()


_ADDED: set[str] = set()  # flags this process added to its own XLA_FLAGS (for_atari takes REGION_ANALYSIS back)


def for_every_command() -> bool:
    """Adds ``REGION_ANALYSIS`` to this process's ``XLA_FLAGS`` if no JAX backend has started; True when in effect."""
    if _backend_started():
        return False
    if add_region_analysis(os.environ):
        _ADDED.add(REGION_ANALYSIS)
    return REGION_ANALYSIS in os.environ.get("XLA_FLAGS", "").split()


def for_atari() -> bool:
    """Adds ``YNN_OFF`` to this process's ``XLA_FLAGS`` if no JAX backend has started; True when it is in effect.

    It also takes back ``REGION_ANALYSIS`` where ``for_every_command`` added it.
    """
    if _backend_started():
        return False
    if REGION_ANALYSIS in _ADDED:
        os.environ["XLA_FLAGS"] = " ".join(f for f in os.environ["XLA_FLAGS"].split() if f != REGION_ANALYSIS)
        _ADDED.discard(REGION_ANALYSIS)
    add_ynn_off(os.environ)
    return YNN_OFF in os.environ.get("XLA_FLAGS", "").split()
