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
import contextlib
import dataclasses
import math
import time
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lpg import xla_flags
from lpg.envs.atari import AtariConfig, AtariEnv
from lpg.errors import InvalidConfigError
from lpg.harness import Run
from lpg.networks import NetworkConfig, make_agent
from lpg.optim import OptimizerConfig
from lpg.progress import ProgressBar
from lpg.run_io import plot_lines
from lpg.types import Rollout
from lpg.validation import NON_NEGATIVE, POSITIVE_COUNT, UNIT, Config
from training.actor_critic import ActorCriticTrainer, TrainConfig
from training.guards import SKIP_KEY, guarded_apply

XLA_YNN_OFF = xla_flags.for_atari()  # before JAX starts: the CNN's dots and convolutions without YNNPACK (lpg/xla_flags.py)

FINAL_FRACTION = 0.1
WARMUP_UPDATES = 2  # updates left out of ``steady_frames_per_s``: they compile the plain update and the meta-update


@dataclasses.dataclass(frozen=True)
class AtariRunConfig(Config):
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

    WHAT = "Atari run"
    RANGES = {
        "num_envs": POSITIVE_COUNT,
        "unroll_length": POSITIVE_COUNT,
        "sticky_actions": UNIT,
        "log_every_s": NON_NEGATIVE,
    }


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
    run: Run | None,
    config: AtariRunConfig = AtariRunConfig(),
    network: NetworkConfig = NetworkConfig(),
    progress: bool = True,
) -> dict[str, Any]:
    """Trains one agent on ``env_name`` for ``frames`` emulator frames with ``objective`` at ``eta``.

    Returns the summary (also written to ``run``'s folder when given): ``score``
    (mean raw game score of the games finished in the last 10 % of frames),
    ``human_normalised``, frames, wall time and frames/s (see ``run_atari``).
    """
    return run_atari(
        env_name,
        objective,
        frames,
        seed,
        run,
        config,
        network,
        progress,
        make_learner=lambda trainer: PlainLearner(trainer, eta, config.overlap),
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
    """Online meta-gradients on Atari (FRODO, MGRL, STAC): 1-step, n-step and mixing over the kept rollouts.

    Atari cannot act look-ahead rollouts inside a differentiated function, so
    the n-step look-ahead of ``training/meta_gradient.py`` runs over the last
    n rollouts the agent really acted (a sliding window, truncated backprop
    through the agent's own recent updates, as in Xu et al. 2018):

        window = tau_{k-n}..tau_{k-1}, acted by theta_{k-n}..theta_{k-1}; tau_k just acted
        theta^(0) = theta_{k-n};  theta^(i) = update(theta^(i-1), eta, tau_{k-n+i-1})   (i = 1..n)
        L'_i = outer loss of theta^(i) on the rollout it acted (tau_{k-n+i}; tau_k for i = n)
        grad = d/d eta sum_i w_i L'_i   (n-step: w = (0, .., 0, 1); mixing: Bonnet et al. eq. 10)

    theta^(1..n) (stop-gradiented, at the eta before this meta-update) become
    the parameters that acted the new window tau_{k-n+1}..tau_k, and the agent
    that acts next is theta^(n) updated once more on tau_k at the new eta. So
    every rollout is learned from once by the kept agent and no sample is
    thrown away; with n = 1 this is Xu et al.'s online cross-validation (the
    kept update on tau_{k-1} is re-done at the current eta and differentiated,
    tau_k is the outer rollout). Every ``meta_interval``-th rollout gets a
    meta-gradient (once the window is full); the others a plain update at the
    current eta (a cost knob: a 1-step meta-gradient through the Nature-DQN
    costs about 4 plain updates on CPU, and a run with a 3-step mixing one every
    update acts 4.5x fewer frames/s than with a 1-step one; README).
    """

    def __init__(self, meta_trainer, meta_interval: int = 1, initial_eta: Any = None):
        self.initial_eta = initial_eta  # a saved objective's eta to start from (None: the objective's init)
        if meta_interval < 1:
            raise InvalidConfigError(f"meta_interval must be >= 1, got {meta_interval}")
        check_atari_meta_config(meta_trainer.config)
        self.mt = meta_trainer
        self.meta_interval = meta_interval
        self.n = meta_trainer.config.inner_steps
        trainer = meta_trainer.trainer
        self._update = jax.jit(trainer.agent_update)
        self._meta = jax.jit(self._meta_update)
        self.count = 0
        self.window: list[Rollout] = []  # the last n rollouts, oldest first
        self.acted_by: list[tuple[Any, Any]] = []  # the (params, optimiser state) that acted each of them
        self.empty_rollout: Rollout | None = None  # a zero rollout of the right shape (pads a checkpoint's window)

    def init(self, key: chex.PRNGKey) -> None:
        trainer = self.mt.trainer
        params_key, eta_key = jax.random.split(key)
        self.next_params = trainer.agent.init(params_key)
        self.next_opt_state = trainer.optimizer.init(self.next_params)
        self.eta = trainer.objective.init(eta_key) if self.initial_eta is None else self.initial_eta
        self.meta_opt_state = self.mt.meta_optimizer.init(self.eta)
        self.eta_start = self.eta  # init_pull's anchor: rebuilt from the seed or the checkpoint on --resume
        self.critic = None  # the outer loss's own critic (params, optimiser state) where the objective needs one
        if self.mt.uses_critic:
            critic_params = trainer.agent.init(jax.random.fold_in(eta_key, 1))
            self.critic = (critic_params, trainer.optimizer.init(critic_params))

    def window_loss(self, eta, params, opt_state, inners: tuple[Rollout, ...], outer: Rollout, critic_params=None):
        """``sum_i w_i L'_i`` of the look-ahead through the kept updates on ``inners`` (a function of eta).

        Returns (loss, (theta^(1..n) with their optimiser states, metrics)).
        """
        trainer, weights = self.mt.trainer, self.mt.config.weights()
        update = jax.checkpoint(trainer.agent_update) if self.mt.config.remat else trainer.agent_update
        targets = (*inners[1:], outer)  # theta^(i) acted targets[i - 1]
        total, kept, metrics, outer_metrics = jnp.zeros((), jnp.result_type(float)), [], None, None
        p, o = params, opt_state
        for inner, target, weight in zip(inners, targets, weights):
            p, o, inner_metrics = update(p, o, eta, inner)
            kept.append((p, o))
            metrics = inner_metrics if metrics is None else metrics  # the first kept update's, as on toy runs
            if weight != 0.0:
                loss, step_metrics = self.mt._outer_loss(eta, p, params, target, critic_params)
                total = total + weight * loss
                outer_metrics = step_metrics if outer_metrics is None else outer_metrics  # the first weighted L'_i
        return total, (kept, {**metrics, **outer_metrics, "meta_loss": total})

    def _meta_update(self, params, opt_state, eta, meta_opt_state, critic, inners: tuple[Rollout, ...], outer):
        trainer = self.mt.trainer
        critic_metrics = {}
        if critic is not None:  # the critic first learns from the latest inner rollout; the outer loss then uses it
            critic_params, critic_opt, critic_loss = self.mt.critic_update(*critic, inners[-1])
            critic, critic_metrics = (critic_params, critic_opt), {"outer_critic_loss": critic_loss}
        critic_params = None if critic is None else critic[0]
        grads, (kept, metrics) = jax.grad(self.window_loss, has_aux=True)(
            eta, params, opt_state, inners, outer, critic_params
        )
        metrics = {**metrics, **critic_metrics}
        grads = self.mt.pulled(grads, eta, self.eta_start)
        updates, new_meta_opt_state = self.mt.meta_optimizer.update(grads, meta_opt_state, eta)
        # A non-finite meta-gradient skips the meta-update (training/longrun.py).
        (eta, meta_opt_state), meta_skipped = guarded_apply(
            grads, (optax.apply_updates(eta, updates), new_meta_opt_state), (eta, meta_opt_state)
        )
        metrics["nonfinite_meta_skipped"] = meta_skipped
        metrics[SKIP_KEY] = jnp.maximum(metrics[SKIP_KEY], meta_skipped)
        metrics["meta_grad_norm"] = optax.tree.norm(grads)
        metrics["eta_distance"] = self.mt.eta_distance(eta, self.eta_start)
        kept = jax.lax.stop_gradient(kept)
        next_params, next_opt, _ = trainer.agent_update(*kept[-1], eta, outer)
        return kept, eta, meta_opt_state, critic, next_params, next_opt, metrics

    @property
    def acting_params(self) -> Any:
        return self.next_params

    def learn(self, rollout: Rollout) -> dict[str, Any]:
        """Learns from ``rollout``, just acted by ``acting_params``: a meta-update when due, else a plain one."""
        self.count += 1
        if len(self.window) < self.n or self.count % self.meta_interval:
            self.window = [*self.window, rollout][-self.n :]
            self.acted_by = [*self.acted_by, (self.next_params, self.next_opt_state)][-self.n :]
            self.next_params, self.next_opt_state, metrics = self._update(
                self.next_params, self.next_opt_state, self.eta, rollout
            )
            return metrics
        params, opt_state = self.acted_by[0]
        kept, self.eta, self.meta_opt_state, self.critic, self.next_params, self.next_opt_state, metrics = self._meta(
            params, opt_state, self.eta, self.meta_opt_state, self.critic, tuple(self.window), rollout
        )
        self.window, self.acted_by = [*self.window[1:], rollout], list(kept)
        return metrics

    def finish(self) -> dict[str, Any]:
        return {}

    def state(self) -> dict[str, Any]:
        """The learner's arrays for a training checkpoint (the window padded to n rollouts; its size is min(count, n))."""
        pad = self.n - len(self.window)
        return {
            "eta": self.eta,
            "meta_opt_state": self.meta_opt_state,
            "next_params": self.next_params,
            "next_opt_state": self.next_opt_state,
            "count": jnp.asarray(self.count, jnp.int32),
            "window": [*self.window, *[self.empty_rollout] * pad],
            "acted_by": [*self.acted_by, *[(self.next_params, self.next_opt_state)] * pad],
            **({} if self.critic is None else {"critic_params": self.critic[0], "critic_opt_state": self.critic[1]}),
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.eta, self.meta_opt_state = state["eta"], state["meta_opt_state"]
        self.next_params, self.next_opt_state = state["next_params"], state["next_opt_state"]
        self.count = int(state["count"])
        size = min(self.count, self.n)  # every rollout learned from enters the window, which keeps the last n
        self.window = list(state["window"])[:size]
        self.acted_by = [tuple(pair) for pair in state["acted_by"]][:size]
        if self.critic is not None:
            self.critic = (state["critic_params"], state["critic_opt_state"])

    def eta_metrics(self) -> dict[str, float]:
        return {f"eta/{k}": float(v) for k, v in self.mt.objective.describe_eta(self.eta).items()}


def run_atari(
    env_name: str,
    objective,
    frames: int,
    seed: int,
    run: Run | None,
    config: AtariRunConfig,
    network: NetworkConfig,
    progress: bool,
    make_learner,
    *,
    summary_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The Atari host loop shared by plain training and online discovery.

    ``summary_extra`` adds keys to the summary (online discovery: its meta-gradient set-up).

    ``make_learner(trainer)`` returns an object with ``init(key)``,
    ``acting_params``, ``learn(rollout) -> metrics``, ``finish()``,
    ``eta_metrics()``, ``state()`` and ``restore(state)`` (``PlainLearner``
    or ``MetaLearner``).

    With a ``run`` (``lpg.harness.Run``, not yet opened), the learner's state
    (and the actor's RNG key, the scores so far) is checkpointed to its
    ``training_state`` at its interval and on SIGINT/SIGTERM; its ``resume``
    continues from it. Without one nothing is written (benchmarks). envpool's
    emulator state cannot be saved, so a resumed run restarts its games from
    fresh emulators (the games in progress at the checkpoint are lost) and,
    with ``overlap``, the update in flight at a checkpoint is applied before
    it: as close to an uninterrupted run as envpool allows, not bit-identical.
    """
    if frames <= 0:
        raise InvalidConfigError(f"--frames must be positive, got {frames}")
    network.validate()  # make_agent would too, but only after the run folder is written
    atari_config = AtariConfig(
        num_envs=config.num_envs, seed=seed, sticky_actions=config.sticky_actions, episodic_life=config.episodic_life
    )
    per_update = config.num_envs * config.unroll_length * atari_config.frame_skip
    num_updates = max(1, math.ceil(frames / per_update))
    label = f"{'discover' if summary_extra else 'train'} {env_name} ({objective.name})"
    guard = run.open(total=num_updates * per_update, label=label, progress_unit="frames") if run is not None else None
    env = AtariEnv(game_of(env_name), atari_config)
    try:
        trainer = build_atari_trainer(env.spec, objective, config, network, num_updates)
        learner = make_learner(trainer)
        learner.init(jax.random.PRNGKey(seed))
        actor = AtariActor(env, trainer.agent.apply, config.unroll_length, seed + 1)
        if isinstance(learner, MetaLearner):
            learner.empty_rollout = actor.empty_rollout()
        loop = _AtariLoop(env, actor, learner, guard, num_updates, per_update, config.log_every_s)
        bar_context = (
            ProgressBar(label, num_updates * per_update, "frames", enabled=progress) if guard is None else None
        )
        with contextlib.ExitStack() as stack:
            if guard is not None:
                stack.enter_context(guard)
            loop.start()
            with bar_context or contextlib.nullcontext(guard.bar) as bar:
                loop.run(bar)
            params = loop.finish()
    finally:
        env.close()
    summary = {
        "env": env_name,
        "objective": objective.name,
        "seed": seed,
        **loop.summary(game_of(env_name), atari_config.frame_skip),
        "resumed_at_update": loop.done if run is not None and run.resume else None,
        **(summary_extra or {}),
        "params": params,
        "eta": getattr(learner, "eta", None),
    }
    if run is not None:
        _plot_atari(run, env_name, objective.name, loop.curve)
        run.finish({k: v for k, v in summary.items() if k not in ("params", "eta")})
    return summary


class _AtariLoop:
    """One Atari lifetime's host loop: act, learn, log, checkpoint; the scores and curve it collects."""

    def __init__(self, env, actor, learner, guard: Run | None, num_updates: int, per_update: int, log_every_s: float):
        self.env, self.actor, self.learner, self.guard = env, actor, learner, guard
        self.num_updates, self.per_update, self.log_every_s = num_updates, per_update, log_every_s
        self.done, self.scores, self.curve = 0, [], []  # scores: (frame at which the game ended, score)
        self.wall_before, self.skips, self.metrics = 0.0, 0, {}
        self.warm_start = self.warm_update = None

    def snapshot(self) -> dict[str, Any]:
        return {"learner": self.learner.state(), "actor_key": self.actor._key}

    def start(self) -> None:
        if self.guard is not None:
            self.done, restored, extra = self.guard.start(self.snapshot())
            if self.done:
                self.learner.restore(restored["learner"])
                self.actor._key = restored["actor_key"]
            self.scores = [tuple(x) for x in extra.get("scores", [])]
            self.curve = [tuple(x) for x in extra.get("curve", [])]
            self.wall_before = float(extra.get("wall_s", 0.0))
        self.start_time = self.last_log = time.perf_counter()

    def wall(self) -> float:
        return self.wall_before + time.perf_counter() - self.start_time

    def run(self, bar) -> None:
        bar.resume_from(self.done * self.per_update)
        for update in range(self.done, self.num_updates):
            frame = self.step(update)
            recent = [s for _, s in self.scores[-20:]]
            now = time.perf_counter()
            if now - self.last_log >= self.log_every_s or update == self.num_updates - 1:
                self.last_log = now
                self.log(frame, recent)
            skipped = f", skipped {self.skips}" if self.skips else ""
            bar.update(self.per_update, (f"score {np.mean(recent):.1f}" if recent else "") + skipped)
            if self.guard is not None and update < self.num_updates - 1:
                extra = {"scores": self.scores, "curve": self.curve, "wall_s": self.wall()}
                self.guard.checkpoint(update + 1, None, extra=extra, lazy_state=self.snapshot)

    def step(self, update: int) -> int:
        """Acts for one rollout and learns from it; returns the frame count after it."""
        rollout = self.actor.collect(self.learner.acting_params)
        frame = (update + 1) * self.per_update
        self.scores.extend((frame, s) for s in self.env.pop_game_scores())
        self.metrics = self.learner.learn(rollout) or self.metrics
        if update == self.num_updates - 1:
            self.metrics = self.learner.finish() or self.metrics
        if self.guard is not None and self.metrics:
            self.guard.count_skips(update + 1, np.asarray([float(self.metrics[SKIP_KEY])]))
            self.skips = self.guard.total_skips
        if update == self.done + WARMUP_UPDATES - 1:  # compilation (plain and meta-update) is behind us
            self.warm_start, self.warm_update = time.perf_counter(), update + 1
        return frame

    def log(self, frame: int, recent: list[float]) -> None:
        row = {k: float(v) for k, v in jax.device_get(self.metrics).items()} if self.metrics else {}
        row.update(self.learner.eta_metrics())
        fps = (frame - self.done * self.per_update) / (time.perf_counter() - self.start_time)
        row.update(frames=frame, fps=fps, games=len(self.scores), wall_s=self.wall(), nonfinite_skips_total=self.skips)
        if recent:
            row["score_last20"] = float(np.mean(recent))
            self.curve.append((frame, row["score_last20"]))
        if self.guard is not None:
            self.guard.log(frame, row)

    def finish(self) -> Any:
        params = self.learner.acting_params
        jax.block_until_ready(params)
        self.end_time = time.perf_counter()
        if self.guard is not None:
            extra = {"scores": self.scores, "curve": self.curve, "wall_s": self.wall()}
            self.guard.save(self.num_updates, self.snapshot(), extra=extra)
        return params

    def summary(self, game: str, frame_skip: int) -> dict[str, Any]:
        from lpg.envs.atari_scores import human_normalised

        total = self.num_updates * self.per_update
        window_start = total * (1 - FINAL_FRACTION)
        final_scores = [s for f, s in self.scores if f > window_start] or [s for _, s in self.scores[-10:]]
        score = float(np.mean(final_scores)) if final_scores else None
        session = max(self.end_time - self.start_time, 1e-9)
        steady = self.warm_update is not None and self.warm_update < self.num_updates
        eta = {k.removeprefix("eta/"): v for k, v in self.learner.eta_metrics().items()}
        return {
            "frames": total,
            "steps": total // frame_skip,
            "score": score,
            "final_return": score,
            "final_return_definition": "mean raw game score of games finished in the last 10% of frames "
            "(last 10 games if none)",
            "human_normalised": None if score is None else human_normalised(game, score),
            "games": len(self.scores),
            "final_meta_parameters": eta or None,
            "wall_s": self.wall_before + session,
            "frames_per_s": (total - self.done * self.per_update) / session,
            "steps_per_s": (total - self.done * self.per_update) / frame_skip / session,
            "steady_frames_per_s": (self.num_updates - self.warm_update)
            * self.per_update
            / (self.end_time - self.warm_start)
            if steady
            else None,
            "nonfinite_skips": self.skips,
        }


def _plot_atari(run: Run, env_name: str, objective: str, curve: list[tuple[int, float]]) -> None:
    """learning_curve.png and, for online discovery, meta_parameters.png (every session's logged values)."""
    plot_lines(
        run.path / "learning_curve.png",
        [(objective, [f for f, _ in curve], [s for _, s in curve])],
        title=f"{env_name}: score (mean of last 20 games)",
        xlabel="frames",
        ylabel="game score",
    )
    eta_curves: dict[str, list[tuple[int, float]]] = {}
    for row in run.read_metrics():
        for key, value in row.items():
            if key.startswith("eta/") and isinstance(value, (int, float)):
                eta_curves.setdefault(key.removeprefix("eta/"), []).append((row["step"], value))
    if eta_curves:
        plot_lines(
            run.path / "meta_parameters.png",
            [(name, [f for f, _ in points], [v for _, v in points]) for name, points in sorted(eta_curves.items())],
            title=f"{env_name}: meta-parameters ({objective})",
            xlabel="frames",
            ylabel="value",
        )


def check_atari_meta_config(meta_config) -> None:
    """Atari's meta-gradients look ahead over rollouts already acted: n >= 1, one estimate each."""
    if meta_config.inner_steps < 1:
        raise InvalidConfigError(
            "online discovery on Atari needs --inner-steps >= 1 (a frozen objective runs with lpg train or lpg evaluate)"
        )
    if meta_config.monte_carlo != 1:
        raise InvalidConfigError("Atari acts each rollout once: --monte-carlo must be 1 on Atari")


def discover_atari_online(
    env_name: str,
    objective,
    frames: int,
    seed: int,
    run: Run | None,
    meta_config,
    outer_objective,
    config: AtariRunConfig = AtariRunConfig(),
    network: NetworkConfig = NetworkConfig(),
    progress: bool = True,
    meta_interval: int = 1,
    initial_eta: Any = None,
) -> dict[str, Any]:
    """Online discovery (FRODO, MGRL, STAC, a saved LPG) inside one Atari game's lifetime (``MetaLearner``).

    Same outputs as ``train_atari`` plus ``final_meta_parameters`` and ``eta`` (the final meta-parameters);
    ``initial_eta`` starts from a saved objective's instead of the objective's ``init``.
    """
    from training.meta_gradient import MetaGradientTrainer

    check_atari_meta_config(meta_config)
    if not objective.is_learned:
        raise InvalidConfigError(f"objective {objective.name!r} has no meta-parameters to learn")
    return run_atari(
        env_name,
        objective,
        frames,
        seed,
        run,
        config,
        network,
        progress,
        make_learner=lambda trainer: MetaLearner(
            MetaGradientTrainer.create(trainer, outer_objective, meta_config), meta_interval, initial_eta
        ),
        summary_extra={
            "inner_steps": meta_config.inner_steps,
            "mix": meta_config.mix,
            "num_seeds": 1,
            "meta_interval": meta_interval,
        },
    )
