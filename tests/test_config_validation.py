"""Range checks of objective and network configs, and the one-line errors of names and kinds (new-user review).

Objective configs check every numeric field when they are built (``objectives.make``,
``dataclasses.replace`` or directly), network configs when an agent is built and
before a command runs; every command-line case goes through ``assert_bad_input``
(status 2, one ``lpg: error: ...`` line, nothing written, nothing on stdout).
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest

import objectives
from lpg import envs
from lpg.cli import main
from lpg.errors import InvalidConfigError, UnknownNameError
from lpg.networks import NetworkConfig, make_agent
from lpg.validation import NON_NEGATIVE, OPEN_UNIT, POSITIVE, POSITIVE_INT, UNIT, Range
from tests.test_bad_input import EVALUATE, OFFLINE, ONLINE, TRAIN, assert_bad_input

# Every objective of the objectives/ package (a new file is covered without editing this list).
BUILTIN_OBJECTIVES = tuple(n for n in objectives.names() if objectives.module_of(n).startswith("objectives."))


def _numeric_fields(config) -> list[str]:
    return [
        f.name
        for f in dataclasses.fields(config)
        if isinstance(getattr(config, f.name), (int, float)) and not isinstance(getattr(config, f.name), bool)
    ]


# --------------------------------------------------------------------------- objective configs


@pytest.mark.parametrize("name", BUILTIN_OBJECTIVES)
def test_every_numeric_field_of_every_objective_is_range_checked(name):
    """NaN lies in no range, so every numeric field must refuse it, naming the objective and the field."""
    fields = _numeric_fields(objectives.make(name).config)
    assert len(fields) >= 4
    for field in fields:
        with pytest.raises(InvalidConfigError, match=rf"^objective {name}: (initial )?{field} must be .*, got nan$"):
            objectives.make(name, **{field: math.nan})


@pytest.mark.parametrize(
    "name, overrides, message",
    [
        ("a2c", {"gamma": 2.0}, "objective a2c: gamma must be in [0, 1], got 2.0"),
        ("a2c", {"td_lambda": -1.0}, "objective a2c: td_lambda must be in [0, 1], got -1.0"),
        ("a2c", {"entropy_weight": -0.01}, "objective a2c: entropy_weight must be >= 0, got -0.01"),
        ("a2c", {"reward_clip": -1.0}, "objective a2c: reward_clip must be >= 0, got -1.0"),
        ("a2c", {"gamma": True}, "objective a2c: gamma must be in [0, 1], got True"),
        ("vtrace", {"rho_bar": 0.0}, "objective vtrace: rho_bar must be > 0, got 0.0"),
        ("vtrace", {"c_bar": -1.0}, "objective vtrace: c_bar must be > 0, got -1.0"),
        ("vtrace", {"value_weight": -0.5}, "objective vtrace: value_weight must be >= 0, got -0.5"),
        ("lpg", {"hidden_size": 0}, "objective lpg: hidden_size must be an integer >= 1, got 0"),
        ("lpg", {"hidden_size": -4}, "objective lpg: hidden_size must be an integer >= 1, got -4"),
        ("lpg", {"y_size": 0}, "objective lpg: y_size must be an integer >= 1, got 0"),
        ("lpg", {"phi_hidden": 2.5}, "objective lpg: phi_hidden must be an integer >= 1, got 2.5"),
        ("lpg", {"gamma": 1.5}, "objective lpg: gamma must be in [0, 1], got 1.5"),
        ("lpg", {"alpha_y": -1.0}, "objective lpg: alpha_y must be >= 0, got -1.0"),
        ("lpg", {"beta2": -0.005}, "objective lpg: beta2 must be >= 0, got -0.005"),
        ("frodo", {"hidden_size": 0}, "objective frodo: hidden_size must be an integer >= 1, got 0"),
        ("frodo", {"consistency_weight": -1.0}, "objective frodo: consistency_weight must be >= 0, got -1.0"),
        ("frodo", {"td_lambda": 1.01}, "objective frodo: td_lambda must be in [0, 1], got 1.01"),
        ("mgrl", {"gamma": 1.0}, "objective mgrl: gamma must be in (0, 1), got 1.0"),
        ("mgrl", {"td_lambda": 0.0}, "objective mgrl: td_lambda must be in (0, 1), got 0.0"),
        ("mgrl", {"entropy_weight": -1.0}, "objective mgrl: entropy_weight must be >= 0, got -1.0"),
        (
            "mgrl_per_state_gamma",
            {"num_states": 0},
            "objective mgrl_per_state_gamma: num_states must be an integer >= 1, got 0",
        ),
        (
            "mgrl_per_state_gamma",
            {"gamma_init": 1.0},
            "objective mgrl_per_state_gamma: gamma_init must be in (0, 1), got 1.0",
        ),
        ("self_tuning", {"gamma_scale": 1.5}, "objective self_tuning: gamma_scale must be in (0, 1], got 1.5"),
        ("self_tuning", {"value_weight_scale": 0.0}, "objective self_tuning: value_weight_scale must be > 0, got 0.0"),
        ("self_tuning", {"rho_bar": 0.0}, "objective self_tuning: rho_bar must be > 0, got 0.0"),
        (
            "self_tuning",
            {"entropy_weight": 0.05},
            "objective self_tuning: initial entropy_weight must be in (0, 0.02), got 0.05",
        ),
        ("self_tuning", {"base": "ppo"}, "objective self_tuning: base must be a2c or vtrace, got 'ppo'"),
    ],
    ids=lambda v: str(v) if isinstance(v, dict) else None,
)
def test_out_of_range_objective_config(name, overrides, message):
    with pytest.raises(InvalidConfigError) as error:
        objectives.make(name, **overrides)
    assert str(error.value) == message


def test_the_ends_of_each_range_are_accepted():
    a2c = objectives.make("a2c", gamma=0.0, td_lambda=1.0, value_weight=0.0, entropy_weight=0.0, reward_clip=0.0)
    assert (a2c.config.gamma, a2c.config.td_lambda) == (0.0, 1.0)
    assert objectives.make("a2c", gamma=1.0, td_lambda=0.0).config.gamma == 1.0
    assert objectives.make("lpg", hidden_size=1, y_size=1, phi_hidden=1, beta1=0.0).heads.y_size == 1
    assert objectives.make("vtrace", rho_bar=1e-6, c_bar=1e-6, pg_rho_bar=1e-6).config.rho_bar == 1e-6
    assert objectives.make("frodo", hidden_size=1, consistency_weight=0.0).config.hidden_size == 1
    assert objectives.make("self_tuning", gamma_scale=1.0, gamma=0.5).config.gamma_scale == 1.0
    for name in BUILTIN_OBJECTIVES:  # the defaults are valid
        objectives.make(name)


def test_configs_are_checked_however_they_are_built():
    from objectives.a2c import A2CConfig
    from objectives.lpg import LPGConfig

    with pytest.raises(InvalidConfigError, match=r"^objective a2c: gamma must be in \[0, 1\], got 2.0$"):
        A2CConfig(gamma=2.0)
    with pytest.raises(InvalidConfigError, match=r"^objective lpg: y_size must be an integer >= 1, got 0$"):
        dataclasses.replace(LPGConfig(), y_size=0)


def test_range_membership_and_wording():
    assert 0.0 in UNIT and 1.0 in UNIT and 1 in UNIT and 1.0001 not in UNIT
    assert 0.0 not in OPEN_UNIT and 0.5 in OPEN_UNIT and 1.0 not in OPEN_UNIT
    assert (
        0.0 in NON_NEGATIVE
        and -1e-9 not in NON_NEGATIVE
        and math.inf not in NON_NEGATIVE
        and math.nan not in NON_NEGATIVE
    )
    assert 0.0 not in POSITIVE and 1e-12 in POSITIVE
    assert 1 in POSITIVE_INT and 0 not in POSITIVE_INT and 2.0 not in POSITIVE_INT and True not in POSITIVE_INT
    assert [str(r) for r in (UNIT, OPEN_UNIT, NON_NEGATIVE, POSITIVE, POSITIVE_INT)] == [
        "in [0, 1]",
        "in (0, 1)",
        ">= 0",
        "> 0",
        "an integer >= 1",
    ]
    assert (
        str(Range(0.0, 0.02, open_low=True, open_high=True)) == "in (0, 0.02)"
        and str(Range(-1, integer=True)) == "an integer >= -1"
    )


# --------------------------------------------------------------------------- network configs


@pytest.mark.parametrize(
    "config, message",
    [
        (NetworkConfig(hidden_sizes=(0,)), "network: each hidden size must be an integer >= 1, got 0"),
        (NetworkConfig(hidden_sizes=(32, -4)), "network: each hidden size must be an integer >= 1, got -4"),
        (NetworkConfig(head_hidden=-1), "network: head_hidden must be an integer >= 0, got -1"),
        (NetworkConfig(chunk_size=-2), "network: chunk_size must be an integer >= -1, got -2"),
    ],
)
def test_invalid_network_config_is_refused_by_the_agent_factory(config, message):
    with pytest.raises(InvalidConfigError) as error:
        make_agent(envs.make_spec("catch"), config)
    assert str(error.value) == message


def test_head_hidden_zero_means_the_torsos_default_as_the_help_says(capsys):
    """0 gives linear heads, except on snake_conv (30, Bonnet et al.); other widths are used as given."""
    assert (
        make_agent(envs.make_spec("catch"), NetworkConfig(hidden_sizes=())).network.head_hidden == 0
    )  # () = no hidden layer
    assert make_agent(envs.make_spec("snake"), NetworkConfig()).network.head_hidden == 30
    assert make_agent(envs.make_spec("snake"), NetworkConfig(head_hidden=7)).network.head_hidden == 7
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    block = " ".join(text[text.index("--network.head-hidden") : text.index("--network.chunk-size")].split())
    assert "auto" not in block and "snake_conv" in block and "30" in block


# --------------------------------------------------------------------------- the command line


@pytest.mark.parametrize(
    "args, phrase",
    [
        ([*TRAIN, "--objective-config", "gamma=2"], "objective a2c: gamma must be in [0, 1], got 2.0"),
        ([*TRAIN, "--objective-config", "td_lambda=-1"], "objective a2c: td_lambda must be in [0, 1], got -1.0"),
        (
            [*TRAIN, "--objective", "vtrace", "--objective-config", "rho_bar=0"],
            "objective vtrace: rho_bar must be > 0, got 0.0",
        ),
        (
            [*OFFLINE, "--objective-config", "hidden_size=0"],
            "objective lpg: hidden_size must be an integer >= 1, got 0",
        ),
        ([*OFFLINE, "--objective-config", "y_size=0"], "objective lpg: y_size must be an integer >= 1, got 0"),
        ([*OFFLINE, "--objective-config", "gamma=1.5"], "objective lpg: gamma must be in [0, 1], got 1.5"),
        ([*EVALUATE, "--objective-config", "alpha_y=-1"], "objective lpg: alpha_y must be >= 0, got -1.0"),
        ([*TRAIN, "--network.hidden-sizes", "0"], "network: each hidden size must be an integer >= 1, got 0"),
        ([*TRAIN, "--network.head-hidden", "-1"], "network: head_hidden must be an integer >= 0, got -1"),
        (
            ["train", "atari/Pong", "--frames", "100", "--network.hidden-sizes", "0"],
            "network: each hidden size must be an integer >= 1",
        ),
        ([*ONLINE, "--network.hidden-sizes", "32", "-4"], "network: each hidden size must be an integer >= 1, got -4"),
        (
            [*ONLINE, "--objective", "frod"],
            "unknown online objective 'frod'; did you mean 'frodo'? choose " + ", ".join(objectives.supporting("online")),
        ),
    ],
    ids=lambda v: " ".join(v[-2:]) if isinstance(v, list) else None,
)
def test_bad_config_on_the_command_line(tmp_path, capsys, args, phrase):
    assert_bad_input(capsys, args, phrase, tmp_path / "out")


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["envs", "--kind", "foo"], "unknown environment kind 'foo'; choose atari, gymnax or toy"),
        (["envs", "--kind", "tyo"], "unknown environment kind 'tyo'; did you mean 'toy'? choose atari, gymnax or toy"),
        (
            ["bench", "atari", "--game", "Png"],
            "unknown Atari game 'Png'; did you mean 'Pong'? Atari-57 games: see `lpg envs --kind atari`",
        ),
        (
            ["bench", "envs", "--envs", "atari/Pong", "--num-steps", "100"],
            "lpg bench envs measures pure-JAX environments; atari/Pong is an Atari game: use `lpg bench atari --game Pong`",
        ),
        (
            ["bench", "envs", "--envs", "catch,atari/Breakout"],
            "atari/Breakout is an Atari game: use `lpg bench atari --game Breakout`",
        ),
        (["bench", "online", "--envs", "cach"], "unknown environment 'cach'; did you mean 'catch'?"),
        (
            ["bench", "online", "--envs", "catch,atari/Pong"],
            "lpg bench online measures pure-JAX environments; atari/Pong is an Atari game",
        ),
        (
            ["bench", "scale", "--env", "atari/Pong"],
            "lpg bench scale measures pure-JAX environments; atari/Pong is an Atari game",
        ),
    ],
    ids=lambda v: " ".join(v[:4]) if isinstance(v, list) else None,
)
def test_bad_names_of_commands_without_an_output_folder(capsys, args, phrase):
    """One line on stderr and nothing on stdout (no table header before the error)."""
    assert_bad_input(capsys, args, phrase, None)


def test_python_api_errors_of_kinds_and_bench_environments():
    from lpg.bench import bench_envs

    with pytest.raises(UnknownNameError, match="choose atari, gymnax or toy"):
        envs.list_envs("foo")
    with pytest.raises(InvalidConfigError, match="lpg bench atari --game Pong"):
        bench_envs(["atari/Pong"], num_envs=2, num_steps=2)
    kinds = [{name for name, _ in envs.list_envs(kind)} for kind in ("toy", "gymnax", "atari")]
    assert all(not (a & b) for a, b in itertools.combinations(kinds, 2))


def test_environment_descriptions_read_well():
    descriptions = dict(envs.list_envs())
    assert ", 1 object, " in descriptions["gridworld/rand_very_dense"]
    assert ", 4 objects, " in descriptions["gridworld/dense"]
    assert descriptions["atari/UpNDown"].startswith("Atari 2600 Up N Down (")
    assert descriptions["atari/MsPacman"].startswith("Atari 2600 Ms Pacman (")
