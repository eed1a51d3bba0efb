"""Transfer evaluation: fresh agents trained by a frozen objective, against A2C and a random policy.

For every environment, ``evaluate_objective`` trains ``seeds`` fresh agents
(under ``vmap``) with the objective's frozen ``eta``, trains agents with the
A2C objective on the same budget (same training config, same seeds), and
measures the uniform-random policy on the same environment. The score is

    a2c_normalised = (return - random_return) / score_scale(a2c_return, random_return)

so 0 is random and 1 is A2C. ``score_scale`` (``training.baselines``) is
``a2c_return - random_return`` floored at ``max(0.1, 0.1 * |random_return|)``:
without the floor the score's sign flips when A2C does worse than random and
explodes when A2C barely beats it. Each result says whether A2C cleared the
floor (``a2c_beats_random``); where it did not, a score of 1 does not mean
"as good as A2C", and the tables mark the row. ``return`` and ``a2c_return`` follow
``training.loop.final_return``: the mean undiscounted return of the episodes
completed in the last 10 % of training steps, averaged over seeds.
``random_return`` is the mean return of every episode completed by the random
policy (zero logits) acting with the same batch shape for the same number of
steps (capped at ``RANDOM_STEPS_CAP`` per seed; the policy does not change, so
more steps only reduce noise).

Environments are ``Environment`` values or registered names. ``lpg evaluate``
(``lpg.commands.evaluate``) wires this into a run folder; this module holds
the scoring, its tables and its plots.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lpg import envs
from lpg.envs.base import Environment
from lpg.errors import InvalidConfigError
from lpg.eta_schedule import EtaSchedule
from lpg.networks import NetworkConfig, make_agent
from lpg.run_io import plot_bars
from lpg.validation import parse_overrides
from training.actor_critic import ActorCriticTrainer, TrainConfig
from training.baselines import MIN_SCORE_FRACTION, MIN_SCORE_SCALE, a2c_beats_random, random_policy_return, score_scale
from training.loop import final_return, train_loop
from training.presets import default_preset

__all__ = [
    "NORMALISED_DEFINITION",
    "NOT_BEATEN_NOTE",
    "RANDOM_STEPS_CAP",
    "RETURN_DEFINITION",
    "RewardClipped",
    "a2c_normalised",
    "any_not_beaten",
    "checkpoint_train_config",
    "evaluate_objective",
    "fmt_score",
    "plot_scores",
    "print_atari_table",
    "print_table",
    "random_policy_return",
    "results_table",
    "with_config_overrides",
]

RANDOM_STEPS_CAP = 200_000
_FLOOR = f"max({MIN_SCORE_SCALE:g}, {MIN_SCORE_FRACTION:g} |random_return|)"  # training.baselines.score_scale
NORMALISED_DEFINITION = (
    f"(return - random_return) / max(a2c_return - random_return, {_FLOOR}); 0 = random policy, "
    "1 = A2C where A2C beat random by that floor (a2c_beats_random)"
)
NOT_BEATEN_MARK = "†"
NOT_BEATEN_NOTE = (
    f"{NOT_BEATEN_MARK} A2C did not beat the random policy by {_FLOOR}: "
    "the score is divided by that floor, and 1 does not mean as good as A2C."
)
RETURN_DEFINITION = "mean undiscounted return of episodes completed in the last 10% of training steps, mean over seeds"

Progress = Callable[[int, str], None]


# --------------------------------------------------------------------------- numbers


def _mean(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None


def _per_seed(values: np.ndarray) -> list[float | None]:
    return [float(x) if np.isfinite(x) else None for x in values]


def a2c_normalised(ret: float | None, a2c: float | None, random: float | None) -> float | None:
    """``(ret - random) / score_scale(a2c, random)`` (the module docstring); None when a number is missing."""
    if ret is None or a2c is None or random is None:
        return None
    return (ret - random) / score_scale(a2c, random)


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


def _agent_setup(env: Environment, train_config, steps: int | None) -> tuple[TrainConfig, int]:
    """The agents' set-up on ``env`` (its preset unless given, per environment or for all) and their updates."""
    preset = default_preset(env.spec)
    if isinstance(train_config, Mapping):
        config = train_config.get(env.spec.name, preset.config)
    else:
        config = train_config if train_config is not None else preset.config
    return config, max(1, math.ceil((steps if steps is not None else preset.steps) / config.steps_per_update))


def _evaluate_one(objective, eta, env, config, network, num_updates: int, seed: int, keys, progress, cache: dict):
    """One environment's result: the objective's agents, A2C's (cached) and the random policy's (cached)."""
    import objectives

    start = time.perf_counter()
    name = env.spec.name
    ret = _train(objective, eta, env, config, network, num_updates, keys, progress, f"{name} {objective.name}")
    a2c = objectives.make("a2c")
    key = (env, num_updates, int(keys.shape[0]), seed, repr(config), repr(network), repr(a2c.config))
    if key not in cache:
        a2c_eta = a2c.init(jax.random.PRNGKey(seed))
        a2c_ret = _train(a2c, a2c_eta, env, config, network, num_updates, keys, progress, f"{name} a2c")
        random_keys = jax.vmap(lambda k: jax.random.fold_in(k, 0x5EED))(keys)
        random_steps = min(num_updates * config.steps_per_update, RANDOM_STEPS_CAP)
        cache[key] = (a2c_ret, random_policy_return(env, config, random_steps, random_keys))
    a2c_ret, rnd = cache[key]
    mean_ret, mean_a2c, mean_rnd = _mean(ret), _mean(a2c_ret), _mean(rnd)
    return {
        "return": mean_ret,
        "a2c_return": mean_a2c,
        "random_return": mean_rnd,
        "a2c_normalised": a2c_normalised(mean_ret, mean_a2c, mean_rnd),
        "a2c_beats_random": None if mean_a2c is None or mean_rnd is None else a2c_beats_random(mean_a2c, mean_rnd),
        "return_per_seed": _per_seed(ret),
        "a2c_return_per_seed": _per_seed(a2c_ret),
        "random_return_per_seed": _per_seed(rnd),
        "steps": num_updates * config.steps_per_update,
        "num_updates": num_updates,
        "wall_s": time.perf_counter() - start,
    }


def evaluate_objective(
    objective: Any,
    eta: Any,
    environments: list[Environment | str],
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
      eta: its meta-parameters; frozen (``stop_gradient``) during training. An
        ``lpg.eta_schedule.EtaSchedule`` is replayed by progress through each
        agent's lifetime (``training.loop.train_loop``).
      environments: ``Environment`` values or registered names (``lpg.envs.resolve_env_spec``
        expands a spec); results are keyed by each environment's ``spec.name``.
      steps: environment steps per agent; None = each environment's preset
        budget (``training.presets.default_preset``). Rounded up to whole updates.
      seeds: agents per environment (seeds ``seed .. seed + seeds - 1``, vmapped).
      seed: first seed; the A2C baseline uses the same seeds.
      progress: optional ``progress(advance, status)`` called as training
        advances (``advance`` in agent steps summed over seeds), e.g.
        ``ProgressBar.update``.
      train_config: batch shape and optimiser; None = the environment's preset;
        a mapping environment name -> TrainConfig overrides per environment.
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
      "a2c_normalised", "a2c_beats_random", "return_per_seed", "a2c_return_per_seed",
      "random_return_per_seed", "steps", "num_updates"}},
      "mean_a2c_normalised": mean over environments with a score (None if none),
      "seeds", "seed"}``. Missing numbers (no episode completed) are None.
    """
    if seeds <= 0:
        raise InvalidConfigError(f"--seeds must be positive, got {seeds}")
    if steps is not None and steps <= 0:
        raise InvalidConfigError(f"--steps must be positive, got {steps}")
    if not environments:
        raise InvalidConfigError("no environments to evaluate on")
    cache = baseline_cache if baseline_cache is not None else {}
    if isinstance(eta, EtaSchedule):
        frozen_eta = eta.map(jax.lax.stop_gradient)
    else:
        frozen_eta = jax.tree.map(jax.lax.stop_gradient, eta)
    keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(seed, seed + seeds))

    results: dict[str, dict[str, Any]] = {}
    for environment in environments:
        name = environment if isinstance(environment, str) else environment.spec.name
        if completed and name in completed:
            results[name] = dict(completed[name])
            continue
        if name.startswith("atari/"):
            raise InvalidConfigError(
                f"{name}: evaluate_objective trains on JAX environments only; "
                "Atari games go through `lpg evaluate --envs atari/...` (lpg.commands.evaluate)"
            )
        env = envs.get(environment)
        config, num_updates = _agent_setup(env, train_config, steps)
        results[name] = _evaluate_one(
            objective, frozen_eta, env, config, network, num_updates, seed, keys, progress, cache
        )
        if on_result is not None:
            on_result(name, results[name])

    scores = [r["a2c_normalised"] for r in results.values() if r["a2c_normalised"] is not None]
    return {
        "results": results,
        "mean_a2c_normalised": float(np.mean(scores)) if scores else None,
        "seeds": seeds,
        "seed": seed,
    }


# --------------------------------------------------------------------------- reports


def fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def fmt_score(result: Mapping[str, Any]) -> str:
    """An environment's A2C-normalised score, marked where A2C did not beat random (``NOT_BEATEN_NOTE``)."""
    mark = NOT_BEATEN_MARK if result.get("a2c_beats_random") is False else ""
    return fmt(result["a2c_normalised"], 2) + mark


def any_not_beaten(evaluation: Mapping[str, Any]) -> bool:
    """Whether some environment's A2C did not beat random (its score is marked)."""
    return any(r.get("a2c_beats_random") is False for r in evaluation["results"].values())


def results_table(evaluation: Mapping[str, Any]) -> str:
    """A Markdown table of ``evaluate_objective``'s (or ``summary.json``'s) results, with the mean row."""
    lines = ["| environment | return | A2C return | random return | A2C-normalised |", "|---|---:|---:|---:|---:|"]
    for name, r in evaluation["results"].items():
        lines.append(
            f"| {name} | {fmt(r['return'])} | {fmt(r['a2c_return'])} | {fmt(r['random_return'])} | {fmt_score(r)} |"
        )
    lines.append(f"| **mean** | | | | **{fmt(evaluation['mean_a2c_normalised'], 2)}** |")
    if any_not_beaten(evaluation):
        lines += ["", NOT_BEATEN_NOTE]
    return "\n".join(lines)


def print_table(evaluation: Mapping[str, Any], title: str) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover
        print(title)
        print(results_table(evaluation))
        return
    table = Table(title=title, caption=NOT_BEATEN_NOTE if any_not_beaten(evaluation) else None)
    for column in ("environment", "return", "A2C return", "random return", "A2C-normalised"):
        table.add_column(column, justify="left" if column == "environment" else "right")
    for name, r in evaluation["results"].items():
        table.add_row(name, fmt(r["return"]), fmt(r["a2c_return"]), fmt(r["random_return"]), fmt_score(r))
    table.add_section()
    table.add_row("mean", "", "", "", fmt(evaluation["mean_a2c_normalised"], 2))
    Console().print(table)


def plot_scores(path: Path, evaluation: Mapping[str, Any], title: str) -> Path:
    """Bar chart of the A2C-normalised score per environment (missing scores marked n/a)."""
    names = list(evaluation["results"])
    return plot_bars(
        path,
        names,
        [evaluation["results"][n]["a2c_normalised"] for n in names],
        title=f"{title} (mean {fmt(evaluation['mean_a2c_normalised'], 2)})",
        ylabel="A2C-normalised return",
        hlines=[("A2C", 1.0, "--"), ("random", 0.0, ":")],
    )


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


class RewardClipped:
    """Delegates to an objective, with rewards clipped to [-c, c] first (Atari, for objectives without ``reward_clip``)."""

    def __init__(self, objective: Any, clip: float):
        self._objective, self._clip = objective, clip

    def __getattr__(self, name: str) -> Any:
        return getattr(self._objective, name)

    def agent_loss(self, eta, rollout, agent_out, hyper=None):
        clipped = rollout.replace(reward=jnp.clip(rollout.reward, -self._clip, self._clip))
        return self._objective.agent_loss(eta, clipped, agent_out, hyper)


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


def print_atari_table(summary: Mapping[str, Any]) -> None:
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
