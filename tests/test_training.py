"""Rollouts, networks and the plain actor-critic trainer."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import objectives
from lpg import envs
from lpg.envs.base import Environment, EnvSpec, first_timestep
from lpg.networks import NetworkConfig, make_agent
from lpg.optim import OptimizerConfig, make_optimizer
from lpg.rollout import episode_stats, reset_actors, unroll
from lpg.types import AgentHeads, TimeStep, assert_rollout_shapes
from training.actor_critic import ActorCriticTrainer, TrainConfig
from training.loop import chunk_sizes, final_return


class CountdownEnv(Environment):
    """Deterministic test env: state counts 0..3; reward = state+1 on each step; episode ends after 3 steps."""

    spec = EnvSpec(
        "test/countdown", "test", (), num_actions=2, max_episode_steps=3, observation_dtype="int32", num_observations=4
    )

    def reset(self, key):
        return jnp.zeros((), jnp.int32), first_timestep(jnp.zeros((), jnp.int32))

    def step(self, state, action, key):
        reward = (state + 1).astype(jnp.float32)
        done = state + 1 >= 3
        next_state = jnp.where(done, 0, state + 1)
        return next_state, TimeStep(next_state, reward, jnp.where(done, 0.0, 1.0), done)


def test_rollout_follows_the_time_indexing_convention_and_overlaps():
    env = CountdownEnv()
    agent = make_agent(env.spec)
    params = agent.init(jax.random.PRNGKey(0))
    actor = reset_actors(env, jax.random.PRNGKey(1), 2)
    actor, first = unroll(env, agent.apply, params, actor, jax.random.PRNGKey(2), 4)
    assert assert_rollout_shapes(first) == (4, 2)
    np.testing.assert_array_equal(first.observation[:, 0], [0, 1, 2, 0, 1])
    np.testing.assert_array_equal(first.reward[:, 0], [0, 1, 2, 3, 1])
    np.testing.assert_array_equal(first.discount[:, 0], [1, 1, 1, 0, 1])
    np.testing.assert_array_equal(first.done[:, 0], [False, False, False, True, False])
    np.testing.assert_array_equal(first.episode_return[:, 0], [0, 0, 0, 6, 0])
    stats = episode_stats(first)
    assert float(stats["episode_count"]) == 2 and float(stats["episode_return_sum"]) == 12
    _, second = unroll(env, agent.apply, params, actor, jax.random.PRNGKey(3), 4)
    np.testing.assert_array_equal(second.observation[0], first.observation[-1])  # overlap by one step
    np.testing.assert_array_equal(second.episode_return[:, 0], [0, 0, 6, 0, 0])  # 2 + 3 carried over + 1


def test_tabular_torso_equals_a_linear_layer_on_the_one_hot():
    spec = envs.make("chain/short").spec
    agent = make_agent(spec, heads=AgentHeads(y_size=3))
    params = agent.init(jax.random.PRNGKey(0))
    table = jax.random.normal(jax.random.PRNGKey(1), params["params"]["table"].shape)
    params = {"params": {"table": table}}
    obs = jnp.array([0, 5, 7], jnp.int32)
    out = agent.apply(params, obs)
    linear = jax.nn.one_hot(obs, spec.num_observations) @ table
    np.testing.assert_allclose(out.logits, linear[:, :2], rtol=1e-6)
    np.testing.assert_allclose(out.value, linear[:, 2], rtol=1e-6)
    np.testing.assert_allclose(out.y_logits, linear[:, 3:], rtol=1e-6)


@pytest.mark.parametrize("name, torso", [("catch", "mlp"), ("snake", "snake_conv"), ("gridworld/dense", "tabular")])
def test_networks_accept_any_leading_batch_shape(name, torso):
    spec = envs.make(name).spec
    agent = make_agent(spec, NetworkConfig(), AgentHeads(y_size=4))
    assert agent.network.torso == torso
    params = agent.init(jax.random.PRNGKey(0))
    obs = jnp.zeros((3, 2) + spec.observation_shape, spec.observation_dtype)
    out = agent.apply(params, obs)
    assert out.logits.shape == (3, 2, spec.num_actions)
    assert out.value.shape == (3, 2) and out.y_logits.shape == (3, 2, 4)


def test_meta_adam_matches_optax_adam_values():
    import optax

    params = {"w": jnp.array([1.0, -2.0, 3.0])}
    ours = make_optimizer(OptimizerConfig("adam", 0.1, eps_root=1e-8))
    reference = optax.adam(0.1, eps_root=1e-8)
    s1, s2 = ours.init(params), reference.init(params)
    p1 = p2 = params
    for i in range(3):
        g = {"w": jnp.array([0.5, -1.0, 2.0]) * (i + 1)}
        u1, s1 = ours.update(g, s1, p1)
        u2, s2 = reference.update(g, s2, p2)
        p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)
    np.testing.assert_allclose(p1["w"], p2["w"], rtol=1e-6)


def test_rmsprop_adds_eps_outside_the_square_root():
    # Hand-worked first step, decay 0.99, eps 1e-5, lr 7e-4, no clipping:
    # nu = 0.01 g^2; update = -lr g / (sqrt(nu) + eps). For g = 1e-4 (the size of a
    # Nature-CNN gradient entry) that is -7e-4 * 1e-4 / (1e-5 + 1e-5) = -3.5e-3;
    # eps inside the root would give -7e-4 * 1e-4 / sqrt(1e-10 + 1e-5) = -2.2e-5.
    opt = make_optimizer(OptimizerConfig("rmsprop", 7e-4, b2=0.99, eps=1e-5))
    params = {"w": jnp.zeros(2)}
    g = {"w": jnp.array([1e-4, -2.0])}
    update, _ = opt.update(g, opt.init(params), params)
    expected = [-7e-4 * 1e-4 / (1e-5 + 1e-5), 7e-4 * 2.0 / (0.2 + 1e-5)]
    np.testing.assert_allclose(update["w"], expected, rtol=1e-5)


def test_chunk_sizes_and_final_return_windows():
    assert chunk_sizes(10, target_chunks=3) == [4, 4, 2]
    assert sum(chunk_sizes(625)) == 625 and len(set(chunk_sizes(625))) <= 2
    metrics = {
        "episode_return_sum": np.array([[0.0] * 9 + [3.0], [1.0] * 10]),
        "episode_count": np.array([[1.0] * 9 + [2.0], [0.0] * 10]),
    }
    np.testing.assert_allclose(final_return(metrics), [1.5, np.nan])
    np.testing.assert_allclose(final_return(metrics, fraction=0.2), [1.0, np.nan])


def test_seeds_under_vmap_equal_seeds_run_one_by_one():
    env = envs.make("catch")
    objective = objectives.make("a2c")
    agent = make_agent(env.spec)
    trainer = ActorCriticTrainer.create(env, agent, objective, TrainConfig(num_envs=4, unroll_length=5))
    keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(2))
    batched, batched_metrics = trainer.run_seeds(trainer.init_seeds(keys), {}, 3)
    for i in range(2):
        single, single_metrics = trainer.run(trainer.init(keys[i]), {}, 3)
        for a, b in zip(jax.tree.leaves(single.params), jax.tree.leaves(batched.params)):
            np.testing.assert_allclose(a, b[i], rtol=2e-5, atol=1e-6)
        np.testing.assert_allclose(single_metrics["loss"], batched_metrics["loss"][i], rtol=2e-5, atol=1e-6)


def test_a2c_learns_catch_well_above_random():
    env = envs.make("catch")
    trainer = ActorCriticTrainer.create(
        env, make_agent(env.spec), objectives.make("a2c"), TrainConfig(16, 10, OptimizerConfig("adam", 3e-3))
    )
    _, metrics = trainer.run_seeds(trainer.init_seeds(jax.random.PRNGKey(0)[None]), {}, 250)
    metrics = jax.tree.map(np.asarray, metrics)
    assert final_return(metrics, fraction=0.2)[0] > 0.3  # random policy: -0.6


def test_parallel_environments_of_one_agent_share_the_task_instance():
    env = envs.make("chain/short")
    shared = reset_actors(env, jax.random.PRNGKey(0), 64)
    assert len(set(np.asarray(shared.env_state.length).tolist())) == 1
    assert len(set(np.asarray(shared.env_state.correct).tolist())) == 1
    separate = reset_actors(env, jax.random.PRNGKey(0), 64, share_task=False)
    assert len(set(np.asarray(separate.env_state.length).tolist())) > 1
    # Different agents (keys) get different tasks.
    lengths = {int(reset_actors(env, jax.random.PRNGKey(k), 2).env_state.length[0]) for k in range(20)}
    assert len(lengths) > 3


def test_chunked_network_evaluation_equals_whole_batch():
    spec = envs.make("snake").spec
    whole = make_agent(spec, NetworkConfig(chunk_size=0))
    chunked = make_agent(spec, NetworkConfig(chunk_size=7))
    params = whole.init(jax.random.PRNGKey(0))
    obs = jax.random.uniform(jax.random.PRNGKey(1), (4, 5) + spec.observation_shape)

    def loss(agent, p):
        out = agent.apply(p, obs)
        return jnp.sum(out.value**2) + jnp.sum(jnp.sin(out.logits))

    np.testing.assert_allclose(loss(whole, params), loss(chunked, params), rtol=1e-5)
    for a, b in zip(
        jax.tree.leaves(jax.grad(lambda p: loss(whole, p))(params)),
        jax.tree.leaves(jax.grad(lambda p: loss(chunked, p))(params)),
    ):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
