"""Test-session set-up: a persistent JAX compilation cache shared by each test process
and the CLI subprocesses it starts.

Many tests compile the same programs more than once: the resume tests run one
command whole, then killed, then resumed (three compilations of the same
update, two of them in subprocesses), and several files train the same toy
agents. JAX's persistent cache (``jax_compilation_cache_dir``) serves the
repeated compilations from disk; the compiled code is identical, so no result
changes. Measured on the 2-core machine:
``tests/test_longrun.py::test_offline_killed_at_a_random_moment_and_resumed_equals_an_uninterrupted_run``
92 s without the cache, 72 s with an empty one.

Each pytest process (each xdist worker) gets its own fresh folder, removed at
the end, so nothing leaks between sessions and no two processes write one
entry at the same time (JAX's cache writes are not atomic). Subprocesses
inherit it through ``JAX_COMPILATION_CACHE_DIR``. A user's own
``JAX_COMPILATION_CACHE_DIR`` is left alone.

The pytest process itself writes only programs that took at least 5 s to
compile (JAX's default is 1 s; subprocesses keep it). Writing an entry
serialises the compiled executable, and twice in 12 full runs of the suite
XLA's serialiser segfaulted there (``put_executable_and_time``), killing an
xdist worker that had compiled hundreds of programs, both times in
``tests/test_training.py::test_a2c_learns_catch_well_above_random`` (a
program that compiles in about a second, and over JAX's 1 s threshold only
when the machine is busy; never reproduced alone, even with every program
written). The slow programs the resume tests compile again (meta-gradient
steps, conv nets) are still written: the resume tests of
``tests/test_longrun.py`` took 173 s with the 5 s threshold, 166 s with 1 s
and 226 s with no cache in the pytest process.

The native crashes came from too many memory maps, as far as measured (see
``pytest_runtest_teardown`` below, which now keeps their number down). A test whose xdist
worker still dies of a native crash is run once more in a fresh worker
(pytest-rerunfailures, ``--reruns 1 --only-rerun 'crashed while running'`` in
``pyproject.toml``; an ordinary failure is never rerun, and a test that
crashes twice fails). Before the fix, 4 of 17 full runs lost a worker: twice in
the serialiser above, once to a segfault and once to an abort inside XLA's CPU
compiler (``backend_compile_and_load``), always late in a worker's life and
always in tests that pass alone.

XLA's backend optimisation is switched off for the tests
(``--xla_backend_optimization_level=0`` added to ``XLA_FLAGS``, inherited by
subprocesses): the suite's runs are tiny, so compiling dominates them, and
unoptimised code compiles 2-3x faster (measured on the 2-core machine: the
quickstart test's program set 107 s -> 54 s wall, backend compilation 87 s ->
39 s). The programs, their inputs and their semantics are the same; only the
generated machine code differs, which moves float results by rounding at most
(every numeric test compares with a tolerance). ``LPG_TEST_XLA_OPTIMIZE=1``
runs the suite with XLA's default optimisation instead.

Atari training's own XLA flag (``lpg/xla_flags.py``) is opted out of
(``LPG_XLA_DEFAULTS=0``): whether it took effect in a test process would
depend on whether an earlier test had started JAX's backend before
``training.atari`` was imported, i.e. on the order xdist runs the tests in.
``tests/test_xla_flags.py`` tests the flag in subprocesses without the opt-out.
"""

from __future__ import annotations

import os
import shutil
import tempfile

_CACHE_ENV = "JAX_COMPILATION_CACHE_DIR"
_OWNER_ENV = "LPG_TEST_JAX_CACHE"  # marks a cache folder made here (xdist workers inherit the controller's environment)
_made_cache: str | None = None
_FAST_COMPILE_FLAG = "--xla_backend_optimization_level=0"
_WORKER_MIN_COMPILE_S = 5.0  # the pytest process writes only programs that took this long to compile


def _fast_compile() -> None:
    """Adds the no-optimisation flag to ``XLA_FLAGS`` (read when JAX's backend starts)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if os.environ.get("LPG_TEST_XLA_OPTIMIZE") == "1" or "xla_backend_optimization_level" in flags:
        return
    os.environ["XLA_FLAGS"] = f"{flags} {_FAST_COMPILE_FLAG}".strip()


def pytest_configure(config):
    global _made_cache
    _fast_compile()
    os.environ.setdefault("LPG_XLA_DEFAULTS", "0")
    if os.environ.get(_CACHE_ENV) and os.environ.get(_OWNER_ENV) != os.environ[_CACHE_ENV]:
        return  # the user's own cache
    _made_cache = tempfile.mkdtemp(prefix="lpg-test-jax-cache-")
    os.environ[_CACHE_ENV] = os.environ[_OWNER_ENV] = _made_cache  # for subprocesses
    import jax

    jax.config.update("jax_compilation_cache_dir", _made_cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", _WORKER_MIN_COMPILE_S)


def pytest_unconfigure(config):
    if _made_cache is not None:
        shutil.rmtree(_made_cache, ignore_errors=True)


_MAX_MAPS = 30_000  # memory maps a test process may hold before its compiled programs are dropped


def _map_count() -> int:
    """Memory maps this process holds (Linux; 0 where /proc is missing)."""
    try:
        with open("/proc/self/maps", "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


def pytest_runtest_teardown(item, nextitem):
    """Drops JAX's compiled programs when the process nears Linux's limit on memory maps.

    Every program XLA:CPU compiles keeps its machine code in memory maps of
    its own, and JAX keeps the programs of earlier tests alive in its caches.
    An xdist worker that has run a few hundred tests holds more than 60,000
    maps; at Linux's default ``vm.max_map_count`` (65,530) the next ``mmap``
    fails and XLA crashes (a segfault in the executable serialiser or the
    compiler, or an abort). Replaying one worker's 416 tests in one process
    reproduced it both times: 64,779 maps after 400 tests, then the crash.
    """
    if _map_count() > _MAX_MAPS:
        import gc

        import jax

        jax.clear_caches()
        gc.collect()
