"""``lpg evaluate CHECKPOINT``: fresh agents learn from a saved objective; compared with A2C and a random policy."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import tyro

import objectives
from evaluation.evaluate import (
    NORMALISED_DEFINITION,
    RANDOM_STEPS_CAP,
    RETURN_DEFINITION,
    RewardClipped,
    checkpoint_train_config,
    evaluate_objective,
    plot_scores,
    print_atari_table,
    print_table,
    with_config_overrides,
)
from lpg import envs
from lpg.checkpoint import check_agent_heads
from lpg.errors import CheckpointError, InvalidConfigError, OutputDirError
from lpg.eta_schedule import MAX_SCHEDULE_SIZE, EtaSchedule
from lpg.harness import Run, run_identity
from lpg.run_io import plot_bars, write_json_atomic
from lpg.validation import POSITIVE_COUNT, Config, parse_overrides
from training.presets import agent_setup_flags, default_preset, override_agent_setup

__all__ = ["EvaluateCommand", "EvaluateOptions", "run_evaluate"]

PARTIAL_RESULTS = "partial_results.json"  # results of the environments finished so far (for --resume)
AGENT_SETUPS = ("checkpoint", "preset")
ETA_SCHEDULES = ("final", "replay")
ATARI_DEFAULT_FRAMES = 10_000_000


@dataclasses.dataclass(frozen=True)
class EvaluateOptions(Config):
    """What ``lpg evaluate`` needs (the command is this dataclass; Python users may build it too)."""

    checkpoint: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="CHECKPOINT")]
    """Objective checkpoint folder (written by `lpg discover`, or the shipped one in checkpoints/)."""
    envs: str | None = None
    """Environments: names, globs (gridworld/*) and named sets (lpg-tabular, lpg-random, chains, toy), comma-separated (default: the checkpoint's training environments)."""
    steps: int | None = None
    """Environment steps per agent (default: each environment's preset, see README); on Atari an agent step is 4 frames (--frames is the usual budget there)."""
    seeds: int = 3
    """Agents per environment, trained in parallel under vmap (seeds seed, seed+1, ...); A2C uses the same seeds."""
    seed: int = 0
    """Random seed of the first agent."""
    out: str = "runs/evaluate"
    """Output folder (created; must be empty or hold this same run)."""
    progress: bool = True
    """Show a progress bar with ETA on stderr."""
    agent_setup: str = "checkpoint"
    """checkpoint: agents (and the A2C baseline) use the batch shape, optimiser and budget recorded in the checkpoint's model-card evaluation, when it has one; preset: each environment's preset."""
    frames: int | None = None
    """Atari only: emulator frames per agent (default 10M); reports human-normalised scores and their median."""
    resume: bool = False
    """Continue an interrupted evaluation in --out: environments already finished (partial_results.json) are not trained again."""
    num_envs: int | None = None
    """Environments per agent (default: the --agent-setup's; Atari: 16). Applies to the A2C baseline too."""
    unroll_length: int | None = None
    """Steps per rollout, one agent update each (default: the --agent-setup's; Atari: 5)."""
    learning_rate: float | None = None
    """Agent learning rate (default: the --agent-setup's; Atari: 7e-4)."""
    optimizer: str | None = None
    """Agent optimiser: adam, sgd or rmsprop (default: the --agent-setup's; Atari: rmsprop)."""
    objective_config: tuple[str, ...] = ()
    """Overrides of the saved objective's hyper-parameters, KEY=VALUE (e.g. alpha_y=0.1); not of its learned meta-parameters, so keys that change their shapes (hidden_size) are refused."""
    eta_schedule: str = "final"
    """final: the saved meta-parameters throughout; replay: the trajectory of them a toy or gymnax online run recorded (its eta_schedule; objectives with at most 256 meta-parameters, e.g. mgrl's gamma and lambda), played back by fraction of each agent's lifetime."""

    RANGES = {
        "steps": POSITIVE_COUNT,
        "seeds": POSITIVE_COUNT,
        "frames": POSITIVE_COUNT,
        "num_envs": POSITIVE_COUNT,
        "unroll_length": POSITIVE_COUNT,
    }
    FLAGS = True

    def check(self) -> None:
        if self.agent_setup not in AGENT_SETUPS:
            raise InvalidConfigError(f"--agent-setup must be checkpoint or preset, got {self.agent_setup!r}")
        if self.eta_schedule not in ETA_SCHEDULES:
            raise InvalidConfigError(f"--eta-schedule must be final or replay, got {self.eta_schedule!r}")


@dataclasses.dataclass(frozen=True)
class EvaluateCommand(EvaluateOptions):
    """Train fresh agents with a saved objective on each environment; compare with A2C and a random policy.

    Writes to --out: summary.json (results[env] with return, a2c_return,
    random_return, a2c_normalised = (return - random) / (a2c - random) with the
    denominator floored at max(0.1, 0.1 |random|), and a2c_beats_random, false
    where A2C did not clear that floor (marked † in the table); mean_a2c_normalised; the checkpoint's metadata), metrics.jsonl (one row per
    environment), a TensorBoard event file and a2c_normalised.png, and prints a
    table. Returns are the mean undiscounted return of the episodes completed
    in the last 10% of training steps, averaged over seeds. On Atari games
    (--envs atari/Pong,...; --frames): results[game] with score,
    human_normalised = (score - random) / (human - random), random_score and
    human_score; median_human_normalised; human_normalised.png; agents/ (one
    resumable run per game and seed).
    """

    def run(self) -> int:
        summary = run_evaluate(self)
        if "median_human_normalised" in summary:
            median = summary["median_human_normalised"]
            print(
                f"{summary['objective']} on {len(summary['results'])} Atari game(s): median human-normalised score "
                f"{'n/a' if median is None else f'{median:.3f}'} ({summary['wall_s']:.0f}s); "
                f"results in {self.out}/summary.json"
            )
            return 0
        mean = summary["mean_a2c_normalised"]
        print(
            f"{summary['objective']} on {len(summary['results'])} environment(s): mean A2C-normalised score "
            f"{'n/a' if mean is None else f'{mean:.2f}'} ({summary['wall_s']:.1f}s); "
            f"results in {self.out}/summary.json and {self.out}/a2c_normalised.png"
        )
        return 0


def _env_spec_from(options: EvaluateOptions, metadata: Mapping[str, Any]) -> str:
    if options.envs is not None:
        return options.envs
    recorded = metadata.get("envs")
    if isinstance(recorded, str) and recorded.strip():
        return recorded
    if isinstance(recorded, list) and recorded and all(isinstance(n, str) for n in recorded):
        return ",".join(recorded)
    raise InvalidConfigError("--envs is required: the checkpoint records no environment set")


def run_evaluate(options: EvaluateOptions, *, baseline_cache: dict | None = None, show_table: bool = True):
    """Evaluates the checkpoint as ``options`` say and writes the run folder; returns the summary.

    ``baseline_cache`` is passed to ``evaluate_objective`` (reuse A2C / random
    baselines across calls); ``show_table`` prints the results table.

    Raises (before writing anything):
      CheckpointError: the checkpoint is missing, corrupted or incompatible.
      UnknownNameError: ``--envs`` names an unknown environment or set.
      InvalidConfigError: bad options; toy and Atari environments mixed.
      OutputDirError: ``--out`` cannot be written or holds a different run.
    """
    checkpoint = Path(options.checkpoint).absolute()
    objective, eta, metadata = objectives.load(checkpoint)
    check_agent_heads(metadata, objective.heads)
    objective = with_config_overrides(objective, eta, options.objective_config)
    names = envs.resolve_env_spec(_env_spec_from(options, metadata))
    atari = [n for n in names if n.startswith("atari/")]
    if atari and len(atari) != len(names):
        raise InvalidConfigError("evaluate toy and Atari environments in separate runs")
    if atari and options.eta_schedule == "replay":
        raise InvalidConfigError("--eta-schedule replay is for JAX environments (toy, gymnax), not Atari")
    if atari:
        return _run_evaluate_atari(options, objective, eta, metadata, checkpoint, names)
    if options.frames is not None:
        raise InvalidConfigError("--frames is for Atari environments; pure-JAX ones (toy, gymnax) count --steps")
    setup = _AgentSetup(options, metadata, names)
    identity = run_identity(dataclasses.replace(options, checkpoint=str(checkpoint)))
    if options.eta_schedule == "final":  # runs made before the option keep their identity
        identity.pop("eta_schedule")
    else:
        eta = _replayed_schedule(metadata, eta, checkpoint)
    run_config = {
        "command": "evaluate",
        "options": identity,
        "envs": names,
        "objective": metadata["objective"],
        "checkpoint_saved_at": metadata.get("saved_at"),
    }
    title = f"{objective.name} from {checkpoint.name}"
    run = Run(options.out, run_config, what="evaluation", unit="environments", resume=options.resume,
              progress=options.progress, checkpoints=None)  # fmt: skip
    if (stored := run.stored()) is not None:
        if show_table:
            print_table(stored, title)
        return stored
    with run.open(total=setup.total_steps, label=f"evaluate {objective.name}", progress_unit="agent steps"):
        partial = _Partial(run, options)
        evaluation = evaluate_objective(
            objective, eta, names, setup.steps, options.seeds, options.seed,
            progress=partial.progress, on_result=partial.add, baseline_cache=baseline_cache,
            train_config=setup.configs, completed=partial.completed,
        )  # fmt: skip
        summary = {
            "checkpoint": str(checkpoint),
            "checkpoint_metadata": metadata,
            "objective": objective.name,
            "envs": names,
            **setup.describe(),
            "objective_config": objective.config_dict(),
            "seeds": options.seeds,
            "seed": options.seed,
            "results": evaluation["results"],
            "mean_a2c_normalised": evaluation["mean_a2c_normalised"],
            "return_definition": RETURN_DEFINITION,
            "a2c_normalised_definition": NORMALISED_DEFINITION,
            "random_return_definition": "uniform-random policy, mean return of completed episodes over up to "
            f"{RANDOM_STEPS_CAP:,} steps per seed",
            "wall_s": partial.wall_before + run.session_s(),  # every session's
        }
        plot_scores(run.path / "a2c_normalised.png", evaluation, title)
        run.finish(summary)
    partial.path.unlink(missing_ok=True)
    if show_table:
        print_table(evaluation, title)
    return summary


def _replayed_schedule(metadata: Mapping[str, Any], eta: Any, checkpoint: Path) -> EtaSchedule:
    """``--eta-schedule replay``: the checkpoint's recorded trajectory of eta (``lpg.eta_schedule``)."""
    record = metadata.get("eta_schedule")
    if record is None:
        raise InvalidConfigError(
            f"--eta-schedule replay: {checkpoint} records no eta schedule (online runs of objectives with at "
            f"most {MAX_SCHEDULE_SIZE} meta-parameters record one; use --eta-schedule final)"
        )
    return EtaSchedule.from_record(record, eta)


class _AgentSetup:
    """The agents' set-up per environment: the checkpoint's recorded one or each preset, with the user's overrides."""

    def __init__(self, options: EvaluateOptions, metadata: Mapping[str, Any], names: list[str]):
        self.overrides = agent_setup_flags(options)
        self.recorded = checkpoint_train_config(metadata) if options.agent_setup == "checkpoint" else None
        self.agent_setup = options.agent_setup if self.recorded is not None else "preset"
        default_steps = metadata["evaluation"].get("steps") if self.recorded is not None else None
        self.steps = options.steps if options.steps is not None else default_steps
        self.configs, self.total_steps = {}, 0
        for name in names:
            preset = default_preset(envs.make(name).spec)
            config = self.configs[name] = override_agent_setup(self.recorded or preset.config, **self.overrides)
            updates = max(1, math.ceil((self.steps or preset.steps) / config.steps_per_update))
            self.total_steps += 2 * options.seeds * updates * config.steps_per_update

    def describe(self) -> dict[str, Any]:
        first = next(iter(self.configs.values()))
        return {
            "steps": self.steps,
            "agent_setup": self.agent_setup,
            "train_config": first if self.recorded is not None else None,  # the one set-up every environment shares
            "agent_overrides": self.overrides,
            "train_configs": self.configs,
        }


class _Partial:
    """The environments evaluated so far (``partial_results.json``), for ``--resume``; logs each as it finishes."""

    def __init__(self, run: Run, options: EvaluateOptions):
        self.run, self.path = run, run.path / PARTIAL_RESULTS
        self.completed: dict[str, dict[str, Any]] = {}
        self.wall_before = 0.0  # seconds spent by the interrupted sessions of this evaluation
        if self.path.exists():
            if not options.resume:
                raise OutputDirError(
                    f"{options.out!r} holds an unfinished evaluation; add --resume to continue it, or choose a new --out"
                )
            try:
                saved = json.loads(self.path.read_text())
                self.completed, self.wall_before = dict(saved["results"]), float(saved.get("wall_s", 0.0))
            except (OSError, ValueError, KeyError, TypeError):
                raise CheckpointError(
                    f"{str(self.path)!r} is unreadable; delete it to evaluate every environment again"
                ) from None
        run.start(None)  # cuts metrics.jsonl back to none: the finished environments' rows are written again
        self.logged = 0
        for name, result in self.completed.items():
            self._log(name, result)
        run.resume_progress(sum(2 * options.seeds * r["steps"] for r in self.completed.values() if r.get("steps")))

    def _log(self, name: str, result: dict[str, Any]) -> None:
        row = {k: v for k, v in result.items() if not k.endswith("_per_seed")}
        self.run.log(self.logged, {"env": name, **row})
        self.logged += 1

    def add(self, name: str, result: dict[str, Any]) -> None:
        self._log(name, result)
        self.completed[name] = result
        wall = self.wall_before + self.run.session_s()
        write_json_atomic(self.path, {"results": self.completed, "wall_s": wall})

    def progress(self, advance: int, text: str = "") -> None:
        self.run.advance(advance, text)
        if self.run.interrupted:  # the environment in progress is trained again on --resume
            done = len(self.completed)
            self.run.raise_if_interrupted(done)


def _run_evaluate_atari(options, objective, eta, metadata: dict, checkpoint: Path, names: list[str]) -> dict:
    """Fresh agents learn each game from the frozen objective; raw and human-normalised scores and their median.

    Rewards are clipped to [-1, 1] for the objective (its own ``reward_clip``
    when it has one; ``--objective-config reward_clip=...`` sets another).
    """
    from lpg.envs.atari_scores import reference_scores
    from training.atari import AtariRunConfig

    frames = options.frames or (options.steps * 4 if options.steps is not None else ATARI_DEFAULT_FRAMES)
    for name in names:
        reference_scores(name)  # unknown game -> one line
    agent_config = override_agent_setup(AtariRunConfig(), **agent_setup_flags(options))
    if "reward_clip" not in parse_overrides(options.objective_config, objective.config):  # the user's wins
        if hasattr(objective.config, "reward_clip"):
            objective = objectives.make(objective.name, **{**objective.config_dict(), "reward_clip": 1.0})
        else:
            objective = RewardClipped(objective, 1.0)
    run_config = {
        "command": "evaluate",
        "options": run_identity(dataclasses.replace(options, checkpoint=str(checkpoint))),
        "envs": names,
        "objective": metadata["objective"],
        "frames": frames,
    }
    run = Run(options.out, run_config, what="evaluation", unit="games", resume=options.resume,
              progress=False, checkpoints=None)  # fmt: skip
    if (stored := run.stored()) is not None:
        print_atari_table(stored)
        return stored
    with run.open(total=len(names) * options.seeds, label=f"evaluate {objective.name}"):
        agents = run.path / "agents"  # one run folder (with training checkpoints) per game and seed
        if agents.exists() and not options.resume:
            raise OutputDirError(
                f"{options.out!r} holds an unfinished evaluation; add --resume to continue it, or choose a new --out"
            )
        run.start(None)
        results = {}
        for i, name in enumerate(names):
            scores = [
                _atari_agent(options, objective, eta, name, frames, agent_config, agents, checkpoint, k)
                for k in range(options.seeds)
            ]
            results[name] = _atari_result(name, scores, frames)
            run.log(i, {"env": name, **{k: v for k, v in results[name].items() if k != "score_per_seed"}})
        normalised = [r["human_normalised"] for r in results.values() if r["human_normalised"] is not None]
        summary = {
            "checkpoint": str(checkpoint),
            "checkpoint_metadata": metadata,
            "objective": objective.name,
            "envs": names,
            "frames": frames,
            "seeds": options.seeds,
            "atari_config": agent_config,
            "agent_overrides": agent_setup_flags(options),
            "objective_config": objective.config_dict(),
            "results": results,
            "median_human_normalised": float(np.median(normalised)) if normalised else None,
            "mean_a2c_normalised": None,
            "score_definition": "mean raw game score of games finished in the last 10% of frames, averaged over seeds",
            "wall_s": run.session_s(),
        }
        games = list(results)
        plot_bars(
            run.path / "human_normalised.png",
            games,
            [results[g]["human_normalised"] or 0.0 for g in games],
            title=f"{summary['objective']} on Atari ({frames:,} frames)",
            ylabel="human-normalised score",
        )
        run.finish(summary)
    print_atari_table(summary)
    return summary


def _atari_agent(options, objective, eta, name, frames, agent_config, agents: Path, checkpoint: Path, k: int):
    """The score of one fresh agent on game ``name`` (seed ``options.seed + k``); resumed or reused with --resume."""
    from training.atari import train_atari

    seed = options.seed + k
    agent_out = agents / f"{name.split('/', 1)[1]}-seed{seed}"
    if options.resume and (agent_out / "summary.json").exists():
        return json.loads((agent_out / "summary.json").read_text())["score"]
    resume = options.resume and (agent_out / "config.json").exists()
    if agent_out.exists() and not resume:
        shutil.rmtree(agent_out)  # a previous evaluation into this folder, now run again
    config = {"command": "evaluate agent", "env": name, "seed": seed, "frames": frames, "checkpoint": str(checkpoint)}
    run = Run(agent_out, config, what=f"{name} run", resume=resume, progress=options.progress)
    return train_atari(name, objective, eta, frames, seed, run, agent_config, progress=options.progress)["score"]


def _atari_result(name: str, scores: list[float | None], frames: int) -> dict[str, Any]:
    from lpg.envs.atari_scores import human_normalised, reference_scores

    finite = [x for x in scores if x is not None]
    score = float(np.mean(finite)) if finite else None
    random_score, human_score = reference_scores(name)
    return {
        "score": score,
        "score_per_seed": scores,
        "human_normalised": None if score is None else human_normalised(name, score),
        "random_score": random_score,
        "human_score": human_score,
        "frames": frames,
    }
