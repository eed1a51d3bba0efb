"""Random draws shared by environments and trainers (core layer: no project imports)."""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp

__all__ = ["log_uniform"]


def log_uniform(key: chex.PRNGKey, low: float, high: float, shape=()) -> chex.Array:
    """Samples of shape ``shape`` whose logarithm is uniform on ``[log low, log high)``."""
    return jnp.exp(jax.random.uniform(key, shape, minval=math.log(low), maxval=math.log(high)))
