"""Atari reference scores and registry tests that need no envpool."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources

import pytest

from lpg.envs.atari_scores import atari_games, human_normalised, reference_scores, score_table_source
from lpg.errors import UnknownNameError, UserInputError


def test_table_has_the_57_games_with_their_source():
    table = json.loads(resources.files("lpg.data").joinpath("atari_scores.json").read_text())
    assert "dqn_zoo/atari_data.py" in table["source"] and "dqn_zoo" in score_table_source()
    assert len(table["games"]) == 57 and len(atari_games()) == 57
    for game, entry in table["games"].items():
        assert isinstance(entry["random"], float) and isinstance(entry["human"], float), game
        assert entry["human"] != entry["random"], game


@pytest.mark.parametrize(
    "game, random, human",
    [
        ("Pong", -20.7, 14.6),
        ("Breakout", 1.7, 30.5),
        ("Seaquest", 68.4, 42054.7),
        ("SpaceInvaders", 148.0, 1668.7),
        ("BeamRider", 363.9, 16926.5),
        ("Qbert", 163.9, 13455.0),
        ("MsPacman", 307.3, 6951.6),
        ("Enduro", 0.0, 860.5),
        ("Asterix", 210.0, 8503.3),
        ("Freeway", 0.0, 29.6),
        ("MontezumaRevenge", 0.0, 4753.3),
    ],
)
def test_reference_scores(game, random, human):
    assert reference_scores(game) == (random, human)


def test_human_normalised_hand_computed():
    assert human_normalised("Pong", 14.6) == pytest.approx(1.0)
    assert human_normalised("Pong", -20.7) == pytest.approx(0.0)
    assert human_normalised("Pong", 21.0) == pytest.approx((21.0 + 20.7) / 35.3)
    assert human_normalised("Breakout", 30.5) == pytest.approx(1.0)
    assert human_normalised("Breakout", 1.7) == pytest.approx(0.0)
    assert human_normalised("Breakout", 59.3) == pytest.approx(2.0)
    assert human_normalised("Enduro", 430.25) == pytest.approx(0.5)


def test_game_name_spellings():
    for name in ("Pong", "atari/Pong", "Pong-v5", "pong", "PONG"):
        assert reference_scores(name) == (-20.7, 14.6)
    assert reference_scores("ms_pacman") == reference_scores("MsPacman")
    assert reference_scores("atari/MontezumaRevenge") == reference_scores("montezuma_revenge")


def test_unknown_game_is_a_clear_user_error():
    with pytest.raises(
        UnknownNameError,
        match=r"unknown Atari game 'Pongg'; did you mean 'Pong'\? Atari-57 games: see `lpg envs --kind atari`$",
    ):
        human_normalised("Pongg", 1.0)
    with pytest.raises(UnknownNameError):
        reference_scores("Adventure")  # an ALE game outside Atari-57
    with pytest.raises(UserInputError, match="number"):
        human_normalised("Pong", "high")


def test_registry_lists_the_57_games_without_importing_envpool():
    code = (
        "import sys, lpg.envs as E\n"
        "names = [n for n, _ in E.list_envs(kind='atari')]\n"
        "from lpg.envs.atari import ATARI_57, atari_spec\n"
        "spec = atari_spec('Pong')\n"
        "assert spec.observation_shape == (4, 84, 84) and spec.observation_dtype == 'uint8', spec\n"
        "assert spec.num_actions == 6 and spec.max_episode_steps == 27000 and spec.kind == 'atari', spec\n"
        "assert 'envpool' not in sys.modules\n"
        "print(len(names), sorted(names) == sorted('atari/' + g for g in ATARI_57))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["57", "True"]


def test_registered_names_match_the_score_table():
    from lpg import envs
    from lpg.envs.atari import ATARI_57

    names = [n for n, _ in envs.list_envs(kind="atari")]
    assert sorted(names) == sorted(f"atari/{g}" for g in atari_games())
    assert set(ATARI_57) == set(atari_games())
    for name in ("atari/Pong", "atari/Breakout", "atari/MontezumaRevenge", "atari/SpaceInvaders"):
        assert name in names
    descriptions = dict(envs.list_envs(kind="atari"))
    assert all(d and "\n" not in d for d in descriptions.values())


def test_constructing_without_envpool_is_a_user_error(monkeypatch):
    from lpg import envs

    monkeypatch.setitem(sys.modules, "envpool", None)  # makes `import envpool` fail
    with pytest.raises(UserInputError, match=r"pip install 'lpg\[atari\]'"):
        envs.make("atari/Pong")


def test_invalid_config_is_a_user_error():
    from lpg.envs.atari import AtariConfig

    with pytest.raises(UserInputError, match="num_envs"):
        AtariConfig(num_envs=0)
    with pytest.raises(UserInputError, match="sticky_actions"):
        AtariConfig(sticky_actions=1.5)
    assert AtariConfig().max_episode_steps == 27000
    assert AtariConfig(frame_skip=2).max_episode_steps == 54000
