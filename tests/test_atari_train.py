"""Atari training at toy size: the same learner and outputs as the toy MDPs."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

pytest.importorskip("envpool")

import objectives
from lpg.cli import main
from lpg.envs.atari import AtariConfig, AtariEnv
from lpg.networks import NetworkConfig
from lpg.types import assert_rollout_shapes
from training.atari import AtariActor, AtariRunConfig, build_atari_trainer


def test_actor_rollouts_overlap_and_follow_the_convention():
    env = AtariEnv("Pong", AtariConfig(num_envs=2, seed=0))
    try:
        objective = objectives.make("a2c", reward_clip=1.0)
        trainer = build_atari_trainer(
            env.spec, objective, AtariRunConfig(num_envs=2, unroll_length=4), NetworkConfig(), 10
        )
        params = trainer.agent.init(jax.random.PRNGKey(0))
        actor = AtariActor(env, trainer.agent.apply, 4, seed=0)
        first = actor.collect(params)
        first_on_host = jax.tree.map(np.array, first)  # copies
        second = actor.collect(params)
        # The next rollout must not write into the previous one: on CPU, jnp.asarray
        # shares a large numpy buffer's memory, and the learner may still read it.
        for before, after in zip(jax.tree.leaves(first_on_host), jax.tree.leaves(first)):
            np.testing.assert_array_equal(np.asarray(after), before)
        assert assert_rollout_shapes(first) == (4, 2)
        assert first.observation.dtype == np.uint8 and first.observation.shape[2:] == (4, 84, 84)
        np.testing.assert_array_equal(second.observation[0], first.observation[-1])
        # Behaviour logits are the policy's at acting time: recompute and compare.
        out = trainer.agent.apply(params, first.observation[:-1])
        np.testing.assert_allclose(first.behaviour_logits[:-1], out.logits, rtol=1e-4, atol=1e-4)
        params2, _, metrics = jax.jit(trainer.agent_update)(params, trainer.optimizer.init(params), {}, first)
        assert np.isfinite(float(metrics["loss"]))
        assert any(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params2)))
    finally:
        env.close()


def test_lpg_train_atari_writes_the_run_folder(tmp_path, capsys):
    out = tmp_path / "pong"
    args = [
        "train",
        "atari/Pong",
        "--frames",
        "640",
        "--num-envs",
        "2",
        "--unroll-length",
        "8",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env"] == "atari/Pong" and summary["frames"] == 640 and summary["steps"] == 160
    assert {"score", "human_normalised", "frames_per_s", "wall_s"} <= set(summary)
    assert summary["steady_frames_per_s"] > 0  # 5 updates, the first 2 (compilation) left out
    assert json.loads((out / "config.json").read_text())["objective_config"]["reward_clip"] == 1.0
    assert (out / "metrics.jsonl").read_text().strip()
    assert summary["score"] is None  # no Pong game ends in 640 frames, and the user is told why
    assert "no game finished within --frames" in capsys.readouterr().out


def test_unknown_atari_game_is_a_clean_error(tmp_path, capsys):
    assert main(["train", "atari/NoSuchGame", "--frames", "100", "--out", str(tmp_path / "x")]) == 2
    assert "unknown environment 'atari/NoSuchGame'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_frodo_discovers_online_on_atari_and_moves_eta(tmp_path, capsys):
    out = tmp_path / "frodo"
    args = [
        "discover",
        "online",
        "atari/Pong",
        "--objective",
        "frodo",
        "--frames",
        "960",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(args) == 0  # 3 updates of 16 envs x 5 steps: a plain first update, then two meta-updates
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env"] == "atari/Pong" and summary["frames"] == 960
    assert (summary["inner_steps"], summary["mix"], summary["num_seeds"], summary["meta_interval"]) == (
        1,
        False,
        1,
        1,
    )  # keys of toy runs
    config = json.loads((out / "config.json").read_text())  # the Atari defaults of the meta-optimiser and outer loss
    assert config["meta"]["meta_learning_rate"] == 1e-4 and config["outer"]["entropy_weight"] == 0.01
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["meta_grad_norm"] > 0 and np.isfinite(rows[-1]["meta_loss"])
    assert summary["final_meta_parameters"]["head_norm"] > 0  # FRODO's residual head starts at 0 (keys as on toy runs)
    assert (out / "meta_parameters.png").stat().st_size > 1000
    printed = capsys.readouterr().out  # an Atari run reports its score in frames, as `lpg train` does
    assert "atari/Pong / frodo (1-step): score n/a (human-normalised n/a) after 960 frames" in printed
    assert "meta-parameters: head_norm=" in printed


@pytest.mark.parametrize(
    "flags, message",
    [(["--inner-steps", "0"], "needs --inner-steps >= 1"), (["--monte-carlo", "2"], "--monte-carlo must be 1")],
)
def test_atari_online_discovery_rejects_what_needs_a_second_rollout_or_none(tmp_path, capsys, flags, message):
    args = ["discover", "online", "atari/Pong", "--objective", "frodo", *flags, "--frames", "100"]
    assert main([*args, "--out", str(tmp_path / "x")]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_evaluate_a_saved_objective_on_atari(tmp_path, capsys):
    from lpg.checkpoint import save_objective

    ckpt = tmp_path / "a2c-objective"
    a2c = objectives.make("a2c")
    save_objective(ckpt, a2c, a2c.init(jax.random.PRNGKey(0)), {"envs": ["catch"]})
    out = tmp_path / "eval"
    args = [
        "evaluate",
        str(ckpt),
        "--envs",
        "atari/Pong",
        "--frames",
        "1408",
        "--seeds",
        "1",
        "--out",
        str(out),
        "--no-progress",
        "--num-envs",
        "4",
        "--unroll-length",
        "8",
        "--learning-rate",
        "1e-3",
        "--objective-config",
        "reward_clip=2.0",
    ]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["atari_config"]["num_envs"] == 4 and summary["atari_config"]["unroll_length"] == 8
    assert (
        summary["atari_config"]["optimizer"]["learning_rate"] == 1e-3
        and summary["objective_config"]["reward_clip"] == 2.0
    )
    agent = json.loads((out / "agents" / "Pong-seed0" / "summary.json").read_text())
    assert agent["frames"] == 1408  # 11 updates of 4 envs x 8 steps x 4 frames (the default 16 x 5 rounds up to 1600)
    result = summary["results"]["atari/Pong"]
    assert (result["random_score"], result["human_score"]) == (-20.7, 14.6)
    assert summary["objective"] == "a2c" and summary["frames"] == 1408 and "median_human_normalised" in summary
    assert (out / "human_normalised.png").exists()
    assert result["score"] is None and "n/a: no game finished within --frames" in capsys.readouterr().out
    assert (out / "agents" / "Pong-seed0" / "training_state").is_dir()
    # --resume of a finished evaluation reuses each agent's summary: same scores, no training.
    assert main([*args, "--resume"]) == 0
    assert json.loads((out / "summary.json").read_text())["results"] == summary["results"]


@pytest.mark.parametrize("flag", ["--num-envs", "--unroll-length"])
def test_non_positive_atari_batch_is_a_clean_error(tmp_path, capsys, flag):
    assert main(["train", "atari/Pong", "--frames", "100", flag, "0", "--out", str(tmp_path / "x")]) == 2
    assert "must be positive" in capsys.readouterr().err and not (tmp_path / "x").exists()


@pytest.mark.parametrize("command", ["train", "frodo"])
def test_atari_run_crashed_mid_way_resumes_from_its_checkpoint(tmp_path, monkeypatch, command):
    """Atari resume restores the learner (and FRODO's eta, meta-optimiser, its window of rollouts for a 2-step
    mixing meta-gradient and, with --outer-critic own, the outer critic); games restart fresh."""
    import training.atari as atari

    out = tmp_path / command
    frodo = ["discover", "online", "atari/Pong", "--objective", "frodo", "--outer-critic", "own"]
    args = (
        ["train", "atari/Pong", "--objective", "a2c"] if command == "train" else [*frodo, "--inner-steps", "2", "--mix"]
    )
    args += ["--frames", "384", "--num-envs", "2", "--unroll-length", "8", "--checkpoint-interval-s", "0"]
    args += ["--out", str(out), "--no-progress"]
    original, calls = atari.AtariActor.collect, [0]

    def crash_on_the_fourth_rollout(self, params):
        calls[0] += 1
        if calls[0] == 4:
            raise RuntimeError("simulated crash")
        return original(self, params)

    monkeypatch.setattr(atari.AtariActor, "collect", crash_on_the_fourth_rollout)
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(args)
    monkeypatch.setattr(atari.AtariActor, "collect", original)
    assert not (out / "summary.json").exists()
    assert main(args) == 2  # a run with checkpoints needs --resume
    assert main([*args, "--resume"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_at_update"] == 3 and summary["frames"] >= 384
    config = json.loads((out / "config.json").read_text())["atari_config"]
    assert (config["num_envs"], config["unroll_length"]) == (2, 8)  # the flags reached the run (train and FRODO alike)
    if command == "frodo":
        assert summary["final_meta_parameters"]["head_norm"] > 0 and (summary["inner_steps"], summary["mix"]) == (
            2,
            True,
        )
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert any(row.get("outer_critic_loss", 0) > 0 for row in rows)  # the critic learned, before and after


FAKE_PEER = """
import json, sys, time
json.dump(sys.argv[1:], open(sys.argv[0] + ".args.json", "w"))
steps = int(sys.argv[sys.argv.index("--total-timesteps") + 1])
for step in range(4, steps + 1, 4):  # one line per iteration of 2 envs x 2 steps, as cleanrl prints them
    time.sleep(0.5 if step <= 8 else 0.01)  # the first two iterations compile
    print(f"global_step={step}, avg_episodic_return=0.0")
    print("SPS:", 1)
"""


def test_bench_atari_prints_the_ceiling_arithmetic_and_steady_rates(tmp_path, capsys):
    out = tmp_path / "results" / "bench.json"
    peer = tmp_path / "peer.py"
    peer.write_text(FAKE_PEER)
    # 10 updates of 2 envs x 2 steps x 4 frames per end-to-end run
    args = ["bench", "atari", "--num-envs", "2", "--unroll-length", "2", "--frames", "160"]
    assert main([*args, "--out", str(out), "--peer", str(peer)]) == 0
    captured = capsys.readouterr()
    result = json.loads(out.read_text())
    stages = [line for line in captured.err.splitlines() if line.startswith("bench atari: ")]
    assert [line.split(",")[0].split(" (")[0] for line in stages] == [
        "bench atari: raw envpool",
        "bench atari: learner cost per batch and policy forward per acting step",
        "bench atari: A2C end to end",
        "bench atari: the peer peer.py",
        "bench atari: V-trace with acting overlapped with learning",
        "bench atari: FRODO end to end",
    ]
    peer_args = json.loads((tmp_path / "peer.py.args.json").read_text())
    assert peer_args == [
        *("--env-id", "Pong-v5", "--num-envs", "2", "--num-steps", "2", "--num-minibatches", "1"),
        *("--update-epochs", "1", "--total-timesteps", "40", "--seed", "0"),
    ]
    # 4-step lines at t = 0.5, 1.0, then every 0.01 s: 1,600 frames/s once the two compiling iterations are
    # left out (about 250 if they were counted); the bounds leave room for a loaded machine's jitter
    assert result["peer_frames"] == 4 * 40 and 500 < result["peer_frames_per_s"] < 6400
    assert result["a2c_over_peer"] == pytest.approx(result["a2c_frames_per_s"] / result["peer_frames_per_s"])
    assert result["vtrace_overlap_over_peer"] == pytest.approx(
        result["vtrace_overlap_frames_per_s"] / result["peer_frames_per_s"]
    )
    assert "A2C / peer = **" in captured.out and "V-trace / peer = **" in captured.out
    frames_per_update = 2 * 2 * 4
    expected_ceiling = frames_per_update / (result["env_s_per_update"] + result["learner_s_per_update"])
    assert result["ceiling_frames_per_s"] == pytest.approx(expected_ceiling)
    assert (
        result["a2c_frames_per_s"] > 0
        and result["frodo_frames_per_s"] > 0
        and result["vtrace_overlap_frames_per_s"] > 0
    )
    assert result["a2c_fraction_of_ceiling"] == pytest.approx(result["a2c_frames_per_s"] / expected_ceiling)
    expected_bound = frames_per_update / (
        result["env_s_per_update"] + result["learner_s_per_update"] + 2 * result["act_s_per_step"]
    )
    assert result["sync_bound_frames_per_s"] == pytest.approx(expected_bound) and expected_bound < expected_ceiling
    assert result["a2c_fraction_of_sync_bound"] == pytest.approx(result["a2c_frames_per_s"] / expected_bound)
    assert result["vtrace_overlap_fraction_of_ceiling"] == pytest.approx(
        result["vtrace_overlap_frames_per_s"] / expected_ceiling
    )
    assert result["frodo_fraction_of_a2c"] == pytest.approx(result["frodo_frames_per_s"] / result["a2c_frames_per_s"])
    table = captured.out
    assert "ceiling = 16 frames / (env + learner)" in table and "of ceiling" in table and "of A2C" in table
    assert "synchronous bound = 16 frames / (env + learner + 2 policy forwards)" in table and "(--overlap)" in table
    assert f"wrote {out}" in table
    assert main(["bench", "atari", "--num-envs", "0"]) == 2
    assert "must be positive" in capsys.readouterr().err


def test_a_failing_peer_script_is_one_error_with_its_last_output(tmp_path):
    from lpg.errors import InvalidConfigError
    from training.atari_bench import bench_peer

    peer = tmp_path / "peer.py"
    peer.write_text("print('global_step=16, avg_episodic_return=0')\nraise SystemExit('envpool: unknown game')\n")
    with pytest.raises(InvalidConfigError, match=r"peer.py failed \(exit status 1\): envpool: unknown game"):
        bench_peer(str(peer), "Pong", 2, 2, 160)


def test_bench_atari_no_frodo_flag_reaches_the_bench(monkeypatch, capsys, tmp_path):
    import training.atari_bench

    seen = {}

    def fake_bench(game, num_envs, unroll_length, frames, *, with_frodo, with_vtrace, peer, log):
        seen.update(game=game, frames=frames, with_frodo=with_frodo, with_vtrace=with_vtrace, peer=peer)
        log("bench atari: a stage")
        return {"game": game}

    monkeypatch.setattr(training.atari_bench, "bench_atari", fake_bench)
    monkeypatch.setattr(training.atari_bench, "format_bench_atari", lambda result: f"table of {result['game']}")
    assert main(["bench", "atari", "--game", "Breakout", "--frames", "640", "--no-frodo", "--no-vtrace"]) == 0
    captured = capsys.readouterr()
    assert seen == {"game": "Breakout", "frames": 640, "with_frodo": False, "with_vtrace": False, "peer": None}
    assert captured.out.strip() == "table of Breakout" and captured.err.strip() == "bench atari: a stage"
    (tmp_path / "x.py").write_text("")
    assert main(["bench", "atari", "--frames", "640", "--peer", str(tmp_path / "x.py")]) == 0
    assert seen["with_frodo"] is True and seen["with_vtrace"] is True and seen["peer"] == str(tmp_path / "x.py")
