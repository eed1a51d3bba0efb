"""Transfer evaluation: fresh agents trained by a frozen objective, against A2C and a random policy.

For every environment, ``evaluate_objective`` trains ``seeds`` fresh agents
(under ``vmap``) with the objective's frozen ``eta``, trains agents with the
A2C objective on the same budget (same training config, same seeds), and
measures the uniform-random policy on the same environment. The score is

    a2c_normalised = (return - random_return) / (a2c_return - random_return)

so 0 is random and 1 is A2C. ``return`` and ``a2c_return`` follow
``training.train.final_return``: the mean undiscounted return of the episodes
completed in the last 10 % of training steps, averaged over seeds.
``random_return`` is the mean return of every episode completed by the random
policy (zero logits) acting with the same batch shape for the same number of
steps (capped at ``RANDOM_STEPS_CAP`` per seed; the policy does not change, so
more steps only reduce noise).

``run_evaluate`` is what ``lpg evaluate CHECKPOINT --envs SPEC`` calls: it
validates everything before writing, then writes ``summary.json``,
``metrics.jsonl`` (one row per environment), ``a2c_normalised.png`` and prints
a table.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import shutil
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lpg import envs
from lpg.envs.base import Environment
from lpg.errors import (
    CheckpointError,
    InvalidConfigError,
    OutputDirError,
    RunInterrupted,
)
from lpg.networks import NetworkConfig, make_agent
from lpg.rollout import episode_stats, reset_actors, unroll
from lpg.types import AgentOutput
from training.actor_critic import ActorCriticTrainer, TrainConfig
from training.longrun import StopSignals, check_resumable, run_identity
from training.presets import default_preset
from training.train import agent_setup_flags, final_return, override_agent_setup, parse_overrides, train_loop

__all__ = [
    "NORMALISED_DEFINITION",
    "RANDOM_STEPS_CAP",
    "RETURN_DEFINITION",
    "EvaluateOptions",
    "evaluate_objective",
    "plot_scores",
    "random_policy_return",
    "results_table",
    "run_evaluate",
]

RANDOM_STEPS_CAP = 200_000
PARTIAL_RESULTS = "partial_results.json"  # results of the environments finished so far (for --resume)
NORMALISED_DEFINITION = "(return - random_return) / (a2c_return - random_return); 0 = random policy, 1 = A2C"
RETURN_DEFINITION = "mean undiscounted return of episodes completed in the last 10% of training steps, mean over seeds"

Progress = Callable[[int, str], None]


# --------------------------------------------------------------------------- numbers


def _mean(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None


def _per_seed(values: np.ndarray) -> list[float | None]:
    return [float(x) if np.isfinite(x) else None for x in values]


def a2c_normalised(ret: float | None, a2c: float | None, random: float | None) -> float | None:
    """``(ret - random) / (a2c - random)``; None when a number is missing or A2C equals random."""
    if ret is None or a2c is None or random is None or a2c == random:
        return None
    return (ret - random) / (a2c - random)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _random_rollouts(
    env: Environment, num_envs: int, unroll_length: int, num_unrolls: int, keys: jax.Array
) -> dict[str, jax.Array]:
    obs_ndim = len(env.spec.observation_shape)
    num_actions = env.spec.num_actions

    def apply_fn(params, obs):
        del params
        lead = obs.shape[: obs.ndim - obs_ndim]
        zeros = jnp.zeros(lead, jnp.float32)
        return AgentOutput(
            logits=jnp.zeros(lead + (num_actions,), jnp.float32),
            value=zeros,
            y_logits=jnp.zeros(lead + (0,), jnp.float32),
        )

    def one_seed(key):
        reset_key, key = jax.random.split(key)
        actor = reset_actors(env, reset_key, num_envs)

        def body(actor, unroll_key):
            actor, rollout = unroll(env, apply_fn, None, actor, unroll_key, unroll_length)
            return actor, episode_stats(rollout)

        _, stats = jax.lax.scan(body, actor, jax.random.split(key, num_unrolls))
        return jax.tree.map(jnp.sum, stats)

    return jax.vmap(one_seed)(keys)


def random_policy_return(env: Environment, config: TrainConfig, steps: int, keys: jax.Array) -> np.ndarray:
    """Mean return of the uniform-random policy's completed episodes, per key [S] (NaN: none completed).

    Acts ``config.num_envs`` environments for about ``steps`` steps each (whole rollouts).
    """
    num_unrolls = max(1, math.ceil(steps / config.steps_per_update))
    stats = jax.device_get(_random_rollouts(env, config.num_envs, config.unroll_length, num_unrolls, keys))
    total, count = np.asarray(stats["episode_return_sum"], np.float64), np.asarray(stats["episode_count"], np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


# --------------------------------------------------------------------------- evaluation


def _train(
    objective: Any,
    eta: Any,
    env: Environment,
    config: TrainConfig,
    network: NetworkConfig,
    num_updates: int,
    keys: jax.Array,
    progress: Progress | None,
    status: str,
) -> np.ndarray:
    """Trains one fresh agent per key with ``objective`` and frozen ``eta``; final returns [S]."""
    agent = make_agent(env.spec, network, heads=objective.heads)
    trainer = ActorCriticTrainer.create(env, agent, objective, config, total_updates=num_updates)
    states = trainer.init_seeds(keys)
    steps_per_chunk_update = config.steps_per_update * int(keys.shape[0])
    done_before = [0]

    def on_chunk(done: int, metrics: dict[str, np.ndarray]) -> None:
        if progress is not None:
            count = float(metrics["episode_count"].sum())
            text = f"{status} return {metrics['episode_return_sum'].sum() / count:.3f}" if count else status
            progress((done - done_before[0]) * steps_per_chunk_update, text)
        done_before[0] = done

    _, metrics = train_loop(trainer, eta, states, num_updates, on_chunk=on_chunk)
    return np.asarray(final_return(metrics), np.float64)


def evaluate_objective(
    objective: Any,
    eta: Any,
    env_names: list[str],
    steps: int | None,
    seeds: int,
    seed: int = 0,
    progress: Progress | None = None,
    *,
    train_config: TrainConfig | Mapping[str, TrainConfig] | None = None,
    network: NetworkConfig = NetworkConfig(),
    baseline_cache: dict | None = None,
    on_result: Callable[[str, dict[str, Any]], None] | None = None,
    completed: Mapping[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Trains fresh agents with the frozen objective on every environment; compares with A2C and random.

    Args:
      objective: the objective (``objectives.Objective``); agents get a y head
        of size ``objective.heads.y_size``.
      eta: its meta-parameters; frozen (``stop_gradient``) during training.
      env_names: environments to evaluate on (see ``lpg.envs.resolve_env_spec``).
      steps: environment steps per agent; None = each environment's preset
        budget (``training.presets.default_preset``). Rounded up to whole updates.
      seeds: agents per environment (seeds ``seed .. seed + seeds - 1``, vmapped).
      seed: first seed; the A2C baseline uses the same seeds.
      progress: optional ``progress(advance, status)`` called as training
        advances (``advance`` in agent steps summed over seeds), e.g.
        ``ProgressBar.update``.
      train_config: batch shape and optimiser; None = the environment's preset;
        a mapping env name -> TrainConfig overrides per environment.
      network: the agents' network architecture.
      baseline_cache: a dict reused across calls to skip re-training the A2C
        and random baselines (e.g. periodic evaluation during discovery);
        within one call baselines are always cached.
      on_result: called with ``(env_name, result)`` as each environment finishes.
      completed: results of environments already evaluated (a resumed run):
        they are taken as they are, not trained again. Each environment's
        agents depend only on the seeds, so the results equal a run in one go.

    Returns:
      ``{"results": {env: {"return", "a2c_return", "random_return",
      "a2c_normalised", "return_per_seed", "a2c_return_per_seed",
      "random_return_per_seed", "steps", "num_updates"}},
      "mean_a2c_normalised": mean over environments with a score (None if none),
      "seeds", "seed"}``. Missing numbers (no episode completed) are None.
    """
    import objectives

    if seeds <= 0:
        raise InvalidConfigError(f"--seeds must be positive, got {seeds}")
    if steps is not None and steps <= 0:
        raise InvalidConfigError(f"--steps must be positive, got {steps}")
    if not env_names:
        raise InvalidConfigError("no environments to evaluate on")
    cache = baseline_cache if baseline_cache is not None else {}
    frozen_eta = jax.tree.map(jax.lax.stop_gradient, eta)
    a2c = objectives.make("a2c")
    keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(seed, seed + seeds))
    random_keys = jax.vmap(lambda k: jax.random.fold_in(k, 0x5EED))(keys)

    results: dict[str, dict[str, Any]] = {}
    for name in env_names:
        if completed and name in completed:
            results[name] = dict(completed[name])
            continue
        env = envs.make(name)
        spec = env.spec
        if spec.kind == "atari":
            raise InvalidConfigError(
                f"{name}: evaluate_objective trains on toy environments only; Atari games go through run_evaluate (lpg evaluate --envs atari/...)"
            )
        preset = default_preset(spec)
        if isinstance(train_config, Mapping):
            config = train_config.get(name, preset.config)
        else:
            config = train_config if train_config is not None else preset.config
        config.validate()
        env_steps = steps if steps is not None else preset.steps
        num_updates = max(1, math.ceil(env_steps / config.steps_per_update))
        start = time.perf_counter()

        ret = _train(
            objective, frozen_eta, env, config, network, num_updates, keys, progress, f"{name} {objective.name}"
        )

        key = (name, num_updates, seeds, seed, repr(config), repr(network), repr(a2c.config))
        if key not in cache:
            a2c_ret = _train(
                a2c,
                a2c.init(jax.random.PRNGKey(seed)),
                env,
                config,
                network,
                num_updates,
                keys,
                progress,
                f"{name} a2c",
            )
            rnd = random_policy_return(
                env, config, min(num_updates * config.steps_per_update, RANDOM_STEPS_CAP), random_keys
            )
            cache[key] = (a2c_ret, rnd)
        a2c_ret, rnd = cache[key]

        mean_ret, mean_a2c, mean_rnd = _mean(ret), _mean(a2c_ret), _mean(rnd)
        result = {
            "return": mean_ret,
            "a2c_return": mean_a2c,
            "random_return": mean_rnd,
            "a2c_normalised": a2c_normalised(mean_ret, mean_a2c, mean_rnd),
            "return_per_seed": _per_seed(ret),
            "a2c_return_per_seed": _per_seed(a2c_ret),
            "random_return_per_seed": _per_seed(rnd),
            "steps": num_updates * config.steps_per_update,
            "num_updates": num_updates,
            "wall_s": time.perf_counter() - start,
        }
        results[name] = result
        if on_result is not None:
            on_result(name, result)

    scores = [r["a2c_normalised"] for r in results.values() if r["a2c_normalised"] is not None]
    return {
        "results": results,
        "mean_a2c_normalised": float(np.mean(scores)) if scores else None,
        "seeds": seeds,
        "seed": seed,
    }


# --------------------------------------------------------------------------- host runner


@dataclasses.dataclass(frozen=True)
class EvaluateOptions:
    """What ``lpg evaluate`` needs (the CLI builds it; Python users may too).

    Attributes:
      checkpoint: objective checkpoint folder.
      envs: environments: names, globs and named sets, comma-separated; None =
        the environments recorded in the checkpoint (its ``envs`` metadata).
      steps: environment steps per agent; None = each environment's preset.
      seeds: agents per environment (vmapped).
      seed: first seed.
      out: output folder.
      progress: show a progress bar.
      frames: Atari only: emulator frames per agent (default 10M).
      agent_setup: "checkpoint" = train agents (and the A2C baseline) with the
        batch shape, optimiser and step budget recorded in the checkpoint's
        ``evaluation`` metadata when it has one (so a model card's table is
        reproduced); "preset" = each environment's preset (training/presets.py).
      resume: continue an interrupted evaluation in ``out``: environments whose
        results were saved (``partial_results.json``, written as each one
        finishes and on SIGINT/SIGTERM) are not trained again.
      num_envs, unroll_length, learning_rate, optimizer: override the agents'
        batch shape and optimiser (None = keep the set-up chosen by
        ``agent_setup``, or Atari's ``training.atari.AtariRunConfig``). On toy
        environments the A2C baseline is trained with the same set-up.
      objective_config: KEY=VALUE overrides of the saved objective's
        hyper-parameters (e.g. ``alpha_y=0.1`` for LPG); refused when they would
        change the shapes of its learned meta-parameters.
    """

    checkpoint: str
    envs: str | None = None
    steps: int | None = None
    seeds: int = 3
    seed: int = 0
    out: str = "runs/evaluate"
    progress: bool = True
    frames: int | None = None
    agent_setup: str = "checkpoint"
    resume: bool = False
    num_envs: int | None = None
    unroll_length: int | None = None
    learning_rate: float | None = None
    optimizer: str | None = None
    objective_config: tuple[str, ...] = ()


def _env_spec_from(options: EvaluateOptions, metadata: Mapping[str, Any]) -> str:
    if options.envs is not None:
        return options.envs
    recorded = metadata.get("envs")
    if isinstance(recorded, str) and recorded.strip():
        return recorded
    if isinstance(recorded, list) and recorded and all(isinstance(n, str) for n in recorded):
        return ",".join(recorded)
    raise InvalidConfigError("--envs is required: the checkpoint records no environment set")


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def results_table(evaluation: Mapping[str, Any]) -> str:
    """A Markdown table of ``evaluate_objective``'s (or ``summary.json``'s) results, with the mean row."""
    lines = ["| environment | return | A2C return | random return | A2C-normalised |", "|---|---:|---:|---:|---:|"]
    for name, r in evaluation["results"].items():
        lines.append(
            f"| {name} | {_fmt(r['return'])} | {_fmt(r['a2c_return'])} | {_fmt(r['random_return'])} | {_fmt(r['a2c_normalised'], 2)} |"
        )
    lines.append(f"| **mean** | | | | **{_fmt(evaluation['mean_a2c_normalised'], 2)}** |")
    return "\n".join(lines)


def _print_table(evaluation: Mapping[str, Any], title: str) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover
        print(title)
        print(results_table(evaluation))
        return
    table = Table(title=title)
    for column in ("environment", "return", "A2C return", "random return", "A2C-normalised"):
        table.add_column(column, justify="left" if column == "environment" else "right")
    for name, r in evaluation["results"].items():
        table.add_row(
            name, _fmt(r["return"]), _fmt(r["a2c_return"]), _fmt(r["random_return"]), _fmt(r["a2c_normalised"], 2)
        )
    table.add_section()
    table.add_row("mean", "", "", "", _fmt(evaluation["mean_a2c_normalised"], 2))
    Console().print(table)


def plot_scores(path: Path, evaluation: Mapping[str, Any], title: str) -> Path:
    """Bar chart of the A2C-normalised score per environment (missing scores marked n/a)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(evaluation["results"])
    scores = [evaluation["results"][n]["a2c_normalised"] for n in names]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * len(names) + 2.0), 4.2))
    xs = np.arange(len(names))
    ax.bar(xs, [0.0 if s is None else s for s in scores], color="tab:blue")
    for x, s in zip(xs, scores):
        ax.annotate(
            "n/a" if s is None else f"{s:.2f}", (x, 0.0 if s is None else s), ha="center", va="bottom", fontsize=8
        )
    ax.axhline(1.0, linestyle="--", linewidth=1, color="grey", label="A2C")
    ax.axhline(0.0, linestyle=":", linewidth=1, color="black", label="random")
    ax.set_xticks(xs)
    ax.set_xticklabels(names, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("A2C-normalised return")
    mean = evaluation["mean_a2c_normalised"]
    ax.set_title(f"{title} (mean {_fmt(mean, 2)})")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def with_config_overrides(objective: Any, eta: Any, items: tuple[str, ...]) -> Any:
    """The saved ``objective`` rebuilt with KEY=VALUE hyper-parameter overrides (``--objective-config``).

    Only hyper-parameters that leave the learned meta-parameters' tree and shapes
    unchanged can be overridden (e.g. LPG's ``alpha_y``, FRODO's ``gamma``), since
    ``eta`` is the checkpoint's.

    Raises:
      InvalidConfigError: a malformed item, an unknown key, or an override that
        changes the shapes of ``eta`` (e.g. ``hidden_size``).
    """
    import objectives

    if not items:
        return objective
    overrides = parse_overrides(items, objective.config)
    rebuilt = objectives.make(objective.name, **{**objective.config_dict(), **overrides})
    expected = jax.eval_shape(rebuilt.init, jax.random.PRNGKey(0))
    shapes = lambda tree: jax.tree.map(lambda x: (tuple(x.shape), np.dtype(x.dtype).name), tree)
    if jax.tree.structure(expected) != jax.tree.structure(eta) or shapes(expected) != shapes(eta):
        raise InvalidConfigError(
            f"--objective-config {', '.join(sorted(overrides))}: changes the shapes of the checkpoint's learned "
            "meta-parameters; only hyper-parameters that leave them unchanged can be overridden"
        )
    return rebuilt


def run_evaluate(
    options: EvaluateOptions, *, baseline_cache: dict | None = None, show_table: bool = True
) -> dict[str, Any]:
    """Evaluates the checkpoint as ``options`` say and writes the run folder; returns the summary.

    ``baseline_cache`` is passed to ``evaluate_objective`` (reuse A2C / random baselines across calls);
    ``show_table`` prints the results table.

    Raises (before writing anything):
      CheckpointError: the checkpoint is missing, corrupted or incompatible.
      UnknownNameError: ``--envs`` names an unknown environment or set.
      InvalidConfigError: non-positive steps or seeds, Atari environments.
      OutputDirError: ``--out`` cannot be written or holds a different run.
    """
    from lpg.checkpoint import check_agent_heads, load_objective
    from lpg.progress import ProgressBar
    from lpg.run_io import RunDir, finished_run, write_json_atomic

    if options.seeds <= 0:
        raise InvalidConfigError(f"--seeds must be positive, got {options.seeds}")
    if options.steps is not None and options.steps <= 0:
        raise InvalidConfigError(f"--steps must be positive, got {options.steps}")
    overrides = agent_setup_flags(options)
    checkpoint = Path(options.checkpoint).absolute()
    objective, eta, metadata = load_objective(checkpoint)
    check_agent_heads(metadata, objective.heads)
    objective = with_config_overrides(objective, eta, options.objective_config)
    names = envs.resolve_env_spec(_env_spec_from(options, metadata))
    atari = [n for n in names if n.startswith("atari/")]
    if atari:
        if len(atari) != len(names):
            raise InvalidConfigError("evaluate toy and Atari environments in separate runs")
        return _run_evaluate_atari(options, objective, eta, metadata, checkpoint, names, overrides)
    if options.frames is not None:
        raise InvalidConfigError("--frames is for Atari environments; toy environments count --steps")
    if options.agent_setup not in ("checkpoint", "preset"):
        raise InvalidConfigError(f"--agent-setup must be checkpoint or preset, got {options.agent_setup!r}")
    recorded = checkpoint_train_config(metadata) if options.agent_setup == "checkpoint" else None
    steps_default = metadata["evaluation"].get("steps") if recorded is not None else None
    train_configs = {}  # env -> the agents' set-up (recorded or preset, with the user's overrides)
    total = 0
    for name in names:
        spec = envs.make(name).spec
        preset = default_preset(spec)
        config = train_configs[name] = override_agent_setup(recorded or preset.config, **overrides)
        steps = options.steps if options.steps is not None else (steps_default or preset.steps)
        total += 2 * options.seeds * max(1, math.ceil(steps / config.steps_per_update)) * config.steps_per_update

    run_config = {
        "command": "evaluate",
        "options": run_identity(dataclasses.replace(options, checkpoint=str(checkpoint))),
        "envs": names,
        "objective": metadata["objective"],
        "checkpoint_saved_at": metadata.get("saved_at"),
    }
    partial_path = Path(options.out) / PARTIAL_RESULTS
    title = f"{objective.name} from {checkpoint.name}"
    if (stored := finished_run(options.out, run_config, resume=options.resume)) is not None:
        if show_table:
            _print_table(stored, title)
        return stored
    check_resumable(options.out, options.resume, "evaluation")
    run = RunDir.prepare(options.out, run_config)
    completed: dict[str, dict[str, Any]] = {}
    wall_before = 0.0  # seconds spent by the interrupted sessions of this evaluation
    if partial_path.exists():
        if not options.resume:
            raise OutputDirError(
                f"{options.out!r} holds an unfinished evaluation; add --resume to continue it, or choose a new --out"
            )
        try:
            partial = json.loads(partial_path.read_text())
            completed, wall_before = dict(partial["results"]), float(partial.get("wall_s", 0.0))
        except (OSError, ValueError, KeyError, TypeError):
            raise CheckpointError(
                f"{str(partial_path)!r} is unreadable; delete it to evaluate every environment again"
            ) from None
    start = time.perf_counter()
    logged = [len(completed)]
    signals = StopSignals()

    def on_result(name: str, result: dict[str, Any]) -> None:
        row = {k: v for k, v in result.items() if not k.endswith("_per_seed")}
        run.log(logged[0], {"env": name, **row, "elapsed_s": time.perf_counter() - start})
        logged[0] += 1
        completed[name] = result
        write_json_atomic(partial_path, {"results": completed, "wall_s": wall_before + time.perf_counter() - start})

    def progress(advance: int, text: str = "") -> None:
        bar.update(advance, text)
        if signals.requested:  # the environment in progress is trained again on --resume
            raise RunInterrupted(
                f"evaluate stopped by {signal.Signals(signals.signum).name} after {len(completed)} of {len(names)} environments; "
                f"their results are saved in {str(partial_path)!r}; continue with the same command plus --resume",
                signum=signals.signum,
            )

    try:
        with signals, ProgressBar(f"evaluate {objective.name}", total, "agent steps", enabled=options.progress) as bar:
            bar.resume_from(sum(2 * options.seeds * r["steps"] for r in completed.values() if r.get("steps")))
            evaluation = evaluate_objective(
                objective,
                eta,
                names,
                options.steps if options.steps is not None else steps_default,
                options.seeds,
                options.seed,
                progress=progress,
                on_result=on_result,
                baseline_cache=baseline_cache,
                train_config=train_configs,
                completed=completed,
            )
    finally:
        run.close()
    summary = {
        "checkpoint": str(checkpoint),
        "checkpoint_metadata": metadata,
        "objective": objective.name,
        "envs": names,
        "steps": options.steps if options.steps is not None else steps_default,
        "agent_setup": options.agent_setup if recorded is not None else "preset",
        "train_config": train_configs[names[0]]
        if recorded is not None
        else None,  # the one set-up every environment shares
        "agent_overrides": overrides,
        "train_configs": train_configs,
        "objective_config": objective.config_dict(),
        "seeds": options.seeds,
        "seed": options.seed,
        "results": evaluation["results"],
        "mean_a2c_normalised": evaluation["mean_a2c_normalised"],
        "return_definition": RETURN_DEFINITION,
        "a2c_normalised_definition": NORMALISED_DEFINITION,
        "random_return_definition": f"uniform-random policy, mean return of completed episodes over up to {RANDOM_STEPS_CAP:,} steps per seed",
        "wall_s": wall_before
        + time.perf_counter()
        - start,  # every session's, up to the last finished environment of an interrupted one
    }
    plot_scores(run.path / "a2c_normalised.png", evaluation, title)
    run.write_summary(summary)
    partial_path.unlink(missing_ok=True)
    if show_table:
        _print_table(evaluation, title)
    return summary


class _RewardClipped:
    """Delegates to an objective, with rewards clipped to [-c, c] first (Atari, for objectives without ``reward_clip``)."""

    def __init__(self, objective: Any, clip: float):
        self._objective, self._clip = objective, clip

    def __getattr__(self, name: str) -> Any:
        return getattr(self._objective, name)

    def agent_loss(self, eta, rollout, agent_out):
        clipped = rollout.replace(reward=jnp.clip(rollout.reward, -self._clip, self._clip))
        return self._objective.agent_loss(eta, clipped, agent_out)


def checkpoint_train_config(metadata: Mapping[str, Any]) -> TrainConfig | None:
    """The agent set-up a checkpoint's model card was evaluated with (``metadata["evaluation"]``), if recorded."""
    from lpg.optim import OptimizerConfig

    record = metadata.get("evaluation")
    if not isinstance(record, Mapping) or not {"num_envs", "unroll_length", "agent_optimizer"} <= set(record):
        return None
    try:
        return TrainConfig(
            int(record["num_envs"]), int(record["unroll_length"]), OptimizerConfig(**record["agent_optimizer"])
        )
    except (TypeError, ValueError) as error:
        raise InvalidConfigError(f"the checkpoint's recorded evaluation set-up is invalid: {error}") from None


def _run_evaluate_atari(
    options: EvaluateOptions,
    objective: Any,
    eta: Any,
    metadata: dict,
    checkpoint: Path,
    names: list[str],
    overrides: Mapping[str, Any],
) -> dict[str, Any]:
    """``lpg evaluate CHECKPOINT --envs atari/...``: fresh agents learn each game from the frozen objective.

    Reports the raw game score (mean of games finished in the last 10 % of
    frames, averaged over seeds), its human-normalised score, and the median
    human-normalised score over games. Rewards are clipped to [-1, 1] for the
    objective (its own ``reward_clip`` when it has one; ``--objective-config
    reward_clip=...`` sets another). ``overrides`` (``--num-envs`` ...) change
    ``AtariRunConfig``'s defaults.
    """
    from evaluation.atari_scores import human_normalised, reference_scores
    from lpg.run_io import RunDir, finished_run
    from objectives import make as make_objective
    from training.atari import AtariRunConfig, train_atari

    frames = (
        options.frames
        if options.frames is not None
        else (options.steps * 4 if options.steps is not None else 10_000_000)
    )
    if frames <= 0:
        raise InvalidConfigError(f"--frames must be positive, got {frames}")
    for name in names:
        reference_scores(name)
    agent_config = override_agent_setup(AtariRunConfig(), **overrides)
    if "reward_clip" not in parse_overrides(
        options.objective_config, objective.config
    ):  # the user's --objective-config wins
        if hasattr(objective.config, "reward_clip"):
            objective = make_objective(objective.name, **{**objective.config_dict(), "reward_clip": 1.0})
        else:
            objective = _RewardClipped(objective, 1.0)
    run_config = {
        "command": "evaluate",
        "options": run_identity(dataclasses.replace(options, checkpoint=str(checkpoint))),
        "envs": names,
        "objective": metadata["objective"],
        "frames": frames,
    }
    if (stored := finished_run(options.out, run_config, resume=options.resume)) is not None:
        _print_atari_table(stored)
        return stored
    check_resumable(options.out, options.resume, "evaluation")
    run = RunDir.prepare(options.out, run_config)
    agents_dir = run.path / "agents"  # one run folder (with training checkpoints) per game and seed
    if agents_dir.exists() and not options.resume and not (run.path / "summary.json").exists():
        raise OutputDirError(
            f"{options.out!r} holds an unfinished evaluation; add --resume to continue it, or choose a new --out"
        )
    start = time.perf_counter()
    results: dict[str, Any] = {}
    for i, name in enumerate(names):
        scores = []
        for k in range(options.seeds):
            agent_out = agents_dir / f"{name.split('/', 1)[1]}-seed{options.seed + k}"
            finished = agent_out / "summary.json"
            if options.resume and finished.exists():
                summary = json.loads(finished.read_text())
            else:
                resume = options.resume and (agent_out / "config.json").exists()
                if agent_out.exists() and not resume:
                    shutil.rmtree(agent_out)  # a previous evaluation into this folder, now run again
                summary = train_atari(
                    name,
                    objective,
                    eta,
                    frames,
                    options.seed + k,
                    str(agent_out),
                    agent_config,
                    progress=options.progress,
                    run_config={
                        "command": "evaluate agent",
                        "env": name,
                        "seed": options.seed + k,
                        "frames": frames,
                        "checkpoint": str(checkpoint),
                    },
                    resume=resume,
                )
            scores.append(summary["score"])
        finite = [x for x in scores if x is not None]
        score = float(np.mean(finite)) if finite else None
        random_score, human_score = reference_scores(name)
        results[name] = {
            "score": score,
            "score_per_seed": scores,
            "human_normalised": None if score is None else human_normalised(name, score),
            "random_score": random_score,
            "human_score": human_score,
            "frames": frames,
        }
        run.log(i, {"env": name, **{k: v for k, v in results[name].items() if k != "score_per_seed"}})
    run.close()
    normalised = [r["human_normalised"] for r in results.values() if r["human_normalised"] is not None]
    summary = {
        "checkpoint": str(checkpoint),
        "checkpoint_metadata": metadata,
        "objective": objective.name,
        "envs": names,
        "frames": frames,
        "seeds": options.seeds,
        "atari_config": agent_config,
        "agent_overrides": dict(overrides),
        "objective_config": objective.config_dict(),
        "results": results,
        "median_human_normalised": float(np.median(normalised)) if normalised else None,
        "mean_a2c_normalised": None,
        "score_definition": "mean raw game score of games finished in the last 10% of frames, averaged over seeds",
        "wall_s": time.perf_counter() - start,
    }
    games = list(results)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(games)), 3.5))
    ax.bar(games, [results[g]["human_normalised"] or 0.0 for g in games])
    ax.set_ylabel("human-normalised score")
    ax.set_title(f"{summary['objective']} on Atari ({frames:,} frames)")
    fig.tight_layout()
    fig.savefig(run.path / "human_normalised.png", dpi=110)
    plt.close(fig)
    run.write_summary(summary)
    _print_atari_table(summary)
    return summary


def _print_atari_table(summary: Mapping[str, Any]) -> None:
    """Prints an Atari evaluation's table (score and human-normalised score per game) and its median."""
    results = summary["results"]
    print("| game | score | human-normalised |\n|---|---:|---:|")
    for game, result in results.items():
        score, hns = result["score"], result["human_normalised"]
        score_text = "n/a" if score is None else f"{score:.1f}"
        hns_text = "n/a" if hns is None else f"{hns:.3f}"
        print(f"| {game} | {score_text} | {hns_text} |")
    if any(result["score"] is None for result in results.values()):
        print("n/a: no game finished within --frames; give more --frames")
    median = summary["median_human_normalised"]
    print(f"median human-normalised: {'n/a' if median is None else f'{median:.3f}'}")
