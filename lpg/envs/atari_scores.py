"""Human-normalised Atari-57 scores.

The reference table (``lpg/data/atari_scores.json``) holds the random-agent and
human scores of the 57 games used throughout the literature, as published in
DeepMind's DQN Zoo (``dqn_zoo/atari_data.py``). A human-normalised score is

    (score - random) / (human - random)

so 0 is random play and 1 is the human tester.

Game names may be given as ``"Pong"``, ``"atari/Pong"``, ``"Pong-v5"`` or in
DQN Zoo's spelling ``"pong"`` / ``"ms_pacman"`` (case-insensitive).
"""

from __future__ import annotations

import functools
import json
import re
from importlib import resources

from lpg.envs.atari import GAMES_LISTING
from lpg.errors import UserInputError, unknown_name_error

__all__ = ["atari_games", "human_normalised", "reference_scores", "score_table_source"]


@functools.cache
def _table() -> dict:
    return json.loads(resources.files("lpg.data").joinpath("atari_scores.json").read_text(encoding="utf-8"))


@functools.cache
def _index() -> dict[str, str]:
    return {_key(game): game for game in _table()["games"]}


def _key(name: str) -> str:
    name = name.strip().removeprefix("atari/")
    name = re.sub(r"-v\d+$", "", name)
    return name.replace("_", "").lower()


def atari_games() -> tuple[str, ...]:
    """The 57 game names of the table (CamelCase, as in ``atari/<Game>``)."""
    return tuple(_table()["games"])


def score_table_source() -> str:
    """Where the reference scores come from."""
    return _table()["source"]


def _game(game: str) -> str:
    if not isinstance(game, str) or _key(game) not in _index():
        raise unknown_name_error("Atari game", str(game), atari_games(), GAMES_LISTING)
    return _index()[_key(game)]


def reference_scores(game: str) -> tuple[float, float]:
    """(random, human) reference scores of ``game``.

    Raises:
      UnknownNameError: ``game`` is not one of the Atari-57 games.
    """
    entry = _table()["games"][_game(game)]
    return float(entry["random"]), float(entry["human"])


def human_normalised(game: str, score: float) -> float:
    """(score - random) / (human - random) for ``game``.

    Raises:
      UnknownNameError: ``game`` is not one of the Atari-57 games.
      UserInputError: ``score`` is not a number.
    """
    random, human = reference_scores(game)
    try:
        score = float(score)
    except (TypeError, ValueError) as e:
        raise UserInputError(f"score for {game!r} must be a number, got {score!r}") from e
    return (score - random) / (human - random)
