"""``lpg discover offline`` and ``lpg bench offline`` (tyro commands; see ``lpg/cli.py``).

Each command is a frozen dataclass whose field docstrings are its ``--help``;
``run()`` returns the exit status. Bad input raises ``lpg.errors.UserInputError``
subclasses, which the CLI prints as one line.
"""

from __future__ import annotations

import dataclasses

from training.offline import OfflineConfig

_DEFAULT = OfflineConfig()


@dataclasses.dataclass(frozen=True)
class DiscoverOfflineCommand:
    """Discover an objective offline across many lifetimes on toy MDPs (LPG; meta-gradients or ES).

    Writes to --out: objective/ (the objective checkpoint, for `lpg evaluate`),
    objective_best/ (the objective with the best evaluation so far),
    training_state/ (for --resume), metrics.jsonl, TensorBoard events,
    meta_training.png, evaluation.png and summary.json (final A2C-normalised
    scores of fresh agents trained with the discovered objective).
    """

    envs: str = "chain/short,gridworld/sparse"
    """Environments: names, globs (gridworld/*) or named sets (lpg-tabular, lpg-random, chains, toy; see `lpg envs`)."""
    method: str = "grad"
    """grad (meta-gradients through K agent updates) or es (evosax evolution strategies)."""
    out: str = "runs/discover"
    """Output folder (created; must be empty or hold this same run)."""
    resume: bool = False
    """Continue from the newest training checkpoint in --out."""
    meta_steps: int = _DEFAULT.meta_steps
    """Meta-steps: meta-gradient updates (grad) or ES generations (es)."""
    seed: int = 0
    """Random seed."""
    num_lifetimes: int = _DEFAULT.num_lifetimes
    """grad: lifetimes in parallel; es: antithetic pairs (population = 2x)."""
    num_envs: int = _DEFAULT.num_envs
    """Environments per agent."""
    unroll_length: int = _DEFAULT.unroll_length
    """Steps per rollout (one agent update per rollout)."""
    lifetime_updates: int = _DEFAULT.lifetime_updates
    """Agent updates per lifetime (grad: at least --inner-updates, the updates one meta-step advances a lifetime by)."""
    inner_updates: int = _DEFAULT.inner_updates
    """K: agent updates per meta-gradient step (grad)."""
    agent_optimizer: str = _DEFAULT.agent_optimizer
    """Agents' optimiser: sgd (LPG's choice for tabular agents) or adam."""
    lr_min: float = _DEFAULT.lr_range[0]
    """Lowest agent learning rate (drawn log-uniformly per lifetime)."""
    lr_max: float = _DEFAULT.lr_range[1]
    """Highest agent learning rate."""
    alpha_y_min: float = _DEFAULT.alpha_y_range[0]
    """Lowest KL weight alpha_y (drawn log-uniformly per lifetime)."""
    alpha_y_max: float = _DEFAULT.alpha_y_range[1]
    """Highest KL weight alpha_y."""
    meta_lr: float = _DEFAULT.meta_lr
    """Meta-Adam learning rate (grad)."""
    meta_grad_clip: float = _DEFAULT.meta_grad_clip
    """Global-norm clip of the meta-gradient (grad; 0 = off)."""
    es_algorithm: str = _DEFAULT.es_algorithm
    """evosax algorithm (es): Open_ES, SNES, CMA_ES, ..."""
    es_std: float = _DEFAULT.es_std
    """ES perturbation standard deviation."""
    es_lr: float = _DEFAULT.es_lr
    """ES mean learning rate (Adam)."""
    objective_config: tuple[str, ...] = ()
    """LPG config overrides, KEY=VALUE (e.g. hidden_size=256 y_size=30)."""
    eval_every: int = 0
    """Evaluate the objective every this many meta-steps, and the random initial objective before the first (0 = only at the end)."""
    eval_updates: int | None = None
    """Agent updates per evaluation run (default: lifetime_updates)."""
    eval_seeds: int = 4
    """Fresh agents per environment in each evaluation."""
    checkpoint_every: int = 50
    """Write objective and training checkpoints every N meta-steps (0 = only at the end; SIGINT/SIGTERM also write one)."""
    max_nonfinite_skips: int = 10
    """Stop after this many consecutive meta-steps with a non-finite meta-gradient or fitness (each is skipped and counted)."""
    progress: bool = True
    """Show a progress bar with ETA on stderr."""

    def options(self):
        from training.offline import OfflineOptions

        config = dataclasses.replace(
            _DEFAULT,
            num_lifetimes=self.num_lifetimes,
            num_envs=self.num_envs,
            unroll_length=self.unroll_length,
            lifetime_updates=self.lifetime_updates,
            inner_updates=self.inner_updates,
            agent_optimizer=self.agent_optimizer,
            lr_range=(self.lr_min, self.lr_max),
            alpha_y_range=(self.alpha_y_min, self.alpha_y_max),
            meta_lr=self.meta_lr,
            meta_grad_clip=self.meta_grad_clip,
            es_algorithm=self.es_algorithm,
            es_std=self.es_std,
            es_lr=self.es_lr,
        )
        return OfflineOptions(
            envs=self.envs,
            method=self.method,
            out=self.out,
            meta_steps=self.meta_steps,
            seed=self.seed,
            resume=self.resume,
            objective_config=self.objective_config,
            config=config,
            eval_every=self.eval_every,
            eval_updates=self.eval_updates,
            eval_seeds=self.eval_seeds,
            checkpoint_every=self.checkpoint_every,
            max_nonfinite_skips=self.max_nonfinite_skips,
            progress=self.progress,
        )

    def run(self) -> int:
        from training.offline import discover_offline

        summary = discover_offline(self.options())
        print(
            f"discovered with {summary['method']} on {', '.join(summary['envs'])}: {summary['meta_steps']} meta-steps in {summary['wall_s']:.0f}s"
        )
        for env, r in summary["evaluation"]["results"].items():
            print(
                f"  {env:<28} return {_fmt(r['return'], '.3f')}  a2c {_fmt(r['a2c_return'], '.3f')}  "
                f"random {_fmt(r['random_return'], '.3f')}  a2c-normalised {_fmt(r['a2c_normalised'], '.2f')}"
            )
        print(f"mean A2C-normalised score {_fmt(summary['mean_a2c_normalised'], '.3f')}")
        if summary.get("objective_checkpoint"):
            print(f"objective checkpoint: {summary['objective_checkpoint']}")
        print(f"results in {self.out}/summary.json")
        return 0


@dataclasses.dataclass(frozen=True)
class BenchOfflineCommand:
    """Agent steps per second during offline meta-gradient training and during ES,
    and the ratio of one meta-step's time to plain A2C training of the same lifetimes."""

    envs: str = "chain/short,gridworld/sparse"
    """Environments (names, globs or named sets)."""
    methods: tuple[str, ...] = ("grad", "es")
    """Methods to measure."""
    num_lifetimes: int = _DEFAULT.num_lifetimes
    """grad: lifetimes; es: antithetic pairs."""
    num_envs: int = _DEFAULT.num_envs
    """Environments per agent."""
    unroll_length: int = _DEFAULT.unroll_length
    """Steps per rollout."""
    inner_updates: int = _DEFAULT.inner_updates
    """K, agent updates per meta-gradient step."""
    lifetime_updates: int = 50
    """Agent updates per ES member lifetime."""
    repeats: int = 3
    """Timed meta-steps (after one compile-and-warm-up step)."""

    def run(self) -> int:
        import objectives
        from lpg import envs as envs_lib
        from lpg.errors import InvalidConfigError
        from training.offline import METHODS, bench_offline

        if self.repeats <= 0:
            raise InvalidConfigError("--repeats must be positive")
        for method in self.methods:
            if method not in METHODS:
                raise InvalidConfigError(f"unknown method {method!r}; choose grad or es")
        names = tuple(envs_lib.resolve_env_spec(self.envs))
        objective = objectives.make("lpg")
        print("| method | agent steps / meta-step | meta-step s | agent steps/s | plain A2C s | meta-step / A2C |")
        print("|---|---:|---:|---:|---:|---:|")
        for method in self.methods:
            config = dataclasses.replace(
                _DEFAULT,
                envs=names,
                method=method,
                num_lifetimes=self.num_lifetimes,
                num_envs=self.num_envs,
                unroll_length=self.unroll_length,
                inner_updates=self.inner_updates,
                lifetime_updates=self.lifetime_updates,
            )
            r = bench_offline(config, objective, self.repeats)
            print(
                f"| {method} | {r['agent_steps_per_meta_step']:,} | {r['meta_step_s']:.3f} | {r['agent_steps_per_s']:,.0f} "
                f"| {r['a2c_equivalent_s']:.3f} | {r['meta_step_over_a2c']:.1f}x |"
            )
        return 0


def _fmt(value: float | None, spec: str) -> str:
    """Formats a score that may be missing (None or NaN: no episode finished within the budget)."""
    if value is None or value != value:
        return "n/a"
    return format(value, spec)
