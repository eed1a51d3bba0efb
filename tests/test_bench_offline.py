"""``lpg bench offline``: what it times, the numbers it prints, and its bad input."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax.numpy as jnp
import pytest

from lpg.cli import main
from tests.test_bad_input import assert_bad_input

TINY = [
    "bench",
    "offline",
    "--envs",
    "chain/short",
    "--num-lifetimes",
    "2",
    "--num-envs",
    "2",
    "--unroll-length",
    "3",
    "--inner-updates",
    "1",
    "--lifetime-updates",
    "2",
    "--repeats",
    "2",
]


class _Counter(NamedTuple):
    step: jnp.ndarray


class _CountingEstimator:
    """An estimator whose meta-step only counts, so the timed loop's step count can be read back."""

    @staticmethod
    def step(state: _Counter):
        return _Counter(state.step + 1), {"step": state.step}


@pytest.mark.parametrize("repeats, steps_per_call", [(5, 2), (5, 0), (1, 3)])
def test_the_timed_loop_runs_one_warm_up_step_and_then_exactly_repeats_meta_steps(repeats, steps_per_call):
    from training.offline.bench import _meta_step_seconds

    state, seconds = _meta_step_seconds(_CountingEstimator(), _Counter(jnp.int32(0)), repeats, steps_per_call)
    assert int(state.step) == 1 + repeats
    assert seconds > 0


def test_bench_offline_prints_one_row_per_method_with_the_agent_steps_of_a_meta_step(capsys, monkeypatch):
    """grad: lifetimes x (K + 1) x envs x T = 2 x 2 x 2 x 3; es: 2 x pairs x lifetime updates x envs x T = 2 x 2 x 2 x 2 x 3."""
    import training.offline.bench as bench

    results = []

    def recording(*args, **kwargs):
        results.append(real(*args, **kwargs))
        return results[-1]

    real = bench.bench_offline
    monkeypatch.setattr(bench, "bench_offline", recording)
    assert main(TINY) == 0
    rows = [
        line for line in capsys.readouterr().out.splitlines() if line.startswith("| grad") or line.startswith("| es")
    ]
    assert [r["method"] for r in results] == ["grad", "es"] and len(rows) == 2
    assert [r["agent_steps_per_meta_step"] for r in results] == [24, 48]
    for row, r in zip(rows, results, strict=True):
        assert r["envs"] == ["chain/short"]
        assert all(math.isfinite(r[k]) and r[k] > 0 for k in ("meta_step_s", "a2c_equivalent_s"))
        assert r["agent_steps_per_s"] == pytest.approx(r["agent_steps_per_meta_step"] / r["meta_step_s"])
        assert r["meta_step_over_a2c"] == pytest.approx(r["meta_step_s"] / r["a2c_equivalent_s"])
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[:2] == [r["method"], str(r["agent_steps_per_meta_step"])]
        assert cells[3] == f"{r['agent_steps_per_s']:,.0f}" and cells[5] == f"{r['meta_step_over_a2c']:.1f}x"


@pytest.mark.parametrize(
    "extra, phrase",
    [
        (["--methods", "grad", "evolution"], "unknown method 'evolution'"),
        (["--envs", "chain/shrt"], "chain/shrt"),
        (["--repeats", "0"], "--repeats"),
        (["--steps-per-call", "-1"], "--steps-per-call"),
    ],
)
def test_bench_offline_bad_input_is_one_line_and_status_2(capsys, extra, phrase):
    assert_bad_input(capsys, [*TINY, *extra], phrase, None)
