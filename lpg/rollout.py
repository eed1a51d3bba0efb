"""Acting: a batch of environments stepped by the agent inside ``lax.scan``.

``unroll`` produces the one ``Rollout`` type (``[T+1, B, ...]``, see
``lpg.types``) that every objective and trainer consumes. The actor state
carries the last timestep, so consecutive rollouts overlap by one step and no
transition is lost.
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import struct

from lpg.envs.base import Environment
from lpg.networks import ApplyFn
from lpg.types import Rollout, TimeStep


@struct.dataclass
class ActorState:
    """State of B environments being acted in.

    Attributes:
      env_state: the batched environment state ([B] leading axis).
      timestep: the batched last timestep [B] (s_0 of the next rollout).
      running_return: float32 [B], undiscounted return of the current episodes.
    """

    env_state: Any
    timestep: TimeStep
    running_return: chex.Array


def reset_actors(env: Environment, key: chex.PRNGKey, num_envs: int, share_task: bool = True) -> ActorState:
    """Resets ``num_envs`` environments for one agent.

    With ``share_task`` (the default) all of them get the same task instance
    (same ``reset`` key: same gridworld layout, same chain length and correct
    action), as in LPG where one lifetime is one task and the agent's parallel
    environments are copies of it. Their episodes diverge from the first step
    on, since each environment steps with its own key. Without it, each
    environment draws its own task instance.
    """
    keys = jnp.broadcast_to(key, (num_envs,) + key.shape) if share_task else jax.random.split(key, num_envs)
    env_state, timestep = jax.vmap(env.reset)(keys)
    return ActorState(env_state, timestep, jnp.zeros((num_envs,), jnp.float32))


def unroll(
    env: Environment,
    apply_fn: ApplyFn,
    params: Any,
    actor: ActorState,
    key: chex.PRNGKey,
    num_steps: int,
) -> tuple[ActorState, Rollout]:
    """Acts for ``num_steps`` steps in every environment of ``actor``.

    Actions are sampled from ``softmax(apply_fn(params, obs).logits)``.

    Returns:
      The new actor state and a Rollout with T = ``num_steps``: B = number of
      environments. ``action[T]`` and ``behaviour_logits[T]`` are zeros (the
      action at s_T is taken by the next rollout).
    """
    num_envs = actor.running_return.shape[0]

    def step(carry, step_key):
        env_state, timestep, running_return = carry
        act_key, env_key = jax.random.split(step_key)
        logits = apply_fn(params, timestep.observation).logits
        action = jax.random.categorical(act_key, logits).astype(jnp.int32)
        env_state, next_timestep = jax.vmap(env.step)(env_state, action, jax.random.split(env_key, num_envs))
        running_return = running_return + next_timestep.reward
        episode_return = jnp.where(next_timestep.done, running_return, 0.0)
        running_return = jnp.where(next_timestep.done, 0.0, running_return)
        outputs = (timestep, action, logits, episode_return)
        return (env_state, next_timestep, running_return), outputs

    carry = (actor.env_state, actor.timestep, actor.running_return)
    (env_state, last, running_return), (timesteps, actions, logits, episode_returns) = jax.lax.scan(
        step, carry, jax.random.split(key, num_steps)
    )

    def append(xs, x):
        return jnp.concatenate([xs, x[None]], axis=0)

    rollout = Rollout(
        observation=append(timesteps.observation, last.observation),
        action=append(actions, jnp.zeros_like(actions[0])),
        reward=append(timesteps.reward, last.reward),
        discount=append(timesteps.discount, last.discount),
        done=append(timesteps.done, last.done),
        behaviour_logits=append(logits, jnp.zeros_like(logits[0])),
        episode_return=jnp.concatenate([jnp.zeros_like(episode_returns[:1]), episode_returns], axis=0),
    )
    return ActorState(env_state, last, running_return), rollout


def episode_stats(rollout: Rollout) -> dict[str, chex.Array]:
    """Sum and count of the episodes that ended within the rollout's transitions."""
    done = rollout.done[1:]
    return {
        "episode_return_sum": jnp.sum(jnp.where(done, rollout.episode_return[1:], 0.0)),
        "episode_count": jnp.sum(done.astype(jnp.float32)),
    }
