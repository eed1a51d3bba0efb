"""Command-line classes of online discovery (tyro; wired into ``lpg.cli`` by the lead).

* ``ExperimentCommand``:   ``lpg experiment NAME --out DIR [--seeds K] [--inner-steps n] [--mix [--mix-coefficient k]] [--monte-carlo K] [--steps N]``
* ``DiscoverOnlineCommand``: ``lpg discover online ENV --objective {mgrl,self_tuning,frodo} [--inner-steps n] [--mix [--mix-coefficient k]] --steps N --seed S --out DIR``
* ``BenchOnlineCommand``:  ``lpg bench online`` (meta-step time / plain actor-critic step time)

Bad input raises ``lpg.errors.UserInputError`` subclasses (one line, exit status 2).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated

import tyro

from lpg.errors import InvalidConfigError
from lpg.networks import NetworkConfig


@dataclasses.dataclass(frozen=True)
class ExperimentCommand:
    """Run a named online-discovery experiment: mrp-gamma, catch-frodo, snake-metagrad, snake-variance.

    Writes to --out: config.json, metrics.jsonl, summary.json and plots.
    mrp-gamma: summary "gammas" (10 final per-state discounts), gammas.png.
    catch-frodo: "frodo_return" and "a2c_return". snake-metagrad: "final_return"
    and "final_meta_parameters". snake-variance: "std_ratio" keyed 1,3,5,10,3-mix,5-mix.
    """

    name: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="NAME")]
    """Experiment: mrp-gamma, catch-frodo, snake-metagrad or snake-variance."""
    out: str = "runs/experiment"
    """Output folder (created; must be empty or hold this same run)."""
    seeds: int | None = None
    """Seeds run in parallel under vmap (default: the preset's)."""
    seed: int = 0
    """First random seed."""
    inner_steps: int | None = None
    """n of the n-step meta-gradient (default: preset; 0 = fixed baseline for snake-metagrad)."""
    mix: bool = False
    """Use the mixing estimator (Bonnet et al. eq. 10) with 1/(1-k) = n instead of plain n-step."""
    mix_coefficient: float | None = None
    """kappa of the mixing estimator (Bonnet et al. eq. 10), in [0, 1]; needs --mix; default 1 - 1/n."""
    monte_carlo: int | None = None
    """Meta-gradients averaged per meta-update (default: preset)."""
    steps: int | None = None
    """Environment steps per seed; for mrp-gamma the number of meta-updates (default: preset)."""
    checkpoints: int | None = None
    """snake-variance only: points along the run where the spread is measured (default: preset, 3)."""
    estimates: int | None = None
    """snake-variance only: independent meta-gradient estimates per estimator and point (default: preset, 32; Bonnet et al. use 96)."""
    estimate_batch: int | None = None
    """snake-variance only: estimates computed at once under vmap; lower it if memory runs out (default: preset, 8, peak about 18 GB); the result does not depend on it."""
    progress: bool = True
    """Show progress on stderr."""

    def run(self) -> int:
        from training.online import run_experiment

        summary = run_experiment(
            self.name,
            self.out,
            seed=self.seed,
            seeds=self.seeds,
            inner_steps=self.inner_steps,
            mix=self.mix or None,
            mix_k=self.mix_coefficient,
            monte_carlo=self.monte_carlo,
            steps=self.steps,
            progress=self.progress,
            checkpoints=self.checkpoints,
            estimates=self.estimates,
            estimate_batch=self.estimate_batch,
        )
        keys = {
            "mrp-gamma": ("gammas", "solved", "wall_s"),
            "catch-frodo": ("frodo_return", "a2c_return", "steps"),
            "snake-metagrad": ("final_return", "final_meta_parameters", "steps"),
            "snake-variance": ("std_ratio",),
        }[self.name]
        shown = {k: summary[k] for k in keys}
        print(f"{self.name}: {json.dumps(shown, default=str)}; results in {self.out}/summary.json")
        return 0


@dataclasses.dataclass(frozen=True)
class DiscoverOnlineCommand:
    """Discover an objective online: one agent's lifetime with meta-gradients (MGRL, STAC, FRODO).

    Writes to --out: config.json, metrics.jsonl (with meta-parameter
    trajectories), summary.json (final_return, final_meta_parameters, ...),
    learning_curve.png and meta_parameters.png.
    """

    env: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="ENV")]
    """Environment name (see `lpg envs`)."""
    objective: str = "mgrl"
    """Objective with meta-parameters: mgrl, self_tuning or frodo."""
    inner_steps: int = 1
    """n of the n-step meta-gradient (look-ahead updates per meta-gradient)."""
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
    """Meta-gradients averaged per meta-update."""
    meta_learning_rate: float | None = None
    """Meta-optimiser (Adam) learning rate (default: 1e-3; 1e-4 on Atari, where 1e-3 let FRODO's targets collapse the policy within 2M frames)."""
    meta_grad_clip: float = 1.0
    """Clip meta-gradients to this global norm (0 = off)."""
    stac_kl_weight: float = 0.0
    """Weight of the STAC term KL(pi_theta' || pi_theta) in the outer loss."""
    outer_entropy_weight: float | None = None
    """Entropy bonus in the outer loss (default: 0, Bonnet et al. eq. 4; 0.01 on Atari, a standard actor-critic outer loss as in Xu et al. 2020)."""
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

    def run(self) -> int:
        from training.online import discover_online
        from training.train import agent_setup_flags

        if self.num_seeds <= 0:
            raise InvalidConfigError(f"--num-seeds must be positive, got {self.num_seeds}")
        if self.monte_carlo < 1:
            raise InvalidConfigError(f"--monte-carlo must be >= 1, got {self.monte_carlo}")
        summary = discover_online(
            self.env,
            self.objective,
            inner_steps=self.inner_steps,
            mix=self.mix,
            mix_k=self.mix_coefficient,
            steps=self.steps,
            seed=self.seed,
            out=self.out,
            num_seeds=self.num_seeds,
            monte_carlo=self.monte_carlo,
            meta_learning_rate=self.meta_learning_rate,
            meta_grad_clip=self.meta_grad_clip,
            stac_kl_weight=self.stac_kl_weight,
            outer_entropy_weight=self.outer_entropy_weight,
            network=self.network,
            progress=self.progress,
            frames=self.frames,
            meta_interval=self.meta_interval,
            agent_setup=agent_setup_flags(self),
            resume=self.resume,
            checkpoint_interval_s=self.checkpoint_interval_s,
            max_nonfinite_skips=self.max_nonfinite_skips,
        )
        final = summary["final_return"]
        eta = ", ".join(f"{k}={v:.4g}" for k, v in summary["final_meta_parameters"].items())
        label = f"{summary['objective']} ({self.inner_steps}-step{' mix' if self.mix else ''})"
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


@dataclasses.dataclass(frozen=True)
class BenchOnlineCommand:
    """Time per meta-step over time per plain actor-critic step (same batch, same network), n = 1, 3, 5, 10.

    Prints one markdown table, a row per environment and n (objective
    self_tuning, i.e. the 4 meta-parameters of Bonnet et al.).
    """

    envs: str = "catch,snake"
    """Toy environments: comma-separated names, globs or named sets (see `lpg envs`)."""
    inner_steps: tuple[int, ...] = (1, 3, 5, 10)
    """Look-ahead lengths n to time."""
    num_envs: int = 32
    """Batch size B."""
    unroll_length: int = 20
    """Rollout length T."""
    repeats: int = 20
    """Steps timed per measurement (after a compile-and-warm-up run)."""

    def run(self) -> int:
        from lpg.bench import require_toy_envs
        from lpg.envs import resolve_env_spec
        from training.online import bench_online

        if self.repeats <= 0 or self.num_envs <= 0 or self.unroll_length <= 0:
            raise InvalidConfigError("--repeats, --num-envs and --unroll-length must be positive")
        if not self.inner_steps or min(self.inner_steps) < 1:
            raise InvalidConfigError("--inner-steps must list values >= 1")
        names = require_toy_envs(resolve_env_spec(self.envs), "lpg bench online")  # before the table's header
        print("| env | n | plain step (ms) | meta-step (ms) | ratio |")
        print("|---|---:|---:|---:|---:|")
        for row in bench_online(names, self.inner_steps, self.num_envs, self.unroll_length, self.repeats):
            print(f"| {row['env']} | {row['n']} | {row['plain_ms']:.2f} | {row['meta_ms']:.2f} | {row['ratio']:.2f} |")
        return 0
