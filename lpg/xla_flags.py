"""An XLA:CPU flag that ``lpg``'s Atari training sets, before JAX's backend starts.

XLA:CPU in jaxlib 0.10 hands dots and convolutions to YNNPACK fusions by
default. On the project's 2-core CPU machine they made the Atari Nature CNN
slower than XLA's own kernels (``lpg bench atari``, Pong, 16 envs, T = 5: the
learner 61-66 ms per batch and the policy forward 4.4-4.6 ms with them, 48-51
ms and 2.7-3.7 ms without; cleanrl's PPO script gains as much from the same
flag), but not the toy MDPs' small MLPs and LSTMs (``lpg quickstart`` was 1.10x
slower without them; ``lpg train catch`` unchanged). So the flag
``--xla_cpu_experimental_ynn_fusion_type=`` (an empty list: none) is added
to ``XLA_FLAGS`` for Atari only: ``training/atari.py`` calls ``for_atari``
when it is imported, which every Atari command does before JAX starts.

It is added only when

- the installed jaxlib is one it was measured on (an unknown flag makes XLA
  abort at start-up, and later versions may rename it),
- the user's ``XLA_FLAGS`` does not set it already, and
- ``LPG_XLA_DEFAULTS`` is not ``0`` (the opt-out),

and it has no effect once a JAX backend has started (then ``for_atari`` says
so by returning False), nor on GPU or TPU, whose compilers ignore CPU flags.
Subprocesses inherit it through the environment (``lpg bench atari --peer``
runs the peer with the same flags as ours). It changes generated code, not
programs: results move by float rounding only.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import MutableMapping

YNN_OFF = "--xla_cpu_experimental_ynn_fusion_type="
OPT_OUT = "LPG_XLA_DEFAULTS"
MEASURED_JAXLIB = ((0, 10),)  # (major, minor) versions whose XLA knows the flag and was measured with it


def _jaxlib_minor() -> tuple[int, int] | None:
    try:
        major, minor = importlib.metadata.version("jaxlib").split(".")[:2]
        return int(major), int(minor)
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return None


def add_ynn_off(environ: MutableMapping[str, str], jaxlib: tuple[int, int] | None = None) -> bool:
    """Adds ``YNN_OFF`` to ``environ["XLA_FLAGS"]`` under the rules above; True when it did."""
    flags = environ.get("XLA_FLAGS", "")
    version = jaxlib if jaxlib is not None else _jaxlib_minor()
    if environ.get(OPT_OUT) == "0" or "xla_cpu_experimental_ynn_fusion_type" in flags:
        return False
    if version not in MEASURED_JAXLIB:
        return False
    environ["XLA_FLAGS"] = f"{flags} {YNN_OFF}".strip()
    return True


def for_atari() -> bool:
    """Adds the flag to this process's ``XLA_FLAGS`` if no JAX backend has started; True when it is in effect."""
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        return False
    add_ynn_off(os.environ)
    return YNN_OFF in os.environ.get("XLA_FLAGS", "").split()
