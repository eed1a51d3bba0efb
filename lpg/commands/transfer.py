"""``lpg experiment transfer``: a saved objective on new tasks, frozen against adapted online.

For each environment, four arms at equal steps and seeds, each a full run of
its own command in ``OUT/<env>/<arm>/`` (so each resumes, and a finished arm is
read back instead of trained again):

* ``a2c``: ``lpg train ENV --objective a2c``;
* ``frozen``: ``lpg discover online ENV --init-objective CKPT --inner-steps 0``
  (the saved objective as it is);
* ``adapted``: ``lpg discover online ENV --init-objective CKPT`` (it keeps
  meta-learning inside this lifetime: 1-step meta-gradients unless
  ``--inner-steps``/``--mix``/``--mix-coefficient`` are given, with
  ``--init-pull`` and ``--outer-critic`` if given);
* ``frodo``: ``lpg discover online ENV --objective frodo`` (an objective
  discovered from scratch inside this lifetime).

``OUT/<env>.png`` plots the four learning curves (mean episode return against
environment steps) and ``OUT/<env>_eta_distance.png`` how far the adapted
objective's meta-parameters moved from the saved ones (``eta_distance``).
``summary.json`` holds each arm's final return per environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lpg import envs as envs_lib
from lpg.errors import InvalidConfigError
from lpg.run_io import RunDir, plot_lines, read_metrics

ARMS = ("a2c", "frozen", "adapted", "frodo")


def _arm_options(arm: str, env: str, checkpoint: str, out: Path, common: dict[str, Any], adapted: dict[str, Any]):
    from lpg.commands.discover_online import OnlineOptions
    from lpg.commands.train import TrainOptions

    path = out / env.replace("/", "_") / arm
    common = dict(common, out=str(path), resume=(path / "config.json").exists())  # an interrupted arm continues
    if arm == "a2c":
        return TrainOptions(env=env, objective="a2c", **common)
    if arm == "frodo":
        return OnlineOptions(env=env, objective="frodo", **common)
    inner = {"inner_steps": 0} if arm == "frozen" else adapted
    return OnlineOptions(env=env, init_objective=checkpoint, **common, **inner)


def _curve(folder: str, key: str) -> tuple[list[float], list[float]]:
    points = [(row["step"], row[key]) for row in read_metrics(folder) if isinstance(row.get(key), (int, float))]
    return [x for x, _ in points], [y for _, y in points]


def run_transfer(
    checkpoint: str,
    env_spec: str,
    out: str,
    *,
    steps: int | None = None,
    seeds: int = 3,
    seed: int = 0,
    init_pull: float = 0.0,
    outer_critic: str = "auto",
    inner_steps: int = 1,
    mix: bool = False,
    mix_k: float | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Runs the four arms on every environment of ``env_spec``; returns (and writes) the summary.

    ``init_pull``, ``outer_critic``, ``inner_steps``, ``mix`` and ``mix_k`` set the adapted arm's meta-gradient
    (``lpg discover online``'s flags of those names); the FRODO arm keeps its defaults.

    Raises:
      InvalidConfigError: no checkpoint, a non-positive count, or an environment that is not pure JAX.
      UnknownNameError: an unknown environment.
    """
    from lpg import checkpoint as checkpoints
    from lpg.commands.discover_online import discover_online
    from lpg.commands.train import train
    from training.meta_gradient import check_outer_critic
    from training.online import check_mix_coefficient

    if not checkpoint:
        raise InvalidConfigError("lpg experiment transfer needs --checkpoint: the saved objective to transfer")
    if seeds < 1 or (steps is not None and steps < 1) or init_pull < 0:
        raise InvalidConfigError("--seeds and --steps must be positive and --init-pull >= 0")
    check_outer_critic(outer_critic, "--outer-critic")
    if inner_steps < 1:
        raise InvalidConfigError(f"the adapted arm needs --inner-steps >= 1 (0 is the frozen arm), got {inner_steps}")
    check_mix_coefficient(mix, mix_k)
    adapted = {"init_pull": init_pull, "outer_critic": outer_critic, "inner_steps": inner_steps, "mix": mix,
               "mix_coefficient": mix_k}  # fmt: skip
    checkpoints.read_objective_metadata(checkpoint)  # a missing or corrupted checkpoint: one clear line
    names = envs_lib.resolve_env_spec(env_spec)
    for name in names:
        if not envs_lib.make_spec(name).is_jax:
            raise InvalidConfigError(f"lpg experiment transfer runs on toy and gymnax environments; {name} is not one")
    common = {"steps": steps, "num_seeds": seeds, "seed": seed, "progress": progress}
    config = {"command": "experiment", "experiment": "transfer", "checkpoint": checkpoint, "envs": names,
              "steps": steps, "seeds": seeds, "seed": seed, "init_pull": init_pull}  # fmt: skip
    later_options = {"outer_critic": (outer_critic, "auto"), "inner_steps": (inner_steps, 1), "mix": (mix, False),
                     "mix_k": (mix_k, None)}  # fmt: skip
    for key, (value, default) in later_options.items():  # runs made before an option keep their identity
        if value != default:
            config[key] = value
    run = RunDir.prepare(out, config, allow_existing_same=True)
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        folders: dict[str, str] = {}
        results[name] = {}
        for arm in ARMS:
            options = _arm_options(arm, name, checkpoint, run.path, common, adapted)
            summary = train(options) if arm == "a2c" else discover_online(options)
            folders[arm] = options.out
            results[name][arm] = summary.get("final_return")
        stem = name.replace("/", "_")
        plot_lines(
            run.path / f"{stem}.png",
            [(arm, *_curve(folders[arm], "episode_return")) for arm in ARMS],
            title=f"{name}: transfer of {Path(checkpoint).name}",
            xlabel="environment steps",
            ylabel="mean episode return",
        )
        plot_lines(
            run.path / f"{stem}_eta_distance.png",
            [(arm, *_curve(folders[arm], "eta_distance")) for arm in ("adapted", "frodo")],
            title=f"{name}: ||eta - eta_start||",
            xlabel="environment steps",
            ylabel="distance",
        )
    summary = {"experiment": "transfer", "checkpoint": checkpoint, "final_return": results, **config}
    run.write_summary(summary)
    run.close()
    return summary
