"""``lpg train ENV --objective NAME``: fresh agents learn with a hand-designed objective."""

from __future__ import annotations

import dataclasses
import math
from typing import Annotated, Any

import jax
import numpy as np
import tyro

import objectives
from lpg import envs
from lpg.distributed import shard_batch
from lpg.errors import InvalidConfigError
from lpg.harness import Run, run_identity
from lpg.networks import NetworkConfig, make_agent
from lpg.run_io import plot_lines
from lpg.validation import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE_COUNT, Config, parse_overrides
from training.actor_critic import ActorCriticTrainer
from training.loop import final_return, train_loop
from training.presets import agent_setup_flags, default_preset, override_agent_setup

__all__ = ["TrainCommand", "TrainOptions", "train"]

ATARI_DEFAULT_FRAMES = 10_000_000


@dataclasses.dataclass(frozen=True)
class TrainOptions(Config):
    """What ``lpg train`` needs (the CLI's ``TrainCommand`` is this dataclass; Python users may build it too)."""

    env: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="ENV")]
    """Environment name (see `lpg envs`)."""
    objective: str = "a2c"
    """Objective name: one that `lpg objectives` marks as trainable from scratch."""
    steps: int | None = None
    """Environment steps per seed, rounded up to whole updates (default: the environment's preset, see README); on Atari an agent step is 4 frames (--frames is the usual budget there)."""
    seed: int = 0
    """Random seed of the first agent."""
    num_seeds: int = 1
    """Agents trained in parallel under vmap, with seeds seed, seed+1, ..."""
    out: str = "runs/train"
    """Output folder (created; must be empty or hold this same run)."""
    num_envs: int | None = None
    """Environments per agent (default: preset)."""
    unroll_length: int | None = None
    """Steps per rollout; one update per rollout (default: preset)."""
    learning_rate: float | None = None
    """Agent learning rate (default: preset)."""
    optimizer: str | None = None
    """Agent optimiser: adam, sgd or rmsprop (default: preset)."""
    objective_config: tuple[str, ...] = ()
    """Objective config overrides, KEY=VALUE (e.g. gamma=0.9 td_lambda=1.0)."""
    network: NetworkConfig = NetworkConfig()
    """Agent network."""
    progress: bool = True
    """Show a progress bar with ETA on stderr."""
    frames: int | None = None
    """Atari only: emulator frames to train for (4 per agent step; default 10M)."""
    overlap: bool = False
    """Atari only: learn on one rollout while acting on the next (use --objective vtrace)."""
    resume: bool = False
    """Continue the run in --out from its newest training checkpoint (same command otherwise)."""
    checkpoint_interval_s: float = 60.0
    """Seconds between training checkpoints in --out/training_state (0 = after every chunk of updates); SIGINT/SIGTERM also write one."""
    max_nonfinite_skips: int = 10
    """Stop after this many consecutive updates with a non-finite gradient (each is skipped and counted)."""

    RANGES = {
        "steps": POSITIVE_COUNT,
        "num_seeds": POSITIVE_COUNT,
        "num_envs": POSITIVE_COUNT,
        "unroll_length": POSITIVE_COUNT,
        "frames": POSITIVE_COUNT,
        "checkpoint_interval_s": NON_NEGATIVE,
        "max_nonfinite_skips": AT_LEAST_ONE,
    }
    FLAGS = True


@dataclasses.dataclass(frozen=True)
class TrainCommand(TrainOptions):
    """Train fresh agents on one environment with a hand-designed objective.

    Writes to --out: summary.json (env, objective, steps, seed, final_return,
    wall_s, steps_per_s, ...), metrics.jsonl, a TensorBoard event file and
    learning_curve.png. final_return is the mean undiscounted return of the
    episodes completed in the last 10% of steps (averaged over seeds).
    """

    def run(self) -> int:
        summary = train(self)
        if "frames_per_s" in summary:
            from training.atari import atari_result_lines

            print("\n".join(atari_result_lines(summary, self.out)))
            return 0
        final = summary["final_return"]
        print(
            f"{summary['env']} / {summary['objective']}: final_return "
            f"{'n/a' if final is None else f'{final:.3f}'} after {summary['steps']:,} steps "
            f"({summary['wall_s']:.1f}s, {summary['steps_per_s']:,.0f} steps/s); results in {self.out}/summary.json"
        )
        return 0


def train(options: TrainOptions) -> dict[str, Any]:
    """Trains fresh agents as ``options`` say and writes the run folder; returns the summary."""
    if options.env.startswith("atari/"):
        return _train_atari(options)
    if options.frames is not None or options.overlap:
        flag = "--frames" if options.frames is not None else "--overlap"
        raise InvalidConfigError(f"{flag} is for Atari environments; pure-JAX ones (toy, gymnax) count --steps in one compiled loop")
    env = envs.make(options.env)
    objective = _make_objective(options)
    preset = default_preset(env.spec)
    config = override_agent_setup(preset.config, **agent_setup_flags(options))
    num_updates = max(1, math.ceil((options.steps or preset.steps) / config.steps_per_update))
    trainer = ActorCriticTrainer.create(
        env, make_agent(env.spec, options.network, heads=objective.heads), objective, config, total_updates=num_updates
    )
    run_config = {
        "command": "train",
        "options": run_identity(options),
        "train_config": config,
        "objective_config": objective.config_dict(),
        "num_updates": num_updates,
    }
    run = Run.from_options(options, run_config, what=f"train {env.spec.name}")
    if (stored := run.stored()) is not None:
        return stored
    per_update = config.steps_per_update
    with run.open(total=num_updates * per_update, label=f"train {env.spec.name} ({objective.name})", progress_unit="steps"):
        keys = jax.vmap(jax.random.PRNGKey)(np.arange(options.seed, options.seed + options.num_seeds))
        done, states, extra = run.start(shard_batch(trainer.init_seeds(keys), config.num_envs))
        run.resume_progress(done * per_update)
        curve = ([*extra.get("curve_x", [])], [*extra.get("curve_y", [])])
        on_chunk = _chunk_logger(run, per_update, curve, start=done)
        states, metrics = train_loop(
            trainer,
            objective.init(jax.random.PRNGKey(options.seed)),
            states,
            num_updates,
            on_chunk=on_chunk,
            run=run,
            start=done,
            history=extra.get("history"),
            checkpoint_extra=lambda: {"curve_x": curve[0], "curve_y": curve[1]},
        )
        jax.block_until_ready(states.params)
        summary = _summary(options, env.spec, objective, metrics, num_updates, per_update, run, done)
        summary["steps_per_s"] = options.num_seeds * (num_updates - done) * per_update / max(run.session_s(), 1e-9)
        _plot(run.path, env.spec, objective, options.num_seeds, curve)
        return run.finish(summary)


def _chunk_logger(run: Run, per_update: int, curve: tuple[list, list], start: int):
    """``on_chunk(done, metrics)``: one metrics row, a point of the learning curve, the progress bar."""
    last = [start]

    def on_chunk(done: int, metrics: dict[str, np.ndarray]) -> None:
        count = float(metrics["episode_count"].sum())
        mean_return = float(metrics["episode_return_sum"].sum() / count) if count else float("nan")
        row = {k: float(np.mean(v)) for k, v in metrics.items() if k not in ("episode_return_sum", "episode_count")}
        row.update(episode_return=mean_return, episodes=count, wall_s=run.wall(), nonfinite_skips_total=run.total_skips)
        run.log(done * per_update, row)
        if count:
            curve[0].append(done * per_update)
            curve[1].append(mean_return)
        run.advance((done - last[0]) * per_update, f"return {mean_return:.3f}" if count else "")
        last[0] = done

    return on_chunk


def _summary(options, spec, objective, metrics, num_updates: int, per_update: int, run: Run, resumed_at: int):
    per_seed = final_return(metrics)
    finite = per_seed[np.isfinite(per_seed)]
    return {
        "env": spec.name,
        "objective": objective.name,
        "steps": num_updates * per_update,
        "seed": options.seed,
        "num_seeds": options.num_seeds,
        "final_return": float(finite.mean()) if finite.size else None,
        "final_return_per_seed": [None if not np.isfinite(x) else float(x) for x in per_seed],
        "final_return_definition": "mean undiscounted return of episodes completed in the last 10% of steps",
        "random_return": spec.random_return,
        "optimal_return": spec.optimal_return,
        "wall_s": run.wall(),
        "num_updates": num_updates,
        "nonfinite_skips": run.total_skips,
        "resumed_at_update": resumed_at if options.resume else None,
    }


def _plot(path, spec, objective, num_seeds: int, curve: tuple[list, list]) -> None:
    hlines = [(n, v) for n, v in (("optimal", spec.optimal_return), ("random", spec.random_return)) if v is not None]
    plot_lines(
        path / "learning_curve.png",
        [(f"{objective.name} (mean of {num_seeds} seed(s))", *curve)],
        title=f"{spec.name}: episode return",
        xlabel="environment steps per seed",
        ylabel="mean episode return",
        hlines=hlines,
    )


def _make_objective(options: TrainOptions, defaults: dict[str, Any] | None = None):
    """The objective ``--objective`` names (trainable from scratch), with ``defaults`` and ``--objective-config``."""
    base = objectives.require(options.objective, "train")
    overrides = {k: v for k, v in (defaults or {}).items() if hasattr(base.config, k)}
    overrides.update(parse_overrides(options.objective_config, base.config))
    return objectives.make(options.objective, **overrides)


def _train_atari(options: TrainOptions) -> dict[str, Any]:
    """``lpg train atari/<Game>``: one agent, ``frames`` emulator frames (see training/atari.py)."""
    from training.atari import AtariRunConfig, train_atari

    envs.make_spec(options.env)  # unknown game -> UnknownNameError
    if options.steps is not None and options.frames is not None:
        raise InvalidConfigError("give --frames or --steps for Atari, not both")
    if options.num_seeds != 1:
        raise InvalidConfigError("Atari runs train one seed per command (--num-seeds 1)")
    frames = options.frames or (options.steps * 4 if options.steps is not None else ATARI_DEFAULT_FRAMES)
    objective = _make_objective(options, defaults={"reward_clip": 1.0})
    if options.overlap and objective.name != "vtrace":
        raise InvalidConfigError(
            f"--overlap learns from data one update behind the policy, which {objective.name} does not correct: "
            "use --objective vtrace"
        )
    config = override_agent_setup(AtariRunConfig(), **agent_setup_flags(options))
    config = dataclasses.replace(config, overlap=options.overlap)
    run_config = {
        "command": "train",
        "options": run_identity(options),
        "atari_config": config,
        "objective_config": objective.config_dict(),
    }
    run = Run.from_options(options, run_config, what=f"{options.env} run")
    if (stored := run.stored()) is not None:
        return stored
    eta = objective.init(jax.random.PRNGKey(options.seed))
    summary = train_atari(options.env, objective, eta, frames, options.seed, run, config, options.network)
    summary.pop("params", None)
    summary.pop("eta", None)
    return summary
