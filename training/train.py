"""Host side of plain training: chunks of compiled updates, logging, summary.

``train_loop`` runs ``trainer.run_seeds`` in compiled chunks so the host can
show progress and log metrics between them (logging stays outside jit).
``train`` is what ``lpg train`` calls: it validates everything before writing,
then trains, logs and summarises into the output folder.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Annotated, Any

import jax
import numpy as np
import tyro

from lpg import envs
from lpg.distributed import shard_batch
from lpg.errors import InvalidConfigError
from lpg.networks import NetworkConfig, make_agent
from lpg.optim import validate_optimizer
from lpg.progress import ProgressBar
from lpg.run_io import RunDir, finished_run, plot_lines
from training.actor_critic import ActorCriticTrainer, LearnerState
from training.longrun import (
    SKIP_KEY,
    LongRun,
    check_resumable,
    merge_history,
    run_identity,
    validate_longrun,
)
from training.presets import default_preset

FINAL_FRACTION = 0.1  # final_return: episodes completed in the last 10 % of steps


def chunk_sizes(total: int, target_chunks: int = 50) -> list[int]:
    """Splits ``total`` updates into at most two distinct chunk lengths (two compiles)."""
    if total <= 0:
        return []
    size = max(1, math.ceil(total / target_chunks))
    full, rest = divmod(total, size)
    return [size] * full + ([rest] if rest else [])


def train_loop(
    trainer: ActorCriticTrainer,
    eta: Any,
    states: LearnerState,
    num_updates: int,
    *,
    on_chunk: Callable[[int, dict[str, np.ndarray]], None] | None = None,
    guard: LongRun | None = None,
    start: int = 0,
    history: dict[str, np.ndarray] | None = None,
    checkpoint_extra: Callable[[], dict[str, Any]] | None = None,
) -> tuple[LearnerState, dict[str, np.ndarray]]:
    """Runs ``num_updates`` updates of every seed; returns final states and metrics [S, U].

    ``on_chunk(updates_done, chunk_metrics)`` is called after each chunk with
    that chunk's metrics as numpy arrays [S, chunk]. With a ``guard``
    (training/longrun.py) skipped updates are counted and training checkpoints
    written between chunks; a resumed run passes the restored ``start``
    (updates done) and ``history`` (their metrics) and runs the rest of the same
    chunk schedule.
    """
    collected: list[dict[str, np.ndarray]] = []
    done = start
    for size in LongRun.remaining(chunk_sizes(num_updates), start):
        states, metrics = trainer.run_seeds(states, eta, size)
        metrics = jax.tree.map(np.asarray, jax.device_get(metrics))
        collected.append(metrics)
        done += size
        if guard is not None:
            guard.count_skips(done, metrics[SKIP_KEY])
        if on_chunk is not None:
            on_chunk(done, metrics)
        if guard is not None:
            extra = checkpoint_extra() if checkpoint_extra is not None else None
            guard.after_chunk(
                done, states, extra=extra, history=merge_history(history, collected), final=done == num_updates
            )
    return states, merge_history(history, collected)


def final_return(metrics: dict[str, np.ndarray], fraction: float = FINAL_FRACTION) -> np.ndarray:
    """Mean undiscounted return of the episodes completed in the last ``fraction`` of updates, per seed [S].

    NaN for a seed that completed no episode in that window.
    """
    sums, counts = metrics["episode_return_sum"], metrics["episode_count"]
    num_updates = sums.shape[1]
    start = min(int(math.floor((1.0 - fraction) * num_updates)), num_updates - 1)
    total, count = sums[:, start:].sum(axis=1), counts[:, start:].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """What ``lpg train`` needs (the CLI's ``TrainCommand`` is this dataclass; Python users may build it too).

    Attributes:
      env: Environment name (see `lpg envs`).
      objective: Objective name (see `lpg objectives`).
      steps: Environment steps per seed, rounded up to whole updates (default: the environment's preset, see README); on Atari an agent step is 4 frames (--frames is the usual budget there).
      seed: Random seed of the first agent.
      num_seeds: Agents trained in parallel under vmap, with seeds seed, seed+1, ...
      out: Output folder (created; must be empty or hold this same run).
      num_envs: Environments per agent (default: preset).
      unroll_length: Steps per rollout; one update per rollout (default: preset).
      learning_rate: Agent learning rate (default: preset).
      optimizer: Agent optimiser: adam, sgd or rmsprop (default: preset).
      objective_config: Objective config overrides, KEY=VALUE (e.g. gamma=0.9 td_lambda=1.0).
      network: Agent network.
      progress: Show a progress bar with ETA on stderr.
      frames: Atari only: emulator frames to train for (4 per agent step; default 10M).
      overlap: Atari only: learn on one rollout while acting on the next (use --objective vtrace).
      resume: Continue the run in --out from its newest training checkpoint (same command otherwise).
      checkpoint_interval_s: Seconds between training checkpoints in --out/training_state (0 = after every chunk of updates); SIGINT/SIGTERM also write one.
      max_nonfinite_skips: Stop after this many consecutive updates with a non-finite gradient (each is skipped and counted).
    """

    env: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="ENV")]
    objective: str = "a2c"
    steps: int | None = None
    seed: int = 0
    num_seeds: int = 1
    out: str = "runs/train"
    num_envs: int | None = None
    unroll_length: int | None = None
    learning_rate: float | None = None
    optimizer: str | None = None
    objective_config: tuple[str, ...] = ()
    network: NetworkConfig = NetworkConfig()
    progress: bool = True
    frames: int | None = None
    overlap: bool = False
    resume: bool = False
    checkpoint_interval_s: float = 60.0
    max_nonfinite_skips: int = 10


def parse_overrides(items: tuple[str, ...], config: Any) -> dict[str, Any]:
    """Parses KEY=VALUE strings into typed overrides of the dataclass ``config``."""
    fields = {f.name: f for f in dataclasses.fields(config)} if dataclasses.is_dataclass(config) else {}
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidConfigError(f"objective config override {item!r} is not KEY=VALUE")
        if key not in fields:
            raise InvalidConfigError(
                f"objective config has no field {key!r}; fields: {', '.join(sorted(fields)) or 'none'}"
            )
        current = getattr(config, key)
        try:
            if isinstance(current, bool):
                if raw.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(raw)
                value: Any = raw.lower() in ("true", "1")
            elif isinstance(current, int):
                value = int(raw)
            elif isinstance(current, float):
                value = float(raw)
            else:
                value = raw
        except ValueError:
            raise InvalidConfigError(f"objective config {key}={raw!r}: expected {type(current).__name__}") from None
        overrides[key] = value
    return overrides


AGENT_SETUP_FIELDS = ("num_envs", "unroll_length", "learning_rate", "optimizer")  # the flags override_agent_setup takes


def override_agent_setup(
    config: Any,
    *,
    num_envs: int | None = None,
    unroll_length: int | None = None,
    learning_rate: float | None = None,
    optimizer: str | None = None,
) -> Any:
    """``config`` with the batch shape and optimiser the user gave (None keeps a field); validated.

    ``config`` is a ``TrainConfig`` (toy environments) or a
    ``training.atari.AtariRunConfig``; ``lpg train``, ``lpg discover online`` and
    ``lpg evaluate`` apply their ``--num-envs``, ``--unroll-length``,
    ``--learning-rate`` and ``--optimizer`` through this one function.

    Raises:
      InvalidConfigError: a non-positive batch size or unroll length, or an
        invalid optimiser (unknown name, non-positive learning rate, ...).
    """
    for flag, value in (("--num-envs", num_envs), ("--unroll-length", unroll_length)):
        if value is not None and value <= 0:
            raise InvalidConfigError(f"{flag} must be positive, got {value}")
    opt = config.optimizer
    if learning_rate is not None:
        opt = dataclasses.replace(opt, learning_rate=learning_rate)
    if optimizer is not None:
        opt = dataclasses.replace(opt, name=optimizer)
    validate_optimizer(opt)
    return dataclasses.replace(
        config,
        num_envs=config.num_envs if num_envs is None else num_envs,
        unroll_length=config.unroll_length if unroll_length is None else unroll_length,
        optimizer=opt,
    )


def agent_setup_flags(options: Any) -> dict[str, Any]:
    """The ``AGENT_SETUP_FIELDS`` of a command's options that the user gave (not None)."""
    return {k: getattr(options, k) for k in AGENT_SETUP_FIELDS if getattr(options, k) is not None}


def train(options: TrainOptions) -> dict[str, Any]:
    """Trains fresh agents as ``options`` say and writes the run folder; returns the summary."""

    if options.env.startswith("atari/"):
        return _train_atari(options)
    if options.frames is not None:
        raise InvalidConfigError("--frames is for Atari environments; toy environments count --steps")
    if options.overlap:
        raise InvalidConfigError(
            "--overlap is for Atari environments (their envpool host loop); toy training is one compiled loop"
        )
    env = envs.make(options.env)
    spec = env.spec
    objective = _make_objective(options)
    preset = default_preset(spec)
    steps = options.steps if options.steps is not None else preset.steps
    if steps <= 0:
        raise InvalidConfigError(f"--steps must be positive, got {steps}")
    if options.num_seeds <= 0:
        raise InvalidConfigError(f"--num-seeds must be positive, got {options.num_seeds}")
    config = override_agent_setup(preset.config, **agent_setup_flags(options))
    validate_longrun(options.checkpoint_interval_s, options.max_nonfinite_skips)
    num_updates = max(1, math.ceil(steps / config.steps_per_update))
    agent = make_agent(spec, options.network, heads=objective.heads)
    trainer = ActorCriticTrainer.create(env, agent, objective, config, total_updates=num_updates)
    run_config = {
        "command": "train",
        "options": run_identity(options),
        "train_config": config,
        "objective_config": objective.config_dict(),
        "num_updates": num_updates,
    }
    if (stored := finished_run(options.out, run_config, resume=options.resume)) is not None:
        return stored
    check_resumable(options.out, options.resume)
    run = RunDir.prepare(options.out, run_config)

    eta = objective.init(jax.random.PRNGKey(options.seed))
    keys = jax.vmap(jax.random.PRNGKey)(np.arange(options.seed, options.seed + options.num_seeds))
    start = time.perf_counter()
    states = shard_batch(trainer.init_seeds(keys), config.num_envs)  # batch axis over devices
    steps_per_update = config.steps_per_update
    total_steps = num_updates * steps_per_update
    guard = LongRun(
        run.path / "training_state",
        resume=options.resume,
        checkpoint_interval_s=options.checkpoint_interval_s,
        max_nonfinite_skips=options.max_nonfinite_skips,
        what=f"train {spec.name}",
    )
    with guard:
        done, states, extra = guard.start(states)
        wall_before = float(extra.get("wall_s", 0.0))
        curve_x: list[int] = list(extra.get("curve_x", []))
        curve_y: list[float] = list(extra.get("curve_y", []))
        done_updates = [done]

        def wall() -> float:
            return wall_before + time.perf_counter() - start

        with ProgressBar(
            f"train {spec.name} ({objective.name})", total_steps, "steps", enabled=options.progress
        ) as bar:
            bar.resume_from(done * steps_per_update)

            def on_chunk(done: int, metrics: dict[str, np.ndarray]) -> None:
                advance = (done - done_updates[0]) * steps_per_update
                done_updates[0] = done
                count = float(metrics["episode_count"].sum())
                mean_return = float(metrics["episode_return_sum"].sum() / count) if count else float("nan")
                row = {
                    k: float(np.mean(v)) for k, v in metrics.items() if k not in ("episode_return_sum", "episode_count")
                }
                row.update(
                    episode_return=mean_return, episodes=count, wall_s=wall(), nonfinite_skips_total=guard.total_skips
                )
                run.log(done * steps_per_update, row)
                if count:
                    curve_x.append(done * steps_per_update)
                    curve_y.append(mean_return)
                skipped = f", skipped {guard.total_skips}" if guard.total_skips else ""
                bar.update(advance, (f"return {mean_return:.3f}" if count else "") + skipped)

            states, metrics = train_loop(
                trainer,
                eta,
                states,
                num_updates,
                on_chunk=on_chunk,
                guard=guard,
                start=done,
                history=extra.get("history"),
                checkpoint_extra=lambda: {"wall_s": wall(), "curve_x": curve_x, "curve_y": curve_y},
            )
    jax.block_until_ready(states.params)
    wall_s = wall()
    per_seed = final_return(metrics)
    finite = per_seed[np.isfinite(per_seed)]
    summary = {
        "env": spec.name,
        "objective": objective.name,
        "steps": total_steps,
        "seed": options.seed,
        "num_seeds": options.num_seeds,
        "final_return": float(finite.mean()) if finite.size else None,
        "final_return_per_seed": [None if not np.isfinite(x) else float(x) for x in per_seed],
        "final_return_definition": "mean undiscounted return of episodes completed in the last 10% of steps",
        "random_return": spec.random_return,
        "optimal_return": spec.optimal_return,
        "wall_s": wall_s,
        "steps_per_s": options.num_seeds
        * (total_steps - done * steps_per_update)
        / max(time.perf_counter() - start, 1e-9),
        "num_updates": num_updates,
        "nonfinite_skips": guard.total_skips,
        "resumed_at_update": done if options.resume else None,
    }
    hlines = [
        (name, value)
        for name, value in (("optimal", spec.optimal_return), ("random", spec.random_return))
        if value is not None
    ]
    plot_lines(
        run.path / "learning_curve.png",
        [(f"{objective.name} (mean of {options.num_seeds} seed(s))", curve_x, curve_y)],
        title=f"{spec.name}: episode return",
        xlabel="environment steps per seed",
        ylabel="mean episode return",
        hlines=hlines,
    )
    run.write_summary(summary)
    run.close()
    return summary


def _make_objective(options: TrainOptions, defaults: dict[str, Any] | None = None):
    import objectives

    base = objectives.make(options.objective)
    overrides = dict(defaults or {})
    overrides = {k: v for k, v in overrides.items() if hasattr(base.config, k)}
    overrides.update(parse_overrides(options.objective_config, base.config))
    objective = objectives.make(options.objective, **overrides)
    if objective.is_learned:
        raise InvalidConfigError(
            f"objective {options.objective!r} has meta-parameters to learn: use `lpg discover`, or `lpg evaluate` for a saved one"
        )
    return objective


def _train_atari(options: TrainOptions) -> dict[str, Any]:
    """``lpg train atari/<Game>``: one agent, ``frames`` emulator frames (see training/atari.py)."""
    from training.atari import AtariRunConfig, train_atari

    envs.make_spec(options.env)  # unknown game -> UnknownNameError
    if options.steps is not None and options.frames is not None:
        raise InvalidConfigError("give --frames or --steps for Atari, not both")
    frames = (
        options.frames
        if options.frames is not None
        else (options.steps * 4 if options.steps is not None else 10_000_000)
    )
    if options.num_seeds != 1:
        raise InvalidConfigError("Atari runs train one seed per command (--num-seeds 1)")
    objective = _make_objective(options, defaults={"reward_clip": 1.0})
    if options.overlap and objective.name != "vtrace":
        raise InvalidConfigError(
            f"--overlap learns from data one update behind the policy, which {objective.name} does not correct: use --objective vtrace"
        )
    config = dataclasses.replace(
        override_agent_setup(AtariRunConfig(), **agent_setup_flags(options)), overlap=options.overlap
    )
    validate_longrun(options.checkpoint_interval_s, options.max_nonfinite_skips)
    run_config = {
        "command": "train",
        "options": run_identity(options),
        "atari_config": config,
        "objective_config": objective.config_dict(),
    }
    if (stored := finished_run(options.out, run_config, resume=options.resume)) is not None:
        return stored
    check_resumable(options.out, options.resume)
    summary = train_atari(
        options.env,
        objective,
        objective.init(jax.random.PRNGKey(options.seed)),
        frames,
        options.seed,
        options.out,
        config,
        options.network,
        options.progress,
        run_config,
        resume=options.resume,
        checkpoint_interval_s=options.checkpoint_interval_s,
        max_nonfinite_skips=options.max_nonfinite_skips,
    )
    summary.pop("params", None)
    return summary
