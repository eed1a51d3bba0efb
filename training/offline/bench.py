"""``lpg bench offline``'s measurement: agent steps/s of a meta-step, and its cost over plain A2C."""

from __future__ import annotations

import time
from typing import Any

import jax
import numpy as np

from lpg.networks import make_agent
from objectives.base import Objective
from training.actor_critic import ActorCriticTrainer, TrainConfig
from training.offline import OfflineConfig, make_estimator
from training.offline.chunks import AUTO_MAX_STEPS, ChunkSizes, multi_step

__all__ = ["bench_offline"]


def _seconds(fn, state, repeats: int) -> tuple[Any, float]:
    """Runs ``state = fn(state)[0]`` once to compile and warm up, then ``repeats`` times; mean seconds per call."""
    state = fn(state)[0]
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(repeats):
        state = fn(state)[0]
    jax.block_until_ready(state)
    return state, (time.perf_counter() - start) / repeats


def _meta_step_seconds(estimator, state, repeats: int, steps_per_call: int) -> tuple[Any, float]:
    """The state after, and the mean seconds per meta-step over, ``repeats`` meta-steps run as
    ``lpg discover offline`` runs them: in compiled chunks (``training.offline.chunks``) of ``steps_per_call``
    (0: ``AUTO_MAX_STEPS``), after one meta-step that compiles the program (the same one for every chunk
    length) and warms up."""
    chunks = ChunkSizes(steps_per_call or AUTO_MAX_STEPS)
    steps = multi_step(estimator.step, chunks.max_steps)
    state = steps(state, 1)[0]
    jax.block_until_ready(state)
    start, done = time.perf_counter(), 0
    while done < repeats:
        n = chunks.next(done, repeats)
        state = steps(state, n)[0]
        jax.device_get(state.step)  # the driver reads each chunk's metrics before the next
        done += n
    jax.block_until_ready(state)
    return state, (time.perf_counter() - start) / repeats


def bench_offline(
    config: OfflineConfig, objective: Objective, repeats: int = 3, steps_per_call: int = 0
) -> dict[str, Any]:
    """Agent steps/s of one meta-step of ``config.method`` and its cost relative to plain A2C.

    The A2C reference trains the same number of agents (grad: the lifetimes for
    K + 1 updates; es: 2 x num_lifetimes agents for ``lifetime_updates``
    updates) with the same batch shape, per environment group, jitted with
    compile time excluded.
    """
    import objectives

    estimator = make_estimator(objective, config, references=dict.fromkeys(config.envs, (0.0, 1.0)))
    _, meta_s = _meta_step_seconds(
        estimator, estimator.jit_init(jax.random.PRNGKey(config.seed)), repeats, steps_per_call
    )
    steps = estimator.agent_steps_per_meta_step

    a2c = objectives.make("a2c")
    a2c_s = 0.0
    for group in estimator.groups:
        agents = group.size if config.method == "grad" else 2 * group.size
        updates = config.inner_updates + 1 if config.method == "grad" else config.lifetime_updates
        train_config = TrainConfig(config.num_envs, config.unroll_length, config.agent_optimizer_config())
        trainer = ActorCriticTrainer.create(group.env, make_agent(group.env.spec), a2c, train_config)
        states = trainer.init_seeds(jax.vmap(jax.random.PRNGKey)(np.arange(agents)))
        _, seconds = _seconds(lambda s, t=trainer, u=updates: t.run_seeds(s, {}, u), states, repeats)
        a2c_s += seconds
    return {
        "method": config.method,
        "envs": list(config.envs),
        "agent_steps_per_meta_step": steps,
        "meta_step_s": meta_s,
        "agent_steps_per_s": steps / meta_s,
        "a2c_equivalent_s": a2c_s,
        "a2c_agent_steps_per_s": steps / a2c_s,
        "meta_step_over_a2c": meta_s / a2c_s,
    }
