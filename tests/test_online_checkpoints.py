"""Online discovery saves what it found (objective/), and a saved objective keeps learning online (--init-objective)."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import jax
import numpy as np
import pytest

import objectives
from lpg import envs
from lpg.cli import main
from lpg.commands.discover_online import OnlineOptions, _ObjectiveSaver, discover_online
from tests.test_bad_input import _flip_bytes
from training.presets import default_preset

TINY = {"env": "catch", "steps": 8, "num_envs": 2, "unroll_length": 4, "progress": False}  # one update
# A whole `lpg discover online` run for FRODO (a target network): the command's code does not depend on the
# objective; every objective's checkpoint round trip is the saver test below.
RUN_OBJECTIVES = ("frodo",)


@pytest.fixture(scope="module")
def online_runs(tmp_path_factory):
    """One tiny `lpg discover online` lifetime per objective of RUN_OBJECTIVES: name -> output folder."""
    root = tmp_path_factory.mktemp("online")
    runs = {}
    for name in RUN_OBJECTIVES:
        runs[name] = root / name
        discover_online(OnlineOptions(objective=name, out=str(runs[name]), **TINY))
    return runs


@pytest.mark.parametrize("name", objectives.supporting("online"))
def test_every_online_objective_round_trips_through_the_online_checkpoint(name, tmp_path):
    """objective/ and objective_best/ as online discovery writes them: identical arrays and metadata back."""
    objective = objectives.make(name)
    leaves, treedef = jax.tree.flatten(objective.init(jax.random.PRNGKey(0)))
    moved = [np.asarray(x) + 0.01 * np.arange(np.size(x)).reshape(np.shape(x)) for x in leaves]  # not init's values
    eta = jax.tree.unflatten(treedef, [m.astype(np.asarray(x).dtype) for m, x in zip(moved, leaves)])
    setup = {"num_envs": 2, "unroll_length": 4, "optimizer": default_preset(envs.make("catch").spec).config.optimizer}
    run = SimpleNamespace(out=tmp_path, save_hooks=[])
    options = OnlineOptions(objective=name, out=str(tmp_path), **TINY)
    saver = _ObjectiveSaver(
        run, options, objective, {"inner_steps": 1, "mix": False, "steps": 8}, setup,
        eta_of=lambda state: state, score_of=lambda extra: extra["score"], eta_curve_of=lambda extra: extra["curve"],
    )  # fmt: skip
    assert run.save_hooks == [saver]
    curve = {"x": [(0, 1.0), (1, 2.5)]}
    run.save_hooks[0](1, eta, {"score": -0.25, "curve": curve})  # what the harness calls before a checkpoint
    summary = {"final_return": 0.5, "score": None, "final_meta_parameters": {"x": 2.5}, "steps": 8}
    entries = saver.final(eta, summary, curve)
    assert entries == {"objective_checkpoint": str(tmp_path / "objective"),
                       "objective_best_checkpoint": str(tmp_path / "objective_best"), "best_recent_score": -0.25}  # fmt: skip
    for folder, expected in (("objective", {"final_return": 0.5}), ("objective_best", {"best_score": -0.25})):
        loaded, eta_back, metadata = objectives.load(tmp_path / folder)
        assert loaded.name == name and loaded.config == objective.config
        assert jax.tree.structure(eta_back) == treedef
        for a, b in zip(jax.tree.leaves(eta_back), jax.tree.leaves(eta)):
            assert np.asarray(a).dtype == np.asarray(b).dtype and np.array_equal(a, b)
        assert metadata["eta_trajectory"] == {"x": [[0, 1.0], [1, 2.5]]} and metadata["online"]["steps"] == 8
        assert metadata["evaluation"]["num_envs"] == 2 and metadata["method"] == "online"
        assert {k: metadata[k] for k in expected} == expected


@pytest.mark.parametrize("name", RUN_OBJECTIVES)
def test_online_discovery_saves_an_objective_checkpoint_that_loads_back(online_runs, name):
    out = online_runs[name]
    objective, eta, metadata = objectives.load(out / "objective")
    summary = json.loads((out / "summary.json").read_text())
    assert objective.name == name and metadata["objective"]["name"] == name
    assert metadata["envs"] == ["catch"] and metadata["method"] == "online"
    assert metadata["evaluation"]["num_envs"] == 2 and metadata["evaluation"]["unroll_length"] == 4
    assert jax.tree.structure(eta) == jax.tree.structure(objective.init(jax.random.PRNGKey(0)))
    described = {k: float(np.asarray(v)) for k, v in objective.describe_eta(eta).items()}
    assert described == pytest.approx(summary["final_meta_parameters"], rel=1e-5, abs=1e-7)
    assert set(metadata["eta_trajectory"]) == set(described)
    assert summary["objective_checkpoint"] == str(out / "objective")


def test_a_corrupted_online_checkpoint_gets_the_one_line_error_of_an_offline_one(online_runs, tmp_path, capsys):
    spoiled = shutil.copytree(online_runs["frodo"] / "objective", tmp_path / "objective")
    _flip_bytes(spoiled)
    assert main(["evaluate", str(spoiled), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lpg: error: objective checkpoint")
    assert "is corrupted: the checksum of state/d/" in lines[0]  # as for an offline one (tests/test_bad_input.py)
    assert not (tmp_path / "out").exists()


def test_a_saved_objective_keeps_learning_online_from_its_checkpoint(online_runs, tmp_path):
    start = online_runs["frodo"] / "objective"
    _, eta0, _ = objectives.load(start)
    out = tmp_path / "adapted"
    summary = discover_online(OnlineOptions(init_objective=str(start), out=str(out), **TINY))
    assert summary["objective"] == "frodo"
    config = json.loads((out / "config.json").read_text())
    assert config["init_objective"]["objective"]["name"] == "frodo"
    _, eta1, metadata = objectives.load(out / "objective")
    assert metadata["init_objective"] == str(start)
    moved = [
        float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in zip(jax.tree.leaves(eta0), jax.tree.leaves(eta1))
    ]
    assert 0 < max(moved) < 1.0  # one meta-step from the saved eta, not from a fresh init
    with pytest.raises(Exception, match="does not match the --init-objective checkpoint's objective 'frodo'"):
        discover_online(OnlineOptions(objective="mgrl", init_objective=str(start), out=str(tmp_path / "x"), **TINY))


def test_a_frozen_start_and_a_pulled_one_keep_eta_where_it_started(online_runs, tmp_path):
    """--inner-steps 0 keeps the saved eta frozen (eta_distance 0); --init-pull W logs its distance; --mix needs n."""
    start = online_runs["frodo"] / "objective"
    _, eta0, _ = objectives.load(start)
    steps = dict(TINY, steps=24)  # three updates
    discover_online(OnlineOptions(init_objective=str(start), inner_steps=0, out=str(tmp_path / "frozen"), **steps))
    _, eta1, _ = objectives.load(tmp_path / "frozen" / "objective")
    for a, b in zip(jax.tree.leaves(eta0), jax.tree.leaves(eta1)):
        np.testing.assert_array_equal(a, b)
    rows = [json.loads(line) for line in (tmp_path / "frozen" / "metrics.jsonl").read_text().splitlines()]
    assert rows and all(row["eta_distance"] == 0.0 for row in rows if "eta_distance" in row)
    assert any("eta_distance" in row for row in rows)
    discover_online(OnlineOptions(init_objective=str(start), init_pull=1.0, out=str(tmp_path / "pulled"), **steps))
    rows = [json.loads(line) for line in (tmp_path / "pulled" / "metrics.jsonl").read_text().splitlines()]
    assert max(row.get("eta_distance", 0.0) for row in rows) > 0
    with pytest.raises(Exception, match="--inner-steps 0 learns no meta-gradient"):
        OnlineOptions(inner_steps=0, mix=True, out=str(tmp_path / "x"), **TINY)


def test_objective_and_the_best_one_are_saved_beside_every_training_checkpoint(tmp_path):
    out = tmp_path / "periodic"
    options = {**TINY, "steps": 96, "checkpoint_interval_s": 0}  # 12 updates, a training checkpoint per chunk
    summary = discover_online(OnlineOptions(objective="frodo", out=str(out), **options))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    returns = [row["episode_return"] for row in rows if row["episodes"]]
    assert len(returns) >= 2
    _, best_eta, best = objectives.load(out / "objective_best")
    assert best["best_score"] == pytest.approx(max(returns))
    assert summary["best_recent_score"] == pytest.approx(max(returns))
    assert summary["objective_best_checkpoint"] == str(out / "objective_best")
    best_row = next(row for row in rows if row["episodes"] and row["episode_return"] == pytest.approx(max(returns)))
    assert best["best_at"] == best_row["updates"] and best["recent_score"] == best["best_score"]
    _, final_eta, final = objectives.load(out / "objective")
    assert final["final_return"] == summary["final_return"] and final["online"]["steps"] == 96
    if best["best_at"] < 12:  # the best is an earlier eta than the final one
        assert any(np.any(a != b) for a, b in zip(jax.tree.leaves(best_eta), jax.tree.leaves(final_eta)))


def test_transfer_experiment_runs_four_arms_and_reads_finished_ones_back(tmp_path, capsys):
    out = tmp_path / "transfer"
    args = ["experiment", "transfer", "--checkpoint", "checkpoints/lpg-toy-v1", "--envs", "chain/short",
            "--steps", "640", "--seeds", "1", "--inner-steps", "2", "--mix", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["final_return"]["chain/short"]) == {"a2c", "frozen", "adapted", "frodo"}
    assert (out / "chain_short.png").exists() and (out / "chain_short_eta_distance.png").exists()
    _, saved, _ = objectives.load("checkpoints/lpg-toy-v1")
    _, frozen, _ = objectives.load(out / "chain_short" / "frozen" / "objective")
    for a, b in zip(jax.tree.leaves(saved), jax.tree.leaves(frozen)):
        np.testing.assert_array_equal(a, b)
    assert main(args) == 0  # every arm is finished: read back, same summary
    assert json.loads((out / "summary.json").read_text())["final_return"] == summary["final_return"]
    adapted = [json.loads(line) for line in (out / "chain_short" / "adapted" / "metrics.jsonl").read_text().splitlines()]
    assert any(row.get("outer_critic_loss", 0) > 0 for row in adapted)  # LPG adapts against a critic of its own
    config = json.loads((out / "chain_short" / "adapted" / "config.json").read_text())
    assert config["outer"]["normalise_advantages"] and config["outer"]["entropy_weight"] == 0.05
    assert (config["meta"]["inner_steps"], config["meta"]["mix"]) == (2, True)  # the adapted arm's estimator, only
    frodo = json.loads((out / "chain_short" / "frodo" / "config.json").read_text())
    assert (frodo["meta"]["inner_steps"], frodo["meta"]["mix"]) == (1, False)
    capsys.readouterr()
    assert main(["experiment", "transfer", "--out", str(tmp_path / "x")]) == 2
    assert "--checkpoint" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert main(["experiment", "mrp-gamma", "--checkpoint", "c", "--out", str(tmp_path / "y")]) == 2
    assert "applies to lpg experiment transfer only" in capsys.readouterr().err


def test_an_online_run_records_its_eta_schedule_and_evaluate_replays_it_by_progress(online_runs, tmp_path, capsys):
    """mgrl's eta (gamma, lambda logits) after every chunk is in objective/'s metadata; `lpg evaluate
    --eta-schedule replay` plays it back: each chunk of a fresh agent's lifetime uses the latest recorded eta
    not past its fraction of the lifetime. A network's eta (FRODO) records none, and replay then says so."""
    from lpg import checkpoint
    from lpg.eta_schedule import EtaSchedule
    from lpg.networks import make_agent
    from training.actor_critic import ActorCriticTrainer, TrainConfig
    from training.loop import chunk_sizes, train_loop

    run = tmp_path / "mgrl"
    discover_online(OnlineOptions(objective="mgrl", out=str(run), **{**TINY, "steps": 8 * 60}))
    objective, eta, metadata = objectives.load(run / "objective")
    record = metadata["eta_schedule"]
    assert record["total_updates"] == 60 and [p["update"] for p in record["points"]] == [0, *range(2, 61, 2)]
    schedule = EtaSchedule.from_record(record, eta)
    init = objective.init(jax.random.PRNGKey(0))
    for got, want in ((schedule.etas[0], init), (schedule.etas[-1], eta)):  # the start, and the saved eta
        jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), got, want)
    moved = jax.tree.map(lambda a, b: not np.array_equal(a, b), schedule.etas[0], schedule.etas[-1])
    assert all(jax.tree.leaves(moved))  # eta moved, so the two comparisons above are not the same one

    # Replay by progress, against the chunks run by hand with the eta in force at each chunk's start.
    env = envs.make("catch")
    trainer = ActorCriticTrainer.create(env, make_agent(env.spec), objective, TrainConfig(2, 4), total_updates=100)
    keys = jax.vmap(jax.random.PRNGKey)(np.arange(2))
    two = EtaSchedule((0.0, 0.5), (schedule.etas[0], schedule.etas[-1]))
    _, replayed = train_loop(trainer, two, trainer.init_seeds(keys), 100)
    states, by_hand, done = trainer.init_seeds(keys), [], 0
    for size in chunk_sizes(100):
        states, metrics = trainer.run_seeds(states, two.etas[int(done >= 50)], size)
        by_hand.append(np.asarray(metrics["loss"]))
        done += size
    np.testing.assert_array_equal(replayed["loss"], np.concatenate(by_hand, axis=1))
    _, first_only = train_loop(trainer, two.etas[0], trainer.init_seeds(keys), 100)
    assert not np.array_equal(first_only["loss"], replayed["loss"])  # the second half did use the later eta

    args = ["evaluate", str(run / "objective"), "--envs", "catch", "--steps", "4000", "--seeds", "2", "--no-progress"]
    assert main([*args, "--eta-schedule", "replay", "--out", str(tmp_path / "replay")]) == 0
    assert main([*args, "--out", str(tmp_path / "final")]) == 0
    configs = [json.loads((tmp_path / f / "config.json").read_text())["options"] for f in ("replay", "final")]
    assert configs[0]["eta_schedule"] == "replay" and "eta_schedule" not in configs[1]  # earlier runs keep theirs
    returns = [json.loads((tmp_path / f / "summary.json").read_text())["results"]["catch"] for f in ("replay", "final")]
    assert returns[0]["a2c_return"] == returns[1]["a2c_return"]  # same agents and baselines, only eta differs

    frodo = online_runs["frodo"]
    assert "eta_schedule" not in checkpoint.read_objective_metadata(frodo / "objective")
    capsys.readouterr()
    assert main(["evaluate", str(frodo / "objective"), "--envs", "catch", "--eta-schedule", "replay",
                 "--out", str(tmp_path / "no")]) == 2  # fmt: skip
    assert "records no eta schedule" in capsys.readouterr().err and not (tmp_path / "no").exists()
