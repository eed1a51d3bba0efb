"""`lpg discover offline` end to end at toy size: outputs, initial evaluation, checkpoint, resume."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from lpg.cli import main
from objectives import load as load_objective

TOY = [
    "--envs",
    "chain/short",
    "--meta-steps",
    "4",
    "--num-lifetimes",
    "2",
    "--num-envs",
    "4",
    "--unroll-length",
    "10",
    "--lifetime-updates",
    "6",
    "--inner-updates",
    "2",
    "--eval-every",
    "2",
    "--eval-updates",
    "3",
    "--eval-seeds",
    "1",
    "--no-progress",
]


@pytest.mark.parametrize("method", ["grad", "es"])
def test_discover_offline_writes_objective_and_evaluates_from_the_random_start(tmp_path, capsys, method):
    from evaluation.drift import entropy_drift

    out = tmp_path / method
    assert main(["discover", "offline", "--method", method, "--out", str(out), *TOY]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == method and summary["meta_steps"] == 4
    assert [e["meta_step"] for e in summary["evaluations"]] == [0, 2, 4]
    assert summary["initial_mean_a2c_normalised"] == summary["evaluations"][0]["mean_a2c_normalised"]
    objective, eta, metadata = load_objective(out / "objective")
    assert objective.name == "lpg" and metadata["method"] == method
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(eta))
    assert (out / "metrics.jsonl").exists() and list(out.glob("events.out.tfevents.*"))
    # Every evaluation logs the zero-reward entropy drift; the last is `lpg inspect OUT/objective --peaks 2` at T = 10.
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    logged = [r["eval/zero_reward_drift"] for r in rows if "eval/zero_reward_drift" in r]
    assert logged == [e["zero_reward_drift"] for e in summary["evaluations"]] and len(logged) == 3
    (probe,) = entropy_drift(objective, eta, num_actions=6, unroll_length=10, peaks=(2.0,))
    assert summary["zero_reward_drift"] == logged[-1] == pytest.approx(probe.entropy_drift, rel=1e-5, abs=1e-9)
    where = "determinism" if probe.entropy_drift < 0 else "uniform"
    assert f"zero-reward entropy drift {probe.entropy_drift:+.5f}: the objective pushes policies towards {where}" in (
        capsys.readouterr().out
    )


def test_resumed_discovery_equals_an_uninterrupted_one(tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    args = ["discover", "offline", "--method", "grad", *TOY, "--eval-every", "0", "--checkpoint-every", "2"]
    assert main([*args, "--out", str(whole)]) == 0
    first = list(args)
    first[first.index("--meta-steps") + 1] = "2"
    assert main([*first, "--out", str(split)]) == 0
    assert main([*args, "--out", str(split), "--resume"]) == 0
    _, eta_whole, _ = load_objective(whole / "objective")
    _, eta_split, _ = load_objective(split / "objective")
    for a, b in zip(jax.tree.leaves(eta_whole), jax.tree.leaves(eta_split)):
        np.testing.assert_array_equal(a, b)


def test_discover_offline_bad_method_is_a_clean_error(tmp_path, capsys):
    assert main(["discover", "offline", "--method", "sgd", "--out", str(tmp_path / "x"), *TOY]) == 2
    assert "method" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_recipe_gives_its_flags_and_flags_beside_it_win(tmp_path, monkeypatch):
    """--recipe NAME sets its options (here: validation environments apart from the training one); a flag wins."""
    from lpg.commands import discover_offline

    recipe = dict(zip(TOY[0::2], TOY[1::2]))  # the toy flags, as a recipe
    recipe = {k.removeprefix("--").replace("-", "_"): v for k, v in recipe.items() if k != "--no-progress"}
    recipe.update(eval_envs="gridworld/rand_small,chain/long", progress=False)
    monkeypatch.setitem(discover_offline.RECIPES, "test-toy", recipe)
    out = tmp_path / "run"
    assert main(["discover", "offline", "--recipe", "test-toy", "--meta-steps", "2", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["meta_steps"] == 2 and summary["envs"] == ["chain/short"]  # the flag won over the recipe's 4
    assert [e["meta_step"] for e in summary["evaluations"]] == [0, 2]  # eval_every 2 from the recipe
    assert sorted(summary["evaluation"]["results"]) == ["chain/long", "gridworld/rand_small"]  # validation only
    _, _, metadata = load_objective(out / "objective_best")
    assert metadata["validation_envs"] == "gridworld/rand_small,chain/long"
    assert "on the validation environments" in metadata["selection"]
    assert json.loads((out / "config.json").read_text())["options"]["recipe"] == "test-toy"


def test_unknown_recipe_and_bad_validation_env_are_clean_errors(tmp_path, capsys):
    assert main(["discover", "offline", "--recipe", "nope", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "broad-cpu" in err and not (tmp_path / "a").exists()
    bad = ["discover", "offline", *TOY, "--eval-envs", "gridworld/nope", "--out", str(tmp_path / "b")]
    assert main(bad) == 2
    assert "gridworld/nope" in capsys.readouterr().err and not (tmp_path / "b").exists()


def test_shipped_recipes_build():
    from lpg.commands.discover_offline import RECIPES, OfflineOptions, build_offline, validation_environments

    for name in RECIPES:
        options = OfflineOptions.from_recipe(name, out="unused")
        objective, config, envs = build_offline(options)
        assert "gridworld/procedural" in envs and config.min_lifetime_updates == 10
        validation = validation_environments(options, objective, envs)
        assert validation and not set(validation) & set(envs)  # model selection never on a training environment
        assert not any(n.endswith("-MinAtar") for n in validation)  # nor on a test game


def test_evaluation_agents_use_the_discovery_setup_only_where_it_fits():
    from lpg import envs
    from lpg.commands.discover_offline import evaluation_train_configs
    from training.offline import OfflineConfig

    config = OfflineConfig(envs=("chain/distractor",), num_envs=8, unroll_length=7)
    chosen = {n: envs.get(n) for n in ("chain/distractor", "gridworld/rand_small", "catch")}
    setups = evaluation_train_configs(config, chosen)
    assert set(setups) == {"chain/distractor", "gridworld/rand_small"}  # catch (not tabular, not trained on): preset
    assert setups["gridworld/rand_small"].num_envs == 8 and setups["gridworld/rand_small"].unroll_length == 7


def test_meta_steps_per_call_change_no_bit(tmp_path):
    """--steps-per-call 1 and 3 (chunks of 3 and 2): the same objective and the same metrics rows (wall times aside).
    Every other run of the suite uses the automatic value (0)."""
    args = ["discover", "offline", "--method", "grad", *TOY, "--meta-steps", "5", "--eval-every", "0"]
    etas, rows = [], []
    for value in ("1", "3"):
        out = tmp_path / value
        assert main([*args, "--steps-per-call", value, "--out", str(out)]) == 0
        etas.append(load_objective(out / "objective")[1])
        lines = (out / "metrics.jsonl").read_text().splitlines()
        rows.append([json.dumps({k: v for k, v in json.loads(line).items() if "wall" not in k}) for line in lines])
    assert len(rows[0]) == 6  # 5 meta-steps and the final evaluation
    assert rows[1] == rows[0]
    for eta in etas[1:]:
        for a, b in zip(jax.tree.leaves(etas[0]), jax.tree.leaves(eta)):
            np.testing.assert_array_equal(a, b)
