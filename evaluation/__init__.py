"""Transfer evaluation of objectives: fresh agents trained by a frozen objective vs A2C and random.

The names below are imported lazily, so ``evaluation.commands`` (the CLI) stays
cheap to import.
"""

from __future__ import annotations

__all__ = ["EvaluateOptions", "evaluate_objective", "results_table", "run_evaluate"]


def __getattr__(name: str):
    if name in __all__:
        from evaluation import evaluate

        return getattr(evaluate, name)
    raise AttributeError(f"module 'evaluation' has no attribute {name!r}")
