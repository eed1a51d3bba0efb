"""Transfer evaluation (evaluation.evaluate) and `lpg evaluate` (evaluation.commands)."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

import objectives
from evaluation.evaluate import NOT_BEATEN_NOTE, a2c_normalised, evaluate_objective, results_table
from lpg import checkpoint as ck
from lpg import envs
from lpg.commands.evaluate import EvaluateCommand, EvaluateOptions, run_evaluate
from lpg.errors import CheckpointError, InvalidConfigError, UnknownNameError
from tests.test_checkpoint import YHeadObjective  # noqa: F401  (registers "test-yhead")
from training.baselines import a2c_beats_random, score_scale

ENV = "chain/short"
STEPS = 3000  # 5 updates of the chain preset (32 envs x 20 steps)
SEEDS = 2
KEYS = (
    "return",
    "a2c_return",
    "random_return",
    "a2c_normalised",
    "return_per_seed",
    "a2c_return_per_seed",
    "random_return_per_seed",
)

# A2C and random baselines shared by the tests of this module (same env, steps, seeds and seed).
BASELINES: dict = {}


@pytest.fixture(scope="module")
def a2c_checkpoint(tmp_path_factory):
    a2c = objectives.make("a2c")
    return ck.save_objective(tmp_path_factory.mktemp("ckpt") / "a2c", a2c, {}, {"envs": [ENV], "method": "none"})


def test_a2c_against_itself_scores_exactly_one_and_writes_the_run(a2c_checkpoint, tmp_path, capsys):
    out = tmp_path / "eval"
    options = EvaluateOptions(
        str(a2c_checkpoint), envs=ENV, steps=STEPS, seeds=SEEDS, seed=0, out=str(out), progress=False
    )
    summary = run_evaluate(options, baseline_cache=BASELINES)
    result = summary["results"][ENV]
    assert set(KEYS) <= set(result)
    assert result["return"] == result["a2c_return"]  # same seeds => identical training
    assert result["a2c_normalised"] == 1.0
    assert summary["mean_a2c_normalised"] == 1.0
    assert len(result["return_per_seed"]) == SEEDS and result["return_per_seed"] == result["a2c_return_per_seed"]
    assert result["steps"] == 3200

    written = json.loads((out / "summary.json").read_text())
    assert written["results"][ENV]["a2c_normalised"] == 1.0
    assert written["checkpoint"] == str(a2c_checkpoint) and written["checkpoint_metadata"]["method"] == "none"
    assert (out / "a2c_normalised.png").stat().st_size > 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["env"] == ENV and rows[0]["a2c_normalised"] == 1.0
    assert ENV in capsys.readouterr().out
    assert "| **mean** | | | | **1.00** |" in results_table(summary)


def test_frozen_objective_with_y_head_on_toy_chain():
    objective = objectives.make("test-yhead", y_size=6)
    eta = objective.init(jax.random.PRNGKey(1))
    cache: dict = {}
    first_calls: list[int] = []
    evaluate_objective(
        objective, eta, [ENV], STEPS, SEEDS, seed=0, progress=lambda n, s: first_calls.append(n), baseline_cache=cache
    )
    assert sum(first_calls) == 2 * SEEDS * 3200  # fresh cache: the objective and the A2C baseline trained
    progress_calls = []
    evaluation = evaluate_objective(
        objective,
        eta,
        [ENV],
        STEPS,
        SEEDS,
        seed=0,
        progress=lambda n, s: progress_calls.append(n),
        baseline_cache=cache,
    )
    result = evaluation["results"][ENV]
    assert set(KEYS) <= set(result)
    r, a, z = result["return"], result["a2c_return"], result["random_return"]
    assert all(np.isfinite(x) for x in (r, a, z))
    assert result["a2c_normalised"] == (r - z) / score_scale(a, z)
    assert result["a2c_beats_random"] == (a - z >= max(0.1, 0.1 * abs(z)))
    assert r == pytest.approx(np.mean(result["return_per_seed"]))
    assert evaluation["mean_a2c_normalised"] == result["a2c_normalised"]
    assert sum(progress_calls) == SEEDS * 3200  # baselines came from the cache: only the objective trained


def test_the_score_keeps_its_sign_when_a2c_does_worse_than_random():
    # Unfloored, an objective worse than both A2C and random scored (-1 + 0.038) / (-0.5 + 0.038) = +2.08.
    assert a2c_normalised(-1.0, -0.5, -0.038) == pytest.approx((-1.0 + 0.038) / 0.1)  # -9.62: the floor is 0.1
    assert not a2c_beats_random(-0.5, -0.038)
    # A2C clearly better than random: the plain formula, unchanged.
    assert a2c_normalised(0.5, 1.0, -0.2) == pytest.approx(0.7 / 1.2) and a2c_beats_random(1.0, -0.2)
    assert score_scale(1.0, -0.2) == pytest.approx(1.2)
    # Pong-like scale: the floor is 10% of |random| = 2.07 points, so A2C 0.2 points above random does not count.
    assert score_scale(-20.5, -20.7) == pytest.approx(2.07) and not a2c_beats_random(-20.5, -20.7)
    assert a2c_normalised(-19.0, -20.5, -20.7) == pytest.approx(1.7 / 2.07)
    assert a2c_beats_random(-18.0, -20.7)  # 2.7 points >= 2.07
    # Increasing in the objective's return whatever A2C did; equal to random scores 0; missing numbers give None.
    scores = [a2c_normalised(r, -0.5, -0.038) for r in (-1.0, -0.5, -0.038, 0.2)]
    assert scores == sorted(scores) and scores[2] == 0.0
    assert a2c_normalised(None, 1.0, 0.0) is None and a2c_normalised(0.3, 0.0, 0.0) == pytest.approx(3.0)


def test_tables_mark_environments_where_a2c_did_not_beat_random():
    row = {"return": -1.0, "a2c_return": -0.5, "random_return": -0.038}
    evaluation = {
        "results": {
            "bad": dict(row, a2c_normalised=a2c_normalised(-1.0, -0.5, -0.038), a2c_beats_random=False),
            "good": {
                "return": 0.5,
                "a2c_return": 1.0,
                "random_return": 0.0,
                "a2c_normalised": 0.5,
                "a2c_beats_random": True,
            },
        },
        "mean_a2c_normalised": -4.56,
    }
    table = results_table(evaluation)
    assert "| bad | -1.000 | -0.500 | -0.038 | -9.62† |" in table and "| good | 0.500 | 1.000 | 0.000 | 0.50 |" in table
    assert table.endswith(NOT_BEATEN_NOTE)
    del evaluation["results"]["bad"]
    assert NOT_BEATEN_NOTE not in results_table(evaluation) and "†" not in results_table(evaluation)


def test_cli_missing_checkpoint(tmp_path):
    out = tmp_path / "eval"
    with pytest.raises(CheckpointError, match="no objective checkpoint"):
        EvaluateCommand(str(tmp_path / "missing"), envs=ENV, out=str(out), progress=False).run()
    assert not out.exists()


def test_cli_unknown_env(a2c_checkpoint, tmp_path):
    out = tmp_path / "eval"
    with pytest.raises(UnknownNameError, match="unknown environment 'chain/nope'"):
        EvaluateCommand(str(a2c_checkpoint), envs=f"{ENV},chain/nope", out=str(out), progress=False).run()
    with pytest.raises(UnknownNameError, match="matches no environment"):
        EvaluateCommand(str(a2c_checkpoint), envs="nothing/*", out=str(out), progress=False).run()
    assert not out.exists()


def test_cli_invalid_numbers(a2c_checkpoint, tmp_path):
    out = tmp_path / "eval"
    with pytest.raises(InvalidConfigError, match="--seeds must be positive"):
        EvaluateCommand(str(a2c_checkpoint), envs=ENV, seeds=0, out=str(out), progress=False).run()
    with pytest.raises(InvalidConfigError, match="--steps must be positive"):
        EvaluateCommand(str(a2c_checkpoint), envs=ENV, steps=-5, out=str(out), progress=False).run()
    assert not out.exists()


def test_lpg_evaluate_uses_the_agent_setup_recorded_in_the_checkpoint(tmp_path):
    from evaluation.evaluate import checkpoint_train_config
    from lpg.checkpoint import read_objective_metadata

    metadata = read_objective_metadata("checkpoints/lpg-toy-v1")
    config = checkpoint_train_config(metadata)
    assert (config.num_envs, config.unroll_length, config.optimizer.learning_rate) == (16, 50, 0.03)
    assert checkpoint_train_config({"envs": ["catch"]}) is None
    summary = run_evaluate(
        EvaluateOptions(
            "checkpoints/lpg-toy-v1", envs="chain/short", steps=1600, seeds=1, out=str(tmp_path / "e"), progress=False
        )
    )
    assert summary["agent_setup"] == "checkpoint" and summary["train_config"].num_envs == 16
    assert summary["results"]["chain/short"]["num_updates"] == 2  # 1600 steps / (16 envs x 50 steps)


def test_agent_overrides_reach_the_agents_and_the_a2c_baseline(a2c_checkpoint, tmp_path):
    """--num-envs/--unroll-length/--learning-rate/--optimizer replace the set-up for the evaluated agents
    and the baseline alike: evaluating the A2C objective equals `lpg train` with the same flags, seed by seed."""
    from lpg.commands.train import TrainOptions, train

    flags = {"num_envs": 8, "unroll_length": 10, "learning_rate": 3e-3, "optimizer": "rmsprop"}
    options = EvaluateOptions(
        str(a2c_checkpoint), envs=ENV, steps=800, seeds=SEEDS, out=str(tmp_path / "eval"), progress=False, **flags
    )
    summary = run_evaluate(options, baseline_cache=BASELINES, show_table=False)
    result = summary["results"][ENV]
    assert result["steps"] == 800 and result["num_updates"] == 10  # 800 steps / (8 envs x 10 steps)
    config = summary["train_configs"][ENV]
    assert (config.num_envs, config.unroll_length, config.optimizer.learning_rate, config.optimizer.name) == (
        8,
        10,
        3e-3,
        "rmsprop",
    )
    assert summary["agent_overrides"] == flags
    assert (
        result["a2c_return_per_seed"] == result["return_per_seed"]
    )  # the baseline used the same set-up (not a cached default one)

    trained = train(
        TrainOptions(
            ENV, objective="a2c", steps=800, num_seeds=SEEDS, out=str(tmp_path / "train"), progress=False, **flags
        )
    )
    assert trained["final_return_per_seed"] == result["return_per_seed"]


def test_objective_config_overrides_keep_the_learned_parameters(tmp_path):
    from evaluation.evaluate import with_config_overrides

    objective, eta, _ = objectives.load("checkpoints/lpg-toy-v1")
    changed = with_config_overrides(objective, eta, ("alpha_y=0.1",))
    assert changed.config.alpha_y == 0.1 and changed.config.hidden_size == objective.config.hidden_size
    assert with_config_overrides(objective, eta, ()) is objective
    with pytest.raises(InvalidConfigError, match="changes the shapes"):
        with_config_overrides(objective, eta, ("hidden_size=64",))
    with pytest.raises(InvalidConfigError, match="no field 'nope'"):
        with_config_overrides(objective, eta, ("nope=1",))


def test_evaluate_objective_takes_an_environment_value_that_is_not_registered():
    from lpg.envs.chain import DelayedChain

    mine = DelayedChain("my/fixed_chain", max_length=6, min_length=6)
    evaluation = evaluate_objective(objectives.make("a2c"), {}, [mine], 400, 1, seed=0)
    result = evaluation["results"]["my/fixed_chain"]
    assert result["steps"] >= 400 and result["a2c_normalised"] == 1.0  # A2C against itself, same seeds
    with pytest.raises(UnknownNameError):
        envs.make("my/fixed_chain")  # nothing entered the registry
