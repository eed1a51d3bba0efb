"""Agent networks (flax linen): a torso chosen by environment kind, and heads.

Torsos:

* ``tabular``: a lookup table indexed by the observation index. Equivalent to
  a linear layer on the one-hot observation, which is how LPG's tabular agents
  are defined (Oh et al. 2020, App. A.1); the table directly holds the logits,
  value and y-logits of each state.
* ``mlp``: flatten, then dense layers with ReLU (toy MDPs with vector
  observations, e.g. Catch and the distractor chain).
* ``snake_conv``: Bonnet et al. 2022 App. C.3: two blocks of conv 3x3/32
  (stride 1) + max-pool 2, dense 40, then heads MLP(30, A) and MLP(30, 1).
* ``minatar_conv``: the MinAtar network (Young & Tian 2019, "MinAtar: An
  Atari-Inspired Testbed for Thorough and Reproducible Reinforcement Learning
  Experiments", arXiv:1903.03176, Sec. 4; github.com/kenjyoung/MinAtar,
  ``examples/AC_lambda.py``): one conv 3x3/16 (stride 1, no padding:
  [10, 10, C] -> [8, 8, 16]), dense 128, ReLU after each; for the
  ``gymnax/*-MinAtar`` games' channel grids.
* ``nature_cnn``: the Nature-DQN torso (Mnih et al. 2015): conv 8x8/32 s4,
  4x4/64 s2, 3x3/64 s1, dense 512; input uint8 [4, 84, 84] scaled to [0, 1].
  Initialised as OpenAI Baselines' A2C (the common reference implementation
  of Mnih et al. 2016): orthogonal weights with gain sqrt(2) in the
  torso, 0.01 on the policy and y heads (a near-uniform first policy) and 1 on
  the value head; zero biases. The other torsos keep flax's defaults.

Heads: policy logits [A], value [], and the heads the objective declares
(``lpg.types.AgentHeads``): the logits of LPG's categorical prediction y(s)
[m] when ``y_size > 0``, and each extra head by name (``AgentOutput.extra``:
``[size]``, or ``[size, A]`` for a per-action head).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from lpg.envs.base import EnvSpec
from lpg.errors import InvalidConfigError
from lpg.types import AgentHeads, AgentOutput, Head
from lpg.validation import NON_NEGATIVE_INT, POSITIVE_INT, Range, check_ranges, check_value

TORSOS = ("auto", "tabular", "mlp", "snake_conv", "minatar_conv", "nature_cnn")
CONV_TORSOS = ("snake_conv", "minatar_conv", "nature_cnn")
CPU_CONV_CHUNK = 48  # rows per chunk of a big conv batch on CPU (see ``backend_code_path``)
CHUNKED_CONV_TORSOS = ("snake_conv", "nature_cnn")  # the conv torsos that chunk on CPU (not minatar_conv)


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """Architecture of the agent network.

    Attributes:
      torso: one of auto, tabular, mlp, snake_conv, minatar_conv, nature_cnn.
        ``auto`` picks tabular for index observations, snake_conv for Snake,
        minatar_conv for gymnax's MinAtar grids ([10, 10, C]), nature_cnn for
        Atari and mlp otherwise (flat and 2-D observations are flattened).
      hidden_sizes: widths of the MLP torso's dense layers (each >= 1).
      head_hidden: width of a hidden layer in each head; 0 = the torso's
        default: linear heads, except snake_conv, whose heads get a hidden
        layer of 30 as in Bonnet et al.
      chunk_size: evaluate the network on big batches in unrolled chunks of
        this many observations (0 = never; -1 = auto: 48 for snake_conv and nature_cnn on
        CPU, where XLA's convolution gradients are about 2x faster on chunks
        than on one large batch; measured on the 2-core development machine:
        Nature-DQN gradient on 336 frames 668 ms whole, 277-327 ms in chunks
        of 16-48). Results are identical up to float rounding.
    """

    torso: str = "auto"
    hidden_sizes: tuple[int, ...] = (64, 64)
    head_hidden: int = 0
    chunk_size: int = -1

    def validate(self) -> None:
        """Raises ``InvalidConfigError`` for a width below 1 (head_hidden: below 0) or a chunk_size below -1.

        Called by ``make_agent`` and, before a command runs, by the command
        line (not from ``__post_init__``: tyro would print its own error box).
        """
        for width in self.hidden_sizes:
            check_value("network", "each hidden size", width, POSITIVE_INT)
        check_ranges("network", self, {"head_hidden": NON_NEGATIVE_INT, "chunk_size": Range(-1, integer=True)})


def resolve_torso(config: NetworkConfig, spec: EnvSpec) -> str:
    if config.torso not in TORSOS:
        raise InvalidConfigError(f"unknown torso {config.torso!r}; choose one of {', '.join(TORSOS)}")
    if config.torso != "auto":
        if config.torso == "tabular" and not spec.is_tabular:
            raise InvalidConfigError(
                f"torso 'tabular' needs index observations; {spec.name} has {spec.observation_dtype}"
            )
        return config.torso
    if spec.is_tabular:
        return "tabular"
    if spec.kind == "atari":
        return "nature_cnn"
    if spec.name == "snake":
        return "snake_conv"
    if spec.kind == "gymnax" and len(spec.observation_shape) == 3:
        return "minatar_conv"
    return "mlp"


_TORSO_GAIN = 2.0**0.5  # ReLU gain of the orthogonal initialisation (nature_cnn only)


class _Heads(nn.Module):
    num_actions: int
    heads: AgentHeads
    head_hidden: int
    orthogonal: bool = False  # nature_cnn: output gains 0.01 (policy, y) and 1 (value)

    @nn.compact
    def __call__(self, h: chex.Array) -> AgentOutput:
        def head(out: int, name: str, gain: float) -> chex.Array:
            x = h
            kw = {"kernel_init": nn.initializers.orthogonal(_TORSO_GAIN)} if self.orthogonal else {}
            if self.head_hidden:
                x = nn.relu(nn.Dense(self.head_hidden, name=f"{name}_hidden", **kw)(x))
            kw = {"kernel_init": nn.initializers.orthogonal(gain)} if self.orthogonal else {}
            return nn.Dense(out, name=name, **kw)(x)

        logits = head(self.num_actions, "policy", 0.01)
        value = head(1, "value", 1.0)[..., 0]
        y_size = self.heads.y_size
        y_logits = head(y_size, "y", 0.01) if y_size else jnp.zeros(h.shape[:-1] + (0,), h.dtype)
        extra = {}
        for spec in self.heads.extra:
            out = head(spec.width(self.num_actions), spec.name, 0.01)
            extra[spec.name] = _shape_head(out, spec, self.num_actions)
        return AgentOutput(logits=logits, value=value, y_logits=y_logits, extra=extra)


def _shape_head(out: chex.Array, spec: Head, num_actions: int) -> chex.Array:
    """A head's flat output ``[..., width]`` as ``[..., size]`` or ``[..., size, A]`` (per-action heads)."""
    return out.reshape(out.shape[:-1] + ((spec.size, num_actions) if spec.per_action else (spec.size,)))


class AgentNetwork(nn.Module):
    """Maps a batch of observations ``[N, *obs_shape]`` to an ``AgentOutput`` ``[N, ...]``."""

    num_actions: int
    torso: str
    heads: AgentHeads = AgentHeads()
    num_observations: int = 0
    hidden_sizes: tuple[int, ...] = (64, 64)
    head_hidden: int = 0

    @nn.compact
    def __call__(self, obs: chex.Array) -> AgentOutput:
        if self.torso == "tabular":
            # One table row per state: [logits | value | y_logits | extra heads], zero-initialised
            # so every tabular agent starts from the uniform policy and v = 0.
            widths = [self.num_actions, 1, self.heads.y_size] + [h.width(self.num_actions) for h in self.heads.extra]
            table = self.param("table", nn.initializers.zeros, (self.num_observations, sum(widths)))
            parts = jnp.split(table[obs], list(itertools.accumulate(widths[:-1])), axis=-1)
            logits, value, y_logits = parts[:3]
            extra = {h.name: _shape_head(x, h, self.num_actions) for h, x in zip(self.heads.extra, parts[3:])}
            return AgentOutput(logits=logits, value=value[..., 0], y_logits=y_logits, extra=extra)
        if self.torso == "mlp":
            h = obs.reshape(obs.shape[0], -1).astype(jnp.float32)
            for width in self.hidden_sizes:
                h = nn.relu(nn.Dense(width)(h))
        elif self.torso == "snake_conv":
            h = obs.astype(jnp.float32)
            for _ in range(2):
                h = nn.relu(nn.Conv(32, (3, 3), strides=1, padding="SAME")(h))
                h = nn.max_pool(h, (2, 2), strides=(2, 2))
            h = nn.relu(nn.Dense(40)(h.reshape(h.shape[0], -1)))
        elif self.torso == "minatar_conv":
            h = nn.relu(nn.Conv(16, (3, 3), strides=1, padding="VALID")(obs.astype(jnp.float32)))
            h = nn.relu(nn.Dense(128)(h.reshape(h.shape[0], -1)))
        elif self.torso == "nature_cnn":
            init = nn.initializers.orthogonal(_TORSO_GAIN)
            h = jnp.transpose(obs, (0, 2, 3, 1)).astype(jnp.float32) / 255.0  # [N, 4, 84, 84] -> NHWC
            h = nn.relu(nn.Conv(32, (8, 8), strides=4, padding="VALID", kernel_init=init)(h))
            h = nn.relu(nn.Conv(64, (4, 4), strides=2, padding="VALID", kernel_init=init)(h))
            h = nn.relu(nn.Conv(64, (3, 3), strides=1, padding="VALID", kernel_init=init)(h))
            h = nn.relu(nn.Dense(512, kernel_init=init)(h.reshape(h.shape[0], -1)))
        else:
            raise InvalidConfigError(f"unknown torso {self.torso!r}")
        return _Heads(self.num_actions, self.heads, self.head_hidden, orthogonal=self.torso == "nature_cnn")(h)


@dataclasses.dataclass(frozen=True)
class Agent:
    """An agent network bound to an environment spec.

    ``apply(params, obs)`` accepts observations with any number of leading
    batch dimensions (``[*lead, *obs_shape]``) and returns outputs with the
    same leading dimensions, so it serves acting (``[B]``) and learning
    (``[T+1, B]``) alike.

    ``slow_rolled_scan`` is True for conv torsos on CPU, where a gradient of
    the network inside a rolled ``lax.scan`` is 5-19x slower than the same
    update called from a Python loop (measured here: Snake A2C update 506 ms
    rolled vs 105 ms looped); trainers then loop on the host instead.
    """

    network: AgentNetwork
    observation_shape: tuple[int, ...]
    observation_dtype: str
    chunk_size: int = 0
    slow_rolled_scan: bool = False

    def init(self, key: chex.PRNGKey) -> Any:
        dummy = jnp.zeros((1,) + self.observation_shape, self.observation_dtype)
        return self.network.init(key, dummy)

    def apply(self, params: Any, obs: chex.Array) -> AgentOutput:
        lead = obs.shape[: obs.ndim - len(self.observation_shape)]
        flat = obs.reshape((-1,) + self.observation_shape)
        size = self.chunk_size
        if size and flat.shape[0] > size:
            chunks = [self.network.apply(params, flat[i : i + size]) for i in range(0, flat.shape[0], size)]
            out = jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0), *chunks)
        else:
            out = self.network.apply(params, flat)
        return jax.tree.map(lambda x: x.reshape(lead + x.shape[1:]), out)


def make_agent(spec: EnvSpec, config: NetworkConfig = NetworkConfig(), heads: AgentHeads = AgentHeads()) -> Agent:
    """Builds the agent network for ``spec`` with the ``heads`` an objective declares (``objective.heads``).

    Raises:
      InvalidConfigError: ``config`` is invalid (``NetworkConfig.validate``) or its torso does not fit ``spec``.
    """
    config.validate()
    torso = resolve_torso(config, spec)
    head_hidden = config.head_hidden or (30 if torso == "snake_conv" else 0)
    network = AgentNetwork(
        num_actions=spec.num_actions,
        torso=torso,
        heads=heads,
        num_observations=spec.num_observations or 0,
        hidden_sizes=tuple(config.hidden_sizes),
        head_hidden=head_hidden,
    )
    chunk_size, slow_rolled_scan = backend_code_path(torso)
    chunk_size = config.chunk_size if config.chunk_size >= 0 else chunk_size
    return Agent(network, tuple(spec.observation_shape), spec.observation_dtype, chunk_size, slow_rolled_scan)


def backend_code_path(torso: str, backend: str | None = None) -> tuple[int, bool]:
    """``(chunk_size, slow_rolled_scan)`` for a torso on a JAX backend (default: ``jax.default_backend()``).

    Two CPU work-arounds, measured on a 2-core CPU: a conv-net gradient inside a
    rolled ``lax.scan`` is 5-19x slower than a host loop over the jitted update
    (``slow_rolled_scan``: trainers then loop on the host), and big conv batches
    run faster in chunks of 48 (``chunk_size``). On a GPU or TPU neither holds:
    the whole update stays one compiled ``lax.scan`` over unchunked batches.

    ``minatar_conv`` takes the host loop but not the chunks: measured on
    gymnax/Breakout-MinAtar, A2C, 64 envs x T = 20, 2-core CPU: 791 ms per
    update in a rolled scan, 115-119 ms in the host loop with or without chunks
    of 48 (the 10x10 inputs are small), and chunks double the compile time
    (31 s against 14.5 s).
    """
    conv_on_cpu = torso in CONV_TORSOS and (backend or jax.default_backend()) == "cpu"
    return (CPU_CONV_CHUNK if conv_on_cpu and torso in CHUNKED_CONV_TORSOS else 0), conv_on_cpu


ApplyFn = Callable[[Any, chex.Array], AgentOutput]
