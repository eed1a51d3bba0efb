"""The backend picks the code path: CPU work-arounds for conv nets on CPU only; on GPU the update stays one scan."""

from __future__ import annotations

import jax
import pytest

from lpg import envs, networks
from lpg.networks import NetworkConfig, backend_code_path, make_agent


@pytest.mark.parametrize(
    ("torso", "backend", "expected"),
    [
        ("nature_cnn", "cpu", (48, True)),
        ("snake_conv", "cpu", (48, True)),
        ("nature_cnn", "gpu", (0, False)),
        ("snake_conv", "tpu", (0, False)),
        ("minatar_conv", "cpu", (0, True)),
        ("minatar_conv", "gpu", (0, False)),
        ("mlp", "cpu", (0, False)),
        ("tabular", "gpu", (0, False)),
    ],
)
def test_backend_code_path(torso, backend, expected):
    assert backend_code_path(torso, backend) == expected


@pytest.mark.parametrize(("backend", "chunk", "host_loop"), [("cpu", 48, True), ("gpu", 0, False)])
def test_make_agent_follows_the_default_backend(monkeypatch, backend, chunk, host_loop):
    monkeypatch.setattr(networks.jax, "default_backend", lambda: backend)
    agent = make_agent(envs.make("snake").spec)
    assert (agent.chunk_size, agent.slow_rolled_scan) == (chunk, host_loop)
    assert make_agent(envs.make("snake").spec, NetworkConfig(chunk_size=16)).chunk_size == 16  # the flag wins
    assert jax.default_backend() == backend  # the patch is what make_agent saw


def test_a_gpu_agent_trains_with_one_compiled_scan(monkeypatch):
    from objectives import make
    from training import actor_critic
    from training.actor_critic import ActorCriticTrainer
    from training.presets import default_preset

    monkeypatch.setattr(networks.jax, "default_backend", lambda: "gpu")
    env = envs.make("snake")
    config = default_preset(env.spec).config
    trainer = ActorCriticTrainer.create(env, make_agent(env.spec), make("a2c"), config, total_updates=2)
    calls = []
    monkeypatch.setattr(actor_critic, "host_loop", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(ActorCriticTrainer, "_run_scan", lambda self, state, eta, n: ("scan", n))
    assert trainer.run(None, {}, 2) == ("scan", 2) and not calls
