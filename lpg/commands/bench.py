"""``lpg bench ...``: measurements of this machine (environments, online and offline meta-steps, Atari, scaling)."""

from __future__ import annotations

import dataclasses
import sys

from lpg.errors import InvalidConfigError
from lpg.validation import AT_LEAST_ONE, POSITIVE_COUNT, Config, Range
from training.offline import OfflineConfig

__all__ = ["BenchAtariCommand", "BenchEnvsCommand", "BenchOfflineCommand", "BenchOnlineCommand", "BenchScaleCommand"]

_DEFAULT = OfflineConfig()


@dataclasses.dataclass(frozen=True)
class BenchEnvsCommand(Config):
    """Steps per second of every pure-JAX environment (toy, gymnax) under vmap (random actions, one jitted scan)."""

    num_envs: int = 1024
    """Environments stepped in parallel under vmap."""
    num_steps: int = 1000
    """Steps per environment (after one compile-and-warm-up run)."""
    envs: str | None = None
    """Environments to measure: names, globs or named sets (see `lpg envs`); default: every environment of `lpg envs --kind toy` (the named set `toy` plus mrp, catch and snake), then of `--kind gymnax`."""

    RANGES = {"num_envs": POSITIVE_COUNT, "num_steps": POSITIVE_COUNT}
    FLAGS = True

    def run(self) -> int:
        from lpg import envs
        from lpg.bench import bench_envs

        names = envs.resolve_env_spec(self.envs) if self.envs is not None else None
        rows = bench_envs(names, num_envs=self.num_envs, num_steps=self.num_steps)
        print(f"| environment | steps/s ({self.num_envs} envs, vmap) |")
        print("|---|---:|")
        for row in rows:
            print(f"| {row['env']} | {row['steps_per_s']:,.0f} |")
        return 0


@dataclasses.dataclass(frozen=True)
class BenchAtariCommand(Config):
    """Where Atari training time goes: raw envpool steps/s, the learner's cost per batch, the policy forward, and
    end-to-end frames/s of A2C, of V-trace with overlapped acting and of FRODO, against the ceiling
    frames / (env + learner) (training/atari_bench.py); with --peer, A2C's and V-trace's frames/s against
    cleanrl's PPO script."""

    game: str = "Pong"
    """Atari game (envpool name, e.g. Pong, Breakout)."""
    num_envs: int = 16
    """Emulators stepped in parallel."""
    unroll_length: int = 5
    """Steps per rollout (the Atari training default)."""
    frames: int = 200_000
    """Frames of each end-to-end run (A2C, V-trace with --overlap, FRODO); the first two updates (compilation) are not timed."""
    frodo: bool = True
    """Also time FRODO (1-step meta-gradients); --no-frodo skips it (the slowest part)."""
    vtrace: bool = True
    """Also time V-trace with acting overlapped with learning; --no-vtrace skips it."""
    peer: str | None = None
    """Path of cleanrl's ppo_atari_envpool_xla_jax.py (not part of this project): run it right after A2C with A2C-equivalent flags (same game, envs and unroll; --num-minibatches 1 --update-epochs 1) for the same frames, and print its steady frames/s and A2C's and V-trace's ratios to it. The peer inherits this process's XLA_FLAGS (Atari's flag included: lpg/xla_flags.py)."""
    out: str | None = None
    """Also write every number as JSON to this file (written when the bench ends)."""

    RANGES = {"num_envs": POSITIVE_COUNT, "unroll_length": POSITIVE_COUNT, "frames": POSITIVE_COUNT}
    FLAGS = True

    def run(self) -> int:
        from lpg.envs.atari_scores import reference_scores
        from lpg.run_io import check_output_file, write_json_atomic
        from training.atari_bench import bench_atari, check_peer, format_bench_atari

        reference_scores(self.game)  # unknown game -> one-line error
        if self.peer is not None:
            check_peer(self.peer)
        out = check_output_file(self.out) if self.out else None
        result = bench_atari(
            self.game,
            self.num_envs,
            self.unroll_length,
            self.frames,
            with_frodo=self.frodo,
            with_vtrace=self.vtrace,
            peer=self.peer,
            log=lambda message: print(message, file=sys.stderr, flush=True),
        )
        print(format_bench_atari(result))
        if out is not None:
            write_json_atomic(out, result)
            print(f"wrote {out}")
        return 0


@dataclasses.dataclass(frozen=True)
class BenchOnlineCommand(Config):
    """Time per meta-step over time per plain actor-critic step (same batch, same network), n = 1, 3, 5, 10.

    Prints one markdown table, a row per environment and n (objective
    self_tuning, i.e. the 4 meta-parameters of Bonnet et al.).
    """

    envs: str = "catch,snake"
    """Pure-JAX environments (toy, gymnax): comma-separated names, globs or named sets (see `lpg envs`)."""
    inner_steps: tuple[int, ...] = (1, 3, 5, 10)
    """Look-ahead lengths n to time."""
    num_envs: int = 32
    """Batch size B."""
    unroll_length: int = 20
    """Rollout length T."""
    repeats: int = 20
    """Steps timed per measurement (after a compile-and-warm-up run)."""

    RANGES = {
        "inner_steps": AT_LEAST_ONE,
        "num_envs": POSITIVE_COUNT,
        "unroll_length": POSITIVE_COUNT,
        "repeats": POSITIVE_COUNT,
    }
    FLAGS = True

    def run(self) -> int:
        from lpg.bench import require_jax_envs
        from lpg.envs import resolve_env_spec
        from training.online import bench_online

        if not self.inner_steps:
            raise InvalidConfigError("--inner-steps must list at least one n >= 1")
        names = require_jax_envs(resolve_env_spec(self.envs), "lpg bench online")  # before the table's header
        print("| env | n | plain step (ms) | meta-step (ms) | ratio |")
        print("|---|---:|---:|---:|---:|")
        for row in bench_online(names, self.inner_steps, self.num_envs, self.unroll_length, self.repeats):
            print(f"| {row['env']} | {row['n']} | {row['plain_ms']:.2f} | {row['meta_ms']:.2f} | {row['ratio']:.2f} |")
        return 0


@dataclasses.dataclass(frozen=True)
class BenchOfflineCommand(Config):
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
    """Timed meta-steps (after one compile-and-warm-up call)."""
    steps_per_call: int = 0
    """Meta-steps per compiled call, as in lpg discover offline (0 = auto: 16 here)."""

    RANGES = {
        "num_lifetimes": POSITIVE_COUNT,
        "num_envs": POSITIVE_COUNT,
        "unroll_length": POSITIVE_COUNT,
        "inner_updates": POSITIVE_COUNT,
        "lifetime_updates": POSITIVE_COUNT,
        "repeats": POSITIVE_COUNT,
        "steps_per_call": Range(0, integer=True, text=">= 0"),
    }
    FLAGS = True

    def run(self) -> int:
        import objectives
        from lpg import envs as envs_lib
        from training.offline import METHODS
        from training.offline.bench import bench_offline

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
            r = bench_offline(config, objective, self.repeats, self.steps_per_call)
            print(
                f"| {method} | {r['agent_steps_per_meta_step']:,} | {r['meta_step_s']:.3f} | {r['agent_steps_per_s']:,.0f} "
                f"| {r['a2c_equivalent_s']:.3f} | {r['meta_step_over_a2c']:.1f}x |"
            )
        return 0


@dataclasses.dataclass(frozen=True)
class BenchScaleCommand(Config):
    """Agent steps/s of offline grad meta-steps and of a plain training batch against device count 1, 2, 4, ...

    Prints a markdown table (speed-up relative to one device). On CPU the
    devices are forced host devices sharing this machine's cores, so the
    numbers show the cost of the sharded program rather than a speed-up;
    several GPUs show the real scaling.
    """

    device_counts: tuple[int, ...] = ()
    """Device counts to measure (default: 1, 2, 4, ... up to the GPUs present; on CPU up to max(4, cores))."""
    env: str = "chain/short"
    """Pure-JAX environment (toy, gymnax) of the offline lifetimes."""
    num_lifetimes: int = 8
    """Offline lifetimes (split over devices when divisible by the device count)."""
    num_envs: int = 16
    """Environments per offline lifetime."""
    inner_updates: int = 2
    """K, agent updates per meta-step."""
    train_env: str = "catch"
    """Pure-JAX environment (toy, gymnax) of the plain training batch."""
    train_num_envs: int = 256
    """Batch size of plain training (split over devices when divisible by the device count)."""
    updates: int = 10
    """Plain-training updates per timed call (one compiled scan)."""
    repeats: int = 3
    """Timed calls per measurement (after a compile-and-warm-up call)."""
    timeout_s: int = 600
    """Seconds allowed to each device count's process."""
    out: str | None = None
    """Also write the rows as JSON to this file."""

    RANGES = {
        "device_counts": POSITIVE_COUNT,
        "num_lifetimes": POSITIVE_COUNT,
        "num_envs": POSITIVE_COUNT,
        "inner_updates": POSITIVE_COUNT,
        "train_num_envs": POSITIVE_COUNT,
        "updates": POSITIVE_COUNT,
        "repeats": POSITIVE_COUNT,
        "timeout_s": POSITIVE_COUNT,
    }
    FLAGS = True

    def run(self) -> int:
        from lpg.bench import require_jax_envs
        from lpg.run_io import check_output_file, write_json_atomic
        from training.scale_bench import bench_scale, format_bench_scale

        require_jax_envs([self.env, self.train_env], "lpg bench scale")
        out = check_output_file(self.out) if self.out else None
        result = bench_scale(self)
        print(format_bench_scale(result))
        if out is not None:
            write_json_atomic(out, result)
            print(f"wrote {out}")
        return 0
