"""Several meta-steps per compiled call (``training.offline.chunks``) and the allocator setting (``lpg.allocator``)."""

from __future__ import annotations

import platform

import jax.numpy as jnp
import numpy as np
import pytest

from lpg import allocator
from training.offline.chunks import AUTO_MAX_STEPS, ChunkSizes, multi_step


def _step(state):
    x, count = state
    x = 1.1 * x + jnp.sin(x)
    return (x, count + 1), {"x": jnp.sum(x), "count": count + 1}


def test_multi_step_runs_n_steps_and_stacks_their_metrics():
    state = (jnp.linspace(-1.0, 1.0, 5), jnp.asarray(0, jnp.int32))
    steps = multi_step(_step, 4)
    out, metrics = steps(state, 3)
    expected, rows = state, []
    for _ in range(3):
        expected, m = _step(expected)
        rows.append(m)
    np.testing.assert_allclose(out[0], expected[0], rtol=1e-6)
    assert int(out[1]) == 3
    assert metrics["x"].shape == (4,) and metrics["count"].tolist() == [1, 2, 3, 0]  # row n and later: zeros
    np.testing.assert_allclose(metrics["x"][:3], [float(m["x"]) for m in rows], rtol=1e-6)


def test_how_a_run_is_cut_into_chunks_changes_no_bit_and_compiles_once():
    traces = []

    def step(state):
        traces.append(1)
        return _step(state)

    state = (jnp.linspace(-1.0, 1.0, 5), jnp.asarray(0, jnp.int32))
    steps = multi_step(step, 8)
    whole, _ = steps(state, 5)
    part, _ = steps(state, 2)
    part, _ = steps(part, 3)
    np.testing.assert_array_equal(whole[0], part[0])
    assert len(traces) == 1  # traced once (shapes and body), and n is an argument: one program for every length


def test_chunk_sizes_stop_at_every_boundary_and_the_end():
    fixed = ChunkSizes(3)
    assert fixed.max_steps == 3
    assert [fixed.next(d, 10, 4, 0) for d in (0, 3, 4, 8, 9)] == [3, 1, 3, 2, 1]  # 4 and 8 are boundaries, 10 the end
    assert fixed.next(0, 2, 0, 0) == 2


def test_auto_chunk_sizes_aim_at_a_second_per_call():
    auto = ChunkSizes(0)
    assert auto.max_steps == AUTO_MAX_STEPS
    assert auto.next(0, 100) == 1  # the first call compiles
    auto.observe(1, 30.0)
    assert auto.step_s is None and auto.next(1, 100) == 1  # the second is timed
    auto.observe(1, 0.1)
    assert auto.next(2, 100) == 10 and auto.next(2, 100, 5) == 3
    auto.observe(10, 0.01)
    assert auto.next(12, 100) == AUTO_MAX_STEPS
    auto.observe(1, 5.0)
    assert auto.next(28, 100) == 1  # a slow step: one per call


def test_keep_large_buffers_opt_out_and_glibc():
    assert allocator.keep_large_buffers({allocator.OPT_OUT: "0"}) is False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    assert allocator.keep_large_buffers({}) is True
