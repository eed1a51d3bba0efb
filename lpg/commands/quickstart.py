"""``lpg quickstart``: a small offline discovery on toy MDPs, then an evaluation of the shipped objective.

Two parts, both on toy MDPs and both small enough for a 2-core CPU (about
2-4 minutes in all with the defaults):

1. ``discover_part``: offline LPG discovery with meta-gradients
   (``lpg.commands.discover_offline``) on ``--envs`` for ``--meta-steps``
   meta-steps; writes the run folder ``OUT/discovery`` (objective checkpoint,
   metrics.jsonl, meta_training.png, summary.json with the A2C-normalised
   scores of fresh agents trained with the just-discovered objective).
2. ``evaluate_part``: fresh agents trained with the *shipped* objective
   (``checkpoints/lpg-toy-v1``, discovered by this project's own code, see its
   ``MODEL.md``) on ``--eval-envs``, compared with A2C and a uniform-random
   policy on the same budget (``evaluation.evaluate.evaluate_objective``) with
   the agent set-up recorded in the checkpoint (``metadata["evaluation"]``);
   writes ``OUT/evaluation`` (summary.json, results.md, a2c_normalised.png).

The quickstart's discovery is far too short to match the shipped objective;
it shows the machinery working. ``lpg discover offline`` with the command in
``checkpoints/lpg-toy-v1/MODEL.md`` reproduces the shipped one.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from lpg.errors import CheckpointError, InvalidConfigError
from lpg.validation import NON_NEGATIVE_INT, POSITIVE_COUNT, Config

__all__ = ["SHIPPED_CHECKPOINT", "QuickstartCommand", "discover_part", "evaluate_part", "shipped_checkpoint"]

SHIPPED_CHECKPOINT = Path(__file__).resolve().parents[2] / "checkpoints" / "lpg-toy-v1"


def shipped_checkpoint(path: str | Path | None = None) -> Path:
    """The shipped objective checkpoint folder (``checkpoints/lpg-toy-v1`` of the repository) or ``path``.

    Raises:
      CheckpointError: the folder does not exist or holds no objective checkpoint.
    """
    folder = Path(path) if path is not None else SHIPPED_CHECKPOINT
    if not folder.is_dir():
        raise CheckpointError(
            f"the shipped objective checkpoint {str(folder)!r} is missing; it comes with a clone of the repository "
            "(checkpoints/lpg-toy-v1); restore it with `git checkout -- checkpoints` or pass --checkpoint"
        )
    from lpg.checkpoint import read_objective_metadata

    read_objective_metadata(folder)  # raises CheckpointError with the reason if it is not a valid checkpoint
    return folder


@dataclasses.dataclass(frozen=True)
class QuickstartCommand(Config):
    """Quickstart: a small offline LPG discovery on toy MDPs (minutes on 2 CPU cores), then an evaluation of
    the shipped discovered objective (checkpoints/lpg-toy-v1) against A2C and a random policy.

    Writes OUT/discovery (objective/ checkpoint, metrics.jsonl, meta_training.png,
    summary.json) and OUT/evaluation (summary.json, results.md, a2c_normalised.png),
    and prints where the files went and the A2C-normalised scores
    ((return - random) / (A2C - random), the denominator floored at max(0.1, 0.1 |random|):
    0 = random policy, 1 = A2C).
    """

    out: str = "runs/quickstart"
    """Output folder (created; must be empty or hold this same quickstart: then an interrupted part continues and a finished one is reused)."""
    envs: str = "chain/short,gridworld/sparse"
    """Environments of the small discovery (names, globs or named sets)."""
    meta_steps: int = 1000
    """Meta-gradient steps of the small discovery (about 2.5 minutes on 2 CPU cores; 0 skips the discovery part)."""
    num_lifetimes: int = 8
    """Lifetimes trained in parallel during the small discovery."""
    num_envs: int = 16
    """Environments per agent (discovery and evaluation)."""
    unroll_length: int = 50
    """Steps per rollout (one agent update per rollout) during the small discovery."""
    lifetime_updates: int = 100
    """Agent updates per lifetime of the small discovery (and of its final evaluation)."""
    eval_envs: str = "chain/short,gridworld/sparse,gridworld/rand_small_sparse"
    """Environments the shipped objective is evaluated on (training ones and held-out ones)."""
    eval_steps: int | None = None
    """Environment steps per agent when evaluating the shipped objective (default: the budget recorded in the checkpoint)."""
    eval_seeds: int = 3
    """Fresh agents per environment (vmapped; A2C uses the same seeds)."""
    checkpoint: str | None = None
    """Objective checkpoint to evaluate (default: the shipped checkpoints/lpg-toy-v1)."""
    seed: int = 0
    """Random seed."""
    progress: bool = True
    """Show progress bars with ETA on stderr."""

    RANGES = {
        "meta_steps": NON_NEGATIVE_INT,
        "num_lifetimes": POSITIVE_COUNT,
        "num_envs": POSITIVE_COUNT,
        "unroll_length": POSITIVE_COUNT,
        "lifetime_updates": POSITIVE_COUNT,
        "eval_seeds": POSITIVE_COUNT,
        "eval_steps": POSITIVE_COUNT,
    }
    FLAGS = True

    def run(self) -> int:
        start = time.perf_counter()
        checkpoint = shipped_checkpoint(self.checkpoint)  # fail before the discovery if it is missing
        out = Path(self.out)
        discovery = discover_part(self) if self.meta_steps > 0 else None
        evaluation = evaluate_part(self, checkpoint)
        wall = time.perf_counter() - start

        from evaluation.evaluate import results_table

        print()
        if discovery is not None:
            print(
                f"1. small discovery ({discovery['method']}, {discovery['meta_steps']} meta-steps on {', '.join(discovery['envs'])}, {discovery['wall_s']:.0f}s):"
            )
            print(results_table(discovery["evaluation"]))
            print(
                f"   files: {out / 'discovery'} (objective/ is its checkpoint: `lpg evaluate {out / 'discovery' / 'objective'}`)"
            )
            print()
        print(
            f"2. shipped objective {checkpoint.name} ({evaluation['steps']:,} steps per agent, {self.eval_seeds} seed{'s' if self.eval_seeds != 1 else ''}; held out: {', '.join(evaluation['held_out']) or 'none'}):"
        )
        print(results_table(evaluation))
        print(f"   files: {out / 'evaluation'} (summary.json, results.md, a2c_normalised.png)")
        print(f"quickstart done in {wall:.0f}s")
        return 0


def discover_part(command: QuickstartCommand) -> dict[str, Any]:
    """The small offline discovery of the quickstart (writes ``OUT/discovery``); returns its summary."""
    from lpg.checkpoint import latest_training_step
    from lpg.commands.discover_offline import OfflineOptions, discover_offline

    out = Path(command.out) / "discovery"
    options = OfflineOptions(
        envs=command.envs,
        method="grad",
        out=str(out),
        resume=(out / "summary.json").exists() or latest_training_step(out / "training_state") is not None,
        meta_steps=command.meta_steps,
        seed=command.seed,
        objective_config=("hidden_size=16",),
        num_lifetimes=command.num_lifetimes,
        num_envs=command.num_envs,
        unroll_length=command.unroll_length,
        lifetime_updates=command.lifetime_updates,
        lr_min=1.5e-2,
        lr_max=6e-2,
        meta_lr=3e-3,
        eval_every=0,
        eval_updates=command.lifetime_updates,
        eval_seeds=command.eval_seeds,
        checkpoint_every=0,
        progress=command.progress,
    )
    return discover_offline(options)


def evaluate_part(command: QuickstartCommand, checkpoint: Path) -> dict[str, Any]:
    """Evaluates the objective checkpoint on ``command.eval_envs`` (writes ``OUT/evaluation``); returns the summary.

    This is ``lpg evaluate`` (``lpg.commands.evaluate.run_evaluate``): agents use
    the set-up recorded in the checkpoint (``metadata["evaluation"]``: batch
    shape, optimiser, budget), so the numbers are comparable with its MODEL.md.
    The summary adds ``trained_on`` and ``held_out``; ``results.md`` holds the table.
    """
    from evaluation.evaluate import checkpoint_train_config, results_table
    from lpg.checkpoint import read_objective_metadata
    from lpg.commands.evaluate import PARTIAL_RESULTS, EvaluateOptions, run_evaluate
    from lpg.run_io import write_json_atomic

    metadata = read_objective_metadata(checkpoint)
    if command.eval_steps is None and (
        checkpoint_train_config(metadata) is None or not metadata["evaluation"].get("steps")
    ):
        raise InvalidConfigError(f"{str(checkpoint)!r} records no evaluation set-up and budget; pass --eval-steps")
    out = Path(command.out) / "evaluation"
    options = EvaluateOptions(
        str(checkpoint),
        envs=command.eval_envs,
        steps=command.eval_steps,
        seeds=command.eval_seeds,
        seed=command.seed,
        out=str(out),
        progress=command.progress,
        resume=(out / "summary.json").exists() or (out / PARTIAL_RESULTS).exists(),
    )
    summary = run_evaluate(options, show_table=False)
    if "held_out" in summary:  # a finished evaluation of an earlier quickstart, reused as it is
        return summary
    trained_on = list(metadata.get("envs") or [])
    summary.update(trained_on=trained_on, held_out=[n for n in summary["envs"] if n not in trained_on])
    write_json_atomic(out / "summary.json", summary)
    (out / "results.md").write_text(results_table(summary) + "\n")
    return summary
