"""``lpg discover online``, ``lpg experiment`` and ``lpg bench online``: meta-gradients inside one lifetime."""

from __future__ import annotations

import dataclasses
import math
from typing import Annotated, Any

import numpy as np
import tyro

import objectives
from lpg import envs
from lpg.errors import InvalidConfigError
from lpg.eta_schedule import schedule_record
from lpg.harness import Run, run_identity
from lpg.networks import NetworkConfig, make_agent
from lpg.run_io import plot_lines
from lpg.validation import AT_LEAST_ONE, NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE_COUNT, POSITIVE_NUMBER, Config
from objectives.base import Objective
from training.actor_critic import ActorCriticTrainer
from training.meta_gradient import (
    ATARI_META_LEARNING_RATE,
    ATARI_OUTER_ENTROPY_WEIGHT,
    MetaGradConfig,
    MetaGradientTrainer,
    check_outer_critic,
    pg_outer_objective,
    uses_own_critic,
)
from training.online import _final_eta, _final_return_stats, check_mix_coefficient, first_seed, run_meta
from training.presets import agent_setup_flags, default_preset, override_agent_setup

__all__ = ["DiscoverOnlineCommand", "OnlineOptions", "discover_online"]

ATARI_DEFAULT_FRAMES = 10_000_000


@dataclasses.dataclass(frozen=True)
class OnlineOptions(Config):
    """What ``lpg discover online`` needs: one agent's lifetime with online meta-gradients.

    The outer loss is the policy gradient with lambda-return advantages
    (Bonnet et al. eq. 4) at ``outer_gamma`` / ``outer_lambda`` plus
    ``outer_entropy_weight`` times the policy entropy. ``None`` picks the
    defaults: meta learning rate 1e-3 and no outer entropy on toy environments;
    1e-4 and 0.01 on Atari, where the toy defaults let FRODO collapse Pong's
    policy to a deterministic one within 2M frames.
    """

    env: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="ENV")]
    """Environment name (see `lpg envs`)."""
    objective: str | None = None
    """Objective with meta-parameters: one that `lpg objectives` marks as online (default: mgrl, or the --init-objective checkpoint's)."""
    init_objective: str | None = None
    """An objective checkpoint (from `lpg discover offline`, `lpg discover online`, or checkpoints/) to start from: its objective keeps learning online inside this lifetime; the agent starts fresh."""
    inner_steps: int = 1
    """n of the n-step meta-gradient (look-ahead updates per meta-gradient; on Atari over the last n rollouts already acted); 0 = no meta-learning: the objective stays frozen at its start (e.g. a frozen --init-objective, the baseline of an adapted one, on the same harness and curves; toy environments)."""
    mix: bool = False
    """Use the mixing estimator (Bonnet et al. eq. 10) with 1/(1-k) = n."""
    mix_coefficient: float | None = None
    """kappa of the mixing estimator (Bonnet et al. eq. 10), in [0, 1]; needs --mix; default 1 - 1/n."""
    steps: int | None = None
    """Environment steps per seed, rounded up to whole updates (default: the environment's preset); on Atari an agent step is 4 frames (--frames is the usual budget there)."""
    seed: int = 0
    """Random seed of the first agent."""
    num_seeds: int = 1
    """Lifetimes run in parallel under vmap."""
    out: str = "runs/discover-online"
    """Output folder (created; must be empty or hold this same run)."""
    monte_carlo: int = 1
    """Meta-gradients averaged per meta-update (independent look-aheads; toy environments only, Atari acts each rollout once)."""
    meta_learning_rate: float | None = None
    """Meta-optimiser (Adam) learning rate (default: 1e-3; 1e-4 on Atari, where 1e-3 let FRODO's targets collapse the policy within 2M frames)."""
    meta_grad_clip: float = 1.0
    """Clip meta-gradients to this global norm (0 = off)."""
    outer_gamma: float = 0.99
    """Discount of the outer loss's lambda-returns."""
    outer_lambda: float = 0.95
    """Lambda of the outer loss's lambda-returns."""
    stac_kl_weight: float = 0.0
    """Weight of the STAC term KL(pi_theta' || pi_theta) in the outer loss."""
    init_pull: float = 0.0
    """Pull eta toward where it started (the --init-objective's eta, else the objective's init): each meta-gradient gets W * (eta - eta_start), the gradient of W/2 ||eta - eta_start||^2; 0 = off. metrics.jsonl's eta_distance is ||eta - eta_start||."""
    outer_critic: str = "auto"
    """Values of the outer loss's advantages: agent (the agent's value head), own (a critic trained by TD(lambda) on every inner rollout, never acting) or auto (own exactly when the objective does not train the agent's value head: lpg)."""
    outer_normalise: bool | None = None
    """Scale the outer loss's advantages of each rollout to unit standard deviation (default: on exactly where the outer critic is the trainer's own, as in offline discovery's meta-objective)."""
    outer_entropy_weight: float | None = None
    """Entropy bonus in the outer loss (default: where the outer critic is the trainer's own, the objective's meta-objective weight, lpg's beta0 = 0.05, as offline; else 0, Bonnet et al. eq. 4, and 0.01 on Atari, a standard actor-critic outer loss as in Xu et al. 2020)."""
    frames: int | None = None
    """Atari only: emulator frames (4 per agent step; default 10M)."""
    meta_interval: int = 1
    """Atari only: a meta-gradient every this many updates (plain updates in between)."""
    network: NetworkConfig = NetworkConfig()
    """Agent network."""
    num_envs: int | None = None
    """Environments per agent (default: the environment's preset; Atari: 16)."""
    unroll_length: int | None = None
    """Steps per rollout, one agent update each (default: the environment's preset; Atari: 5)."""
    learning_rate: float | None = None
    """Agent (inner) learning rate (default: the environment's preset; Atari: 7e-4)."""
    optimizer: str | None = None
    """Agent (inner) optimiser: adam, sgd or rmsprop (default: the environment's preset; Atari: rmsprop)."""
    resume: bool = False
    """Continue the run in --out from its newest training checkpoint (same command otherwise)."""
    checkpoint_interval_s: float = 60.0
    """Seconds between training checkpoints in --out/training_state (0 = after every chunk); SIGINT/SIGTERM also write one."""
    max_nonfinite_skips: int = 10
    """Stop after this many consecutive updates with a non-finite gradient or meta-gradient (each is skipped and counted)."""
    progress: bool = True
    """Show progress on stderr."""

    RANGES = {
        "inner_steps": NON_NEGATIVE_INT,
        "steps": POSITIVE_COUNT,
        "num_seeds": POSITIVE_COUNT,
        "num_envs": POSITIVE_COUNT,
        "unroll_length": POSITIVE_COUNT,
        "monte_carlo": AT_LEAST_ONE,
        "meta_learning_rate": POSITIVE_NUMBER,
        "meta_grad_clip": NON_NEGATIVE,
        "stac_kl_weight": NON_NEGATIVE,
        "init_pull": NON_NEGATIVE,
        "outer_entropy_weight": NON_NEGATIVE,
        "frames": POSITIVE_COUNT,
        "meta_interval": AT_LEAST_ONE,
        "checkpoint_interval_s": NON_NEGATIVE,
        "max_nonfinite_skips": AT_LEAST_ONE,
    }
    FLAGS = True

    def check(self) -> None:
        check_mix_coefficient(self.mix, self.mix_coefficient)
        check_outer_critic(self.outer_critic, "--outer-critic")
        if self.inner_steps == 0 and (self.mix or self.monte_carlo != 1):
            raise InvalidConfigError("--inner-steps 0 learns no meta-gradient: drop --mix and --monte-carlo")

    @property
    def atari(self) -> bool:
        return self.env.startswith("atari/")

    def meta_config(self) -> MetaGradConfig:
        lr = self.meta_learning_rate or (ATARI_META_LEARNING_RATE if self.atari else 1e-3)
        return MetaGradConfig(
            inner_steps=self.inner_steps,
            mix=self.mix,
            mix_k=self.mix_coefficient,
            monte_carlo=self.monte_carlo,
            meta_learning_rate=lr,
            meta_grad_clip=self.meta_grad_clip,
            stac_kl_weight=self.stac_kl_weight,
            init_pull=self.init_pull,
            outer_critic=self.outer_critic,
        )

    def outer_objective(self, objective: Objective) -> Objective:
        """The outer loss for ``objective``: offline discovery's meta-objective where the critic is the trainer's own."""
        own = uses_own_critic(self.meta_config(), objective)
        entropy = self.outer_entropy_weight
        if entropy is None:
            entropy = objective.meta_entropy_weight if own else ATARI_OUTER_ENTROPY_WEIGHT if self.atari else 0.0
        normalise = own if self.outer_normalise is None else self.outer_normalise
        return pg_outer_objective(self.outer_gamma, self.outer_lambda, entropy, normalise)


def discover_online(options: OnlineOptions) -> dict[str, Any]:
    """``lpg discover online ENV --objective NAME``: one agent's lifetime with online meta-gradients.

    Toy environments write training checkpoints to ``out/training_state`` and
    continue with ``--resume`` exactly where they stopped. Batch shape, agent
    optimiser and default steps come from the environment's training preset,
    with ``--num-envs`` etc. on top.
    """
    objective, initial_eta, initial_meta = _objective(options)
    if options.atari:
        return _discover_atari(options, objective, initial_eta)
    for flag, value in (("--frames", options.frames), ("--meta-interval", options.meta_interval != 1 or None)):
        if value is not None:
            raise InvalidConfigError(
                f"{flag} is for Atari environments; toy runs count --steps, a meta-step per update"
            )
    env = envs.make(options.env)
    preset = default_preset(env.spec)
    config = override_agent_setup(preset.config, **agent_setup_flags(options))
    num_updates = max(1, math.ceil((options.steps or preset.steps) / config.steps_per_update))
    agent = make_agent(env.spec, options.network, heads=objective.heads)
    trainer = ActorCriticTrainer.create(env, agent, objective, config, total_updates=num_updates)
    mt = MetaGradientTrainer.create(trainer, options.outer_objective(objective), options.meta_config())
    run_config = {
        "command": "discover online",
        "options": run_identity(options),
        "objective_config": objective.config_dict(),
        "meta": mt.config,
        "outer": mt.outer_objective.config_dict(),
        "train_config": config,
        "init_objective": None if initial_meta is None else _provenance(initial_meta),
    }
    run = Run.from_options(options, run_config, what=f"discover online {env.spec.name}")
    if (stored := run.stored()) is not None:
        return stored
    label = f"discover online {env.spec.name} ({objective.name})"
    setup = {"num_envs": config.num_envs, "unroll_length": config.unroll_length, "optimizer": config.optimizer}
    online = {"inner_steps": options.inner_steps, "mix": options.mix, "steps": num_updates * mt.env_steps_per_rollout}
    saver = _ObjectiveSaver(
        run, options, objective, online, setup,
        eta_of=lambda states: first_seed(states.eta),
        score_of=lambda extra: extra["curve_y"][-1] if extra.get("curve_y") else None,
        eta_curve_of=lambda extra: extra.get("eta_curve"),
        eta_schedule_of=lambda extra: schedule_record(extra.get("eta_schedule"), num_updates),
    )  # fmt: skip
    with run.open(total=num_updates * mt.env_steps_per_rollout, label=label, progress_unit="steps"):
        rec = run_meta(mt, num_updates, options.seed, options.num_seeds, run, label=label, guard=run, eta=initial_eta)
        _plot_online(run, env.spec.name, objective.name, mt, rec)
        summary = _online_summary(options, env.spec, mt, num_updates, rec, run)
        schedule = schedule_record(rec["eta_schedule"], num_updates)
        summary.update(saver.final(first_seed(rec["states"].eta), summary, rec["eta_curve"], schedule))
        return run.finish(summary)


def _objective(options: OnlineOptions) -> tuple[Objective, Any, dict[str, Any] | None]:
    """The objective to meta-learn and its starting ``eta`` (None: its ``init``) and the checkpoint's metadata."""
    if options.init_objective is None:
        return objectives.require(options.objective or "mgrl", "online"), None, None
    objective, eta, metadata = objectives.load(options.init_objective)
    if options.objective not in (None, objective.name):
        raise InvalidConfigError(
            f"--objective {options.objective} does not match the --init-objective checkpoint's objective "
            f"{objective.name!r}; drop --objective"
        )
    objectives.require(objective.name, "online")  # a clear error if it cannot be meta-learned online
    return objective, eta, metadata


def _provenance(metadata: dict[str, Any]) -> dict[str, Any]:
    """What a run started from records of the checkpoint it was given."""
    return {k: metadata.get(k) for k in ("objective", "envs", "method", "saved_at", "framework_version")}


class _ObjectiveSaver:
    """Saves what online discovery found: ``objective/`` (latest) and ``objective_best/``.

    Registered as a harness save hook, it writes both just before each training
    checkpoint (every ``--checkpoint-interval-s`` and at the end), so after a kill
    they are never newer than what ``--resume`` restores. ``objective_best/`` holds
    the saved meta-parameters whose recent score was the highest so far (toy: the
    mean return of the episodes of the last logged chunk; Atari: the mean of the
    last 20 games), with ``best_score`` and ``best_at`` in its metadata. At the end,
    ``final`` rewrites ``objective/`` with the run's results (final return, score,
    final meta-parameters). The saved eta is the first seed's.

    ``eta_trajectory`` records ``describe_eta`` over the lifetime (to plot), and
    ``eta_schedule`` the first seed's eta itself after every chunk where eta is
    small (``lpg.eta_schedule``): meta-parameters such as a schedule of gamma
    only make sense next to the agent that co-adapted with them. ``lpg
    evaluate`` uses the final eta by default (a frozen objective is what
    transfer measures) and replays the schedule with ``--eta-schedule replay``.
    """

    def __init__(self, run: Run, options: OnlineOptions, objective: Objective, online: dict, setup: dict,
                 eta_of: Any, score_of: Any, eta_curve_of: Any = None, eta_schedule_of: Any = None):  # fmt: skip
        self.run, self.objective, self.eta_of, self.score_of = run, objective, eta_of, score_of
        self.eta_curve_of = eta_curve_of or (lambda extra: None)
        self.eta_schedule_of = eta_schedule_of or (lambda extra: None)
        optimizer = dataclasses.asdict(setup["optimizer"])
        self.base = {
            "envs": [options.env],
            "method": "online",
            "seed": options.seed,
            "eta_of_seed": options.seed,
            "online": online,
            "init_objective": options.init_objective,
            "evaluation": {**{k: v for k, v in setup.items() if k != "optimizer"}, "agent_optimizer": optimizer,
                           "steps": online.get("steps")},
        }  # fmt: skip
        self.best = self._stored_best()
        run.save_hooks.append(self)

    @property
    def path(self):
        return self.run.out / "objective"

    @property
    def best_path(self):
        return self.run.out / "objective_best"

    def _stored_best(self) -> float | None:
        from lpg import checkpoint

        if not (self.best_path / "metadata.json").exists():
            return None
        return checkpoint.read_objective_metadata(self.best_path, verify=False).get("best_score")

    def _metadata(self, extra: dict, eta_curve: Any, eta_schedule: dict | None = None) -> dict[str, Any]:
        curve = {name: [list(point) for point in points] for name, points in (eta_curve or {}).items()}
        schedule = {} if eta_schedule is None else {"eta_schedule": eta_schedule}
        return {**self.base, **extra, "eta_trajectory": curve, **schedule}

    def __call__(self, done: int, state: Any, extra: Any) -> None:
        from lpg import checkpoint

        eta, score = self.eta_of(state), self.score_of(extra)
        metadata = self._metadata(
            {"saved_at_update": done, "recent_score": score}, self.eta_curve_of(extra), self.eta_schedule_of(extra)
        )
        checkpoint.save_objective(self.path, self.objective, eta, metadata)
        if score is not None and np.isfinite(score) and (self.best is None or score > self.best):
            self.best = float(score)
            checkpoint.save_objective(self.best_path, self.objective, eta, {**metadata, "best_score": score,
                                                                           "best_at": done})  # fmt: skip

    def final(self, eta: Any, summary: dict[str, Any], eta_curve: Any, eta_schedule: dict | None = None) -> dict:
        """Writes ``objective/`` with the run's results; returns the summary's checkpoint entries."""
        from lpg import checkpoint

        results = {k: summary.get(k) for k in ("final_return", "score", "final_meta_parameters")}
        online = {k: summary.get(k, v) for k, v in self.base["online"].items()}  # the run's own counts
        results.update(online=online, evaluation={**self.base["evaluation"], "steps": online.get("steps")})
        checkpoint.save_objective(self.path, self.objective, eta, self._metadata(results, eta_curve, eta_schedule))
        best = str(self.best_path) if self.best_path.exists() else None
        return {
            "objective_checkpoint": str(self.path),
            "objective_best_checkpoint": best,
            "best_recent_score": self.best,
        }


def _online_summary(options: OnlineOptions, spec, mt: MetaGradientTrainer, num_updates: int, rec, run: Run):
    final, per_seed = _final_return_stats(rec["metrics"])
    return {
        "env": spec.name,
        "objective": mt.objective.name,
        "inner_steps": options.inner_steps,
        "mix": options.mix,
        "final_return": final,
        "final_return_per_seed": per_seed,
        "final_return_definition": "mean undiscounted return of episodes completed in the last 10% of steps",
        "final_meta_parameters": _final_eta(mt, rec["states"]),
        "random_return": spec.random_return,
        "optimal_return": spec.optimal_return,
        "steps": num_updates * mt.env_steps_per_rollout,
        "env_steps_consumed": num_updates * mt.env_steps_per_meta_step,
        "seed": options.seed,
        "num_seeds": options.num_seeds,
        "wall_s": rec["wall_s"],
        "nonfinite_skips": run.total_skips,
        "resumed_at_update": rec["resumed_at"] if options.resume else None,
    }


def _plot_online(run: Run, env_name: str, objective: str, mt: MetaGradientTrainer, rec: dict[str, Any]) -> None:
    plot_lines(
        run.path / "learning_curve.png",
        [(objective, *rec["curve"])],
        title=f"{env_name}: episode return ({objective})",
        xlabel="environment steps per seed",
        ylabel="mean episode return",
    )
    if rec["eta_curve"]:
        per = mt.env_steps_per_rollout
        plot_lines(
            run.path / "meta_parameters.png",
            [(name, [x * per for x, _ in pts], [y for _, y in pts]) for name, pts in rec["eta_curve"].items()],
            title=f"{env_name}: meta-parameters ({objective})",
            xlabel="environment steps per seed",
            ylabel="value",
        )


def _discover_atari(options: OnlineOptions, objective: Objective, initial_eta: Any = None) -> dict[str, Any]:
    """``lpg discover online atari/<Game>``: one game's lifetime (training/atari.py), rewards clipped to [-1, 1]."""
    from training.atari import AtariRunConfig, check_atari_meta_config, discover_atari_online

    envs.make_spec(options.env)  # unknown game -> UnknownNameError
    if options.num_seeds != 1:
        raise InvalidConfigError("Atari runs train one seed per command (--num-seeds 1)")
    if options.steps is not None and options.frames is not None:
        raise InvalidConfigError("give --frames or --steps for Atari, not both")
    meta = options.meta_config()
    check_atari_meta_config(meta)
    frames = options.frames or (options.steps * 4 if options.steps is not None else ATARI_DEFAULT_FRAMES)
    if hasattr(objective.config, "reward_clip"):
        objective = objectives.make(objective.name, **{**objective.config_dict(), "reward_clip": 1.0})
    outer = options.outer_objective(objective)
    if hasattr(outer.config, "reward_clip"):
        outer = type(outer)(dataclasses.replace(outer.config, reward_clip=1.0))
    config = override_agent_setup(AtariRunConfig(), **agent_setup_flags(options))
    run_config = {
        "command": "discover online",
        "options": run_identity(options),
        "objective_config": objective.config_dict(),
        "meta": meta,
        "outer": outer.config_dict(),
        "atari_config": config,
        "init_objective": options.init_objective,
    }
    run = Run.from_options(options, run_config, what=f"{options.env} run")
    if (stored := run.stored()) is not None:
        return stored
    setup = {"num_envs": config.num_envs, "unroll_length": config.unroll_length, "optimizer": config.optimizer}
    online = {
        "inner_steps": meta.inner_steps,
        "mix": meta.mix,
        "frames": frames,
        "steps": frames // 4,
        "meta_interval": options.meta_interval,
    }
    saver = _ObjectiveSaver(
        run, options, objective, online, setup,
        eta_of=lambda state: state["learner"]["eta"],
        score_of=lambda extra: extra["curve"][-1][1] if extra.get("curve") else None,
    )  # fmt: skip
    summary = discover_atari_online(
        options.env, objective, frames, options.seed, run, meta, outer, config, options.network,
        options.progress, options.meta_interval, initial_eta,
    )  # fmt: skip
    summary.pop("params", None)
    eta = summary.pop("eta")
    summary["final_meta_parameters"] = summary.get("final_meta_parameters") or {}
    summary.update(saver.final(eta, summary, None))
    run.finish(summary)  # summary.json again, now naming the checkpoint
    return summary


@dataclasses.dataclass(frozen=True)
class DiscoverOnlineCommand(OnlineOptions):
    """Discover an objective online: one agent's lifetime with meta-gradients (see `lpg objectives`).

    Writes to --out: config.json, metrics.jsonl (with meta-parameter
    trajectories), summary.json (final_return, final_meta_parameters, ...),
    learning_curve.png and meta_parameters.png.
    """

    def run(self) -> int:
        summary = discover_online(self)
        final = summary["final_return"]
        eta = ", ".join(f"{k}={v:.4g}" for k, v in summary["final_meta_parameters"].items())
        how = "frozen" if self.inner_steps == 0 else f"{self.inner_steps}-step{' mix' if self.mix else ''}"
        label = f"{summary['objective']} ({how})"
        if "frames_per_s" in summary:
            from training.atari import atari_result_lines

            print("\n".join([*atari_result_lines(summary, self.out, label), f"meta-parameters: {eta}"]))
            return 0
        print(
            f"{summary['env']} / {label}: final_return "
            f"{'n/a' if final is None else f'{final:.3f}'} after {summary['steps']:,} steps ({summary['wall_s']:.1f}s); "
            f"meta-parameters: {eta}; results in {self.out}/summary.json"
        )
        return 0
