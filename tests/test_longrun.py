"""Long runs: non-finite guards, exact resume after a crash or SIGKILL, SIGTERM checkpoints (issue #6)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lpg import envs
from lpg.checkpoint import latest_training_step, read_objective_metadata
from lpg.cli import main
from lpg.harness import Run
from lpg.networks import NetworkConfig, make_agent
from objectives import load as load_objective
from training.actor_critic import ActorCriticTrainer, TrainConfig
from training.guards import SKIP_KEY, guarded_apply

ROOT = Path(__file__).resolve().parents[1]
OFFLINE_TOY = [
    "--envs",
    "chain/short",
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
    "0",
    "--eval-updates",
    "3",
    "--eval-seeds",
    "1",
    "--no-progress",
]


def _checkpoint_arrays(directory: Path) -> list[np.ndarray]:
    """The arrays of the newest training checkpoint in ``directory`` (restored without a target, for comparison)."""
    import orbax.checkpoint as ocp

    step = latest_training_step(directory)
    restored = ocp.StandardCheckpointer().restore(directory / str(step) / "state")
    return [np.asarray(x) for x in jax.tree.leaves(restored)]


def _assert_trees_equal(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b) and a
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


# --------------------------------------------------------------------------- guards inside jit


def test_guarded_apply_keeps_the_old_value_on_a_non_finite_gradient():
    new, old = {"w": jnp.ones(3)}, {"w": jnp.zeros(3)}
    for grad, expected, skipped in (
        ({"g": jnp.ones(2)}, new, 0.0),
        ({"g": jnp.array([1.0, jnp.nan])}, old, 1.0),
        ({"g": jnp.array([jnp.inf, 1.0])}, old, 1.0),
    ):
        for fn in (guarded_apply, jax.jit(guarded_apply)):
            value, flag = fn(grad, new, old)
            np.testing.assert_array_equal(value["w"], expected["w"])
            assert float(flag) == skipped


def test_agent_update_skips_a_non_finite_gradient_under_jit_and_vmap():
    env = envs.make("catch")
    agent = make_agent(env.spec, NetworkConfig(hidden_sizes=(16,)))
    trainer = ActorCriticTrainer.create(env, agent, __import__("objectives").make("a2c"), TrainConfig(4, 5))
    state = trainer.init(jax.random.PRNGKey(0))
    state, rollout = trainer.act(state)
    poisoned = rollout.replace(reward=rollout.reward.at[2, 1].set(jnp.nan))
    update = jax.jit(trainer.agent_update)
    params, opt_state, metrics = update(state.params, state.opt_state, {}, rollout)
    assert float(metrics[SKIP_KEY]) == 0.0
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(state.params)))
    params, opt_state, metrics = update(state.params, state.opt_state, {}, poisoned)
    assert float(metrics[SKIP_KEY]) == 1.0
    _assert_trees_equal(jax.tree.leaves(params), jax.tree.leaves(state.params))
    _assert_trees_equal(jax.tree.leaves(opt_state), jax.tree.leaves(state.opt_state))
    both = jax.tree.map(lambda a, b: jnp.stack([a, b]), rollout, poisoned)
    batched = jax.vmap(trainer.agent_update, in_axes=(None, None, None, 0))(state.params, state.opt_state, {}, both)
    np.testing.assert_array_equal(batched[2][SKIP_KEY], [0.0, 1.0])


def test_consecutive_skips_stop_the_run_with_a_clear_message(tmp_path):
    guard = Run(tmp_path / "run", {}, resume=False, checkpoint_interval_s=0, max_nonfinite_skips=3, what="test run")
    assert guard.count_skips(4, np.array([[0, 1, 1, 0], [1, 0, 0, 0]])) == 3
    assert guard.count_skips(6, np.array([[1, 1], [0, 0]])) == 2  # seed 0: 2 in a row so far
    with pytest.raises(Exception, match="3 consecutive updates had non-finite"):
        guard.count_skips(7, np.array([[1], [0]]))


# --------------------------------------------------------------------------- offline: NaN injection, SIGKILL


def _inject_nan_meta_gradient(monkeypatch, from_step: int, to_step: int) -> None:
    from training.offline import GradEstimator

    original = GradEstimator.meta_gradient

    def poisoned(self, state, per_lifetime=True):
        grads, per_lifetime, lifetimes, metrics = original(self, state, per_lifetime)
        bad = (state.step >= from_step) & (state.step <= to_step)
        grads = jax.tree.map(lambda g: jnp.where(bad, jnp.nan, g), grads)
        return grads, per_lifetime, lifetimes, metrics

    monkeypatch.setattr(GradEstimator, "meta_gradient", poisoned)


def test_offline_nan_meta_gradient_is_skipped_counted_and_the_objective_stays_finite(tmp_path, monkeypatch, capsys):
    _inject_nan_meta_gradient(monkeypatch, from_step=2, to_step=2)  # the 3rd meta-step
    out = tmp_path / "run"
    assert main(["discover", "offline", "--method", "grad", "--meta-steps", "4", "--out", str(out), *OFFLINE_TOY]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["nonfinite_skips"] == 1 and summary["meta_steps"] == 4
    rows = {
        row["step"]: row
        for row in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
        if "meta_loss" in row
    }
    assert [rows[s][SKIP_KEY] for s in (1, 2, 3, 4)] == [0.0, 0.0, 1.0, 0.0]
    assert rows[4]["nonfinite_skips_total"] == 1
    _, eta, _ = load_objective(out / "objective")
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(eta))


def test_offline_stops_after_consecutive_non_finite_meta_gradients_keeping_the_last_good_checkpoint(
    tmp_path, monkeypatch, capsys
):
    _inject_nan_meta_gradient(monkeypatch, from_step=2, to_step=10**6)
    out = tmp_path / "run"
    args = [
        "discover",
        "offline",
        "--method",
        "grad",
        "--meta-steps",
        "8",
        "--checkpoint-every",
        "1",
        "--max-nonfinite-skips",
        "2",
    ]
    assert main([*args, "--out", str(out), *OFFLINE_TOY]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2 consecutive updates had non-finite" in err[0] and "last good checkpoint" in err[0]
    assert latest_training_step(out / "training_state") == 3  # meta-steps 3 (skipped, eta kept) was saved; 4 stopped
    assert not (out / "summary.json").exists()
    _, eta, _metadata = load_objective(out / "objective")
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(eta))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_offline_interrupted_in_its_final_evaluation_resumes_with_only_the_evaluation(
    tmp_path, monkeypatch, capsys, signum
):
    import lpg.commands.discover_offline as command
    from training.offline import GradEstimator

    original_evaluate = command.evaluate_objective
    calls = []

    def interrupted_once(
        *args, **kwargs
    ):  # a signal while the final evaluation runs (the only evaluation: --eval-every 0)
        calls.append(1)
        if len(calls) == 1:
            os.kill(os.getpid(), signum)
            time.sleep(5)  # the handler raises before this ends
            raise AssertionError("the signal did not stop the evaluation")
        return original_evaluate(*args, **kwargs)

    monkeypatch.setattr(command, "evaluate_objective", interrupted_once)
    out = tmp_path / "run"
    args = ["discover", "offline", "--method", "grad", "--meta-steps", "3", "--out", str(out), *OFFLINE_TOY]
    assert main(args) == 128 + signum
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1
        and f"stopped by {signal.Signals(signum).name} during the final evaluation; all 3 meta-steps are saved"
        in err[0]
    )
    assert "--resume" in err[0]
    assert latest_training_step(out / "training_state") == 3 and not (out / "summary.json").exists()
    _, eta_before, metadata = load_objective(out / "objective")
    assert metadata["eval_scores"] is None

    def no_meta_steps(self, state):
        raise AssertionError("the resumed run trained again")

    monkeypatch.setattr(GradEstimator, "step", no_meta_steps)
    assert main([*args, "--resume"]) == 0 and len(calls) == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["meta_steps"] == 3 and [e["meta_step"] for e in summary["evaluations"]] == [3]
    _, eta_after, metadata = load_objective(out / "objective")
    _assert_trees_equal(jax.tree.leaves(eta_before), jax.tree.leaves(eta_after))
    assert metadata["eval_scores"]["mean_a2c_normalised"] == summary["mean_a2c_normalised"]
    # The training state of meta-step 3 was replaced by one that records the final evaluation.
    extra = json.loads((out / "training_state" / "3" / "extra" / "metadata").read_text())
    assert [e["meta_step"] for e in extra["evaluations"]] == [3]
    # Resuming the finished run does nothing and keeps its files; running it again without --resume is refused.
    before = (out / "summary.json").read_text()
    assert main([*args, "--resume"]) == 0 and len(calls) == 2
    assert (out / "summary.json").read_text() == before
    assert "already holds this run, finished; nothing to do" in capsys.readouterr().err
    assert main(args) == 2
    assert "already holds this run, finished; add --resume" in capsys.readouterr().err


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lpg.cli", *args]


def _wait_for_checkpoint(proc: subprocess.Popen, directory: Path, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before its first checkpoint: {proc.communicate()[1][-2000:]}")
        if directory.is_dir() and any(p.name.isdigit() for p in directory.iterdir()):
            return
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("no checkpoint appeared in time")


TIMING_KEYS = {"wall_s", "elapsed_s", "fps", "eval/wall_s"}  # the only metrics that may differ between twins
KILLED_RUNS = {
    # command: (arguments, checkpoint every chunk, checkpoints only at the end)
    "train": (
        ["train", "catch", "--steps", "40000", "--no-progress"],
        ["--checkpoint-interval-s", "0"],
        ["--checkpoint-interval-s", "3600"],
    ),
    "discover offline": (
        ["discover", "offline", "--method", "grad", "--meta-steps", "20", *OFFLINE_TOY],
        ["--checkpoint-every", "1"],
        ["--checkpoint-every", "0"],
    ),
}


def _metrics(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in rows]


def _wait_for_rows(proc: subprocess.Popen, out: Path, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.communicate()[1][-2000:]}"
        metrics = out / "metrics.jsonl"
        if metrics.exists() and metrics.read_text().count("\n") >= 2:
            return
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("no metrics appeared in time")


def _kill_and_resume(args: list[str], killed: Path, moment: str) -> None:
    """Runs ``args`` in a subprocess, SIGKILLs it (before its first checkpoint, or at a random moment after one),
    then resumes it to the end in another."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        _cli(*args, "--out", str(killed)), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    if moment == "before the first checkpoint":
        _wait_for_rows(proc, killed)
    else:
        _wait_for_checkpoint(proc, killed / "training_state")
        time.sleep(random.Random(os.getpid()).uniform(0.0, 0.6))  # mid-step, mid-save, ...
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"{moment}: the run finished before it could be killed; lengthen it"
    if moment == "before the first checkpoint":
        assert latest_training_step(killed / "training_state") is None

    resumed = subprocess.run(
        _cli(*args, "--out", str(killed), "--resume"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]


@pytest.mark.parametrize("command", list(KILLED_RUNS))
def test_killed_and_resumed_run_writes_what_an_uninterrupted_run_writes(tmp_path, command):
    """SIGKILL before any checkpoint exists (checkpoints only at the end), and at a random moment (a checkpoint
    every chunk), then the same command with --resume: metrics.jsonl (without its timing keys), the final training
    state and the objective equal one uninterrupted run's (how often a run checkpoints changes none of them)."""
    base, often, rarely = KILLED_RUNS[command]
    whole = tmp_path / "whole"
    assert main([*base, *often, "--out", str(whole)]) == 0
    metrics, state = _metrics(whole), _checkpoint_arrays(whole / "training_state")
    eta = jax.tree.leaves(load_objective(whole / "objective")[1]) if command == "discover offline" else None
    for moment, every in (("before the first checkpoint", rarely), ("at a random moment", often)):
        killed = tmp_path / moment.replace(" ", "_")
        _kill_and_resume([*base, *every], killed, moment)
        assert _metrics(killed) == metrics, moment
        _assert_trees_equal(state, _checkpoint_arrays(killed / "training_state"))
        if eta is not None:
            _assert_trees_equal(eta, jax.tree.leaves(load_objective(killed / "objective")[1]))


# --------------------------------------------------------------------------- train and discover online: crash, SIGTERM, resume


def test_train_stopped_by_sigterm_saves_and_resumes_to_the_uninterrupted_result(tmp_path):
    args = ["train", "catch", "--steps", "60000", "--checkpoint-interval-s", "0", "--no-progress"]
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    assert main([*args, "--out", str(whole)]) == 0

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        _cli(*args, "--out", str(stopped)), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _wait_for_checkpoint(proc, stopped / "training_state")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "SIGTERM" in lines[0] and "--resume" in lines[0]
    assert not (stopped / "summary.json").exists()
    saved = latest_training_step(stopped / "training_state")
    assert saved is not None and saved < 94  # 60000 steps / 640 per update -> 94 updates

    assert main([*args, "--out", str(stopped), "--resume"]) == 0
    a = json.loads((whole / "summary.json").read_text())
    b = json.loads((stopped / "summary.json").read_text())
    assert a["final_return"] == b["final_return"] and b["resumed_at_update"] == saved
    _assert_trees_equal(_checkpoint_arrays(whole / "training_state"), _checkpoint_arrays(stopped / "training_state"))


# own: the outer critic's state is checkpointed and restored too (1-step, to keep the suite short)
@pytest.mark.parametrize("outer_critic, inner_steps", [("auto", 2), ("own", 1)])
def test_discover_online_resumed_after_a_crash_equals_an_uninterrupted_run(
    tmp_path, monkeypatch, outer_critic, inner_steps
):
    from lpg.commands.discover_online import OnlineOptions, discover_online
    from training.meta_gradient import MetaGradientTrainer

    kwargs = dict(
        steps=2400, progress=False, checkpoint_interval_s=0.0, inner_steps=inner_steps,
        network=NetworkConfig(hidden_sizes=(16,)), outer_critic=outer_critic,
    )  # fmt: skip
    whole = discover_online(OnlineOptions("catch", "self_tuning", out=str(tmp_path / "whole"), **kwargs))

    original, calls = MetaGradientTrainer.run_seeds, [0]

    def crash_on_the_fourth_chunk(self, states, num_steps):
        calls[0] += 1
        if calls[0] == 4:
            raise RuntimeError("simulated crash")
        return original(self, states, num_steps)

    monkeypatch.setattr(MetaGradientTrainer, "run_seeds", crash_on_the_fourth_chunk)
    with pytest.raises(RuntimeError, match="simulated crash"):
        discover_online(OnlineOptions("catch", "self_tuning", out=str(tmp_path / "split"), **kwargs))
    monkeypatch.setattr(MetaGradientTrainer, "run_seeds", original)
    split = discover_online(OnlineOptions("catch", "self_tuning", out=str(tmp_path / "split"), resume=True, **kwargs))
    assert split["resumed_at_update"] == 3
    assert whole["final_meta_parameters"] == split["final_meta_parameters"]
    assert whole["final_return"] == split["final_return"]
    _assert_trees_equal(
        _checkpoint_arrays(tmp_path / "whole" / "training_state"),
        _checkpoint_arrays(tmp_path / "split" / "training_state"),
    )
    schedules = [read_objective_metadata(tmp_path / r / "objective")["eta_schedule"] for r in ("whole", "split")]
    assert schedules[0] == schedules[1] and len(schedules[0]["points"]) > 4  # recorded across the crash


def test_rerunning_into_a_run_with_checkpoints_needs_resume(tmp_path, capsys):
    args = [
        "train",
        "chain/short",
        "--steps",
        "2000",
        "--checkpoint-interval-s",
        "0",
        "--no-progress",
        "--out",
        str(tmp_path / "r"),
    ]
    assert main(args) == 0
    before = sorted(p.name for p in (tmp_path / "r").iterdir())
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "add --resume" in err[-1]
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == before
    assert main([*args, "--resume"]) == 0  # a finished run resumes to its summary at once


def test_evaluate_stopped_by_sigint_resumes_without_retraining_finished_environments(tmp_path):
    shipped = ROOT / "checkpoints" / "lpg-toy-v1"
    args = [
        "evaluate",
        str(shipped),
        "--envs",
        "chain/short,catch",
        "--steps",
        "12000",
        "--seeds",
        "1",
        "--no-progress",
    ]
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    assert main([*args, "--out", str(whole)]) == 0

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        _cli(*args, "--out", str(stopped)), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 300
    while not (stopped / "partial_results.json").exists():
        assert proc.poll() is None and time.monotonic() < deadline, (
            "the evaluation ended before its first environment was saved"
        )
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the evaluation finished before SIGINT arrived")
    assert proc.returncode == 128 + signal.SIGINT, err[-2000:]
    assert len(err.strip().splitlines()) == 1 and "SIGINT" in err and "--resume" in err
    partial = json.loads((stopped / "partial_results.json").read_text())
    assert len(partial["results"]) == 1 and not (stopped / "summary.json").exists()

    assert main([*args, "--out", str(stopped)]) == 2  # unfinished: needs --resume
    assert main([*args, "--out", str(stopped), "--resume"]) == 0
    a = json.loads((whole / "summary.json").read_text())
    b = json.loads((stopped / "summary.json").read_text())
    for name in a["results"]:
        for key in ("return_per_seed", "a2c_return_per_seed", "random_return_per_seed", "a2c_normalised"):
            assert a["results"][name][key] == b["results"][name][key], (name, key)
    assert not (stopped / "partial_results.json").exists()
    assert b["wall_s"] > partial["wall_s"] > 0  # both sessions' time
