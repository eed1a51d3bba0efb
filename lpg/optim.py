"""Agent optimisers that meta-gradients can flow through.

``make_optimizer`` builds an optax chain. Its Adam is optax's moment updates
with one change: the second-moment denominator ``sqrt(nu_hat + eps_root) + eps``
is stop-gradiented, and ``eps_root > 0``. Differentiating through the
denominator of Adam makes meta-gradients NaN (sqrt at 0) or explode; keeping
it out of the meta-gradient is the standard remedy (Xu et al. 2018 and the
STAC/FRODO code bases differentiate through SGD or through Adam's direction
only). We write this transformation ourselves because optax's
``scale_by_adam`` has no option to stop the gradient there. For plain
(non-meta) training the values are exactly those of Adam with ``eps_root``.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from lpg.errors import InvalidConfigError
from lpg.validation import NON_NEGATIVE, Config, Range

OPTIMIZERS = ("adam", "sgd", "rmsprop")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig(Config):
    """The agent's optimiser.

    Attributes:
      name: adam (meta-differentiable, denominator stop-gradiented), sgd or rmsprop.
      learning_rate: step size.
      schedule: constant, or linear (annealed linearly to 0 over the run).
      max_grad_norm: clip gradients to this global norm before the update (0 = off).
      b1: Adam's first-moment decay.
      b2: Adam's second-moment decay (also RMSProp's decay).
      eps: added to the denominator outside the square root.
      eps_root: Adam only: added inside the square root; must be > 0 for meta-gradients
        (RMSProp's denominator is stop-gradiented and needs none).
    """

    name: str = "adam"
    learning_rate: float = 1e-3
    schedule: str = "constant"
    max_grad_norm: float = 0.0
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    eps_root: float = 1e-8

    WHAT = "optimizer"
    RANGES = {
        "max_grad_norm": NON_NEGATIVE,
        "b1": Range(0.0, 1.0, open_high=True),
        "b2": Range(0.0, 1.0, open_high=True),
        "eps": NON_NEGATIVE,
        "eps_root": NON_NEGATIVE,
    }

    def check(self) -> None:
        if self.name not in OPTIMIZERS:
            raise InvalidConfigError(f"unknown optimizer {self.name!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in ("constant", "linear"):
            raise InvalidConfigError(f"unknown learning-rate schedule {self.schedule!r}; choose constant or linear")
        if not (isinstance(self.learning_rate, (int, float)) and self.learning_rate > 0):
            raise InvalidConfigError(f"learning rate must be positive, got {self.learning_rate}")
        if self.name == "adam" and not self.eps_root > 0:
            raise InvalidConfigError("adam needs eps_root > 0 (meta-gradients through Adam are NaN otherwise)")


class ScaleByMetaAdamState(NamedTuple):
    count: chex.Array
    mu: optax.Updates
    nu: optax.Updates


def scale_by_meta_adam(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, eps_root: float = 1e-8
) -> optax.GradientTransformation:
    """Adam's scaling with the second-moment denominator stop-gradiented.

    Kingma & Ba 2015, Alg. 1: ``mu_hat / (sqrt(nu_hat + eps_root) + eps)``;
    gradients w.r.t. upstream meta-parameters flow through ``mu`` only.
    """

    def init_fn(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return ScaleByMetaAdamState(jnp.zeros([], jnp.int32), zeros, jax.tree.map(jnp.zeros_like, params))

    def update_fn(updates, state, params=None):
        del params
        count = state.count + 1
        mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, updates)
        nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * jnp.square(jax.lax.stop_gradient(g)), state.nu, updates)
        mu_correction = 1 - b1 ** count.astype(jnp.float32)
        nu_correction = 1 - b2 ** count.astype(jnp.float32)

        def scale(m, v):
            denominator = jnp.sqrt(jax.lax.stop_gradient(v) / nu_correction + eps_root) + eps
            return (m / mu_correction) / denominator

        return jax.tree.map(scale, mu, nu), ScaleByMetaAdamState(count, mu, jax.lax.stop_gradient(nu))

    return optax.GradientTransformation(init_fn, update_fn)


def scale_by_meta_rms(decay: float = 0.99, eps: float = 1e-5) -> optax.GradientTransformation:
    """RMSProp's scaling ``g / (sqrt(nu) + eps)`` with ``nu`` stop-gradiented.

    Tieleman & Hinton 2012, with eps outside the square root as in the A2C
    reference (PyTorch RMSprop). Meta-gradients flow through ``g`` only: the
    derivative of ``sqrt(nu)`` at ``nu = 0`` is infinite, so a differentiable
    denominator gives NaN meta-gradients (e.g. FRODO on Atari).
    """

    def init_fn(params):
        return optax.ScaleByRmsState(nu=jax.tree.map(jnp.zeros_like, params))

    def update_fn(updates, state, params=None):
        del params
        nu = jax.tree.map(
            lambda v, g: decay * v + (1 - decay) * jnp.square(jax.lax.stop_gradient(g)), state.nu, updates
        )
        nu = jax.lax.stop_gradient(nu)
        return jax.tree.map(lambda g, v: g / (jnp.sqrt(v) + eps), updates, nu), optax.ScaleByRmsState(nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


def make_optimizer(config: OptimizerConfig, total_updates: int | None = None) -> optax.GradientTransformation:
    """Builds the agent optimiser; ``total_updates`` is needed by the linear schedule."""
    if config.schedule == "linear":
        if not total_updates:
            raise InvalidConfigError("the linear learning-rate schedule needs the total number of updates")
        learning_rate = optax.linear_schedule(config.learning_rate, 0.0, total_updates)
    else:
        learning_rate = config.learning_rate
    chain = []
    if config.max_grad_norm > 0:
        chain.append(optax.clip_by_global_norm(config.max_grad_norm))
    if config.name == "adam":
        chain.append(scale_by_meta_adam(config.b1, config.b2, config.eps, config.eps_root))
    elif config.name == "rmsprop":
        # eps outside the square root, as documented above and as in the A2C
        # reference. optax.scale_by_rms puts it inside by default: with eps =
        # 1e-5 that floors the denominator at 3.2e-3, about 30x the RMS of a
        # Nature-CNN gradient, and Pong A2C did not learn in 10M frames.
        chain.append(scale_by_meta_rms(config.b2, config.eps))
    chain.append(optax.scale_by_learning_rate(learning_rate))
    return optax.chain(*chain)
