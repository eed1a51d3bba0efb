"""``lpg discover offline``: discover an objective across many lifetimes on toy MDPs (LPG; meta-gradients or ES).

The driver wires an offline estimator (``training.offline``: ``init`` and
``step``), the run harness (``lpg.harness.Run``: folder, resume, signals,
checkpoints, metrics, progress) and periodic evaluations of the objective
(``evaluation.evaluate.evaluate_objective``). It writes to ``--out``:
config.json, metrics.jsonl, TensorBoard events, meta_training.png,
evaluation.png when evaluations ran, ``objective/`` (the objective
checkpoint, periodically and at the end), ``objective_best/`` (the objective
with the best mean A2C-normalised score among the periodic and final
evaluations: meta-training oscillates, so the last objective is not always
the best), ``training_state/`` (for ``--resume``) and summary.json.

Every evaluation also logs ``eval/zero_reward_drift``: the objective's entropy
drift where rewards are absent (``evaluation.drift``, the number ``lpg inspect
RUN/objective --unroll-length T --peaks 2`` prints for the run's T), so a run
shows whether what it discovers drives policies deterministic on zero-reward
steps (the Atari collapse of README's "Where rewards are absent").
"""

from __future__ import annotations

import dataclasses
import signal
import time
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

import objectives
from evaluation.drift import DEFAULT_ACTIONS, entropy_drift
from evaluation.evaluate import NOT_BEATEN_NOTE, any_not_beaten, evaluate_objective, fmt_score
from lpg import distributed
from lpg import envs as envs_lib
from lpg.envs.base import Environment
from lpg.errors import InvalidConfigError, RunInterrupted
from lpg.harness import RaiseOnSignals, Run, SignalStop
from lpg.run_io import plot_lines, to_jsonable
from lpg.validation import NON_NEGATIVE, POSITIVE_COUNT, POSITIVE_NUMBER, Config, Range, parse_overrides
from objectives.base import Eta, Objective
from training.actor_critic import TrainConfig
from training.guards import SKIP_KEY
from training.offline import OfflineConfig, make_estimator, pure_jax_environments, resolve_environments
from training.offline.chunks import ChunkSizes, multi_step

__all__ = ["DiscoverOfflineCommand", "OfflineOptions", "build_offline", "discover_offline"]

_DEFAULT = OfflineConfig()
_EVAL_BASELINES: dict = {}  # A2C / random baselines reused across the evaluations of a process
# The zero-reward drift probe of every evaluation: ``lpg inspect``'s defaults (``evaluation.drift``: 6 actions,
# 4,096 rollouts, seed 0) at one peak, logit 2 (pi(a_0) = 0.6), where lpg-toy-v1's drift is clearly negative at
# short rollouts.
DRIFT_PEAK = 2.0


# Validation environments of the recipes: in neither the training set (``broad``) nor the test games (MinAtar).
VALIDATION_ENVS = "gymnax/DeepSea-bsuite,gymnax/UmbrellaChain-bsuite,gymnax/CartPole-v1"
_BROAD = {
    "envs": "broad",
    "eval_envs": VALIDATION_ENVS,
    "unroll_length": 20,
    "lifetime_updates": 250,
    "min_lifetime_updates": 10,
    "inner_updates": 5,
    "meta_grad_clip": 0.5,
}
RECIPES: dict[str, dict[str, Any]] = {
    # Fits 2 CPU cores in about 3 hours (README "A discovery recipe" has the measured cost); resumable.
    "broad-cpu": {
        **_BROAD,
        "num_lifetimes": 56,
        "num_envs": 16,
        "meta_lr": 1e-3,
        "meta_steps": 6000,
        "eval_every": 500,
        "eval_seeds": 2,
        "eval_updates": 250,
        "checkpoint_every": 100,
    },
    # GROOVE's scale (Jackson et al. 2023, App. B.1): 512 lifetimes x 64 environments, a 256-wide LPG, meta-Adam 1e-4.
    "broad-gpu": {
        **_BROAD,
        "num_lifetimes": 512,
        "num_envs": 64,
        "objective_config": ("hidden_size=256",),
        "meta_lr": 1e-4,
        "meta_steps": 5000,
        "eval_every": 250,
        "eval_seeds": 4,
        "eval_updates": 250,
        "checkpoint_every": 100,
    },
}


def _hyper_range(item: str) -> tuple[str, float, float]:
    """``"alpha_y=0.25:1"`` -> ``("alpha_y", 0.25, 1.0)``."""
    name, sep, bounds = item.partition("=")
    low, colon, high = bounds.partition(":")
    try:
        if not sep or not colon or not name.strip():
            raise ValueError(item)
        return name.strip(), float(low), float(high)
    except ValueError:
        raise InvalidConfigError(f"--lifetime-hyper {item!r} is not NAME=LOW:HIGH (e.g. alpha_y=0.25:1)") from None


@dataclasses.dataclass(frozen=True)
class OfflineOptions(Config):
    """What ``lpg discover offline`` needs (the command is this dataclass; Python users may build it too).

    Attributes:
      recipe: A named set-up whose values replace the defaults; flags given beside it win: broad-cpu (2 CPU cores, about 3 hours, resumable) or broad-gpu (GROOVE-sized); see README "A discovery recipe".
      envs: Environments: names, globs (gridworld/*) or named sets (lpg-tabular, lpg-random, chains, toy, procedural, broad; see `lpg envs`).
      method: grad (meta-gradients through K agent updates) or es (evosax evolution strategies).
      out: Output folder (created; must be empty or hold this same run).
      resume: Continue the run in --out from its newest training checkpoint (same command otherwise).
      meta_steps: Meta-steps: meta-gradient updates (grad) or ES generations (es); --resume may raise it to extend a run.
      seed: Random seed.
      objective: The objective to discover: one that supports offline discovery (see `lpg objectives`).
      objective_config: Objective config overrides, KEY=VALUE (e.g. hidden_size=256 y_size=30 for lpg).
      num_lifetimes: grad: lifetimes in parallel; es: antithetic pairs (population = 2x).
      num_envs: Environments per agent.
      unroll_length: Steps per rollout (one agent update per rollout).
      lifetime_updates: Agent updates per lifetime (grad: at least --inner-updates, the updates one meta-step advances a lifetime by).
      min_lifetime_updates: grad: draw each lifetime's length log-uniformly between this and --lifetime-updates (GROOVE: 10-250); 0 = every lifetime lasts --lifetime-updates.
      inner_updates: K: agent updates per meta-gradient step (grad).
      agent_optimizer: Agents' optimiser: adam or sgd (LPG's choice for tabular agents).
      lr_min: Lowest agent learning rate (drawn log-uniformly per lifetime; evaluation uses the geometric mean).
      lr_max: Highest agent learning rate.
      lifetime_hyper: Per-lifetime ranges of the objective's hyper-parameters, NAME=LOW:HIGH, drawn log-uniformly per lifetime (default: the objective's own, e.g. alpha_y=0.25:1 for lpg).
      agent_max_grad_norm: Clip each agent gradient to this global norm (0 = off).
      meta_lr: Meta-Adam learning rate (grad).
      meta_grad_clip: Global-norm clip of the meta-gradient (grad; 0 = off).
      meta_entropy_weight: Policy-entropy bonus of the meta-objective (grad; default: the objective's, lpg's beta0).
      critic_lr: Adam learning rate of each lifetime's meta-critic (grad).
      es_algorithm: evosax algorithm (es): Open_ES, SNES, CMA_ES, ...
      es_std: ES perturbation standard deviation.
      es_lr: ES mean learning rate (Adam).
      es_fitness_fraction: ES fitness is the mean return in this last fraction of each member's lifetime.
      eval_every: Evaluate the objective every this many meta-steps, and the random initial objective before the first (0 = only at the end).
      eval_updates: Agent updates per evaluation run (default: lifetime_updates).
      eval_envs: Validation environments for the periodic and final evaluations and for choosing objective_best: names, globs or sets (default: the training environments). Keep them out of the training set and of your test set, so model selection never sees a test task. Tabular ones and training environments train agents with the discovery's batch and optimiser, the others with their own preset's, all for eval_updates x num_envs x unroll_length steps.
      eval_seeds: Fresh agents per environment in each evaluation.
      checkpoint_every: Write objective and training checkpoints every N meta-steps (0 = only at the end; SIGINT/SIGTERM also write one).
      log_every: Write a metrics row every N meta-steps.
      max_nonfinite_skips: Stop after this many consecutive meta-steps with a non-finite meta-gradient or fitness (each is skipped and counted).
      progress: Show a progress bar with ETA on stderr.
      steps_per_call: Meta-steps run in one compiled call (0 = auto: about a second's worth, at most 16); saves the per-call cost, about an eighth of a small meta-step on CPU; the host logs, evaluates, checkpoints and reacts to Ctrl-C between calls (never past an --eval-every or --checkpoint-every boundary).
    """

    FLAGS = True
    RANGES = {
        "num_lifetimes": POSITIVE_COUNT,
        "num_envs": POSITIVE_COUNT,
        "unroll_length": POSITIVE_COUNT,
        "lifetime_updates": POSITIVE_COUNT,
        "min_lifetime_updates": Range(0, integer=True, text=">= 0"),
        "inner_updates": POSITIVE_COUNT,
        "meta_steps": Range(0, integer=True, text=">= 0"),
        "eval_every": Range(0, integer=True, text=">= 0"),
        "eval_updates": POSITIVE_COUNT,
        "eval_seeds": POSITIVE_COUNT,
        "checkpoint_every": Range(0, integer=True, text=">= 0"),
        "log_every": POSITIVE_COUNT,
        "steps_per_call": Range(0, integer=True, text=">= 0"),
        "max_nonfinite_skips": POSITIVE_COUNT,
        "meta_lr": POSITIVE_NUMBER,
        "meta_grad_clip": NON_NEGATIVE,
        "agent_max_grad_norm": NON_NEGATIVE,
        "meta_entropy_weight": NON_NEGATIVE,
        "critic_lr": POSITIVE_NUMBER,
        "es_std": POSITIVE_NUMBER,
        "es_lr": POSITIVE_NUMBER,
    }
    MULTI_PROCESS = True  # the one command that runs on several processes (lpg.distributed)
    RECIPES = RECIPES

    recipe: str = ""
    envs: str = "chain/short,gridworld/sparse"
    method: str = "grad"
    out: str = "runs/discover"
    resume: bool = False
    meta_steps: int = _DEFAULT.meta_steps
    seed: int = 0
    objective: str = "lpg"
    objective_config: tuple[str, ...] = ()
    num_lifetimes: int = _DEFAULT.num_lifetimes
    num_envs: int = _DEFAULT.num_envs
    unroll_length: int = _DEFAULT.unroll_length
    lifetime_updates: int = _DEFAULT.lifetime_updates
    min_lifetime_updates: int = _DEFAULT.min_lifetime_updates
    inner_updates: int = _DEFAULT.inner_updates
    agent_optimizer: str = _DEFAULT.agent_optimizer
    lr_min: float = _DEFAULT.lr_range[0]
    lr_max: float = _DEFAULT.lr_range[1]
    lifetime_hyper: tuple[str, ...] = ()
    agent_max_grad_norm: float = _DEFAULT.agent_max_grad_norm
    meta_lr: float = _DEFAULT.meta_lr
    meta_grad_clip: float = _DEFAULT.meta_grad_clip
    meta_entropy_weight: float | None = None
    critic_lr: float = _DEFAULT.critic_lr
    es_algorithm: str = _DEFAULT.es_algorithm
    es_std: float = _DEFAULT.es_std
    es_lr: float = _DEFAULT.es_lr
    es_fitness_fraction: float = _DEFAULT.es_fitness_fraction
    eval_every: int = 0
    eval_updates: int | None = None
    eval_envs: str = ""
    eval_seeds: int = 4
    checkpoint_every: int = 50
    log_every: int = 1
    max_nonfinite_skips: int = 10
    progress: bool = True
    steps_per_call: int = 0

    def check(self) -> None:
        self.check_recipe()

    def discovery_config(self, env_names: tuple[str, ...]) -> OfflineConfig:
        """The ``OfflineConfig`` these options describe, over ``env_names`` (resolved from ``envs``)."""
        return OfflineConfig(
            envs=tuple(env_names),
            method=self.method,
            num_lifetimes=self.num_lifetimes,
            num_envs=self.num_envs,
            unroll_length=self.unroll_length,
            lifetime_updates=self.lifetime_updates,
            min_lifetime_updates=self.min_lifetime_updates,
            inner_updates=self.inner_updates,
            agent_optimizer=self.agent_optimizer,
            lr_range=(self.lr_min, self.lr_max),
            hyper_ranges=tuple(_hyper_range(item) for item in self.lifetime_hyper),
            agent_max_grad_norm=self.agent_max_grad_norm,
            meta_lr=self.meta_lr,
            meta_grad_clip=self.meta_grad_clip,
            meta_entropy_weight=self.meta_entropy_weight,
            critic_lr=self.critic_lr,
            es_algorithm=self.es_algorithm,
            es_std=self.es_std,
            es_lr=self.es_lr,
            es_fitness_fraction=self.es_fitness_fraction,
            meta_steps=self.meta_steps,
            seed=self.seed,
        )

    def options(self) -> OfflineOptions:
        """The options themselves (the command is its options)."""
        return self


def build_offline(
    options: OfflineOptions, environments: Mapping[str, Environment] | None = None
) -> tuple[Objective, OfflineConfig, dict[str, Environment]]:
    """Validates ``options``; returns the objective, the discovery config and the environments by name.

    ``environments`` (name -> ``Environment``) replaces registered environments
    of those names and adds unregistered ones (``--envs`` may then name them).
    The objective's per-lifetime hyper-parameters are set to the geometric
    means of their ranges: what fresh agents use with the discovered objective.
    """
    given = dict(environments or {})
    names = [n.strip() for n in options.envs.split(",") if n.strip() in given]
    rest = ",".join(n for n in options.envs.split(",") if n.strip() and n.strip() not in given)
    names += envs_lib.resolve_env_spec(rest) if rest else []
    base = objectives.require(options.objective, "offline")
    overrides = parse_overrides(options.objective_config, base.config)
    config = options.discovery_config(tuple(names))
    for name, (low, high) in config.lifetime_ranges(base.lifetime_hypers()).items():
        overrides.setdefault(name, float(np.sqrt(low * high)))
    objective = objectives.make(options.objective, **overrides)
    resolved = resolve_environments(config, given)
    for env in resolved.values():
        objective.check_env(env.spec)
    return objective, config, resolved


def validation_environments(
    options: OfflineOptions, objective: Objective, training: Mapping[str, Environment]
) -> dict[str, Environment]:
    """The environments evaluations run on: ``--eval-envs``, or the training ones when it is empty.

    Raises:
      UnknownNameError: an unknown name in ``--eval-envs``.
      InvalidConfigError: an environment that is not pure JAX, or that the objective cannot train agents on.
    """
    if not options.eval_envs.strip():
        return dict(training)
    chosen = pure_jax_environments(envs_lib.resolve_env_spec(options.eval_envs), training, "--eval-envs takes")
    for env in chosen.values():
        objective.check_env(env.spec)
    return chosen


def evaluation_train_configs(config: OfflineConfig, environments: Mapping[str, Environment]) -> dict[str, TrainConfig]:
    """Agents' batch and optimiser per evaluated environment that uses the discovery's own set-up.

    Training environments and tabular ones get the discovery's set-up (the
    learning rates its objective was meta-trained with); the others are left
    out, so ``evaluate_objective`` trains them with their preset's (an MLP on
    CartPole does not take a tabular agent's Adam 3e-2).
    """
    own = TrainConfig(config.num_envs, config.unroll_length, config.agent_optimizer_config())
    return {name: own for name, env in environments.items() if name in config.envs or env.spec.is_tabular}


class _Evaluations:
    """Periodic and final evaluations of the objective (on the validation environments), and ``objective_best/``."""

    def __init__(self, run: Run, objective: Objective, config: OfflineConfig, environments, options, metadata, extra):
        self.run, self.objective, self.config, self.environments = run, objective, config, environments
        self.validation = bool(options.eval_envs.strip())
        self.updates = options.eval_updates or config.lifetime_updates
        self.seeds = options.eval_seeds
        self.metadata = metadata
        self.rows: list[dict[str, Any]] = list(extra.get("evaluations", []))
        self.best: dict[str, Any] = dict(extra.get("best") or {})

    def __call__(self, eta: Eta, step: int) -> dict[str, Any]:
        c = self.config
        steps = self.updates * c.num_envs * c.unroll_length
        result = dict(
            evaluate_objective(
                self.objective, eta, list(self.environments.values()), steps, self.seeds, 1000,
                train_config=evaluation_train_configs(c, self.environments), baseline_cache=_EVAL_BASELINES,
            )
        )  # fmt: skip
        if result.get("mean_a2c_normalised") is None:
            result["mean_a2c_normalised"] = float("nan")
        self.keep_best(eta, step, result)
        row = {"meta_step": step, "wall_s": self.run.wall(), "mean_a2c_normalised": result["mean_a2c_normalised"]}
        row["zero_reward_drift"] = zero_reward_drift(self.objective, eta, c.unroll_length)
        row.update({f"eval/{k}": v.get("a2c_normalised") for k, v in result["results"].items()})
        self.rows.append(row)
        self.run.log(step, {k if k.startswith("eval/") else f"eval/{k}": v for k, v in row.items() if k != "meta_step"})
        return result

    def keep_best(self, eta: Eta, step: int, result: dict[str, Any]) -> None:
        """Saves ``objective_best/`` when ``result`` (an evaluation of ``eta``) beats the best so far."""
        score = result.get("mean_a2c_normalised")
        if score is None or not np.isfinite(score) or (self.best and score <= self.best["mean_a2c_normalised"]):
            return
        self.best.update(meta_step=step, mean_a2c_normalised=float(score))
        meta = dict(self.metadata(result), selected_at_meta_step=step)
        where = "the validation environments" if self.validation else "the training environments"
        meta["selection"] = (
            f"best mean A2C-normalised score on {where} among the periodic and final evaluations of this run"
        )
        _checkpoints().save_objective(self.run.path / "objective_best", self.objective, eta, meta)


def zero_reward_drift(objective: Objective, eta: Eta, unroll_length: int) -> float:
    """The objective's entropy drift at ``DRIFT_PEAK`` on zero-reward rollouts of ``unroll_length`` steps."""
    (row,) = entropy_drift(objective, eta, num_actions=DEFAULT_ACTIONS, unroll_length=unroll_length, peaks=(DRIFT_PEAK,))
    return row.entropy_drift


def _checkpoints():
    from lpg import checkpoint

    return distributed.primary_checkpoints(checkpoint)


def discover_offline(
    options: OfflineOptions, *, environments: Mapping[str, Environment] | None = None
) -> dict[str, Any]:
    """Runs offline discovery as ``options`` say and writes the run folder; returns the summary.

    ``environments`` maps names to ``Environment`` values (see ``build_offline``).
    """
    objective, config, envs = build_offline(options, environments)
    validation = validation_environments(options, objective, envs)
    # meta_steps is not part of the run's identity, so --resume can extend a run.
    identity = ("resume", "progress", "meta_steps", "max_nonfinite_skips", "steps_per_call")
    run_config = {
        "command": "discover offline",
        "options": {k: v for k, v in dataclasses.asdict(options).items() if k not in identity},
        "objective": objective.name,
        "objective_config": objective.config_dict(),
        "config": {k: v for k, v in dataclasses.asdict(config).items() if k != "meta_steps"},
    }
    run = Run.from_options(
        options, run_config, what="discover offline", unit="meta-steps", checkpoint_interval_s=0,
        matches=lambda s: s.get("meta_steps") == config.meta_steps,
    )  # fmt: skip
    if (stored := run.stored()) is not None:
        return stored
    run.check_resume()
    estimator = make_estimator(objective, config, environments=envs)
    chunks = ChunkSizes(options.steps_per_call)
    state = estimator.jit_init(jax.random.PRNGKey(config.seed))
    with run.open(total=config.meta_steps, label=f"discover {config.method}"):
        done, state, extra = run.start(state)
        state = distributed.shard_offline_state(state)
        run.resume_progress(done)

        def metadata(final_eval: dict[str, Any] | None) -> dict[str, Any]:
            return _metadata(options, objective, config, int(state.step), run.wall(), final_eval)

        evaluate = _Evaluations(run, objective, config, validation, options, metadata, extra)

        def save(final_eval: dict[str, Any] | None, replace: bool = False) -> None:
            _checkpoints().save_objective(run.path / "objective", objective, state.eta, metadata(final_eval))
            extra = {"evaluations": evaluate.rows, "best": evaluate.best}
            run.save(int(state.step), state, extra=extra, replace=replace)

        if options.eval_every and done == 0:
            evaluate(distributed.host_local(state.eta), 0)  # the random initial objective: where every curve starts
        steps = multi_step(estimator.step, chunks.max_steps)
        while done < config.meta_steps:
            n = chunks.next(done, config.meta_steps, options.eval_every, options.checkpoint_every)
            start = time.perf_counter()
            state, metrics = steps(state, n)
            metrics = {k: np.asarray(v)[:n] for k, v in jax.device_get(metrics).items()}
            chunks.observe(n, time.perf_counter() - start)
            done += n
            run.count_skips(done, metrics[SKIP_KEY])
            run.advance(n, _log_chunk(run, options, config, estimator, metrics, done - n))
            if options.eval_every and done % options.eval_every == 0 and done < config.meta_steps:
                evaluate(distributed.host_local(state.eta), done)
            periodic = options.checkpoint_every and done % options.checkpoint_every == 0
            if (periodic and done < config.meta_steps) or (run.interrupted and done < config.meta_steps):
                save(None)
            run.raise_if_interrupted(done)
        jax.block_until_ready(state.eta)
        if run.last_saved_step != done:
            save(None)  # every meta-step is on disk before the final evaluation: an interrupt there loses only it
        final_eval = _final_evaluation(evaluate, state, done, run)
        save(final_eval, replace=True)  # the training state records the final evaluation (for --resume with more steps)
        _plots(run, config, evaluate.rows)
        return run.finish(_summary(run, config, estimator, state, final_eval, evaluate))


def _log_chunk(run: Run, options, config, estimator, metrics: dict[str, np.ndarray], first: int) -> str:
    """Logs the rows due among a chunk's meta-steps ``first + 1, ...``; returns the progress bar's status."""
    status = ""
    label = "fitness" if config.method == "es" else "meta-loss"
    for i in range(len(metrics[SKIP_KEY])):
        step = first + i + 1
        if step % options.log_every == 0 or step == config.meta_steps:
            row = {k: float(v[i]) for k, v in metrics.items()}
            row.update(wall_s=run.wall(), agent_steps=step * estimator.agent_steps_per_meta_step)
            row["nonfinite_skips_total"] = run.total_skips
            run.log(step, row)
            value = row.get("fitness_mean", row.get("meta_loss"))
            status = f"{label} {value:.3f}" if value is not None else ""
    return status


def _final_evaluation(evaluate: _Evaluations, state, done: int, run: Run) -> dict[str, Any]:
    """The evaluation of the final objective; SIGINT/SIGTERM stop it at once (``--resume`` redoes only it)."""
    try:
        with RaiseOnSignals():
            return evaluate(distributed.host_local(state.eta), done)
    except (SignalStop, KeyboardInterrupt) as stop:
        signum = stop.signum if isinstance(stop, SignalStop) else signal.SIGINT
        raise RunInterrupted(
            f"discover offline stopped by {signal.Signals(signum).name} during the final evaluation; all {done} "
            f"meta-steps are saved in {str(run.checkpoint_dir)!r}; continue with the same command plus --resume "
            "(only the evaluation is redone)",
            signum=signum,
        ) from None


def _metadata(options, objective, config, meta_steps, wall_s, final_eval) -> dict[str, Any]:
    """The objective checkpoint's model-card metadata."""
    import lpg

    return {
        "objective": objective.name,
        "objective_config": objective.config_dict(),
        "framework_version": lpg.__version__,
        "envs": list(config.envs),
        "env_spec": options.envs,
        "validation_envs": options.eval_envs or None,
        "method": config.method,
        "meta_steps": meta_steps,
        "seed": config.seed,
        "wall_s": wall_s,
        "offline_config": to_jsonable(config),
        "agent_optimizer": to_jsonable(config.agent_optimizer_config()),
        "lifetime_hypers": {name: getattr(objective.config, name) for name in objective.lifetime_hypers()},
        "num_envs": config.num_envs,
        "unroll_length": config.unroll_length,
        "eval_scores": final_eval,
    }


def _plots(run: Run, config: OfflineConfig, evaluations: list[dict[str, Any]]) -> None:
    """meta_training.png from metrics.jsonl (every session's rows) and evaluation.png."""
    curve: dict[str, list[tuple[int, float]]] = {}
    for row in run.read_metrics():
        for k, v in row.items():
            if k.startswith(("meta_loss", "fitness_mean", "return/")) and isinstance(v, (int, float)):
                curve.setdefault(k, []).append((row["step"], v))
    series = [(k, [x for x, _ in v], [y for _, y in v]) for k, v in sorted(curve.items())]
    if series:
        title = f"offline discovery ({config.method})"
        plot_lines(run.path / "meta_training.png", series, title=title, xlabel="meta-step", ylabel="value")
    if evaluations:
        plot_lines(
            run.path / "evaluation.png",
            [("mean A2C-normalised", [e["meta_step"] for e in evaluations], [e["mean_a2c_normalised"] for e in evaluations])],
            title="evaluation of the objective during discovery",
            xlabel="meta-step",
            ylabel="A2C-normalised score",
        )


def _summary(run: Run, config, estimator, state, final_eval, evaluate: _Evaluations) -> dict[str, Any]:
    wall = run.wall()
    steps = int(state.step) * estimator.agent_steps_per_meta_step
    initial = next((e["mean_a2c_normalised"] for e in evaluate.rows if e["meta_step"] == 0), None)
    return {
        "method": config.method,
        "envs": list(config.envs),
        "meta_steps": int(state.step),
        "seed": config.seed,
        "wall_s": wall,
        "agent_steps": steps,
        "agent_steps_per_s": steps / max(wall, 1e-9),
        "evaluation": final_eval,
        "mean_a2c_normalised": final_eval["mean_a2c_normalised"],
        "initial_mean_a2c_normalised": initial,
        "evaluations": evaluate.rows,
        "objective_checkpoint": str(run.path / "objective"),
        "best_objective_checkpoint": str(run.path / "objective_best") if evaluate.best else None,
        "best_meta_step": evaluate.best.get("meta_step"),
        "best_mean_a2c_normalised": evaluate.best.get("mean_a2c_normalised"),
        "zero_reward_drift": evaluate.rows[-1].get("zero_reward_drift"),
        "nonfinite_skips": run.total_skips,
    }


@dataclasses.dataclass(frozen=True)
class DiscoverOfflineCommand(OfflineOptions):
    """Discover an objective offline across many lifetimes on toy MDPs (LPG; meta-gradients or ES).

    Writes to --out: objective/ (the objective checkpoint, for `lpg evaluate`),
    objective_best/ (the objective with the best evaluation so far),
    training_state/ (for --resume), metrics.jsonl, TensorBoard events,
    meta_training.png, evaluation.png and summary.json (final A2C-normalised
    scores of fresh agents trained with the discovered objective).
    """

    def run(self) -> int:
        summary = discover_offline(self)
        print(
            f"discovered with {summary['method']} on {', '.join(summary['envs'])}: "
            f"{summary['meta_steps']} meta-steps in {summary['wall_s']:.0f}s"
        )
        for env, r in summary["evaluation"]["results"].items():
            print(
                f"  {env:<28} return {_fmt(r['return'], '.3f')}  a2c {_fmt(r['a2c_return'], '.3f')}  "
                f"random {_fmt(r['random_return'], '.3f')}  a2c-normalised {fmt_score(r)}"
            )
        if any_not_beaten(summary["evaluation"]):
            print(f"  {NOT_BEATEN_NOTE}")
        print(f"mean A2C-normalised score {_fmt(summary['mean_a2c_normalised'], '.3f')}")
        drift = summary.get("zero_reward_drift")
        if drift is not None:
            where = "towards determinism" if drift < 0 else "towards uniform"
            print(
                f"zero-reward entropy drift {drift:+.5f}: the objective pushes policies {where} where rewards are "
                f"absent (`lpg inspect {self.out}/objective` for every peak)"
            )
        if summary.get("objective_checkpoint"):
            print(f"objective checkpoint: {summary['objective_checkpoint']}")
        print(f"results in {self.out}/summary.json")
        return 0


def _fmt(value: float | None, spec: str) -> str:
    """Formats a score that may be missing (None or NaN: no episode finished within the budget)."""
    if value is None or value != value:
        return "n/a"
    return format(value, spec)
