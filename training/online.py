"""Online discovery experiments (one lifetime, meta-gradients): presets and runners.

Each named experiment has a frozen preset dataclass and one preset function
(``EXPERIMENTS``); its runner validates everything, writes ``config.json``,
runs compiled chunks of meta-steps (seeds under ``vmap``), logs
``metrics.jsonl`` between chunks, and writes ``summary.json`` and plots:

* ``mrp-gamma``: per-state discounts on the 10-state MRP (Bonnet et al. 2022,
  App. C.1, Fig. 4); ``summary["gammas"]`` = the 10 final discounts.
* ``catch-frodo``: FRODO versus A2C on Catch at equal environment steps;
  ``summary["frodo_return"]``, ``summary["a2c_return"]``.
* ``snake-metagrad``: A2C on Snake with eta = {gamma, lambda, value weight,
  entropy weight} (Bonnet et al. Table 2); ``--inner-steps 0`` = fixed baseline.
* ``snake-variance``: spread of 1-, 3-, 5-, 10-step and 3-, 5-mix
  meta-gradients along one 1-step run (Bonnet et al. Table 1);
  ``summary["std_ratio"]``.

``discover_online`` serves ``lpg discover online ENV --objective ...``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

import objectives
from lpg import envs
from lpg.distributed import shard_batch
from lpg.envs.base import Environment
from lpg.errors import InvalidConfigError, unknown_name_error
from lpg.eta_schedule import schedulable, schedule_point
from lpg.harness import Run
from lpg.networks import NetworkConfig, make_agent
from lpg.optim import OptimizerConfig
from lpg.progress import ProgressBar
from lpg.run_io import RunDir, plot_lines
from objectives.a2c import A2C, A2CConfig
from training.actor_critic import ActorCriticTrainer, TrainConfig
from training.guards import SKIP_KEY
from training.loop import chunk_sizes, final_return, merge_history, train_loop
from training.meta_gradient import (
    MetaGradConfig,
    MetaGradientTrainer,
    pg_outer_objective,
)

# --------------------------------------------------------------------------- presets


@dataclasses.dataclass(frozen=True)
class MRPGammaPreset:
    """Bonnet et al. 2022 App. C.1: per-state discounts on the 10-state MRP.

    Attributes:
      inner_steps: n of the n-step meta-gradient (1 = Xu et al. 2018).
      mix: mixing estimator (eq. 10) instead of plain n-step.
      mix_k: kappa of the mixing estimator (None = 1 - 1/n).
      monte_carlo: K meta-gradients averaged per meta-update (Bonnet Fig. 4 uses 256).
      num_updates: meta-steps (= kept agent updates) per seed.
      num_seeds: seeds run in parallel (vmap).
      learning_rate: inner Adam learning rate (Bonnet: 1e-3).
      meta_learning_rate: meta-Adam learning rate (Bonnet: 2e-3; 2e-2 here so
        the default run solves the MRP within minutes on 2 CPU cores).
      num_envs: batch size (Bonnet: 32 episodes).
      unroll_length: rollout length; 10 = one whole MRP episode per environment.
      hidden_sizes: value network MLP(1, 10, 10, 1) on the state index.
      gamma_init: initial discount of every state.
    """

    inner_steps: int = 10
    mix: bool = False
    mix_k: float | None = None
    monte_carlo: int = 16
    num_updates: int = 5_000
    num_seeds: int = 1
    learning_rate: float = 1e-3
    meta_learning_rate: float = 2e-2
    num_envs: int = 32
    unroll_length: int = 10
    hidden_sizes: tuple[int, ...] = (10, 10)
    gamma_init: float = 0.5


@dataclasses.dataclass(frozen=True)
class CatchFrodoPreset:
    """FRODO versus A2C on Catch at equal environment steps.

    Attributes:
      steps: environment steps per seed (each method's agent).
      num_seeds: seeds per method (vmap).
      inner_steps: n of FRODO's meta-gradient.
      mix: mixing estimator.
      mix_k: kappa of the mixing estimator (None = 1 - 1/n).
      monte_carlo: meta-gradients averaged per meta-update.
      num_envs: batch size.
      unroll_length: rollout length.
      learning_rate: agent Adam learning rate (both methods).
      meta_learning_rate: meta-Adam learning rate of FRODO's target network.
      meta_grad_clip: global-norm clip of the meta-gradient.
      hidden_size: FRODO target network GRU width.
      consistency_weight: FRODO consistency regulariser c.
      gamma: discount of A2C and of FRODO's base return / outer loss.
      td_lambda: lambda of A2C and of FRODO's base return / outer loss.
      hidden_sizes: agent MLP torso.
    """

    steps: int = 100_000
    num_seeds: int = 3
    inner_steps: int = 1
    mix: bool = False
    mix_k: float | None = None
    monte_carlo: int = 1
    num_envs: int = 16
    unroll_length: int = 10
    learning_rate: float = 3e-3
    meta_learning_rate: float = 1e-3
    meta_grad_clip: float = 1.0
    hidden_size: int = 32
    consistency_weight: float = 0.1
    gamma: float = 0.99
    td_lambda: float = 0.95
    hidden_sizes: tuple[int, ...] = (64, 64)


@dataclasses.dataclass(frozen=True)
class SnakeMetaGradPreset:
    """Bonnet et al. 2022 Table 2 (Snake column), A2C with eta = {gamma, lambda, c_crit, c_entr}.

    Attributes:
      inner_steps: n (0 = fixed hyper-parameters baseline).
      mix: mixing estimator.
      mix_k: kappa of the mixing estimator (None = 1 - 1/n).
      monte_carlo: meta-gradients averaged per meta-update.
      steps: environment steps per seed (kept agent's steps). 300k keeps n = 3
        near an hour on 2 CPU cores (measured: plain step 0.79 s, 1-step meta-step
        1.6 s, 3-step 6.0 s at B=32, T=20); Bonnet trained far longer.
      num_seeds: seeds (vmap).
      num_envs: batch size (32).
      unroll_length: rollout length.
      learning_rate: inner Adam, annealed linearly to 0 (6e-4).
      grad_clip: inner gradient clipping norm (10).
      meta_learning_rate: meta-Adam (1e-3).
      meta_grad_clip: meta-gradient clipping norm (0.1).
      gamma: initial gamma (0.99).
      td_lambda: initial lambda (0.99).
      value_weight: initial critic weight (0.5).
      entropy_weight: initial entropy weight (0.01).
      outer_gamma: gamma' of the outer policy-gradient loss (0.99).
      outer_lambda: lambda' of the outer loss (0.99).
    """

    inner_steps: int = 1
    mix: bool = False
    mix_k: float | None = None
    monte_carlo: int = 1
    steps: int = 300_000
    num_seeds: int = 3
    num_envs: int = 32
    unroll_length: int = 20
    learning_rate: float = 6e-4
    grad_clip: float = 10.0
    meta_learning_rate: float = 1e-3
    meta_grad_clip: float = 0.1
    gamma: float = 0.99
    td_lambda: float = 0.99
    value_weight: float = 0.5
    entropy_weight: float = 0.01
    outer_gamma: float = 0.99
    outer_lambda: float = 0.99


@dataclasses.dataclass(frozen=True)
class SnakeVariancePreset:
    """Bonnet et al. Table 1, last row: meta-gradient spread along one 1-step run.

    Attributes:
      snake: the Snake set-up of the 1-step run (its inner_steps is forced to 1).
      num_checkpoints: points along the run where the spread is estimated.
      num_estimates: independent meta-gradients per estimator and checkpoint
        (Bonnet et al. use 96; 32 already separates the estimators clearly,
        and the default run takes 40-60 minutes on the 2-core machine).
      estimate_batch: estimates computed at once under ``vmap``; the result
        does not depend on it, the memory does: one batch of 5-step estimates
        on Snake peaks at 5.8 GB at 4, 8.2 GB at 8 (a fresh process on the
        2-core CPU; the 10-step look-ahead is rolled,
        ``MetaGradConfig.max_unrolled_lookahead``), at the same estimates/s.
      estimators: estimators compared: "n" or "n-mix".
    """

    snake: SnakeMetaGradPreset = SnakeMetaGradPreset(num_seeds=1, steps=300_000)
    num_checkpoints: int = 3
    num_estimates: int = 32
    estimate_batch: int = 4
    estimators: tuple[str, ...] = ("1", "3", "5", "10", "3-mix", "5-mix")


def mrp_gamma_preset() -> MRPGammaPreset:
    return MRPGammaPreset()


def catch_frodo_preset() -> CatchFrodoPreset:
    return CatchFrodoPreset()


def snake_metagrad_preset() -> SnakeMetaGradPreset:
    return SnakeMetaGradPreset()


def snake_variance_preset() -> SnakeVariancePreset:
    return SnakeVariancePreset()


# --------------------------------------------------------------------------- builders


def build_mrp_gamma(p: MRPGammaPreset, env: Environment | None = None) -> MetaGradientTrainer:
    """The per-state-gamma meta-learner on ``env`` (default: the registered ``mrp``; any ``lpg.envs.mrp.MRP``)."""
    env = env if env is not None else envs.make("mrp")
    agent = make_agent(env.spec, NetworkConfig(torso="mlp", hidden_sizes=tuple(p.hidden_sizes)))
    objective = objectives.make("mgrl_per_state_gamma", gamma_init=p.gamma_init)
    config = TrainConfig(p.num_envs, p.unroll_length, OptimizerConfig("adam", p.learning_rate))
    trainer = ActorCriticTrainer.create(env, agent, objective, config)
    # Outer target: the undiscounted Monte-Carlo return (gamma' = lambda' = 1), value MSE (Bonnet eq. 2).
    outer = A2C(A2CConfig(gamma=1.0, td_lambda=1.0, value_weight=1.0, entropy_weight=0.0))
    meta = MetaGradConfig(
        inner_steps=p.inner_steps,
        mix=p.mix,
        mix_k=p.mix_k,
        monte_carlo=p.monte_carlo,
        meta_learning_rate=p.meta_learning_rate,
    )
    return MetaGradientTrainer.create(trainer, outer, meta)


def build_snake(p: SnakeMetaGradPreset, total_updates: int, env: Environment | str = "snake") -> MetaGradientTrainer:
    env = envs.get(env)
    agent = make_agent(env.spec, NetworkConfig())
    objective = objectives.make(
        "self_tuning",
        gamma=p.gamma,
        td_lambda=p.td_lambda,
        value_weight=p.value_weight,
        entropy_weight=p.entropy_weight,
    )
    opt = OptimizerConfig("adam", p.learning_rate, schedule="linear", max_grad_norm=p.grad_clip)
    trainer = ActorCriticTrainer.create(
        env, agent, objective, TrainConfig(p.num_envs, p.unroll_length, opt), total_updates=total_updates
    )
    meta = MetaGradConfig(
        inner_steps=p.inner_steps,
        mix=p.mix,
        mix_k=p.mix_k,
        monte_carlo=p.monte_carlo,
        meta_learning_rate=p.meta_learning_rate,
        meta_grad_clip=p.meta_grad_clip,
    )
    return MetaGradientTrainer.create(trainer, pg_outer_objective(p.outer_gamma, p.outer_lambda), meta)


# --------------------------------------------------------------------------- the host loop


def _scalar_row(metrics: dict[str, np.ndarray]) -> dict[str, float]:
    return {k: float(np.mean(v)) for k, v in metrics.items() if k not in ("episode_return_sum", "episode_count")}


def run_meta(
    mt: MetaGradientTrainer,
    num_updates: int,
    seed: int,
    num_seeds: int,
    run: RunDir | None,
    *,
    label: str,
    progress: bool = True,
    target_chunks: int = 50,
    step_offset: int = 0,
    guard: Run | None = None,
    eta: Any = None,
) -> dict[str, Any]:
    """Runs ``num_updates`` meta-steps for ``num_seeds`` seeds; logs each chunk; returns a record.

    With a ``guard`` (an opened ``lpg.harness.Run``, also ``run``) the run
    resumes from its newest training checkpoint when asked, counts skipped
    (non-finite) updates, writes checkpoints between chunks of a fixed chunk
    schedule and shows its progress on the run's bar.

    Record: ``states`` (final MetaState, seed axis), ``metrics`` (numpy [S, U]),
    ``curve`` (env steps, mean return), ``eta_curve`` ({name: [(step, value)]}),
    ``eta_schedule`` (the first seed's eta after each chunk, ``lpg.eta_schedule``; None for large eta),
    ``wall_s``, ``resumed_at`` (meta-steps restored from a checkpoint).
    """
    keys = jax.vmap(jax.random.PRNGKey)(np.arange(seed, seed + num_seeds))
    start = time.perf_counter()
    states = shard_batch(mt.init_seeds(keys, eta), mt.trainer.config.num_envs)  # batch axis over devices
    done, extra = 0, {}
    if guard is not None:
        done, states, extra = guard.start(states)
    resumed_at = done
    wall_before = float(extra.get("wall_s", 0.0))
    per_update = mt.env_steps_per_rollout
    curve_x, curve_y = list(extra.get("curve_x", [])), list(extra.get("curve_y", []))
    eta_curve: dict[str, list] = {k: [tuple(p) for p in v] for k, v in dict(extra.get("eta_curve") or {}).items()}
    history = extra.get("history")
    collected = []
    if not eta_curve:
        for name, value in jax.vmap(mt.objective.describe_eta)(states.eta).items():
            eta_curve[name] = [(0, float(np.mean(np.asarray(value))))]
    schedule = _ScheduleRecorder(states.eta, extra.get("eta_schedule"))

    def wall() -> float:
        return wall_before + time.perf_counter() - start

    bar_context = ProgressBar(label, num_updates * per_update, "steps", enabled=progress) if guard is None else None
    with bar_context or contextlib.nullcontext(guard.bar) as bar:
        bar.resume_from(done * per_update)
        for size in Run.remaining(chunk_sizes(num_updates, target_chunks), done):
            states, metrics = mt.run_seeds(states, size)
            metrics = jax.tree.map(np.asarray, jax.device_get(metrics))
            collected.append(metrics)
            done += size
            if guard is not None:
                guard.count_skips(done, metrics[SKIP_KEY])
            row = _meta_row(mt, metrics, done, eta_curve)
            schedule.add(done, states.eta)
            count, mean_return = row["episodes"], row["episode_return"]
            row["wall_s"] = wall()
            skipped = ""
            if guard is not None:
                row["nonfinite_skips_total"] = guard.total_skips
                skipped = f", skipped {guard.total_skips}" if guard.total_skips else ""
            if run is not None:
                run.log(step_offset + done * per_update, row)
            if count:
                curve_x.append(done * per_update)
                curve_y.append(mean_return)
            bar.update(size * per_update, (f"return {mean_return:.3f}" if count else "") + skipped)
            if guard is not None:
                guard.checkpoint(
                    done,
                    states,
                    final=done == num_updates,
                    history=merge_history(history, collected),
                    extra={"wall_s": wall(), "curve_x": curve_x, "curve_y": curve_y, "eta_curve": eta_curve,
                           "eta_schedule": schedule.points},
                )  # fmt: skip
    jax.block_until_ready(states.eta)
    merged = merge_history(history, collected)
    return {
        "states": states,
        "metrics": merged,
        "curve": (curve_x, curve_y),
        "eta_curve": eta_curve,
        "eta_schedule": schedule.points,
        "wall_s": wall(),
        "resumed_at": resumed_at,
    }


class _ScheduleRecorder:
    """The first seed's eta at update 0 and after every chunk (``lpg.eta_schedule``); no points for large eta."""

    def __init__(self, eta: Any, restored: list | None):
        self.points: list[dict[str, Any]] | None = None
        start = first_seed(eta)
        if schedulable(start):
            self.points = list(restored) if restored else [schedule_point(0, start)]

    def add(self, done: int, eta: Any) -> None:
        if self.points is not None:
            self.points.append(schedule_point(done, first_seed(eta)))


def first_seed(tree: Any) -> Any:
    """The first seed's slice of a tree with a leading seed axis, as numpy arrays."""
    return jax.tree.map(lambda x: np.asarray(x)[0], tree)


def _meta_row(mt: MetaGradientTrainer, metrics: dict[str, np.ndarray], done: int, eta_curve: dict) -> dict[str, Any]:
    """A chunk's metrics row (means over seeds and updates; meta-parameters at its last update, also appended
    to ``eta_curve``)."""
    count = float(metrics["episode_count"].sum())
    row = _scalar_row(metrics)
    for name, values in metrics.items():
        if name.startswith("eta/"):
            row[name] = float(np.mean(values[:, -1]))
            eta_curve.setdefault(name[4:], []).append((done, row[name]))
    row.update(
        episode_return=float(metrics["episode_return_sum"].sum() / count) if count else float("nan"),
        episodes=count,
        updates=done,
        env_steps=done * mt.env_steps_per_rollout,
        env_steps_consumed=done * mt.env_steps_per_meta_step,
    )
    return row


def _final_eta(mt: MetaGradientTrainer, states) -> dict[str, float]:
    described = jax.vmap(mt.objective.describe_eta)(states.eta)
    return {k: float(np.mean(np.asarray(v))) for k, v in described.items()}


def _final_return_stats(metrics: dict[str, np.ndarray]) -> tuple[float | None, list[float | None]]:
    per_seed = final_return(metrics)
    finite = per_seed[np.isfinite(per_seed)]
    return (float(finite.mean()) if finite.size else None), [None if not np.isfinite(x) else float(x) for x in per_seed]


def check_mix_coefficient(mix: bool, mix_k: float | None) -> None:
    """``--mix-coefficient`` (kappa of the mixing estimator) needs ``--mix`` and must lie in [0, 1]."""
    if mix_k is None:
        return
    if not mix:
        raise InvalidConfigError(
            "--mix-coefficient is the kappa of the mixing estimator: add --mix, or drop --mix-coefficient"
        )
    if not 0.0 <= mix_k <= 1.0:
        raise InvalidConfigError(f"--mix-coefficient must lie in [0, 1], got {mix_k}")


def _check_common(out: str, num_seeds: int) -> None:
    if num_seeds <= 0:
        raise InvalidConfigError(f"--seeds must be positive, got {num_seeds}")
    if not out:
        raise InvalidConfigError("--out must name an output folder")


# --------------------------------------------------------------------------- experiments


def run_mrp_gamma(
    p: MRPGammaPreset, out: str, seed: int = 0, progress: bool = True, env: Environment | None = None
) -> dict[str, Any]:
    """Bonnet et al. App. C.1 / Fig. 4: per-state discounts of the MRP, learned by meta-gradients.

    ``env``: the MRP (default: the registered ``mrp``, noisy odd states); the
    summary and the plot name its noisy states, whichever they are. Solved:
    every deterministic state's gamma above 0.9 and every noisy one's below 0.15.
    """
    env = env if env is not None else envs.make("mrp")
    noisy = list(env.noisy_states)
    steady = [i for i in range(env.spec.num_observations) if i not in noisy]
    _check_common(out, p.num_seeds)
    if p.num_updates <= 0:
        raise InvalidConfigError(f"--steps (meta-updates) must be positive, got {p.num_updates}")
    if p.unroll_length != 10:
        raise InvalidConfigError("mrp-gamma needs unroll_length 10 (rollouts aligned with the 10-step episodes)")
    mt = build_mrp_gamma(p, env)
    run_config = {"command": "experiment", "experiment": "mrp-gamma", "preset": p, "seed": seed, "noisy_states": noisy}
    run = RunDir.prepare(out, run_config, allow_existing_same=False)
    rec = run_meta(mt, p.num_updates, seed, p.num_seeds, run, label="mrp-gamma", progress=progress)
    gammas_per_seed = np.asarray(jax.nn.sigmoid(rec["states"].eta["gamma_logits"]))  # [S, 10]
    gammas = gammas_per_seed.mean(axis=0)
    loss = rec["metrics"]["value_loss"]
    summary = {
        "experiment": "mrp-gamma",
        "inner_steps": p.inner_steps,
        "mix": p.mix,
        "monte_carlo": p.monte_carlo,
        "num_updates": p.num_updates,
        "num_seeds": p.num_seeds,
        "seed": seed,
        "gammas": gammas.tolist(),
        "gammas_per_seed": gammas_per_seed.tolist(),
        "noisy_states": noisy,
        "deterministic_min": float(gammas[steady].min()) if steady else None,
        "noisy_max": float(gammas[noisy].max()) if noisy else None,
        "solved": bool(gammas[steady].min(initial=1.0) > 0.9 and gammas[noisy].max(initial=0.0) < 0.15),
        "final_inner_value_loss": float(np.mean(loss[:, -max(1, loss.shape[1] // 10) :])),
        "env_steps": p.num_updates * mt.env_steps_per_rollout,
        "env_steps_consumed": p.num_updates * mt.env_steps_per_meta_step,
        "wall_s": rec["wall_s"],
    }
    series = []
    for i in range(env.spec.num_observations):
        xs, ys = zip(*rec["eta_curve"][f"gamma_{i}"])
        series.append((f"gamma_{i} ({'noisy' if i in noisy else 'deterministic'})", xs, ys))
    plot_lines(
        run.path / "gammas.png",
        series,
        title=f"MRP per-state discounts ({p.inner_steps}-step{' mix' if p.mix else ''}, K={p.monte_carlo})",
        xlabel="meta-updates",
        ylabel="gamma_i",
    )
    run.write_summary(summary)
    run.close()
    return summary


def run_catch_frodo(
    p: CatchFrodoPreset, out: str, seed: int = 0, progress: bool = True, env: Environment | str = "catch"
) -> dict[str, Any]:
    """FRODO versus A2C on Catch, same agent, batch, optimiser and environment steps."""
    _check_common(out, p.num_seeds)
    if p.steps <= 0:
        raise InvalidConfigError(f"--steps must be positive, got {p.steps}")
    env = envs.get(env)
    agent = make_agent(env.spec, NetworkConfig(torso="mlp", hidden_sizes=tuple(p.hidden_sizes)))
    config = TrainConfig(p.num_envs, p.unroll_length, OptimizerConfig("adam", p.learning_rate))
    num_updates = max(1, math.ceil(p.steps / config.steps_per_update))
    frodo = objectives.make(
        "frodo",
        hidden_size=p.hidden_size,
        consistency_weight=p.consistency_weight,
        gamma=p.gamma,
        td_lambda=p.td_lambda,
    )
    a2c = objectives.make("a2c", gamma=p.gamma, td_lambda=p.td_lambda)
    meta = MetaGradConfig(
        inner_steps=p.inner_steps,
        mix=p.mix,
        mix_k=p.mix_k,
        monte_carlo=p.monte_carlo,
        meta_learning_rate=p.meta_learning_rate,
        meta_grad_clip=p.meta_grad_clip,
    )
    mt = MetaGradientTrainer.create(
        ActorCriticTrainer.create(env, agent, frodo, config), pg_outer_objective(p.gamma, p.td_lambda), meta
    )
    a2c_trainer = ActorCriticTrainer.create(env, agent, a2c, config)
    run = RunDir.prepare(
        out,
        {"command": "experiment", "experiment": "catch-frodo", "preset": p, "seed": seed},
        allow_existing_same=False,
    )

    start = time.perf_counter()
    keys = jax.vmap(jax.random.PRNGKey)(np.arange(seed, seed + p.num_seeds))
    a2c_curve = ([], [])
    with ProgressBar("catch a2c", num_updates * config.steps_per_update, "steps", enabled=progress) as bar:

        def on_chunk(done, metrics):
            count = float(metrics["episode_count"].sum())
            ret = float(metrics["episode_return_sum"].sum() / count) if count else float("nan")
            run.log(done * config.steps_per_update, {"a2c/episode_return": ret, "a2c/updates": done})
            if count:
                a2c_curve[0].append(done * config.steps_per_update)
                a2c_curve[1].append(ret)
            bar.update(bar.total * 0 + (done * config.steps_per_update - bar.done), f"return {ret:.3f}")

        _, a2c_metrics = train_loop(a2c_trainer, {}, a2c_trainer.init_seeds(keys), num_updates, on_chunk=on_chunk)
    a2c_wall = time.perf_counter() - start
    rec = run_meta(mt, num_updates, seed, p.num_seeds, run, label="catch frodo", progress=progress)
    frodo_return, frodo_per_seed = _final_return_stats(rec["metrics"])
    a2c_return, a2c_per_seed = _final_return_stats(a2c_metrics)
    summary = {
        "experiment": "catch-frodo",
        "frodo_return": frodo_return,
        "a2c_return": a2c_return,
        "frodo_return_per_seed": frodo_per_seed,
        "a2c_return_per_seed": a2c_per_seed,
        "final_return_definition": "mean undiscounted return of episodes completed in the last 10% of steps",
        "steps": num_updates * config.steps_per_update,
        "frodo_env_steps_consumed": num_updates * mt.env_steps_per_meta_step,
        "num_seeds": p.num_seeds,
        "seed": seed,
        "inner_steps": p.inner_steps,
        "mix": p.mix,
        "frodo_final_eta": _final_eta(mt, rec["states"]),
        "frodo_wall_s": rec["wall_s"],
        "a2c_wall_s": a2c_wall,
    }
    plot_lines(
        run.path / "learning_curve.png",
        [("FRODO", *rec["curve"]), ("A2C", *a2c_curve)],
        title=f"catch: FRODO vs A2C (mean of {p.num_seeds} seeds)",
        xlabel="environment steps per seed",
        ylabel="mean episode return",
    )
    run.write_summary(summary)
    run.close()
    return summary


def run_snake_metagrad(
    p: SnakeMetaGradPreset, out: str, seed: int = 0, progress: bool = True, env: Environment | str = "snake"
) -> dict[str, Any]:
    """Bonnet et al. Table 1 (returns): A2C on Snake with meta-learned {gamma, lambda, c_crit, c_entr}."""
    _check_common(out, p.num_seeds)
    if p.steps <= 0:
        raise InvalidConfigError(f"--steps must be positive, got {p.steps}")
    num_updates = max(1, math.ceil(p.steps / (p.num_envs * p.unroll_length)))
    mt = build_snake(p, num_updates, env)
    run = RunDir.prepare(
        out,
        {"command": "experiment", "experiment": "snake-metagrad", "preset": p, "seed": seed},
        allow_existing_same=False,
    )
    rec = run_meta(
        mt,
        num_updates,
        seed,
        p.num_seeds,
        run,
        label=f"snake n={p.inner_steps}{' mix' if p.mix else ''}",
        progress=progress,
    )
    final, per_seed = _final_return_stats(rec["metrics"])
    summary = {
        "experiment": "snake-metagrad",
        "inner_steps": p.inner_steps,
        "mix": p.mix,
        "final_return": final,
        "final_return_per_seed": per_seed,
        "final_return_definition": "mean undiscounted return of episodes completed in the last 10% of steps",
        "final_meta_parameters": _final_eta(mt, rec["states"]),
        "steps": num_updates * mt.env_steps_per_rollout,
        "env_steps_consumed": num_updates * mt.env_steps_per_meta_step,
        "num_seeds": p.num_seeds,
        "seed": seed,
        "bonnet_final_return": {"0": 67, "1": 85, "3": 114, "5": 97, "10": 86, "3-mix": 115, "5-mix": 113},
        "wall_s": rec["wall_s"],
    }
    plot_lines(
        run.path / "learning_curve.png",
        [(f"n={p.inner_steps}{' mix' if p.mix else ''}", *rec["curve"])],
        title="snake: episode return",
        xlabel="environment steps per seed",
        ylabel="mean episode return",
    )
    plot_lines(
        run.path / "meta_parameters.png",
        [
            (name, [x * mt.env_steps_per_rollout for x, _ in pts], [y for _, y in pts])
            for name, pts in rec["eta_curve"].items()
        ],
        title="snake: meta-parameters",
        xlabel="environment steps per seed",
        ylabel="value",
    )
    run.write_summary(summary)
    run.close()
    return summary


def parse_estimator(name: str) -> tuple[int, bool]:
    """ "n" -> (n, False); "n-mix" -> (n, True)."""
    base, _, suffix = name.partition("-")
    if suffix not in ("", "mix") or not base.isdigit() or int(base) < 1:
        raise InvalidConfigError(f"estimator {name!r} is not 'n' or 'n-mix' with n >= 1")
    return int(base), suffix == "mix"


def _spread_per_checkpoint(probes: dict, states: list, p: SnakeVariancePreset, seed: int, bar) -> list[dict]:
    """Per checkpoint, each estimator's std over ``p.num_estimates`` estimates, per meta-parameter.

    One estimator at a time over every checkpoint, its compiled programs dropped
    (``jax.clear_caches``) before the next: all six resident at once peaked at
    8.5 GB on Snake, one at a time 6.35 GB. Empties ``probes``.
    """
    stds: list[dict[str, np.ndarray]] = [{} for _ in states]
    for name in list(probes):
        probe = probes.pop(name)
        for c, state_c in enumerate(states):
            key = jax.random.fold_in(jax.random.PRNGKey(seed + 1), c)
            grads = probe.estimate(state_c, key, p.num_estimates, batch_size=p.estimate_batch)
            leaves = [np.asarray(g).reshape(p.num_estimates, -1) for g in jax.tree.leaves(grads)]
            stds[c][name] = np.concatenate(leaves, axis=1).std(axis=0, ddof=1)  # per meta-parameter
            del grads
            bar.update(1, f"estimator {name} at checkpoint {c}")
        del probe
        jax.clear_caches()
    return stds


def run_snake_variance(
    p: SnakeVariancePreset, out: str, seed: int = 0, progress: bool = True, env: Environment | str = "snake"
) -> dict[str, Any]:
    """Bonnet et al. Table 1, last row: std of n-step / mixing meta-gradients, normalised to 1-step."""
    if p.num_checkpoints <= 0 or p.num_estimates < 2 or p.estimate_batch < 1:
        raise InvalidConfigError(
            "snake-variance needs num_checkpoints >= 1, num_estimates >= 2 and estimate_batch >= 1"
        )
    estimators = tuple(p.estimators)
    if "1" not in estimators:
        estimators = ("1",) + estimators
    parsed = {name: parse_estimator(name) for name in estimators}
    snake = dataclasses.replace(p.snake, inner_steps=1, mix=False, monte_carlo=1, num_seeds=1)
    num_updates = max(p.num_checkpoints, math.ceil(snake.steps / (snake.num_envs * snake.unroll_length)))
    base = build_snake(snake, num_updates, env)
    probes = {
        name: MetaGradientTrainer.create(
            base.trainer, base.outer_objective, dataclasses.replace(base.config, inner_steps=n, mix=mix)
        )
        for name, (n, mix) in parsed.items()
    }
    run = RunDir.prepare(
        out,
        {"command": "experiment", "experiment": "snake-variance", "preset": p, "seed": seed},
        allow_existing_same=False,
    )
    start = time.perf_counter()
    state = base.init(jax.random.PRNGKey(seed))
    # Checkpoints at the middle of each of num_checkpoints equal segments of the
    # run (never at its very end, where the linear schedule has annealed the
    # learning rate to 0 and every meta-gradient vanishes).
    marks = [max(1, int((c + 0.5) * num_updates / p.num_checkpoints)) for c in range(p.num_checkpoints)]
    per_checkpoint = [b - a for a, b in zip([0] + marks[:-1], marks)]
    ratios: dict[str, list[float]] = {name: [] for name in estimators}
    stds_log: dict[str, list[list[float]]] = {name: [] for name in estimators}
    states, rows, done = [], [], 0
    with ProgressBar("snake-variance", p.num_checkpoints * (1 + len(probes)), "stages", enabled=progress) as bar:
        for c, size in enumerate(per_checkpoint):
            state, metrics = base.run(state, size)
            done += size
            count = float(np.sum(metrics["episode_count"]))
            episode_return = float(np.sum(metrics["episode_return_sum"]) / count) if count else None
            states.append(state)
            rows.append({"checkpoint": c, "updates": done, "wall_s": time.perf_counter() - start})
            rows[-1]["episode_return"] = episode_return
            bar.update(1, f"agent at checkpoint {c}")
        stds = _spread_per_checkpoint(probes, states, p, seed, bar)
    for c, row in enumerate(rows):
        ref = stds[c]["1"]
        for name in estimators:
            with np.errstate(invalid="ignore", divide="ignore"):
                ratios[name].append(
                    float(np.nanmean(np.where(ref > 0, stds[c][name] / np.where(ref > 0, ref, 1.0), np.nan)))
                )
            stds_log[name].append(stds[c][name].tolist())
            row[f"std_ratio/{name}"] = ratios[name][-1]
        run.log(row["updates"] * base.env_steps_per_rollout, row)
    summary = {
        "experiment": "snake-variance",
        "std_ratio": {name: float(np.nanmean(v)) for name, v in ratios.items()},
        "std_ratio_std_over_checkpoints": {name: float(np.nanstd(v)) for name, v in ratios.items()},
        "std_ratio_definition": "per checkpoint: std over num_estimates independent estimates, per meta-parameter, divided by the 1-step std, averaged over meta-parameters; then averaged over checkpoints",
        "meta_parameters": sorted(base.objective.describe_eta(state.eta)),
        "num_checkpoints": p.num_checkpoints,
        "num_estimates": p.num_estimates,
        "bonnet_std_ratio": {"1": 1.0, "3": 4.6, "5": 8.6, "10": 23.5, "3-mix": 1.7, "5-mix": 2.6},
        "steps": num_updates * base.env_steps_per_rollout,
        "seed": seed,
        "wall_s": time.perf_counter() - start,
    }
    xs = list(range(p.num_checkpoints))
    plot_lines(
        run.path / "std_ratio.png",
        [(name, xs, v) for name, v in ratios.items()],
        title="snake: meta-gradient std / 1-step std",
        xlabel="checkpoint",
        ylabel="ratio",
    )
    run.write_summary(summary)
    run.close()
    return summary


# --------------------------------------------------------------------------- registry and CLI entry points


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    preset: Callable[[], Any]
    runner: Callable[..., dict[str, Any]]


EXPERIMENTS: dict[str, Experiment] = {
    "mrp-gamma": Experiment(
        "mrp-gamma", "Per-state discounts on the 10-state MRP (Bonnet et al. App. C.1)", mrp_gamma_preset, run_mrp_gamma
    ),
    "catch-frodo": Experiment(
        "catch-frodo", "FRODO versus A2C on Catch at equal environment steps", catch_frodo_preset, run_catch_frodo
    ),
    "snake-metagrad": Experiment(
        "snake-metagrad",
        "A2C on Snake with meta-learned gamma, lambda, loss weights (Bonnet et al. Table 1)",
        snake_metagrad_preset,
        run_snake_metagrad,
    ),
    "snake-variance": Experiment(
        "snake-variance",
        "Meta-gradient spread of n-step and mixing estimators on Snake (Bonnet et al. Table 1)",
        snake_variance_preset,
        run_snake_variance,
    ),
}


def run_experiment(
    name: str,
    out: str,
    *,
    seed: int = 0,
    seeds: int | None = None,
    inner_steps: int | None = None,
    mix: bool | None = None,
    mix_k: float | None = None,
    monte_carlo: int | None = None,
    steps: int | None = None,
    progress: bool = True,
    checkpoints: int | None = None,
    estimates: int | None = None,
    estimate_batch: int | None = None,
    env: Environment | str | None = None,
) -> dict[str, Any]:
    """Runs the named experiment's preset with the given overrides (None = preset value).

    ``env``: the environment to run it on (a value or a registered name;
    default: the experiment's own, mrp, catch or snake).

    ``steps``: environment steps per seed; for mrp-gamma the number of meta-updates.
    ``checkpoints``/``estimates``/``estimate_batch``: snake-variance only:
    points along the run where the spread is measured, independent estimates
    per estimator there, and how many of them are computed at once (memory).
    """
    if name not in EXPERIMENTS:
        raise unknown_name_error("experiment", name, list(EXPERIMENTS), f"known: {', '.join(EXPERIMENTS)}")
    exp = EXPERIMENTS[name]
    preset = exp.preset()
    target = preset.snake if name == "snake-variance" else preset
    overrides: dict[str, Any] = {}
    if seeds is not None:
        if name == "snake-variance":
            raise InvalidConfigError("snake-variance runs one lifetime; --seeds does not apply")
        overrides["num_seeds"] = seeds
    if inner_steps is not None:
        if name == "snake-variance":
            raise InvalidConfigError("snake-variance compares fixed estimators; --inner-steps does not apply")
        if inner_steps < (0 if name == "snake-metagrad" else 1):
            raise InvalidConfigError(
                f"--inner-steps must be >= {0 if name == 'snake-metagrad' else 1} for {name}, got {inner_steps}"
            )
        overrides["inner_steps"] = inner_steps
    if mix is not None:
        overrides["mix"] = mix
    if mix_k is not None:
        if name == "snake-variance":
            raise InvalidConfigError("snake-variance compares fixed estimators; --mix-coefficient does not apply")
        check_mix_coefficient(overrides.get("mix", target.mix), mix_k)
        overrides["mix_k"] = mix_k
    if monte_carlo is not None:
        if monte_carlo < 1:
            raise InvalidConfigError(f"--monte-carlo must be >= 1, got {monte_carlo}")
        overrides["monte_carlo"] = monte_carlo
    if steps is not None:
        if steps <= 0:
            raise InvalidConfigError(f"--steps must be positive, got {steps}")
        overrides["num_updates" if name == "mrp-gamma" else "steps"] = steps
    target = dataclasses.replace(target, **overrides)
    variance_overrides: dict[str, Any] = {}
    for field, flag, value, lowest in (
        ("num_checkpoints", "--checkpoints", checkpoints, 1),
        ("num_estimates", "--estimates", estimates, 2),
        ("estimate_batch", "--estimate-batch", estimate_batch, 1),
    ):
        if value is None:
            continue
        if name != "snake-variance":
            raise InvalidConfigError(f"{flag} applies to snake-variance only")
        if value < lowest:
            raise InvalidConfigError(f"{flag} must be >= {lowest}, got {value}")
        variance_overrides[field] = value
    preset = dataclasses.replace(preset, snake=target, **variance_overrides) if name == "snake-variance" else target
    return exp.runner(preset, out, seed=seed, progress=progress, **({"env": env} if env is not None else {}))


def bench_online(
    env_names: list[str], inner_steps: tuple[int, ...], num_envs: int = 32, unroll_length: int = 20, repeats: int = 20
) -> list[dict[str, Any]]:
    """Seconds per meta-step / seconds per plain actor-critic step, same agent, batch and objective.

    The plain step is ``ActorCriticTrainer.update`` (one rollout + one update);
    the meta-step is ``MetaGradientTrainer.meta_step`` (kept update, n look-ahead
    updates and rollouts, meta-gradient, meta-update). Objective: self_tuning.
    Each is timed as ``repeats`` steps inside one compiled scan, after a
    compile-and-warm-up call.
    """
    rows = []
    for name in env_names:
        env = envs.make(name)
        if env.spec.kind == "atari":
            raise InvalidConfigError("bench online measures the JAX environments only")
        agent = make_agent(env.spec, NetworkConfig())
        objective = objectives.make("self_tuning")
        trainer = ActorCriticTrainer.create(
            env, agent, objective, TrainConfig(num_envs, unroll_length, OptimizerConfig("adam", 1e-3))
        )
        eta = objective.init(jax.random.PRNGKey(0))
        state = trainer.init(jax.random.PRNGKey(0))

        def timed(fn, *args):
            out = fn(*args)
            jax.block_until_ready(out)
            start = time.perf_counter()
            out = fn(*args)
            jax.block_until_ready(out)
            return (time.perf_counter() - start) / repeats

        plain = timed(trainer.run, state, eta, repeats)
        for n in inner_steps:
            mt = MetaGradientTrainer.create(trainer, pg_outer_objective(), MetaGradConfig(inner_steps=n))
            meta_state = mt.init(jax.random.PRNGKey(0))
            meta = timed(mt.run, meta_state, repeats)
            rows.append({"env": name, "n": n, "plain_ms": 1e3 * plain, "meta_ms": 1e3 * meta, "ratio": meta / plain})
    return rows
