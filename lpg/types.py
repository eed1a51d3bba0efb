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

import dataclasses
from collections.abc import Mapping
from typing import Any

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


@dataclasses.dataclass(frozen=True)
class Head:
    """An extra output head of the agent network, besides the policy logits and the value.

    Attributes:
      name: the key of its output in ``AgentOutput.extra``.
      size: output units; the output is ``[..., size]``.
      per_action: the output is ``[..., size, A]`` (one value per action, e.g.
        the logits of auxiliary policies).
    """

    name: str
    size: int
    per_action: bool = False

    def width(self, num_actions: int) -> int:
        """Output units of the head's final layer."""
        return self.size * (num_actions if self.per_action else 1)


@dataclasses.dataclass(frozen=True)
class AgentHeads:
    """The heads an objective needs the agent network to have, besides policy and value.

    Attributes:
      y_size: size m of LPG's categorical prediction vector y(s)
        (``AgentOutput.y_logits``); 0 = none.
      extra: further heads (``AgentOutput.extra[head.name]``), e.g. STACX's
        auxiliary policies and values or a GVF head for auxiliary questions.
    """

    y_size: int = 0
    extra: tuple[Head, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The checkpoint metadata form: ``{"y_size": m}``, plus ``"extra"`` when there are extra heads."""
        out: dict[str, Any] = {"y_size": int(self.y_size)}
        if self.extra:
            out["extra"] = [dataclasses.asdict(h) for h in self.extra]
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AgentHeads:
        """Inverse of ``to_json``; raises ``ValueError`` on malformed data."""
        y_size = data.get("y_size", 0)
        if not isinstance(y_size, int) or isinstance(y_size, bool) or y_size < 0:
            raise ValueError(f"y_size is {y_size!r}")
        extra = tuple(
            Head(str(h["name"]), int(h["size"]), bool(h.get("per_action", False))) for h in data.get("extra", [])
        )
        return cls(y_size, extra)



@struct.dataclass
class AgentOutput:
    """Outputs of the agent network for a batch of observations.

    Attributes:
      logits: [..., A] policy logits.
      value: [...] state-value estimate v(s).
      y_logits: [..., m] logits of LPG's categorical prediction vector y(s);
        shape [..., 0] when the agent has no y head.
      extra: the further heads an objective declares (``objectives.base.Head``),
        by name: ``[..., size]`` or ``[..., size, A]`` for per-action heads.
    """

    logits: chex.Array
    value: chex.Array
    y_logits: chex.Array
    extra: dict[str, chex.Array] = struct.field(default_factory=dict)


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
