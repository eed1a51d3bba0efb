"""lpg/distributed.py: sharded runs equal one-device runs; two processes on localhost equal one.

The multi-device cases run in subprocesses (the device count is fixed when JAX
starts): one process with 4 forced CPU devices, and two processes with 2 each
joined through ``LPG_COORDINATOR_ADDRESS``. The one-device references are
computed here, in the test process (one CPU device), while the subprocesses run.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np
import pytest

from lpg import distributed
from lpg.cli import main
from lpg.errors import InvalidConfigError

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 240  # a hung collective fails the test instead of blocking CI

# One tiny offline set-up, as OfflineConfig fields and as `lpg discover offline` flags.
GRAD = {
    "envs": ("chain/short",),
    "method": "grad",
    "num_lifetimes": 4,
    "num_envs": 4,
    "unroll_length": 10,
    "lifetime_updates": 6,
    "inner_updates": 2,
}
META_STEPS = 3
CLI_ARGS = [
    "discover",
    "offline",
    "--method",
    "grad",
    "--envs",
    "chain/short",
    "--meta-steps",
    str(META_STEPS),
    "--num-lifetimes",
    "4",
    "--num-envs",
    "4",
    "--unroll-length",
    "10",
    "--lifetime-updates",
    "6",
    "--inner-updates",
    "2",
    "--eval-every",
    "0",
    "--eval-updates",
    "2",
    "--eval-seeds",
    "1",
    "--checkpoint-every",
    "2",
    "--no-progress",
]
TRAIN = {"env": "chain/short", "num_envs": 8, "unroll_length": 5, "updates": 4, "seeds": 2}


# --------------------------------------------------------------------------- runs (here and in the subprocesses)


def offline_run(steps: int, shard: bool):
    """GRAD's state after ``steps`` grad meta-steps, and the placement of its lifetimes before them."""
    import objectives
    from training.offline import OfflineConfig, make_estimator

    trainer = make_estimator(objectives.make("lpg"), OfflineConfig(**GRAD))
    state = trainer.jit_init(jax.random.PRNGKey(0))
    state = distributed.shard_offline_state(state) if shard else state
    placed = [x.sharding for x in jax.tree.leaves(state.lifetimes)]
    for _ in range(steps):
        state, _ = trainer.jit_step(state)
    return state, placed


def train_run(shard: bool):
    """TRAIN's per-seed learner states after its updates, and the placement of their environments before them."""
    import objectives
    from lpg import envs
    from lpg.networks import make_agent
    from training.actor_critic import ActorCriticTrainer, TrainConfig

    env = envs.make(TRAIN["env"])
    config = TrainConfig(TRAIN["num_envs"], TRAIN["unroll_length"])
    trainer = ActorCriticTrainer.create(env, make_agent(env.spec), objectives.make("a2c"), config)
    states = trainer.init_seeds(jax.vmap(jax.random.PRNGKey)(np.arange(TRAIN["seeds"])))
    states = distributed.shard_batch(states, config.num_envs) if shard else states
    placed = [x.sharding for x in jax.tree.leaves(states.actor)]
    states, _ = trainer.run_seeds(states, {}, TRAIN["updates"])
    return states, placed


def placement(sharding) -> list:
    """[devices, partition spec] of a sharding."""
    return [len(sharding.device_set), list(getattr(sharding, "spec", ()))]


def leaves(tree) -> list[list]:
    return [np.asarray(x).tolist() for x in jax.tree.leaves(tree)]


SHARDED_SCRIPT = """
import json
import jax
from tests.test_distributed import META_STEPS, leaves, offline_run, placement, train_run

grad, placed = offline_run(META_STEPS, shard=True)
trained, train_placed = train_run(shard=True)
print("RESULT " + json.dumps({
    "devices": jax.device_count(),
    "grad_eta": leaves(grad.eta),
    "grad_placed": [placement(s) for s in placed],
    "grad_after": [placement(x.sharding) for x in jax.tree.leaves(grad.lifetimes)],
    "train_params": leaves(trained.params),
    "train_placed": [placement(s) for s in train_placed],
}))
"""

PROCESS_SCRIPT = """
import json, sys
from pathlib import Path
import jax, numpy as np
import objectives
import lpg.commands.discover_offline as command
import training.offline as offline
from lpg import checkpoint

# The final evaluation trains fresh agents locally on every process; it is not what this test is about.
command.evaluate_objective = lambda *args, **kwargs: {"results": {}, "mean_a2c_normalised": float("nan"), "evaluator": "stub"}
from lpg.cli import main
from tests.test_distributed import GRAD, leaves

args = json.loads(sys.argv[1])
code = main(args)
# What --resume does: process 0 restores the training checkpoint, every process receives it.
trainer = offline.make_estimator(objectives.make("lpg"), offline.OfflineConfig(**GRAD))
abstract = jax.eval_shape(trainer.init, jax.random.PRNGKey(0))
step, state, _ = checkpoint.restore_training_state(Path(args[args.index("--out") + 1]) / "training_state", abstract)
print("RESULT " + json.dumps({
    "code": code, "process": jax.process_index(), "processes": jax.process_count(), "devices": jax.device_count(),
    "step": step, "eta": leaves(state.eta), "lifetimes": leaves(state.lifetimes),
}))
"""


# --------------------------------------------------------------------------- subprocesses


def _env(devices: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LPG_")}
    pythonpath = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    # Unoptimised XLA code compiles in half the time; these runs are tiny.
    flags = f"--xla_force_host_platform_device_count={devices} --xla_backend_optimization_level=0"
    env.update(XLA_FLAGS=flags, JAX_PLATFORMS="cpu", PYTHONPATH=pythonpath, **extra)
    return env


def _start(code: str, env: dict[str, str], *args: str) -> subprocess.Popen:
    # Output goes to files: a process blocked on a full pipe would stall the other one's collectives.
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed in _result
    proc = subprocess.Popen([sys.executable, "-c", code, *args], env=env, cwd=ROOT, stdout=out, stderr=err, text=True)
    proc.files = (out, err)  # type: ignore[attr-defined]
    return proc


def _result(proc: subprocess.Popen) -> dict:
    try:
        proc.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    texts = []
    for f in proc.files:  # type: ignore[attr-defined]
        f.seek(0)
        texts.append(f.read())
        f.close()
    stdout, stderr = texts
    assert proc.returncode == 0, (
        f"exit {proc.returncode} (-9: killed after {TIMEOUT_S}s); stderr tail:\n{stderr[-3000:]}"
    )
    return json.loads(next(line for line in stdout.splitlines() if line.startswith("RESULT "))[len("RESULT ") :])


@functools.cache
def _reference(what: str) -> list[np.ndarray]:
    """The one-device result, computed in this process."""
    tree = offline_run(META_STEPS, shard=False)[0].eta if what == "grad" else train_run(shard=False)[0].params
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _assert_close(got: list, want: list[np.ndarray]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want):
        np.testing.assert_allclose(np.asarray(a, np.float32), b, rtol=1e-4, atol=2e-5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- one process, 4 devices


def test_sharded_runs_on_four_devices_equal_one_device_runs():
    proc = _start(SHARDED_SCRIPT, _env(4))
    want = {what: _reference(what) for what in ("grad", "train")}  # meanwhile, here on one device
    out = _result(proc)
    assert out["devices"] == 4
    # Lifetimes (leading axis 4) and the training batch (axis 1, num_envs 8) are split over the 4 devices, also after steps.
    assert all(p == [4, ["data"]] for p in out["grad_placed"] + out["grad_after"])
    assert all(p == [4, [None, "data"]] for p in out["train_placed"])
    _assert_close(out["grad_eta"], want["grad"])
    _assert_close(out["train_params"], want["train"])


# --------------------------------------------------------------------------- two processes on localhost


def test_two_process_discovery_equals_one_process(tmp_path):
    out = tmp_path / "run"
    address = f"localhost:{_free_port()}"
    procs = [
        _start(
            PROCESS_SCRIPT,
            _env(2, LPG_COORDINATOR_ADDRESS=address, LPG_NUM_PROCESSES="2", LPG_PROCESS_ID=str(i)),
            json.dumps([*CLI_ARGS, "--out", str(out)]),
        )
        for i in range(2)
    ]
    try:
        want = _reference("grad")
        results = [_result(p) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [(r["code"], r["process"], r["processes"], r["devices"]) for r in results] == [(0, 0, 2, 4), (0, 1, 2, 4)]
    # Process 0 wrote the run folder, once; the checkpoint it wrote reaches both processes.
    assert json.loads((out / "summary.json").read_text())["meta_steps"] == META_STEPS
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "meta_loss" in r] == list(range(1, META_STEPS + 1))
    assert all(r["step"] == META_STEPS for r in results)
    assert results[0]["eta"] == results[1]["eta"] and results[0]["lifetimes"] == results[1]["lifetimes"]
    _assert_close(results[0]["eta"], want)
    from objectives import load as load_objective

    _assert_close(leaves(load_objective(out / "objective")[1]), want)


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"LPG_COORDINATOR_ADDRESS": "localhost:1234"}, "missing LPG_NUM_PROCESSES, LPG_PROCESS_ID"),
        ({"LPG_COORDINATOR_ADDRESS": "localhost", "LPG_NUM_PROCESSES": "2", "LPG_PROCESS_ID": "0"}, "HOST:PORT"),
        ({"LPG_COORDINATOR_ADDRESS": "localhost:99999", "LPG_NUM_PROCESSES": "2", "LPG_PROCESS_ID": "0"}, "HOST:PORT"),
        (
            {"LPG_COORDINATOR_ADDRESS": "localhost:1234", "LPG_NUM_PROCESSES": "two", "LPG_PROCESS_ID": "0"},
            "must be an integer",
        ),
        (
            {"LPG_COORDINATOR_ADDRESS": "localhost:1234", "LPG_NUM_PROCESSES": "0", "LPG_PROCESS_ID": "0"},
            "must be >= 1",
        ),
        (
            {"LPG_COORDINATOR_ADDRESS": "localhost:1234", "LPG_NUM_PROCESSES": "2", "LPG_PROCESS_ID": "2"},
            "must be in [0, 1]",
        ),
    ],
)
def test_bad_multi_process_variables_are_one_line_errors(monkeypatch, tmp_path, capsys, env, words):
    for name in distributed.ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(InvalidConfigError, match=words.replace("[", r"\[").replace("]", r"\]")):
        distributed.initialize_from_env()
    assert main(["discover", "offline", "--out", str(tmp_path / "x"), "--meta-steps", "1"]) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "x").exists()


def test_only_offline_discovery_runs_on_several_processes(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("LPG_COORDINATOR_ADDRESS", "localhost:1234")
    monkeypatch.setenv("LPG_NUM_PROCESSES", "2")
    monkeypatch.setenv("LPG_PROCESS_ID", "1")
    assert main(["train", "catch", "--out", str(tmp_path / "x"), "--steps", "100"]) == 2
    assert "only `lpg discover offline`" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_one_device_helpers_are_no_ops(monkeypatch):
    for name in distributed.ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    assert distributed.initialize_from_env() is False
    tree = {"a": np.ones((4, 3)), "b": jax.numpy.zeros(2)}
    assert distributed.shard_leading(tree, distributed.data_mesh(), 4) is tree
    assert distributed.shard_batch(tree, 3) is tree and distributed.host_local(tree) is tree
    assert distributed.is_primary() and distributed.data_mesh().axis_names == ("data",)
    host = distributed.to_host(tree)
    assert all(isinstance(x, np.ndarray) for x in host.values()) and np.array_equal(host["a"], tree["a"])


def test_bench_scale_table_and_child_environment(monkeypatch):
    from training.scale_bench import (
        _child_env,
        default_device_counts,
        format_bench_scale,
    )

    assert default_device_counts("gpu", 3) == [1, 2]
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8 --foo")
    monkeypatch.setenv("LPG_PROCESS_ID", "0")
    env = _child_env("cpu", 4)
    assert env["XLA_FLAGS"] == "--foo --xla_force_host_platform_device_count=4" and "LPG_PROCESS_ID" not in env
    rows = [
        {"devices": 1, "offline_grad_steps_per_s": 100.0, "train_steps_per_s": 1000.0},
        {"devices": 2, "offline_grad_steps_per_s": 150.0, "train_steps_per_s": 1500.0},
        {"devices": 4, "error": "timed out after 1s"},
    ]
    table = format_bench_scale({"platform": "cpu", "cores": 2, "rows": rows})
    assert "| 2 | 150 | 1.50x | 1,500 | 1.50x |" in table and "error: timed out" in table
