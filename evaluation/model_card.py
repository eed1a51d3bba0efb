"""A shipped objective's evaluation record: two ``lpg evaluate`` summaries written into its checkpoint.

A shipped objective (``checkpoints/NAME``) carries, in ``metadata["evaluation"]``, how its
model card's two tables were measured: the agent set-up (batch shape, optimiser, budget),
the seeds, the training-environment results and the held-out results. ``lpg evaluate
CHECKPOINT`` then uses that set-up by default (``--agent-setup checkpoint``,
``evaluation.evaluate.checkpoint_train_config``), so the card's first table is one command
away. ``record_evaluation`` builds the record from the ``summary.json`` of an evaluation on
the checkpoint's own environments and one on held-out environments, both run with one
agent set-up, and re-saves the checkpoint with it (``eta`` unchanged, checksums renewed,
extra files such as ``MODEL.md`` kept).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from lpg.errors import InvalidConfigError

__all__ = ["evaluation_record", "record_evaluation"]

HOW = (
    "evaluation.evaluate.evaluate_objective(objective, eta, envs, steps, seeds, seed=seed, "
    "train_config=TrainConfig(num_envs, unroll_length, OptimizerConfig(**agent_optimizer))); "
    "lpg evaluate CHECKPOINT --seeds SEEDS reproduces `results`"
)


def _one_setup(summaries: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The single agent set-up (``train_configs`` value) every environment of ``summaries`` used."""
    setups = {repr(sorted(c.items())): c for s in summaries for c in s["train_configs"].values()}
    if len(setups) != 1:
        raise InvalidConfigError(
            "the evaluations used more than one agent set-up; run both with the same --num-envs, "
            "--unroll-length, --learning-rate and --optimizer"
        )
    return dict(next(iter(setups.values())))


def evaluation_record(
    metadata: Mapping[str, Any], training: Mapping[str, Any], held_out: Mapping[str, Any]
) -> dict[str, Any]:
    """``metadata["evaluation"]`` for a checkpoint from two ``lpg evaluate`` summaries.

    Args:
      metadata: the checkpoint's metadata (its ``envs`` are the training environments).
      training: ``summary.json`` of an evaluation on exactly the checkpoint's environments.
      held_out: ``summary.json`` of an evaluation on environments the checkpoint never saw.

    Raises:
      InvalidConfigError: the summaries' environments, budgets, first seeds or agent set-ups do not fit.
    """
    trained_on = list(metadata["envs"])
    if set(training["envs"]) != set(trained_on):
        raise InvalidConfigError(
            f"the training evaluation covers {training['envs']}, not the checkpoint's environments {trained_on}"
        )
    seen = sorted(set(held_out["envs"]) & set(trained_on))
    if seen:
        raise InvalidConfigError(f"the held-out evaluation includes training environments: {', '.join(seen)}")
    saved = metadata["objective"]
    for summary in (training, held_out):
        if summary["objective"] != saved["name"] or summary["objective_config"] != saved["config"]:
            raise InvalidConfigError(
                "an evaluation is not of the checkpoint's objective as saved (another objective, or "
                "--objective-config overrides); evaluate the checkpoint itself"
            )
    for key in ("steps", "seed"):
        if training[key] != held_out[key]:
            raise InvalidConfigError(f"the two evaluations differ in {key}: {training[key]} and {held_out[key]}")
    setup = _one_setup([training, held_out])
    record: dict[str, Any] = {
        "how": HOW,
        "steps": int(training["steps"]),
        "updates": int(training["steps"]) // (setup["num_envs"] * setup["unroll_length"]),
        "num_envs": setup["num_envs"],
        "unroll_length": setup["unroll_length"],
        "agent_optimizer": setup["optimizer"],
        "seeds": int(training["seeds"]),
        "held_out_seeds": int(held_out["seeds"]),
        "seed": int(training["seed"]),
        "held_out_envs": list(held_out["envs"]),
        "results": {"results": training["results"], "mean_a2c_normalised": training["mean_a2c_normalised"]},
        "held_out_results": {"results": held_out["results"], "mean_a2c_normalised": held_out["mean_a2c_normalised"]},
    }
    if "alpha_y" in saved["config"]:  # LPG's weight of the y target, which the agents used
        record["alpha_y"] = saved["config"]["alpha_y"]
    return record


def record_evaluation(
    checkpoint: str | os.PathLike, training: Mapping[str, Any], held_out: Mapping[str, Any]
) -> dict[str, Any]:
    """Writes ``evaluation_record`` into the checkpoint at ``checkpoint``; returns the record."""
    import objectives
    from lpg.checkpoint import save_objective

    objective, eta, metadata = objectives.load(checkpoint)
    record = evaluation_record(metadata, training, held_out)
    save_objective(checkpoint, objective, eta, {**metadata, "evaluation": record})
    return record
