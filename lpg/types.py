"""Core data types shared by environments, agents, objectives and trainers.

Time-indexing convention (the IMPALA / rlax "unroll with overlap" convention):

A ``Rollout`` of length T holds T+1 consecutive time steps ``t = 0..T``.
``observation[t]`` is s_t, ``action[t]`` is a_t chosen at s_t by the behaviour
policy whose logits are ``behaviour_logits[t]``. ``reward[t]``, ``discount[t]``
and ``done[t]`` describe the transition that *arrived* at s_t, so the
transition ``s_t --a_t--> s_t+1`` is learned from with

    r_t        = reward[1:]         # [T, B]
    discount_t = discount[1:]       # [T, B]
    a_tm1      = action[:-1]        # [T, B]
    v_tm1      = value[:-1]         # [T, B]
    v_t        = value[1:]          # [T, B]

(rlax naming). The last step of one rollout is the first step of the next, so
no transition is lost. ``reward[0]``/``discount[0]`` belong to the previous
rollout and are never learned from.

Environments auto-reset: when an episode ends on arriving at step t,
``done[t]`` is True, ``discount[t]`` is 0 and ``observation[t]`` is already
the first observation of the next episode. Time-limit truncation is treated
as termination (discount 0): the observation after it belongs to the next
episode, so there is nothing correct to bootstrap from.
"""

from __future__ import annotations

import chex
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class TimeStep:
    """What an environment emits after ``reset`` or ``step`` (one environment).

    Attributes:
      observation: the observation s_t (shape and dtype given by the EnvSpec).
      reward: float32 [], the reward received on arriving at s_t (0 after reset).
      discount: float32 [], 0 if the episode ended on arriving here, else 1.
      done: bool [], True if an episode ended on arriving here (terminated or
        truncated). ``observation`` is then the first one of the next episode.
    """

    observation: chex.Array
    reward: chex.Array
    discount: chex.Array
    done: chex.Array


@struct.dataclass
class AgentOutput:
    """Outputs of the agent network for a batch of observations.

    Attributes:
      logits: [..., A] policy logits.
      value: [...] state-value estimate v(s).
      y_logits: [..., m] logits of LPG's categorical prediction vector y(s);
        shape [..., 0] when the agent has no y head.
    """

    logits: chex.Array
    value: chex.Array
    y_logits: chex.Array


@struct.dataclass
class Rollout:
    """A batch of trajectories, shaped ``[T+1, B, ...]`` (see module docstring).

    Attributes:
      observation: [T+1, B, *obs_shape] observations s_0..s_T.
      action: int32 [T+1, B], a_t taken at s_t (a_T is taken in the next rollout).
      reward: float32 [T+1, B], reward on arriving at s_t.
      discount: float32 [T+1, B], 0 where an episode ended on arriving at s_t.
      done: bool [T+1, B], True where an episode ended on arriving at s_t.
      behaviour_logits: float32 [T+1, B, A], logits of the policy that acted.
      episode_return: float32 [T+1, B], undiscounted return of the episode that
        ended on arriving at s_t (valid where ``done``, 0 elsewhere).
    """

    observation: chex.Array
    action: chex.Array
    reward: chex.Array
    discount: chex.Array
    done: chex.Array
    behaviour_logits: chex.Array
    episode_return: chex.Array

    @property
    def num_steps(self) -> int:
        """T: the number of transitions in the rollout."""
        return self.reward.shape[0] - 1

    @property
    def batch_size(self) -> int:
        return self.reward.shape[1]


def assert_rollout_shapes(rollout: Rollout) -> tuple[int, int]:
    """Checks the ``[T+1, B, ...]`` layout of a rollout; returns (T, B)."""
    t_plus_1, b = rollout.reward.shape
    chex.assert_shape([rollout.action, rollout.discount, rollout.done, rollout.episode_return], (t_plus_1, b))
    chex.assert_shape(rollout.observation, (t_plus_1, b, ...))
    chex.assert_shape(rollout.behaviour_logits, (t_plus_1, b, None))
    return t_plus_1 - 1, b


def empty_like_y(logits: chex.Array) -> chex.Array:
    """A [..., 0] array used as ``y_logits`` by agents without a y head."""
    return jnp.zeros(logits.shape[:-1] + (0,), logits.dtype)
