"""``lpg bench scale``: throughput against the number of devices (lpg/distributed.py).

Each device count runs in its own Python process, because the device count is
fixed when JAX starts: on CPU the devices are forced host devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=D``, all sharing the
machine's cores), on GPUs the first D of ``CUDA_VISIBLE_DEVICES``. A process
measures agent steps per second of

* offline discovery, ``grad`` meta-steps, the lifetime axis split over devices;
* plain actor-critic training (``lpg train``'s batch), the ``num_envs`` axis
  split over devices;

each jitted once (compile time excluded) and timed over ``repeats`` calls.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lpg.errors import InvalidConfigError

ROOT = Path(__file__).resolve().parents[1]
_FORCE_FLAG = "--xla_force_host_platform_device_count"


# --------------------------------------------------------------------------- parent


def _child_env(platform: str, devices: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LPG_")}  # one process per device count
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    if platform == "cpu":
        flags = re.sub(rf"{_FORCE_FLAG}=\S+", "", env.get("XLA_FLAGS", "")).strip()
        env["XLA_FLAGS"] = f"{flags} {_FORCE_FLAG}={devices}".strip()
        env["JAX_PLATFORMS"] = "cpu"
    elif platform == "gpu":
        visible = [v for v in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
        env["CUDA_VISIBLE_DEVICES"] = ",".join(visible[:devices] if visible else map(str, range(devices)))
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    return env


def _run_child(args: list[str], env: dict[str, str], timeout_s: int) -> dict[str, Any]:
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "training.scale_bench", *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s}s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {proc.returncode}: {tail}"}
    return json.loads(lines[-1])


def default_device_counts(platform: str, available: int) -> list[int]:
    """1, 2, 4, ... up to ``available`` accelerators; on CPU up to max(4, cores)."""
    limit = max(4, os.cpu_count() or 1) if platform == "cpu" else available
    counts, d = [], 1
    while d <= limit:
        counts.append(d)
        d *= 2
    return counts


def bench_scale(command: Any) -> dict[str, Any]:
    """Runs one process per device count; returns ``{"platform", "cores", "rows": [...]}``."""
    probe = _run_child(
        ["--probe"],
        {k: v for k, v in os.environ.items() if not k.startswith("LPG_")} | {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"},
        120,
    )
    if "error" in probe:
        raise InvalidConfigError(f"lpg bench scale: cannot start JAX in a subprocess ({probe['error']})")
    platform, available = probe["platform"], probe["devices"]
    counts = list(command.device_counts) or default_device_counts(platform, available)
    if platform not in ("cpu", "gpu") and counts != [available]:
        raise InvalidConfigError(
            f"on {platform} lpg bench scale measures all {available} devices only; pass --device-counts {available}"
        )
    if platform == "gpu" and max(counts) > available:
        raise InvalidConfigError(f"--device-counts: this machine has {available} GPU(s)")
    settings = {k: v for k, v in dataclasses.asdict(command).items() if k not in ("device_counts", "out", "timeout_s")}
    rows = []
    for devices in counts:
        row = _run_child(["--settings", json.dumps(settings)], _child_env(platform, devices), command.timeout_s)
        rows.append({"devices": devices, **row})
    return {"platform": platform, "cores": os.cpu_count(), "settings": settings, "rows": rows}


def format_bench_scale(result: dict[str, Any]) -> str:
    rows = result["rows"]
    base = next((r for r in rows if r["devices"] == 1 and "error" not in r), None)
    lines = [
        f"platform {result['platform']} ({result['cores']} CPU cores)"
        + ("; forced host devices share these cores" if result["platform"] == "cpu" else ""),
        "",
        "| devices | offline grad (agent steps/s) | speed-up | train batch (agent steps/s) | speed-up |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['devices']} | error: {row['error']} | | | |")
            continue
        cells = [str(row["devices"])]
        for key in ("offline_grad_steps_per_s", "train_steps_per_s"):
            speedup = row[key] / base[key] if base else float("nan")
            cells += [f"{row[key]:,.0f}", f"{speedup:.2f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- child


def _timed(call, repeats: int) -> float:
    """Seconds per call of ``call()`` (which blocks until done), after one warm-up call."""
    call()
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - start) / repeats


def measure(settings: dict[str, Any]) -> dict[str, Any]:
    """Agent steps/s of offline grad meta-steps and of plain training on this process's devices."""
    import jax
    import numpy as np

    import objectives
    from lpg import envs
    from lpg.distributed import shard_batch, shard_offline_state
    from lpg.networks import make_agent
    from training.actor_critic import ActorCriticTrainer, TrainConfig
    from training.offline import OfflineConfig, make_estimator
    from training.presets import default_preset

    config = OfflineConfig(
        envs=(settings["env"],),
        method="grad",
        num_lifetimes=settings["num_lifetimes"],
        num_envs=settings["num_envs"],
        inner_updates=settings["inner_updates"],
        lifetime_updates=max(50, settings["inner_updates"]),
    )
    trainer = make_estimator(objectives.make("lpg"), config)
    holder = [shard_offline_state(trainer.jit_init(jax.random.PRNGKey(0)))]
    lifetime_devices = len(jax.tree.leaves(holder[0].lifetimes)[0].sharding.device_set)

    def meta_step():
        holder[0], _ = trainer.jit_step(holder[0])
        jax.block_until_ready(holder[0].eta)

    offline_s = _timed(meta_step, settings["repeats"])

    env = envs.make(settings["train_env"])
    preset = default_preset(env.spec)
    train_config = TrainConfig(settings["train_num_envs"], preset.config.unroll_length, preset.config.optimizer)
    a2c = objectives.make("a2c")
    base = ActorCriticTrainer.create(env, make_agent(env.spec), a2c, train_config)
    states = [shard_batch(base.init_seeds(jax.vmap(jax.random.PRNGKey)(np.arange(1))), train_config.num_envs)]
    batch_devices = len(jax.tree.leaves(states[0].actor)[0].sharding.device_set)

    def train_chunk():
        states[0], _ = base.run_seeds(states[0], {}, settings["updates"])
        jax.block_until_ready(states[0].params)

    train_s = _timed(train_chunk, settings["repeats"])
    return {
        "platform": jax.default_backend(),
        "device_count": jax.device_count(),
        "offline_grad_steps_per_s": trainer.agent_steps_per_meta_step / offline_s,
        "offline_meta_step_s": offline_s,
        "lifetimes_over_devices": lifetime_devices,
        "train_steps_per_s": settings["updates"] * train_config.steps_per_update / train_s,
        "train_chunk_s": train_s,
        "batch_over_devices": batch_devices,
    }


def _main(argv: list[str]) -> None:
    if argv[:1] == ["--probe"]:
        import jax

        print(json.dumps({"platform": jax.default_backend(), "devices": jax.device_count()}))
        return
    print(json.dumps(measure(json.loads(argv[argv.index("--settings") + 1]))))


if __name__ == "__main__":  # pragma: no cover - the per-device-count subprocess
    _main(sys.argv[1:])
