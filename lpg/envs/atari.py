"""Atari-57 through envpool: batched, host-side (not pure-JAX) environments.

Every game of the standard Atari-57 benchmark is registered as
``atari/<Game>`` (envpool's CamelCase names, envpool task ``<Game>-v5``)::

    env = lpg.envs.make("atari/Pong")                     # AtariConfig() defaults
    env = make_atari("Pong", AtariConfig(num_envs=16, sticky_actions=0.25))
    timestep = env.reset()                                # batched [B]
    timestep = env.step(actions)                          # actions int [B]
    timestep, info = env.step_with_info(actions)          # + raw game scores

Importing this module and listing the names does not import envpool; building
an environment does, and raises ``UserInputError`` when it is not installed
(``pip install 'lpg[atari]'``). ``atari_spec`` gives the ``EnvSpec`` of a game
without envpool.

Preprocessing (done inside envpool's C++, in the order of the OpenAI Baselines
wrappers): up to ``noop_max`` random no-op frames (and a FIRE press on games
that have it) after each reset, action repeat ``frame_skip`` with a max-pool
over the last two frames, grey scale, resize to 84x84 (cv::INTER_AREA),
``stack`` frames stacked on the first axis, so an observation is
``uint8 [stack, 84, 84]`` and a batch ``uint8 [B, stack, 84, 84]`` (no
normalisation: agents divide by 255). Rewards are the raw game rewards: reward
clipping is an objective option, not an environment one.

Auto-reset convention (the one of ``lpg.types``). envpool itself signals the
end of an episode with the *last* observation of the finished episode and only
resets that environment on the *next* call for it (ignoring its action and
returning the reset observation with reward 0). ``AtariEnv.step`` hides this
lag: when some environments finish, it immediately resets just those
(envpool's synchronous mode accepts a subset of ``env_id``), so the timestep
it returns has the final reward, discount 0, done True and the first
observation of the next episode for them, as the pure-JAX environments do. The
extra call happens only on steps where an episode ends (once every few
thousand steps per environment on real games), so it costs nothing
measurable. Time-limit truncation (``max_episode_frames``) is treated as
termination (discount 0).

Scores. ``step_with_info`` also returns an ``AtariInfo``: the raw return of the
learning episode that ended (``episode_return``, valid where ``done``) and the
raw score of the full game that ended (``game_score``, valid where
``game_over``). They differ only with ``episodic_life=True``, where a learning
episode ends at every life loss but the game (and the score reported for
evaluation, human normalisation etc.) goes on until game over or the time
limit. ``pop_game_scores()`` drains the list of finished game scores. As in
envpool (and the Baselines wrappers), rewards during the no-op / FIRE frames
played by a reset are not counted; with ``episodic_life`` that includes the
ones after each life loss.

Python API vs. XLA interface. Measured on the 2-core CPU development machine
(Pong, 8 envs, batch_size = num_envs, uniformly random actions, 3000 batched
steps after 50 warm-up steps, each variant in a fresh process), with::

    for v in python_api xla_loop xla_per_call atari_env; do
      .venv/bin/python -c "from lpg.envs.atari import benchmark; print(benchmark('$v'))"
    done

Other jobs shared the machine (load average 7-9 on 2 cores), so wall-clock
rates swung by 2x between runs; the CPU time per environment step (all
threads of the process) is the stable figure. Three rounds (wall env-steps/s,
CPU us/env-step; median in brackets):

    python_api    envpool env.step in a Python loop     3859 1773 1724 [1773]   268 282 313 [282]
    xla_loop      XLA step in one jitted fori_loop      2460 2043 2411 [2411]   287 282 277 [282]
                  (best case: actions drawn in jit, no host round-trips)
    xla_per_call  one jitted XLA step per Python call   3466 3935 2593 [3466]   321 306 322 [321]
    atari_env     AtariEnv.step (Python API + fix-up)   4019 2779 3023 [3023]   279 298 268 [279]

In a quieter moment (an earlier version of the same loops, one process,
2000 steps each): Python API 6670, XLA loop 6890, XLA per call 6140
env-steps/s.

The emulator dominates (~280 CPU-us per environment step, i.e. ~70 us per
emulated frame): the Python API and the fully jitted XLA loop cost the same
CPU, wall-clock differences are within the noise, and calling the XLA step
once per step from Python costs ~10% more CPU. The XLA interface is *not*
used: inside jit the batch shapes are static, so the finished environments
cannot be stepped on their own, and the auto-reset convention above could not
hold (one would get envpool's one-step lag, i.e. a spurious transition from
the last observation of an episode to the first of the next). ``AtariEnv``
uses the batched Python API.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import numpy as np

from lpg.envs import register
from lpg.envs.base import EnvSpec
from lpg.errors import InvalidConfigError, UnknownNameError, UserInputError, unknown_name_error
from lpg.types import TimeStep

__all__ = [
    "ATARI_57",
    "AtariConfig",
    "AtariEnv",
    "AtariInfo",
    "atari_spec",
    "make_atari",
]

# The 57 games of the standard benchmark with the size of their minimal action
# set (what envpool exposes with full_action_space=False; checked by the tests).
_MINIMAL_NUM_ACTIONS: dict[str, int] = {
    "Alien": 18, "Amidar": 10, "Assault": 7, "Asterix": 9, "Asteroids": 14,
    "Atlantis": 4, "BankHeist": 18, "BattleZone": 18, "BeamRider": 9,
    "Berzerk": 18, "Bowling": 6, "Boxing": 18, "Breakout": 4, "Centipede": 18,
    "ChopperCommand": 18, "CrazyClimber": 9, "Defender": 18, "DemonAttack": 6,
    "DoubleDunk": 18, "Enduro": 9, "FishingDerby": 18, "Freeway": 3,
    "Frostbite": 18, "Gopher": 8, "Gravitar": 18, "Hero": 18, "IceHockey": 18,
    "Jamesbond": 18, "Kangaroo": 18, "Krull": 18, "KungFuMaster": 14,
    "MontezumaRevenge": 18, "MsPacman": 9, "NameThisGame": 6, "Phoenix": 8,
    "Pitfall": 18, "Pong": 6, "PrivateEye": 18, "Qbert": 6, "Riverraid": 18,
    "RoadRunner": 18, "Robotank": 18, "Seaquest": 18, "Skiing": 3,
    "Solaris": 18, "SpaceInvaders": 6, "StarGunner": 18, "Surround": 5,
    "Tennis": 18, "TimePilot": 10, "Tutankham": 8, "UpNDown": 6, "Venture": 18,
    "VideoPinball": 9, "WizardOfWor": 10, "YarsRevenge": 18, "Zaxxon": 18,
}  # fmt: skip
_FULL_NUM_ACTIONS = 18

ATARI_57: tuple[str, ...] = tuple(sorted(_MINIMAL_NUM_ACTIONS))
"""The CamelCase names of the Atari-57 games (``atari/<Game>``, envpool ``<Game>-v5``)."""

_IMAGE_SIZE = 84
GAMES_LISTING = "Atari-57 games: see `lpg envs --kind atari`"
_INSTALL_HINT = "Atari environments need envpool: pip install 'lpg[atari]' (envpool 1.2.5 with envpool-assets 0.3.0)"


@dataclasses.dataclass(frozen=True)
class AtariConfig:
    """Configuration of a batch of Atari games (defaults: the DQN / Atari-57 protocol)."""

    num_envs: int = 8
    """Number of games stepped together; the batch size B of every timestep."""

    frame_skip: int = 4
    """Emulator frames per agent step (the action is repeated; reward summed;
    the observation is the max over the last two frames)."""

    stack: int = 4
    """Number of consecutive 84x84 grey frames stacked into one observation."""

    noop_max: int = 30
    """After each reset, a uniformly random number in [1, noop_max] of no-op
    frames is played (one fewer on games with FIRE, which is pressed once),
    so that episodes start from different states. 0 disables the random start:
    envpool cannot play zero no-ops, so exactly one no-op frame (zero on FIRE
    games) is played and the start is deterministic."""

    max_episode_frames: int = 108_000
    """Time limit in emulator frames (108,000 = 30 minutes at 60 Hz); the
    episode is then truncated, which counts as termination (discount 0).
    In agent steps: ``max_episode_frames // frame_skip``."""

    sticky_actions: float = 0.0
    """ALE ``repeat_action_probability``: on each frame the emulator repeats the
    previous action with this probability. 0.0 = deterministic emulator (the
    DQN protocol); 0.25 = the recommendation of Machado et al. (2018)."""

    episodic_life: bool = False
    """End the learning episode (done, discount 0) at every life loss; the game
    itself is only reset at game over. Reported game scores still cover the
    full game (see ``AtariInfo.game_score``)."""

    full_action_space: bool = False
    """Use all 18 ALE actions instead of the game's minimal action set."""

    fire_reset: bool = True
    """Press FIRE once after each reset on games whose action set has FIRE
    (envpool's default, as in the OpenAI Baselines wrappers)."""

    seed: int = 0
    """Seed of the batch; game i uses ``seed + i`` (no-op starts, sticky actions)."""

    num_threads: int = 0
    """Worker threads of envpool; 0 = automatic (one per game, capped by envpool)."""

    def __post_init__(self) -> None:
        checks = [
            (self.num_envs >= 1, "num_envs must be >= 1"),
            (self.frame_skip >= 1, "frame_skip must be >= 1"),
            (self.stack >= 1, "stack must be >= 1"),
            (self.noop_max >= 0, "noop_max must be >= 0"),
            (self.max_episode_frames >= self.frame_skip, "max_episode_frames must be >= frame_skip"),
            (0.0 <= self.sticky_actions <= 1.0, "sticky_actions (a probability) must be in [0, 1]"),
            (self.num_threads >= 0, "num_threads must be >= 0 (0 = automatic)"),
        ]
        for ok, message in checks:
            if not ok:
                raise InvalidConfigError(f"AtariConfig: {message}")

    @property
    def max_episode_steps(self) -> int:
        """The time limit in agent steps."""
        return self.max_episode_frames // self.frame_skip


@dataclasses.dataclass(frozen=True)
class AtariInfo:
    """Per-step extras of a batch of Atari games (numpy arrays, shape [B]).

    Attributes:
      episode_return: float32, raw (unclipped) return of the learning episode
        that ended on this step (valid where ``done``, 0 elsewhere).
      game_over: bool, a full game ended on this step (game over or time
        limit). Equals ``done`` unless ``episodic_life``.
      game_score: float32, raw score of the full game that ended on this step
        (valid where ``game_over``, 0 elsewhere).
      truncated: bool, the episode ended because of the time limit.
      lives: int32, lives left (after the reset for games that ended).
    """

    episode_return: np.ndarray
    game_over: np.ndarray
    game_score: np.ndarray
    truncated: np.ndarray
    lives: np.ndarray


def _game_name(game: str) -> str:
    """'Pong', 'atari/Pong', 'pong', 'Pong-v5' -> 'Pong'."""
    name = game.removeprefix("atari/")
    name = re.sub(r"-v\d+$", "", name)
    for g in ATARI_57:
        if g.lower() == name.lower().replace("_", ""):
            return g
    raise unknown_name_error("Atari game", game, ATARI_57, GAMES_LISTING)


def _words(game: str) -> str:
    """'MsPacman' -> 'Ms Pacman', 'UpNDown' -> 'Up N Down'."""
    return re.sub(r"(?<=[A-Za-z])(?=[A-Z])", " ", game)


def _description(game: str) -> str:
    return f"Atari 2600 {_words(game)} (Atari-57; envpool {game}-v5, 84x84 grey, 4 stacked frames, frame skip 4)"


def atari_spec(game: str, config: AtariConfig | None = None) -> EnvSpec:
    """The ``EnvSpec`` of ``atari/<game>`` under ``config``, without envpool."""
    config = config or AtariConfig()
    game = _game_name(game)
    return EnvSpec(
        name=f"atari/{game}",
        description=_description(game),
        observation_shape=(config.stack, _IMAGE_SIZE, _IMAGE_SIZE),
        observation_dtype="uint8",
        num_actions=_FULL_NUM_ACTIONS if config.full_action_space else _MINIMAL_NUM_ACTIONS[game],
        max_episode_steps=config.max_episode_steps,
        random_return=_reference_random_score(game),
        kind="atari",
    )


def _reference_random_score(game: str) -> float | None:
    try:
        import json
        from importlib import resources

        table = json.loads(resources.files("lpg.data").joinpath("atari_scores.json").read_text())
        return float(table["games"][game]["random"])
    except Exception:
        return None


def _import_envpool() -> Any:
    try:
        import envpool
    except ImportError as e:
        raise UserInputError(f"{_INSTALL_HINT}; importing envpool failed: {e}") from e
    return envpool


class AtariEnv:
    """A batch of ``config.num_envs`` copies of one Atari game (host-side, numpy).

    Not a pure-JAX ``Environment``: ``reset()`` and ``step(actions)`` run the
    emulators in envpool's C++ threads and return batched ``TimeStep``s of
    numpy arrays (observation uint8 [B, stack, 84, 84], reward / discount
    float32 [B], done bool [B]) following the auto-reset convention of
    ``lpg.types`` (see the module docstring). Actions may be numpy or JAX
    integer arrays of shape [B].
    """

    def __init__(self, game: str, config: AtariConfig | None = None):
        self.config = config = config or AtariConfig()
        self.game = _game_name(game)
        self.spec = atari_spec(self.game, config)
        envpool = _import_envpool()
        self._pool = envpool.make(
            f"{self.game}-v5",
            env_type="gymnasium",
            num_envs=config.num_envs,
            batch_size=config.num_envs,
            num_threads=config.num_threads,
            seed=config.seed,
            max_episode_steps=config.max_episode_steps,
            frame_skip=config.frame_skip,
            stack_num=config.stack,
            noop_max=max(config.noop_max, 1),
            img_height=_IMAGE_SIZE,
            img_width=_IMAGE_SIZE,
            gray_scale=True,
            episodic_life=config.episodic_life,
            reward_clip=False,
            repeat_action_probability=float(config.sticky_actions),
            full_action_space=config.full_action_space,
            use_fire_reset=config.fire_reset,
        )
        num_actions = int(self._pool.action_space.n)
        if num_actions != self.spec.num_actions:  # pragma: no cover - a different envpool/ROM
            self.spec = dataclasses.replace(self.spec, num_actions=num_actions)
        batch = config.num_envs
        self._all_ids = np.arange(batch, dtype=np.int32)
        self._episode_return = np.zeros(batch, np.float32)
        self._game_score = np.zeros(batch, np.float32)
        self._finished_scores: list[float] = []
        self._needs_reset = True
        self.last_info: AtariInfo | None = None

    @property
    def num_envs(self) -> int:
        return self.config.num_envs

    @property
    def num_actions(self) -> int:
        return self.spec.num_actions

    def reset(self) -> TimeStep:
        """Starts a new game in every environment; reward 0, discount 1, done False."""
        obs, info = self._pool.reset(self._all_ids)
        obs = self._in_env_order(obs, info["env_id"])
        batch = self.num_envs
        self._episode_return[:] = 0.0
        self._game_score[:] = 0.0
        self._needs_reset = False
        self.last_info = None
        return TimeStep(
            observation=obs,
            reward=np.zeros(batch, np.float32),
            discount=np.ones(batch, np.float32),
            done=np.zeros(batch, np.bool_),
        )

    def step(self, actions: Any) -> TimeStep:
        """Takes one action per environment (int [B]) and returns the next timesteps."""
        timestep, _ = self.step_with_info(actions)
        return timestep

    def step_with_info(self, actions: Any) -> tuple[TimeStep, AtariInfo]:
        """``step`` plus the raw episode returns and game scores (``AtariInfo``)."""
        if self._needs_reset:
            raise RuntimeError("AtariEnv.step called before reset()")
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,) or not np.issubdtype(actions.dtype, np.integer):
            raise ValueError(
                f"actions must be integers of shape ({self.num_envs},), got {actions.dtype} {actions.shape}"
            )
        if actions.size and (actions.min() < 0 or actions.max() >= self.num_actions):
            raise ValueError(f"actions must lie in [0, {self.num_actions}), got {actions}")
        obs, reward, terminated, truncated, info = self._pool.step(actions.astype(np.int32, copy=False), self._all_ids)
        env_id = info["env_id"]
        if not np.array_equal(env_id, self._all_ids):  # pragma: no cover - sync mode keeps the order
            order = np.argsort(env_id)
            obs, reward, terminated, truncated = obs[order], reward[order], terminated[order], truncated[order]
            info = {k: v[order] for k, v in info.items() if isinstance(v, np.ndarray) and v.shape[:1] == env_id.shape}
        reward = np.asarray(reward, np.float32)
        truncated = np.asarray(truncated, np.bool_)
        done = np.asarray(terminated, np.bool_) | truncated
        if self.config.episodic_life:
            game_over = done & (np.asarray(info["terminated"], np.bool_) | truncated)
        else:
            game_over = done
        lives = np.array(info["lives"], np.int32)

        self._episode_return += reward
        self._game_score += reward
        episode_return = np.where(done, self._episode_return, np.float32(0.0))
        game_score = np.where(game_over, self._game_score, np.float32(0.0))
        self._episode_return[done] = 0.0
        self._game_score[game_over] = 0.0

        if done.any():
            # Reset the finished games now, so that their observation is the
            # first one of the next episode (envpool would only do it on the
            # next call, one step late). A step sent to a finished env is
            # envpool's auto-reset (action ignored, reward 0); unlike
            # `reset(env_id)`, which always restarts the whole game, it keeps
            # the game going after a life loss with episodic_life.
            done_ids = np.flatnonzero(done).astype(np.int32)
            reset_obs, _, _, _, reset_info = self._pool.step(np.zeros(len(done_ids), np.int32), done_ids)
            obs = np.array(obs, copy=True)
            obs[reset_info["env_id"]] = reset_obs
            lives[reset_info["env_id"]] = reset_info["lives"]
            self._finished_scores.extend(float(s) for s in game_score[game_over])

        timestep = TimeStep(
            observation=obs,
            reward=reward,
            discount=(~done).astype(np.float32),
            done=done,
        )
        info_out = AtariInfo(
            episode_return=episode_return,
            game_over=game_over,
            game_score=game_score,
            truncated=truncated,
            lives=lives,
        )
        self.last_info = info_out
        return timestep, info_out

    def pop_game_scores(self) -> list[float]:
        """Raw scores of the full games finished since the last call (and clears them)."""
        scores, self._finished_scores = self._finished_scores, []
        return scores

    @staticmethod
    def _in_env_order(obs: np.ndarray, env_id: np.ndarray) -> np.ndarray:
        if np.array_equal(env_id, np.arange(len(env_id))):
            return obs
        out = np.empty_like(obs)
        out[env_id] = obs
        return out

    def close(self) -> None:
        """Stops envpool's threads."""
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.close()
            self._pool = None

    def __enter__(self) -> AtariEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        return f"AtariEnv({self.spec.name!r}, num_envs={self.num_envs})"


def make_atari(game: str, config: AtariConfig | None = None, **overrides: Any) -> AtariEnv:
    """Builds ``atari/<game>``; ``overrides`` replace fields of ``config`` (or of the defaults)."""
    config = config or AtariConfig()
    if overrides:
        unknown = set(overrides) - {f.name for f in dataclasses.fields(AtariConfig)}
        if unknown:
            raise InvalidConfigError(f"unknown AtariConfig field(s): {', '.join(sorted(unknown))}")
        config = dataclasses.replace(config, **overrides)
    return AtariEnv(game, config)


_BENCHMARK_VARIANTS = ("python_api", "xla_loop", "xla_per_call", "atari_env")


def benchmark(variant: str, game: str = "Pong", num_envs: int = 8, num_steps: int = 3000, seed: int = 0) -> dict:
    """Throughput of one way of stepping envpool with uniformly random actions.

    ``variant``: ``"python_api"`` (envpool ``env.step`` in a Python loop),
    ``"xla_loop"`` (envpool's XLA ``step`` inside one jitted ``lax.fori_loop``),
    ``"xla_per_call"`` (one jitted XLA step per Python call) or ``"atari_env"``
    (``AtariEnv.step``). Returns env-steps per second (wall clock) and CPU
    microseconds per env-step (all threads), measured over ``num_steps``
    batched steps after 50 warm-up steps. Run each variant in a fresh process.
    """
    import time

    if variant not in _BENCHMARK_VARIANTS:
        raise UnknownNameError(f"unknown benchmark variant {variant!r}; choose from {', '.join(_BENCHMARK_VARIANTS)}")
    envpool = _import_envpool()
    batch, game = num_envs, _game_name(game)
    rng = np.random.default_rng(seed)
    if variant == "atari_env":
        env = AtariEnv(game, AtariConfig(num_envs=batch, seed=seed))
        env.reset()
        step_fn = env.step
    else:
        pool = envpool.make(f"{game}-v5", env_type="gymnasium", num_envs=batch, batch_size=batch, seed=seed)
        step_fn = pool.step
    n = int(_MINIMAL_NUM_ACTIONS[game])

    if variant in ("python_api", "atari_env"):
        if variant == "python_api":
            pool.reset()
        for _ in range(50):
            step_fn(rng.integers(0, n, batch).astype(np.int32))
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(num_steps):
            step_fn(rng.integers(0, n, batch).astype(np.int32))
    else:
        import jax
        import jax.numpy as jnp

        handle, recv, _, xla_step = pool.xla()
        pool.async_reset()
        handle, _ = recv(handle)  # recv after async_reset before the first step, or it hangs

        def one(h, key):
            key, sub = jax.random.split(key)
            h, (obs, reward, *_) = xla_step(h, jax.random.randint(sub, (batch,), 0, n, jnp.int32))
            return h, key, reward.sum() + obs[:, -1, 40, 40].sum()

        if variant == "xla_loop":
            run = jax.jit(
                lambda h, k, steps: jax.lax.fori_loop(0, steps, lambda _, c: one(c[0], c[1]), (h, k, jnp.float32(0)))
            )
            handle, key, out = run(handle, jax.random.PRNGKey(seed), 50)
            jax.block_until_ready(out)
            wall, cpu = time.perf_counter(), time.process_time()
            jax.block_until_ready(run(handle, key, num_steps)[2])
        else:
            one_jit = jax.jit(one)
            key = jax.random.PRNGKey(seed)
            for _ in range(50):
                handle, key, out = one_jit(handle, key)
            jax.block_until_ready(out)
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(num_steps):
                handle, key, out = one_jit(handle, key)
            jax.block_until_ready(out)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    env_steps = num_steps * batch
    return {
        "variant": variant,
        "game": game,
        "num_envs": batch,
        "env_steps_per_s": round(env_steps / wall),
        "cpu_us_per_env_step": round(1e6 * cpu / env_steps, 1),
    }


def _register_all() -> None:
    for game in ATARI_57:
        register(f"atari/{game}", lambda game=game: AtariEnv(game), _description(game), kind="atari")


_register_all()
