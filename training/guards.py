"""Non-finite guards inside jit: an update whose gradient, meta-gradient or fitness is not finite is skipped.

Parameters and optimiser state keep their previous values and the step
reports ``nonfinite_skipped = 1`` (``SKIP_KEY``). ``jnp.where`` with a true
condition returns the new value bit for bit, so guarded runs equal unguarded
ones whenever nothing is skipped. The host side (counting consecutive skips,
stopping a run) is ``lpg.harness``.
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp

__all__ = ["SKIP_KEY", "all_finite", "guarded_apply", "select_tree"]

SKIP_KEY = "nonfinite_skipped"  # metric: 1.0 where the step skipped an update, else 0.0


def all_finite(tree: Any) -> chex.Array:
    """bool [], True when every element of every leaf of ``tree`` is finite."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def select_tree(condition: chex.Array, on_true: Any, on_false: Any) -> Any:
    """Leaf-wise ``jnp.where(condition, on_true, on_false)`` for a scalar bool ``condition``."""
    return jax.tree.map(lambda a, b: jnp.where(condition, a, b), on_true, on_false)


def guarded_apply(gradient: Any, new: Any, old: Any) -> tuple[Any, chex.Array]:
    """``new`` if ``gradient`` is finite, else ``old``; and the skip flag (float32 [], 1.0 = skipped)."""
    finite = all_finite(gradient)
    return select_tree(finite, new, old), 1.0 - finite.astype(jnp.float32)
