"""``lpg evaluate``: the command-line front of ``evaluation.evaluate.run_evaluate``."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import tyro

__all__ = ["EvaluateCommand"]


@dataclasses.dataclass(frozen=True)
class EvaluateCommand:
    """Train fresh agents with a saved objective on each environment; compare with A2C and a random policy.

    Writes to --out: summary.json (results[env] with return, a2c_return,
    random_return and a2c_normalised = (return - random) / (a2c - random);
    mean_a2c_normalised; the checkpoint's metadata), metrics.jsonl (one row per
    environment), a TensorBoard event file and a2c_normalised.png, and prints a
    table. Returns are the mean undiscounted return of the episodes completed
    in the last 10% of training steps, averaged over seeds. On Atari games
    (--envs atari/Pong,...; --frames): results[game] with score,
    human_normalised = (score - random) / (human - random), random_score and
    human_score; median_human_normalised; human_normalised.png; agents/ (one
    resumable run per game and seed).
    """

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

    def run(self) -> int:
        from evaluation.evaluate import EvaluateOptions, run_evaluate

        options = EvaluateOptions(**{f.name: getattr(self, f.name) for f in dataclasses.fields(EvaluateOptions)})
        summary = run_evaluate(options)
        if "median_human_normalised" in summary:
            median = summary["median_human_normalised"]
            print(
                f"{summary['objective']} on {len(summary['results'])} Atari game(s): median human-normalised score "
                f"{'n/a' if median is None else f'{median:.3f}'} ({summary['wall_s']:.0f}s); results in {self.out}/summary.json"
            )
            return 0
        mean = summary["mean_a2c_normalised"]
        print(
            f"{summary['objective']} on {len(summary['results'])} environment(s): mean A2C-normalised score "
            f"{'n/a' if mean is None else f'{mean:.2f}'} ({summary['wall_s']:.1f}s); results in {self.out}/summary.json "
            f"and {self.out}/a2c_normalised.png"
        )
        return 0
