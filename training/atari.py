"""Training on Atari: envpool stepped by a host loop, the same learner as the toy MDPs.

Atari is the one environment that is not a JAX function, so acting is a
Python loop over ``AtariEnv.step`` (envpool's C++ threads) with a jitted
policy, filling a ``Rollout`` ``[T+1, B, 4, 84, 84]`` of the same type the toy
environments produce; the learner is ``ActorCriticTrainer.agent_update``
jitted once, so every objective works unchanged.

CPU speed: the Nature-DQN gradient is taken on the whole ``[T+1, B]`` batch at
once (one batched forward/backward, no ``lax.scan`` over the conv net, which
is 13-19x slower on CPU). With ``overlap=True`` the learner runs in a second
thread on rollout k while the actors collect rollout k+1 with the parameters
of update k-1 (one update of policy lag, as in IMPALA); the behaviour logits
are stored in the rollout, so the ``vtrace`` objective corrects the lag.

Reward clipping to [-1, 1] is the objectives' ``reward_clip`` option; Atari
runs set it to 1 unless the user overrides it. Scores reported (``score``,
``human_normalised``) are raw full-game scores.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import time
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lpg.envs.atari import AtariConfig, AtariEnv
from lpg.errors import InvalidConfigError
from lpg.networks import NetworkConfig, make_agent
from lpg.optim import OptimizerConfig
from lpg.progress import ProgressBar
from lpg.run_io import RunDir, plot_lines
from lpg.types import Rollout
from training.actor_critic import ActorCriticTrainer, TrainConfig
from training.longrun import SKIP_KEY, LongRun, guarded_apply

FINAL_FRACTION = 0.1
WARMUP_UPDATES = 2  # updates left out of ``steady_frames_per_s``: they compile the plain update and the meta-update


@dataclasses.dataclass(frozen=True)
class AtariRunConfig:
    """How an Atari agent is trained.

    Attributes:
      num_envs: emulators stepped in parallel (batch B).
      unroll_length: steps per rollout (T); 5 with 16 envs is the A2C reference
        set-up (Mnih et al. 2016; OpenAI baselines), measured to learn Pong.
      optimizer: the agent's optimiser (A2C's RMSProp by default).
      overlap: learn on rollout k while acting on rollout k+1 in another thread
        (one update of policy lag; use the vtrace objective to correct it).
      sticky_actions: repeat-action probability (0.25 = Machado et al. 2018).
      episodic_life: end learning episodes at life loss (scores stay per game).
      log_every_s: seconds between metrics.jsonl rows.
    """

    num_envs: int = 16
    unroll_length: int = 5
    optimizer: OptimizerConfig = OptimizerConfig("rmsprop", 7e-4, max_grad_norm=0.5, b2=0.99, eps=1e-5)
    overlap: bool = False
    sticky_actions: float = 0.0
    episodic_life: bool = False
    log_every_s: float = 20.0


class AtariActor:
    """Acts in an ``AtariEnv`` with a jitted policy and assembles Rollouts."""

    def __init__(self, env: AtariEnv, apply_fn, unroll_length: int, seed: int):
        self.env = env
        self.unroll_length = unroll_length
        self._key = jax.random.PRNGKey(seed)
        self._shapes = {
            "observation": ((unroll_length + 1, env.num_envs) + tuple(env.spec.observation_shape), np.uint8),
            "action": ((unroll_length + 1, env.num_envs), np.int32),
            "reward": ((unroll_length + 1, env.num_envs), np.float32),
            "discount": ((unroll_length + 1, env.num_envs), np.float32),
            "done": ((unroll_length + 1, env.num_envs), np.bool_),
            "behaviour_logits": ((unroll_length + 1, env.num_envs, env.num_actions), np.float32),
            "episode_return": ((unroll_length + 1, env.num_envs), np.float32),
        }

        @jax.jit
        def act(params, obs, key):
            """(action [B], logits [B, A], next key): the key is split inside, so a step dispatches one call."""
            key, sample_key = jax.random.split(key)
            logits = apply_fn(params, obs).logits
            return jax.random.categorical(sample_key, logits).astype(jnp.int32), logits, key

        self._act = act
        timestep = env.reset()
        self._last = (timestep.observation, timestep.reward, timestep.discount, timestep.done)

    def empty_rollout(self) -> Rollout:
        """A rollout of zeros with this actor's shapes."""
        return Rollout(**{name: jnp.zeros(shape, dtype) for name, (shape, dtype) in self._shapes.items()})

    def collect(self, params: Any) -> Rollout:
        """One rollout of ``unroll_length`` steps with ``params``; overlaps the previous one by a step.

        Every rollout is written into freshly allocated host buffers that are
        never touched again: on CPU ``jnp.asarray`` of a large numpy array
        shares its memory, and the learner may still be reading the previous
        rollout (asynchronous dispatch, ``--overlap``, FRODO's reuse of the
        outer rollout) while this one is being collected.
        """
        buf = {name: np.empty(shape, dtype) for name, (shape, dtype) in self._shapes.items()}
        obs, reward, discount, done = self._last
        buf["observation"][0], buf["reward"][0], buf["discount"][0], buf["done"][0] = obs, reward, discount, done
        buf["episode_return"][0] = 0.0
        key = self._key
        for t in range(self.unroll_length):
            action, logits, key = self._act(params, buf["observation"][t], key)
            action = np.asarray(action)
            buf["action"][t] = action
            buf["behaviour_logits"][t] = np.asarray(logits)
            timestep, info = self.env.step_with_info(action)
            buf["observation"][t + 1] = timestep.observation
            buf["reward"][t + 1] = timestep.reward
            buf["discount"][t + 1] = timestep.discount
            buf["done"][t + 1] = timestep.done
            buf["episode_return"][t + 1] = info.episode_return
        self._key = key
        buf["action"][-1] = 0
        buf["behaviour_logits"][-1] = 0.0
        self._last = (
            buf["observation"][-1].copy(),
            buf["reward"][-1].copy(),
            buf["discount"][-1].copy(),
            buf["done"][-1].copy(),
        )
        return Rollout(**{name: jnp.asarray(array) for name, array in buf.items()})


def atari_result_lines(summary: dict[str, Any], out: str, label: str | None = None) -> list[str]:
    """What ``lpg train`` and ``lpg discover online`` print at the end of an Atari run (score, rate, where it went)."""
    score, hns = summary["score"], summary["human_normalised"]
    lines = [
        f"{summary['env']} / {label or summary['objective']}: score {'n/a' if score is None else f'{score:.1f}'} "
        f"(human-normalised {'n/a' if hns is None else f'{hns:.3f}'}) after {summary['frames']:,} frames "
        f"({summary['wall_s']:.0f}s, {summary['frames_per_s']:,.0f} frames/s); results in {out}/summary.json"
    ]
    if score is None:
        lines.append("no game finished within --frames, so there is no score; give more --frames")
    return lines


def game_of(env_name: str) -> str:
    if not env_name.startswith("atari/"):
        raise InvalidConfigError(f"{env_name!r} is not an Atari environment (atari/<Game>)")
    return env_name.split("/", 1)[1]


def build_atari_trainer(
    spec, objective, config: AtariRunConfig, network: NetworkConfig, total_updates: int
) -> ActorCriticTrainer:
    """The learner: ``ActorCriticTrainer`` without a pure-JAX env (``env=None``; the host loop acts)."""
    agent = make_agent(spec, network, heads=objective.heads)
    train_config = TrainConfig(config.num_envs, config.unroll_length, config.optimizer)
    return ActorCriticTrainer.create(None, agent, objective, train_config, total_updates=total_updates)  # type: ignore[arg-type]


def train_atari(
    env_name: str,
    objective,
    eta: Any,
    frames: int,
    seed: int,
    out: str | None,
    config: AtariRunConfig = AtariRunConfig(),
    network: NetworkConfig = NetworkConfig(),
    progress: bool = True,
    run_config: dict | None = None,
    **longrun: Any,
) -> dict[str, Any]:
    """Trains one agent on ``env_name`` for ``frames`` emulator frames with ``objective`` at ``eta``.

    Returns the summary (also written to ``out`` when given): ``score`` (mean
    raw game score of the games finished in the last 10 % of frames),
    ``human_normalised``, frames, wall time and frames/s. ``longrun``:
    ``resume``, ``checkpoint_interval_s``, ``max_nonfinite_skips`` (see ``run_atari``).
    """
    return run_atari(
        env_name,
        objective,
        frames,
        seed,
        out,
        config,
        network,
        progress,
        run_config,
        make_learner=lambda trainer: PlainLearner(trainer, eta, config.overlap),
        **longrun,
    )


class PlainLearner:
    """Learns from each rollout with one agent update at a frozen ``eta`` (optionally in a second thread)."""

    def __init__(self, trainer: ActorCriticTrainer, eta: Any, overlap: bool):
        self.trainer = trainer
        self.eta = jax.lax.stop_gradient(eta)
        self._learn = jax.jit(trainer.agent_update)
        self._pool = concurrent.futures.ThreadPoolExecutor(1) if overlap else None
        self._pending = None

    def init(self, key: chex.PRNGKey) -> None:
        self.params = self.trainer.agent.init(key)
        self.opt_state = self.trainer.optimizer.init(self.params)

    @property
    def acting_params(self) -> Any:
        return self.params

    def learn(self, rollout: Rollout) -> dict[str, Any]:
        if self._pool is None:
            self.params, self.opt_state, metrics = self._learn(self.params, self.opt_state, self.eta, rollout)
            return metrics
        metrics = {}
        if self._pending is not None:
            self.params, self.opt_state, metrics = self._pending.result()
        self._pending = self._pool.submit(self._learn, self.params, self.opt_state, self.eta, rollout)
        return metrics

    def finish(self) -> dict[str, Any]:
        metrics = self._settle()
        if self._pool is not None:
            self._pool.shutdown()
        return metrics

    def _settle(self) -> dict[str, Any]:
        """Waits for the update in flight (overlap) and applies it."""
        metrics = {}
        if self._pending is not None:
            self.params, self.opt_state, metrics = self._pending.result()
            self._pending = None
        return metrics

    def state(self) -> dict[str, Any]:
        """The learner's arrays for a training checkpoint (with overlap, the update in flight is applied first)."""
        self._settle()
        return {"params": self.params, "opt_state": self.opt_state}

    def restore(self, state: dict[str, Any]) -> None:
        self.params, self.opt_state = state["params"], state["opt_state"]

    def eta_metrics(self) -> dict[str, float]:
        return {}


class MetaLearner:
    """Online 1-step meta-gradients on Atari (FRODO, MGRL, STAC), Xu et al. 2018/2020.

    Per rollout tau_k (acted by theta_k^(1) = theta_k updated once at eta_k):
    the meta-gradient of the outer loss on tau_k at theta_k^(1)(eta) w.r.t.
    eta (through the agent update from theta_{k-1} on tau_{k-1}) updates eta;
    theta_k^(1) is kept, and tau_k is reused as the next inner rollout, so no
    sample is thrown away. Every ``meta_interval``-th rollout gets a
    meta-gradient; the others a plain update at the current eta (a cost knob:
    a meta-gradient through the Nature-DQN costs about 4 plain updates on CPU).
    """

    def __init__(self, meta_trainer, meta_interval: int = 1):
        if meta_interval < 1:
            raise InvalidConfigError(f"meta_interval must be >= 1, got {meta_interval}")
        self.mt = meta_trainer
        self.meta_interval = meta_interval
        trainer = meta_trainer.trainer
        self._update = jax.jit(trainer.agent_update)
        self._meta = jax.jit(self._meta_update)
        self.count = 0
        self.pending: Rollout | None = None
        self.empty_rollout: Rollout | None = (
            None  # a zero rollout of the right shape (checkpoints before the first one)
        )

    def init(self, key: chex.PRNGKey) -> None:
        trainer = self.mt.trainer
        params_key, eta_key = jax.random.split(key)
        self.params = trainer.agent.init(params_key)
        self.opt_state = trainer.optimizer.init(self.params)
        self.eta = trainer.objective.init(eta_key)
        self.meta_opt_state = self.mt.meta_optimizer.init(self.eta)
        self.next_params = self.params
        self.next_opt_state = self.opt_state

    def _meta_update(self, params, opt_state, eta, meta_opt_state, inner: Rollout, outer: Rollout):
        trainer = self.mt.trainer

        def meta_loss(eta):
            params1, opt1, inner_metrics = trainer.agent_update(params, opt_state, eta, inner)
            loss, outer_metrics = self.mt._outer_loss(eta, params1, params, outer)
            return loss, (params1, opt1, {**inner_metrics, **outer_metrics, "meta_loss": loss})

        grads, (params1, opt1, metrics) = jax.grad(meta_loss, has_aux=True)(eta)
        updates, new_meta_opt_state = self.mt.meta_optimizer.update(grads, meta_opt_state, eta)
        # A non-finite meta-gradient skips the meta-update (training/longrun.py).
        (eta, meta_opt_state), meta_skipped = guarded_apply(
            grads, (optax.apply_updates(eta, updates), new_meta_opt_state), (eta, meta_opt_state)
        )
        metrics["nonfinite_meta_skipped"] = meta_skipped
        metrics[SKIP_KEY] = jnp.maximum(metrics[SKIP_KEY], meta_skipped)
        metrics["meta_grad_norm"] = optax.tree.norm(grads)
        params1, opt1 = jax.lax.stop_gradient((params1, opt1))
        next_params, next_opt, _ = trainer.agent_update(params1, opt1, eta, outer)
        return params1, opt1, eta, meta_opt_state, next_params, next_opt, metrics

    @property
    def acting_params(self) -> Any:
        return self.next_params

    def learn(self, rollout: Rollout) -> dict[str, Any]:
        self.count += 1
        if self.pending is None or self.count % self.meta_interval:
            # Plain update: the kept agent is the one that acted this rollout.
            if self.pending is not None:
                self.params, self.opt_state = self.next_params, self.next_opt_state
            self.next_params, self.next_opt_state, metrics = self._update(
                self.params, self.opt_state, self.eta, rollout
            )
            self.pending = rollout
            return metrics
        out = self._meta(self.params, self.opt_state, self.eta, self.meta_opt_state, self.pending, rollout)
        self.params, self.opt_state, self.eta, self.meta_opt_state, self.next_params, self.next_opt_state, metrics = out
        self.pending = rollout
        return metrics

    def finish(self) -> dict[str, Any]:
        self.params = self.next_params
        return {}

    def state(self) -> dict[str, Any]:
        """The learner's arrays for a training checkpoint (the pending rollout included)."""
        return {
            "params": self.params,
            "opt_state": self.opt_state,
            "eta": self.eta,
            "meta_opt_state": self.meta_opt_state,
            "next_params": self.next_params,
            "next_opt_state": self.next_opt_state,
            "count": jnp.asarray(self.count, jnp.int32),
            "pending": self.pending if self.pending is not None else self.empty_rollout,
            "has_pending": jnp.asarray(self.pending is not None),
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.params, self.opt_state, self.eta = state["params"], state["opt_state"], state["eta"]
        self.meta_opt_state, self.next_params, self.next_opt_state = (
            state["meta_opt_state"],
            state["next_params"],
            state["next_opt_state"],
        )
        self.count, self.pending = int(state["count"]), state["pending"] if bool(state["has_pending"]) else None

    def eta_metrics(self) -> dict[str, float]:
        return {f"eta/{k}": float(v) for k, v in self.mt.objective.describe_eta(self.eta).items()}


def run_atari(
    env_name: str,
    objective,
    frames: int,
    seed: int,
    out: str | None,
    config: AtariRunConfig,
    network: NetworkConfig,
    progress: bool,
    run_config: dict | None,
    make_learner,
    *,
    resume: bool = False,
    checkpoint_interval_s: float = 60.0,
    max_nonfinite_skips: int = 10,
    summary_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The Atari host loop shared by plain training and online discovery.

    ``summary_extra`` adds keys to the summary (online discovery: its meta-gradient set-up).

    ``make_learner(trainer)`` returns an object with ``init(key)``,
    ``acting_params``, ``learn(rollout) -> metrics``, ``finish()``,
    ``eta_metrics()``, ``state()`` and ``restore(state)`` (``PlainLearner``
    or ``MetaLearner``).

    With ``out``, the learner's state (and the actor's RNG key, the scores so
    far) is checkpointed to ``out/training_state`` every
    ``checkpoint_interval_s`` seconds and on SIGINT/SIGTERM; ``resume``
    continues from it. envpool's emulator state cannot be saved, so a resumed
    run restarts its games from fresh emulators (the games in progress at the
    checkpoint are lost) and, with ``overlap``, the update in flight at a
    checkpoint is applied before it: as close to an uninterrupted run as
    envpool allows, not bit-identical.
    """
    from evaluation.atari_scores import human_normalised

    game = game_of(env_name)
    if frames <= 0:
        raise InvalidConfigError(f"--frames must be positive, got {frames}")
    if config.num_envs <= 0 or config.unroll_length <= 0:
        raise InvalidConfigError("num_envs and unroll_length must be positive")
    network.validate()  # make_agent would too, but only after RunDir.prepare
    atari_config = AtariConfig(
        num_envs=config.num_envs, seed=seed, sticky_actions=config.sticky_actions, episodic_life=config.episodic_life
    )
    frames_per_update = config.num_envs * config.unroll_length * atari_config.frame_skip
    num_updates = max(1, math.ceil(frames / frames_per_update))
    run = RunDir.prepare(out, run_config or {"env": env_name, "frames": frames, "seed": seed}) if out else None
    env = AtariEnv(game, atari_config)
    guard = None
    if run is not None:
        guard = LongRun(
            run.path / "training_state",
            resume=resume,
            checkpoint_interval_s=checkpoint_interval_s,
            max_nonfinite_skips=max_nonfinite_skips,
            what=f"{env_name} run",
            unit="updates",
        )
    try:
        trainer = build_atari_trainer(env.spec, objective, config, network, num_updates)
        learner = make_learner(trainer)
        learner.init(jax.random.PRNGKey(seed))
        actor = AtariActor(env, trainer.agent.apply, config.unroll_length, seed + 1)
        if isinstance(learner, MetaLearner):
            learner.empty_rollout = actor.empty_rollout()

        def snapshot() -> dict[str, Any]:
            return {"learner": learner.state(), "actor_key": actor._key}

        done, extra = 0, {}
        if guard is not None:
            guard.__enter__()
            done, restored, extra = guard.start(snapshot())
            if done:
                learner.restore(restored["learner"])
                actor._key = restored["actor_key"]
        scores: list[tuple[int, float]] = [
            tuple(x) for x in extra.get("scores", [])
        ]  # (frame at which the game ended, score)
        curve: list[tuple[int, float]] = [tuple(x) for x in extra.get("curve", [])]
        wall_before = float(extra.get("wall_s", 0.0))
        start = time.perf_counter()
        last_log = start
        total_frames = num_updates * frames_per_update
        metrics: dict[str, Any] = {}
        skips = 0
        warm_start, warm_update = None, None
        with ProgressBar(
            f"{'discover' if learner.eta_metrics() else 'train'} {env_name} ({objective.name})",
            total_frames,
            "frames",
            enabled=progress,
        ) as bar:
            bar.resume_from(done * frames_per_update)
            for update in range(done, num_updates):
                rollout = actor.collect(learner.acting_params)
                frame = (update + 1) * frames_per_update
                scores.extend((frame, s) for s in env.pop_game_scores())
                metrics = learner.learn(rollout) or metrics
                if update == num_updates - 1:
                    metrics = learner.finish() or metrics
                if guard is not None and metrics:
                    guard.count_skips(update + 1, np.asarray([float(metrics[SKIP_KEY])]))
                    skips = guard.total_skips
                now = time.perf_counter()
                if update == done + WARMUP_UPDATES - 1:
                    warm_start, warm_update = now, update + 1  # compilation (plain and meta-update) is behind us
                wall = wall_before + now - start
                recent = [s for _, s in scores[-20:]]
                if now - last_log >= config.log_every_s or update == num_updates - 1:
                    last_log = now
                    row = {k: float(v) for k, v in jax.device_get(metrics).items()} if metrics else {}
                    row.update(learner.eta_metrics())
                    row.update(
                        frames=frame,
                        fps=(frame - done * frames_per_update) / (now - start),
                        games=len(scores),
                        wall_s=wall,
                        nonfinite_skips_total=skips,
                    )
                    if recent:
                        row["score_last20"] = float(np.mean(recent))
                        curve.append((frame, row["score_last20"]))
                    if run is not None:
                        run.log(frame, row)
                bar.update(
                    frames_per_update,
                    (f"score {np.mean(recent):.1f}" if recent else "") + (f", skipped {skips}" if skips else ""),
                )
                if guard is not None and update < num_updates - 1:
                    guard.after_chunk(
                        update + 1, None, extra={"scores": scores, "curve": curve, "wall_s": wall}, lazy_state=snapshot
                    )
        params = learner.acting_params
        jax.block_until_ready(params)
        end = time.perf_counter()
        wall_s = wall_before + end - start
        steady_fps = (
            (num_updates - warm_update) * frames_per_update / (end - warm_start)
            if warm_update and warm_update < num_updates
            else None
        )
        if guard is not None:
            guard.save(num_updates, snapshot(), extra={"scores": scores, "curve": curve, "wall_s": wall_s})
    finally:
        if guard is not None:
            guard.__exit__(None, None, None)
        env.close()
    window_start = total_frames * (1 - FINAL_FRACTION)
    final_scores = [s for f, s in scores if f > window_start] or [s for _, s in scores[-10:]]
    score = float(np.mean(final_scores)) if final_scores else None
    summary = {
        "env": env_name,
        "objective": objective.name,
        "frames": total_frames,
        "steps": total_frames // atari_config.frame_skip,
        "seed": seed,
        "score": score,
        "final_return": score,
        "final_return_definition": "mean raw game score of games finished in the last 10% of frames (last 10 games if none)",
        "human_normalised": None if score is None else human_normalised(game, score),
        "games": len(scores),
        "final_meta_parameters": {k.removeprefix("eta/"): v for k, v in learner.eta_metrics().items()} or None,
        "wall_s": wall_s,
        "frames_per_s": (total_frames - done * frames_per_update) / max(wall_s - wall_before, 1e-9),
        "steps_per_s": (total_frames - done * frames_per_update)
        / atari_config.frame_skip
        / max(wall_s - wall_before, 1e-9),
        "steady_frames_per_s": steady_fps,
        "nonfinite_skips": skips,
        "resumed_at_update": done if resume else None,
        **(summary_extra or {}),
        "params": params,
    }
    if run is not None:
        plot_lines(
            run.path / "learning_curve.png",
            [(objective.name, [f for f, _ in curve], [s for _, s in curve])],
            title=f"{env_name}: score (mean of last 20 games)",
            xlabel="frames",
            ylabel="game score",
        )
        eta_curves: dict[
            str, list[tuple[int, float]]
        ] = {}  # online discovery: the meta-parameters logged so far (every session's)
        for row in run.read_metrics():
            for key, value in row.items():
                if key.startswith("eta/") and isinstance(value, (int, float)):
                    eta_curves.setdefault(key.removeprefix("eta/"), []).append((row["step"], value))
        if eta_curves:
            plot_lines(
                run.path / "meta_parameters.png",
                [(name, [f for f, _ in points], [v for _, v in points]) for name, points in sorted(eta_curves.items())],
                title=f"{env_name}: meta-parameters ({objective.name})",
                xlabel="frames",
                ylabel="value",
            )
        run.write_summary({k: v for k, v in summary.items() if k != "params"})
        run.close()
    return summary


def discover_atari_online(
    env_name: str,
    objective,
    frames: int,
    seed: int,
    out: str | None,
    meta_config,
    outer_objective,
    config: AtariRunConfig = AtariRunConfig(),
    network: NetworkConfig = NetworkConfig(),
    progress: bool = True,
    run_config: dict | None = None,
    meta_interval: int = 1,
    **longrun: Any,
) -> dict[str, Any]:
    """Online discovery (FRODO, MGRL, STAC) inside one Atari game's lifetime; 1-step meta-gradients.

    Same outputs as ``train_atari`` plus ``final_meta_parameters``; ``longrun`` as there.
    """
    from training.meta_gradient import MetaGradientTrainer

    if meta_config.inner_steps != 1 or meta_config.mix or meta_config.monte_carlo != 1:
        raise InvalidConfigError(
            "online discovery on Atari supports 1-step meta-gradients only (--inner-steps 1, no --mix)"
        )
    if not objective.is_learned:
        raise InvalidConfigError(f"objective {objective.name!r} has no meta-parameters to learn")
    return run_atari(
        env_name,
        objective,
        frames,
        seed,
        out,
        config,
        network,
        progress,
        run_config,
        make_learner=lambda trainer: MetaLearner(
            MetaGradientTrainer.create(trainer, outer_objective, meta_config), meta_interval
        ),
        summary_extra={
            "inner_steps": 1,
            "mix": False,
            "num_seeds": 1,
            "meta_interval": meta_interval,
        },  # as toy online runs report
        **longrun,
    )
