"""``lpg bench atari``: where the time of Atari training goes on this machine.

In one run: (1) raw envpool steps/s with random actions; (2) the learner's
cost per batch (one jitted agent update on a ``[T+1, B]`` rollout); (3) the
policy's acting cost per step; (4) end-to-end frames/s of A2C training, of
V-trace training with acting and learning overlapped (``--overlap``: one update
of policy lag, corrected by V-trace) and of FRODO training. The *ceiling* is
what a perfect pipeline would reach with sequential acting and learning:
``frames_per_update / (env_time_per_update + learner_time)``; end-to-end rates
are reported as fractions of it. The policy forward of acting is not in the
ceiling; ``sync_bound`` adds it (``T`` forwards per update) and is the most a
synchronous on-policy learner such as A2C can reach on this machine with zero
overhead. End-to-end rates leave out the first updates, which compile
(``steady_frames_per_s`` of the run); the component timings leave out their
own warm-up calls (the first few calls after compilation are up to 1.5x slower).

Given the path of cleanrl's ``ppo_atari_envpool_xla_jax.py`` (``peer``), it
also runs that script as a subprocess with A2C-equivalent flags
(``peer_command``) right after our A2C run and reports A2C / peer and V-trace
with overlap / peer: frames/s at equal compute (same game, emulators, unroll,
network and one gradient step per rollout), measured the same way (first two
iterations left out). The script is not part of this project: the bench only
takes its path.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import jax
import numpy as np

import objectives
from lpg.envs.atari import AtariConfig, AtariEnv
from lpg.errors import InvalidConfigError
from lpg.networks import NetworkConfig
from training.atari import WARMUP_UPDATES, AtariActor, AtariRunConfig, build_atari_trainer, train_atari

RAW_ENV_STEPS = 600  # random-action steps of the whole batch; the first RAW_ENV_WARMUP are not timed
RAW_ENV_WARMUP = 100


def _timed(fn, repeats: int, warmup: int = 3) -> float:
    """Mean seconds per call of ``fn`` after ``warmup`` calls (compilation and the slower first runs)."""
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def _steady_fps(summary: dict) -> float:
    """Frames/s after compilation; the whole run's rate when it was too short to tell."""
    return summary["steady_frames_per_s"] or summary["frames_per_s"]


def _component_costs(
    game: str, objective, config: AtariRunConfig, seed: int, log: Callable[[str], None]
) -> tuple[float, float, float]:
    """Raw envpool steps/s with random actions, seconds per learner update and per policy forward."""
    num_envs, unroll_length = config.num_envs, config.unroll_length
    env = AtariEnv(game, AtariConfig(num_envs=num_envs, seed=seed))
    try:
        log(f"bench atari: raw envpool, {RAW_ENV_STEPS - RAW_ENV_WARMUP} random-action steps of {num_envs} {game} envs")
        env.reset()
        rng = np.random.default_rng(seed)
        actions = [rng.integers(0, env.num_actions, num_envs).astype(np.int32) for _ in range(RAW_ENV_STEPS)]
        for a in actions[:RAW_ENV_WARMUP]:
            env.step(a)
        start = time.perf_counter()
        for a in actions[RAW_ENV_WARMUP:]:
            env.step(a)
        raw_steps_per_s = (len(actions) - RAW_ENV_WARMUP) * num_envs / (time.perf_counter() - start)

        log("bench atari: learner cost per batch and policy forward per acting step (after compilation)")
        trainer = build_atari_trainer(env.spec, objective, config, NetworkConfig(), 1000)
        params = trainer.agent.init(jax.random.PRNGKey(seed))
        opt_state = trainer.optimizer.init(params)
        actor = AtariActor(env, trainer.agent.apply, unroll_length, seed)
        rollout = actor.collect(params)
        learn = jax.jit(trainer.agent_update)
        learner_s = _timed(lambda: jax.block_until_ready(learn(params, opt_state, {}, rollout)), 20)
        obs = np.asarray(rollout.observation[0])
        key = jax.random.PRNGKey(0)
        act_s = _timed(lambda: jax.block_until_ready(actor._act(params, obs, key)), 100)
    finally:
        env.close()
    return raw_steps_per_s, learner_s, act_s


def _bench_frodo(game: str, frames: int, seed: int, config: AtariRunConfig, log: Callable[[str], None]) -> float:
    """Steady frames/s of FRODO training with 1-step meta-gradients (the defaults of ``lpg discover online``)."""
    from training.atari import discover_atari_online
    from training.meta_gradient import ATARI_META_LEARNING_RATE, ATARI_OUTER_ENTROPY_WEIGHT, MetaGradConfig

    log(f"bench atari: FRODO end to end (1-step meta-gradients), {frames:,} frames")
    frodo = objectives.make("frodo", reward_clip=1.0)
    outer = objectives.make(
        "a2c", value_weight=0.0, entropy_weight=ATARI_OUTER_ENTROPY_WEIGHT, td_lambda=0.95, reward_clip=1.0
    )
    meta = MetaGradConfig(inner_steps=1, meta_learning_rate=ATARI_META_LEARNING_RATE)
    run = discover_atari_online(f"atari/{game}", frodo, frames, seed, None, meta, outer, config, progress=False)
    return _steady_fps(run)


def bench_atari(
    game: str = "Pong",
    num_envs: int = 16,
    unroll_length: int = 5,
    frames: int = 200_000,
    seed: int = 0,
    with_frodo: bool = True,
    with_vtrace: bool = True,
    peer: str | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> dict:
    """Measures the numbers above; returns them with the derived ratios (the ceiling, the synchronous bound).

    ``frames`` is the length of each end-to-end run (A2C, V-trace with
    overlap when ``with_vtrace``, FRODO when ``with_frodo``, the peer when
    ``peer`` is the path of cleanrl's ``ppo_atari_envpool_xla_jax.py``: it
    runs right after A2C with A2C-equivalent flags, see ``peer_command``);
    ``log`` receives one line as each stage starts (the CLI prints them on
    stderr: the whole bench takes minutes).
    """
    if peer is not None:
        check_peer(peer)
    config = AtariRunConfig(num_envs=num_envs, unroll_length=unroll_length, log_every_s=1e9)
    frame_skip = AtariConfig().frame_skip
    objective = objectives.make("a2c", reward_clip=1.0)
    raw_steps_per_s, learner_s, act_s = _component_costs(game, objective, config, seed, log)
    steps_per_update = num_envs * unroll_length
    env_s = steps_per_update / raw_steps_per_s
    ceiling_fps = steps_per_update * frame_skip / (env_s + learner_s)
    sync_bound_fps = steps_per_update * frame_skip / (env_s + learner_s + unroll_length * act_s)
    log(f"bench atari: A2C end to end, {frames:,} frames")
    a2c = train_atari(f"atari/{game}", objective, {}, frames, seed, None, config, progress=False)
    a2c_fps = _steady_fps(a2c)
    result: dict = {}
    if peer is not None:
        result.update(bench_peer(peer, game, num_envs, unroll_length, frames, seed, log))
        result["a2c_over_peer"] = a2c_fps / result["peer_frames_per_s"]
    if with_vtrace:
        log(f"bench atari: V-trace with acting overlapped with learning, {frames:,} frames")
        vtrace = objectives.make("vtrace", reward_clip=1.0)
        overlapped = train_atari(
            f"atari/{game}", vtrace, {}, frames, seed, None, dataclasses.replace(config, overlap=True), progress=False
        )
        result["vtrace_overlap_frames_per_s"] = overlap_fps = _steady_fps(overlapped)
        result["vtrace_overlap_fraction_of_ceiling"] = overlap_fps / ceiling_fps
        if peer is not None:
            result["vtrace_overlap_over_peer"] = overlap_fps / result["peer_frames_per_s"]
    result |= {
        "game": game,
        "num_envs": num_envs,
        "unroll_length": unroll_length,
        "raw_env_steps_per_s": raw_steps_per_s,
        "raw_env_frames_per_s": raw_steps_per_s * frame_skip,
        "env_s_per_update": env_s,
        "learner_s_per_update": learner_s,
        "act_s_per_step": act_s,
        "ceiling_frames_per_s": ceiling_fps,
        "sync_bound_frames_per_s": sync_bound_fps,
        "sync_bound_fraction_of_ceiling": sync_bound_fps / ceiling_fps,
        "a2c_frames_per_s": a2c_fps,
        "a2c_fraction_of_ceiling": a2c_fps / ceiling_fps,
        "a2c_fraction_of_sync_bound": a2c_fps / sync_bound_fps,
    }
    if with_frodo:
        result["frodo_frames_per_s"] = frodo_fps = _bench_frodo(game, frames, seed, config, log)
        result["frodo_fraction_of_a2c"] = frodo_fps / a2c_fps
    return result


def format_bench_atari(r: dict) -> str:
    frames_per_update = r["num_envs"] * r["unroll_length"] * 4
    lines = [
        f"| measure ({r['game']}, {r['num_envs']} envs, T={r['unroll_length']}) | value |",
        "|---|---:|",
        f"| raw envpool, random actions | {r['raw_env_steps_per_s']:,.0f} steps/s = {r['raw_env_frames_per_s']:,.0f} frames/s |",
        f"| env time per update ({r['num_envs'] * r['unroll_length']} steps) | {1e3 * r['env_s_per_update']:.0f} ms |",
        f"| learner time per update (batch {(r['unroll_length'] + 1) * r['num_envs']}) | {1e3 * r['learner_s_per_update']:.0f} ms |",
        f"| policy forward per acting step | {1e3 * r['act_s_per_step']:.1f} ms |",
        f"| ceiling = {frames_per_update} frames / (env + learner) | {r['ceiling_frames_per_s']:,.0f} frames/s |",
        (
            f"| synchronous bound = {frames_per_update} frames / (env + learner + {r['unroll_length']} policy forwards) "
            f"| {r['sync_bound_frames_per_s']:,.0f} frames/s = {r['sync_bound_fraction_of_ceiling']:.2f} of ceiling |"
        ),
        (
            f"| A2C end to end | {r['a2c_frames_per_s']:,.0f} frames/s = {r['a2c_fraction_of_ceiling']:.2f} of ceiling "
            f"= {r['a2c_fraction_of_sync_bound']:.2f} of synchronous bound |"
        ),
    ]
    if "peer_frames_per_s" in r:
        lines.append(
            f"| peer: cleanrl PPO (envpool XLA, 1 epoch x 1 minibatch) | {r['peer_frames_per_s']:,.0f} frames/s; "
            f"A2C / peer = **{r['a2c_over_peer']:.2f}x** |"
        )
    if "vtrace_overlap_frames_per_s" in r:
        lines.append(
            f"| V-trace, acting overlapped with learning (--overlap) | {r['vtrace_overlap_frames_per_s']:,.0f} frames/s "
            f"= {r['vtrace_overlap_fraction_of_ceiling']:.2f} of ceiling"
            + (f"; V-trace / peer = **{r['vtrace_overlap_over_peer']:.2f}x** |" if "vtrace_overlap_over_peer" in r else " |")
        )
    if "frodo_frames_per_s" in r:
        lines.append(
            f"| FRODO end to end | {r['frodo_frames_per_s']:,.0f} frames/s = {r['frodo_fraction_of_a2c']:.2f} of A2C |"
        )
    return "\n".join(lines)


PEER_FLAGS = ("--num-minibatches", "1", "--update-epochs", "1")  # one gradient step per rollout, as A2C


def peer_command(peer: str, game: str, num_envs: int, unroll_length: int, frames: int, seed: int = 0) -> list[str]:
    """The command line that runs cleanrl's ``ppo_atari_envpool_xla_jax.py`` (at path ``peer``) as A2C does.

    A2C-equivalent flags: the same game, emulators and unroll, one gradient step
    per ``num_envs x unroll_length`` rollout, the Nature CNN; ``frames`` are
    emulator frames (the peer counts env steps, each 4 frames).
    """
    steps = max(frames // 4, 2 * num_envs * unroll_length)
    return [
        sys.executable,
        "-u",
        str(peer),
        "--env-id",
        f"{game}-v5",
        "--num-envs",
        str(num_envs),
        "--num-steps",
        str(unroll_length),
        *PEER_FLAGS,
        "--total-timesteps",
        str(steps),
        "--seed",
        str(seed),
    ]


def check_peer(peer: str) -> pathlib.Path:
    """The peer script's resolved path; InvalidConfigError (one line) when it is not a file."""
    path = pathlib.Path(peer).expanduser().resolve()
    if not path.is_file():
        raise InvalidConfigError(f"--peer {peer}: no such file (give the path of cleanrl's ppo_atari_envpool_xla_jax.py)")
    return path


_PEER_STEP = re.compile(r"^global_step=(\d+),")


def peer_steady_fps(events: list[tuple[float, int]], warmup: int = WARMUP_UPDATES) -> float | None:
    """Frames/s from ``(arrival time, global_step)`` of the peer's per-iteration lines, leaving out the first
    ``warmup`` iterations (they compile), as ``steady_frames_per_s`` does for ours; None when too few lines."""
    if len(events) <= warmup + 1:
        return None
    (t0, s0), (t1, s1) = events[warmup], events[-1]
    return 4 * (s1 - s0) / (t1 - t0) if t1 > t0 else None


def bench_peer(
    peer: str,
    game: str,
    num_envs: int,
    unroll_length: int,
    frames: int,
    seed: int = 0,
    log: Callable[[str], None] = lambda message: None,
) -> dict:
    """Runs the peer script once and returns its steady frames/s (same warm-up rule as ours) and its wall time.

    The peer writes TensorBoard files under ``runs/`` of its working directory,
    so it runs in a temporary directory that is removed afterwards.

    Raises:
      InvalidConfigError: ``peer`` is not a file, or the script failed (its last output lines are in the message).
    """
    path = check_peer(peer)
    command = peer_command(str(path), game, num_envs, unroll_length, frames, seed)
    log(f"bench atari: the peer {path.name}, {4 * int(command[command.index('--total-timesteps') + 1]):,} frames")
    events: list[tuple[float, int]] = []
    tail: collections.deque[str] = collections.deque(maxlen=8)
    with tempfile.TemporaryDirectory(prefix="lpg-peer-") as workdir:
        start = time.perf_counter()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with subprocess.Popen(
            command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as process:
            assert process.stdout is not None
            for line in process.stdout:
                match = _PEER_STEP.match(line)
                if match:
                    events.append((time.perf_counter(), int(match.group(1))))
                else:
                    tail.append(line.rstrip())
        wall_s = time.perf_counter() - start
    if process.returncode != 0 or not events:
        last = " | ".join(line for line in tail if line)[-400:]
        raise InvalidConfigError(f"the peer {path.name} failed (exit status {process.returncode}): {last}")
    fps = peer_steady_fps(events)
    return {
        "peer": str(path),
        "peer_command": " ".join(command[1:]),
        "peer_frames": 4 * events[-1][1],
        "peer_wall_s": wall_s,
        "peer_frames_per_s": fps if fps is not None else 4 * events[-1][1] / wall_s,
    }
