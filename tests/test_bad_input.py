"""Bad input, everywhere (issue #6): one clear line, exit status 2, a typed exception, nothing half-written.

Every command-line case calls ``lpg.cli.main`` in-process and checks that the
exit status is 2, that stderr is exactly one line ``lpg: error: ...`` naming the
problem (no traceback), and that nothing was half-written: the ``--out`` folder
does not exist afterwards (or is byte-for-byte unchanged when it existed), and
a checkpoint given to the command is unchanged. Each family of cases also has a
Python-API test asserting its ``lpg.errors`` class.

Sizes are tiny, and nearly every case fails during validation, before anything
is compiled.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

import objectives
from lpg import checkpoint as ck
from lpg.cli import main
from lpg.errors import (
    CheckpointError,
    InvalidConfigError,
    OutputDirError,
    UnknownNameError,
    UserInputError,
)

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "lpg-toy-v1"
PROC_OUT = "/proc/lpg-test-out"  # unwritable even for root (the suite runs as root, so chmod proves nothing)

# Each command at a tiny size that passes validation (so a case fails only on what it changes).
TRAIN = ["train", "catch", "--steps", "100"]
ONLINE = ["discover", "online", "catch", "--steps", "100"]
OFFLINE = [
    "discover",
    "offline",
    "--envs",
    "chain/short",
    "--meta-steps",
    "1",
    "--num-lifetimes",
    "1",
    "--num-envs",
    "2",
    "--unroll-length",
    "2",
    "--lifetime-updates",
    "2",
    "--inner-updates",
    "1",
    "--eval-seeds",
    "1",
]
EVALUATE = ["evaluate", str(SHIPPED), "--envs", "chain/short", "--steps", "100", "--seeds", "1"]
EXPERIMENT = ["experiment", "mrp-gamma", "--steps", "1", "--monte-carlo", "1"]
TRANSFER = ["experiment", "transfer", "--checkpoint", "checkpoints/lpg-toy-v1", "--envs", "chain/short"]
COMMANDS = {
    "train": TRAIN,
    "discover online": ONLINE,
    "discover offline": OFFLINE,
    "evaluate": EVALUATE,
    "experiment": EXPERIMENT,
}


def snapshot(path: Path) -> dict[str, bytes | None] | None:
    """Every file's bytes (and every folder, as None) under ``path``; None if ``path`` does not exist."""
    if not path.exists():
        return None
    if path.is_file():
        return {".": path.read_bytes()}
    return {p.relative_to(path).as_posix(): (p.read_bytes() if p.is_file() else None) for p in sorted(path.rglob("*"))}


def assert_bad_input(
    capsys, args: list[str], phrase: str, out: Path | str | None, *, untouched: tuple[Path, ...] = ()
) -> str:
    """Runs ``lpg ARGS --out OUT --no-progress``; asserts status 2, one clear line, and nothing written.

    ``out=None`` runs ``lpg ARGS`` alone (commands without ``--out``: nothing may be printed on stdout either).
    """
    watched = (*((Path(out),) if out is not None else ()), SHIPPED, *untouched)
    before = {path: snapshot(path) for path in watched}
    code = main([*args, "--out", str(out), "--no-progress"] if out is not None else args)
    captured = capsys.readouterr()
    assert code == 2, captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lpg: error: "), captured.err
    assert phrase in lines[0], lines[0]
    assert "Traceback" not in captured.err and captured.out == ""
    for path in watched:
        assert snapshot(path) == before[path], f"{path} was changed"
    return lines[0]


# --------------------------------------------------------------------------- unknown names


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["train", "no_such_env", "--steps", "100"], "unknown environment 'no_such_env'"),
        ([*TRAIN, "--objective", "nope"], "unknown objective 'nope'"),
        ([*TRAIN, "--optimizer", "adamw"], "unknown optimizer 'adamw'"),
        ([*ONLINE, "--optimizer", "adamw"], "unknown optimizer 'adamw'"),
        ([*EVALUATE, "--optimizer", "adamw"], "unknown optimizer 'adamw'"),
        ([*EVALUATE, "--objective-config", "gama=0.9"], "no field 'gama'"),
        (["discover", "online", "no_such_env", "--steps", "100"], "unknown environment 'no_such_env'"),
        ([*ONLINE, "--objective", "nope"], "unknown online objective 'nope'"),
        ([*ONLINE, "--outer-entropy-weight", "-1"], "--outer-entropy-weight must be >= 0"),
        ([*ONLINE, "--meta-learning-rate", "0"], "--meta-learning-rate must be positive"),
        ([*OFFLINE, "--envs", "chain/nope"], "unknown environment 'chain/nope'"),
        ([*OFFLINE, "--envs", "atari/Pong"], "offline discovery runs on pure-JAX environments (toy, gymnax); atari/Pong is atari"),
        ([*OFFLINE, "--method", "foo"], "unknown discovery method 'foo'"),
        ([*OFFLINE, "--method", "es", "--es-algorithm", "Nope_ES"], "unknown evosax algorithm 'Nope_ES'"),
        ([*OFFLINE, "--objective-config", "gama=0.9"], "no field 'gama'"),
        ([*EVALUATE, "--envs", "chain/nope"], "unknown environment 'chain/nope'"),
        (["experiment", "no-such-experiment"], "unknown experiment 'no-such-experiment'"),
        (["train", "atari/Pongg", "--frames", "100"], "unknown environment 'atari/Pongg'; did you mean 'atari/Pong'?"),
        (["train", "chain/shrot", "--steps", "100"], "did you mean 'chain/short'?"),
        ([*TRAIN, "--objective", "vtrac"], "unknown objective 'vtrac'; did you mean 'vtrace'?"),
    ],
    ids=lambda v: " ".join(v[:2] + v[len(v) - 2 :]) if isinstance(v, list) else None,
)
def test_unknown_name(tmp_path, capsys, args, phrase):
    assert_bad_input(capsys, args, phrase, tmp_path / "out")


def test_did_you_mean_picks_the_closest_names_only():
    from lpg.errors import closest_names

    games = ["atari/Pong", "atari/Boxing", "atari/Phoenix", "atari/Breakout"]
    assert closest_names("atari/Pongg", games) == ["atari/Pong"]  # not every name sharing the 'atari/' prefix
    assert closest_names("ATARI/PONG", games) == ["atari/Pong"]  # a case slip has one answer
    assert closest_names("atari/Breakuot", games) == ["atari/Breakout"]
    assert closest_names("a2x", ["a2c", "vtrace", "frodo"]) == ["a2c"]
    assert closest_names("qwerty", ["a2c", "vtrace", "frodo"]) == []
    assert closest_names("x", []) == []


def test_unknown_names_raise_unknown_name_error(tmp_path):
    import objectives
    from lpg import envs
    from lpg.commands.discover_online import OnlineOptions, discover_online
    from training.offline import OfflineConfig
    from training.online import run_experiment

    calls = [
        lambda: envs.make("no_such_env"),
        lambda: envs.resolve_env_spec("gridworld/nope*"),
        lambda: objectives.make("nope"),
        lambda: discover_online(OnlineOptions("catch", "nope", out=str(tmp_path / "out"))),
        lambda: run_experiment("no-such-experiment", str(tmp_path / "out")),
        lambda: OfflineConfig(method="foo").validate(),
        lambda: OfflineConfig(method="es", es_algorithm="Nope_ES").validate(),
    ]
    for call in calls:
        with pytest.raises(UnknownNameError):
            call()
    assert issubclass(UnknownNameError, UserInputError) and not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- checkpoints


def _copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(SHIPPED, tmp_path / "ckpt"))


def _state_file(path: Path) -> Path:
    return next(p for p in sorted((path / "state" / "d").iterdir()) if p.is_file())


def _truncate(path: Path) -> None:
    data = _state_file(path).read_bytes()
    _state_file(path).write_bytes(data[: len(data) // 2])


def _flip_bytes(path: Path) -> None:
    file = _state_file(path)
    data = bytearray(file.read_bytes())
    for i in range(16, 48):
        data[i] ^= 0xFF
    file.write_bytes(bytes(data))


def _edit_metadata(path: Path, **changes) -> None:
    """Edits the checkpoint's metadata and rewrites its checksums, so that the metadata check fires (not the checksum)."""
    meta_file = path / ck.META_FILE
    meta = json.loads(meta_file.read_text())
    meta.update(changes)
    meta_file.write_text(json.dumps(meta))
    ck._write_checksums(path)


CHECKPOINT_CASES = {
    "missing": (lambda p: shutil.rmtree(p), "no objective checkpoint at"),
    "empty folder": (lambda p: [shutil.rmtree(p), p.mkdir()], "is not an objective checkpoint"),
    "truncated": (_truncate, "is truncated or corrupted"),
    "corrupted": (_flip_bytes, "is corrupted: the checksum of state/d/"),
    "agent heads": (lambda p: _edit_metadata(p, agent_heads={"y_size": 7}), "expects agent heads y_size=7"),
    "framework version": (
        lambda p: _edit_metadata(p, framework_version="9.0.0"),
        "written by framework version 9.0.0, incompatible",
    ),
    "format version": (lambda p: _edit_metadata(p, format_version=99), "has format version 99"),
}


@pytest.mark.parametrize("case", list(CHECKPOINT_CASES))
def test_bad_checkpoint(tmp_path, capsys, case):
    spoil, phrase = CHECKPOINT_CASES[case]
    path = _copy(tmp_path)
    spoil(path)
    assert_bad_input(
        capsys,
        ["evaluate", str(path), "--envs", "chain/short", "--steps", "100"],
        phrase,
        tmp_path / "out",
        untouched=(path,),
    )


def test_resume_without_a_training_checkpoint(tmp_path, capsys):
    assert_bad_input(capsys, [*OFFLINE, "--resume"], "--resume: no training checkpoint in", tmp_path / "out")


def test_bad_checkpoints_raise_checkpoint_error(tmp_path):
    from lpg.commands.discover_offline import DiscoverOfflineCommand, discover_offline

    for case, (spoil, phrase) in CHECKPOINT_CASES.items():
        path = Path(shutil.copytree(SHIPPED, tmp_path / case))
        spoil(path)
        with pytest.raises(CheckpointError, match=re.escape(phrase)):
            objectives.load(path)
    with pytest.raises(CheckpointError, match="no training checkpoint"):
        discover_offline(DiscoverOfflineCommand(envs="chain/short", resume=True, out=str(tmp_path / "out")).options())
    assert issubclass(CheckpointError, UserInputError) and not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- invalid numbers


@pytest.mark.parametrize(
    "args, phrase",
    [
        ([*TRAIN, "--steps", "0"], "--steps must be positive, got 0"),
        ([*TRAIN, "--steps", "-5"], "--steps must be positive, got -5"),
        ([*TRAIN, "--num-seeds", "0"], "--num-seeds must be positive"),
        ([*TRAIN, "--num-envs", "0"], "--num-envs must be positive, got 0"),
        ([*TRAIN, "--learning-rate", "0"], "learning rate must be positive"),
        ([*ONLINE, "--num-envs", "0"], "--num-envs must be positive, got 0"),
        ([*ONLINE, "--unroll-length", "-1"], "--unroll-length must be positive, got -1"),
        ([*ONLINE, "--learning-rate", "-0.1"], "learning rate must be positive"),
        ([*EVALUATE, "--num-envs", "0"], "--num-envs must be positive, got 0"),
        ([*EVALUATE, "--learning-rate", "0"], "learning rate must be positive"),
        (
            [*EVALUATE, "--objective-config", "hidden_size=64"],
            "changes the shapes of the checkpoint's learned meta-parameters",
        ),
        ([*ONLINE, "--steps", "0"], "--steps must be positive, got 0"),
        ([*ONLINE, "--steps", "-5"], "--steps must be positive, got -5"),
        ([*ONLINE, "--num-seeds", "0"], "--num-seeds must be positive"),
        ([*ONLINE, "--inner-steps", "-1"], "--inner-steps must be an integer >= 0, got -1"),
        ([*ONLINE, "--inner-steps", "0", "--mix"], "--inner-steps 0 learns no meta-gradient: drop --mix"),
        ([*ONLINE, "--monte-carlo", "0"], "--monte-carlo must be >= 1"),
        ([*ONLINE, "--mix", "--mix-coefficient", "1.5"], "--mix-coefficient must lie in [0, 1], got 1.5"),
        ([*ONLINE, "--mix", "--mix-coefficient", "-0.1"], "--mix-coefficient must lie in [0, 1], got -0.1"),
        ([*ONLINE, "--mix-coefficient", "0.5"], "add --mix"),
        ([*OFFLINE, "--meta-steps", "-1"], "--meta-steps must be >= 0"),
        ([*OFFLINE, "--num-lifetimes", "0"], "--num-lifetimes must be positive"),
        ([*OFFLINE, "--num-lifetimes", "-3"], "--num-lifetimes must be positive"),
        (
            [*OFFLINE, "--num-lifetimes", "1", "--envs", "chain/short,chain/long"],
            "must be at least the number of environments",
        ),
        ([*OFFLINE, "--num-envs", "0"], "--num-envs must be positive"),
        ([*OFFLINE, "--unroll-length", "0"], "--unroll-length must be positive"),
        ([*OFFLINE, "--lifetime-updates", "0"], "--lifetime-updates must be positive"),
        (
            [*OFFLINE, "--lifetime-updates", "2", "--inner-updates", "5"],
            "lifetime_updates (2) must be >= inner_updates (5)",
        ),
        ([*OFFLINE, "--eval-seeds", "0"], "--eval-seeds must be positive"),
        (["discover", "offline", "--recipe", "broad-cpu", "--method", "es"], "give --min-lifetime-updates 0"),
        ([*OFFLINE, "--lr-min", "0.5", "--lr-max", "0.1"], "lr_range must satisfy 0 < low <= high"),
        ([*EVALUATE, "--steps", "0"], "--steps must be positive, got 0"),
        ([*EVALUATE, "--seeds", "0"], "--seeds must be positive, got 0"),
        ([*EVALUATE, "--eta-schedule", "replayed"], "--eta-schedule must be final or replay, got 'replayed'"),
        ([*EVALUATE, "--eta-schedule", "replay"], "records no eta schedule"),
        (["evaluate", str(SHIPPED), "--envs", "atari/Pong", "--eta-schedule", "replay"], "not Atari"),
        ([*EXPERIMENT, "--steps", "0"], "--steps must be positive, got 0"),
        ([*EXPERIMENT, "--steps", "-5"], "--steps must be positive, got -5"),
        ([*EXPERIMENT, "--seeds", "0"], "--seeds must be positive"),
        ([*EXPERIMENT, "--monte-carlo", "0"], "--monte-carlo must be >= 1"),
        ([*EXPERIMENT, "--mix", "--mix-coefficient", "2"], "--mix-coefficient must lie in [0, 1], got 2.0"),
        ([*EXPERIMENT, "--mix-coefficient", "0.5"], "add --mix"),
        (["experiment", "snake-variance", "--mix-coefficient", "0.5"], "--mix-coefficient does not apply"),
        (["experiment", "snake-variance", "--estimate-batch", "0"], "--estimate-batch must be >= 1, got 0"),
        (["experiment", "snake-variance", "--estimates", "1"], "--estimates must be >= 2, got 1"),
        ([*EXPERIMENT, "--checkpoints", "2"], "--checkpoints applies to snake-variance only"),
        ([*TRAIN, "--overlap"], "--overlap is for Atari environments"),
        ([*ONLINE, "--meta-interval", "3"], "--meta-interval is for Atari environments"),
        ([*ONLINE, "--outer-critic", "value"], "--outer-critic must be one of auto, agent, own, got 'value'"),
        ([*EXPERIMENT, "--outer-critic", "own"], "--outer-critic applies to lpg experiment transfer only"),
        ([*TRANSFER, "--inner-steps", "0"], "the adapted arm needs --inner-steps >= 1 (0 is the frozen arm), got 0"),
        ([*TRANSFER, "--mix-coefficient", "0.5"], "add --mix"),
        ([*TRANSFER, "--monte-carlo", "2"], "--monte-carlo does not apply to lpg experiment transfer"),
        (["train", "atari/Pong", "--frames", "64", "--overlap"], "a2c does not correct: use --objective vtrace"),
    ],
    ids=lambda v: " ".join(v[:2] + v[len(v) - 2 :]) if isinstance(v, list) else None,
)
def test_invalid_number(tmp_path, capsys, args, phrase):
    assert_bad_input(capsys, args, phrase, tmp_path / "out")


def test_invalid_numbers_raise_invalid_config_error(tmp_path):
    from lpg.commands.discover_online import OnlineOptions, discover_online
    from lpg.commands.evaluate import EvaluateOptions, run_evaluate
    from lpg.commands.train import TrainOptions, train
    from training.meta_gradient import MetaGradConfig
    from training.offline import OfflineConfig
    from training.online import run_experiment

    out = str(tmp_path / "out")
    calls = [
        lambda: train(TrainOptions("catch", steps=0, out=out)),
        lambda: discover_online(OnlineOptions("catch", "mgrl", steps=-5, out=out)),
        lambda: discover_online(OnlineOptions("catch", "mgrl", mix=False, mix_coefficient=0.5, steps=100, out=out)),
        lambda: run_experiment("mrp-gamma", out, mix=True, mix_k=1.5, steps=1),
        lambda: run_evaluate(EvaluateOptions(str(SHIPPED), seeds=0, out=out)),
        lambda: MetaGradConfig(mix=True, mix_k=-0.1).validate(),
        lambda: OfflineConfig(num_lifetimes=0).validate(),
        lambda: OfflineConfig(lifetime_updates=2, inner_updates=5).validate(),
    ]
    for call in calls:
        with pytest.raises(InvalidConfigError):
            call()
    assert not (tmp_path / "out").exists()


def test_mix_coefficient_reaches_the_meta_gradient_config(tmp_path, monkeypatch):
    """--mix-coefficient is passed to MetaGradConfig.mix_k (checked where the run's config is written: nothing runs)."""
    from lpg.run_io import RunDir, to_jsonable
    from training import online

    class Stop(Exception):
        pass

    seen = []

    def prepare(out, config, **_):
        seen.append(to_jsonable(config))
        raise Stop

    monkeypatch.setattr(RunDir, "prepare", staticmethod(prepare))
    for args in (
        [*ONLINE, "--mix", "--inner-steps", "3", "--mix-coefficient", "0.25"],
        [*EXPERIMENT, "--mix", "--mix-coefficient", "0.25"],
    ):
        with pytest.raises(Stop):
            main([*args, "--out", str(tmp_path / "out"), "--no-progress"])
    assert seen[0]["meta"]["mix"] and seen[0]["meta"]["mix_k"] == 0.25
    assert seen[1]["preset"]["mix"] and seen[1]["preset"]["mix_k"] == 0.25
    assert online.build_mrp_gamma(online.MRPGammaPreset(mix=True, mix_k=0.25)).config.kappa == 0.25
    snake = online.SnakeMetaGradPreset(inner_steps=3, mix=True, mix_k=0.25)
    assert online.build_snake(snake, total_updates=10).config.kappa == 0.25
    assert (
        online.build_snake(online.SnakeMetaGradPreset(inner_steps=4, mix=True), total_updates=10).config.kappa == 0.75
    )


# --------------------------------------------------------------------------- output folders


@pytest.mark.parametrize("where", ["under a file", "under /proc"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_unwritable_output_folder(tmp_path, capsys, command, where):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = blocker / "sub" if where == "under a file" else Path(PROC_OUT)
    assert_bad_input(capsys, COMMANDS[command], "cannot write to output folder", out, untouched=(blocker,))


@pytest.mark.parametrize("command", list(COMMANDS))
def test_output_folder_holding_a_different_run(tmp_path, capsys, command):
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"command": "train", "options": {"env": "something else"}}) + "\n")
    (out / "summary.json").write_text("{}\n")
    assert_bad_input(capsys, COMMANDS[command], "already holds a different run", out)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_output_folder_that_is_not_an_lpg_run(tmp_path, capsys, command):
    out = tmp_path / "out"
    (out / "photos").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    assert_bad_input(capsys, COMMANDS[command], "is not empty and holds no run", out)


def test_output_folder_problems_raise_output_dir_error(tmp_path):
    from lpg.run_io import RunDir

    blocker = tmp_path / "file"
    blocker.write_text("x")
    taken = tmp_path / "taken"
    RunDir.prepare(taken, {"run": 1})
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    for out in (blocker, blocker / "sub", PROC_OUT, taken, foreign):
        with pytest.raises(OutputDirError):
            RunDir.prepare(out, {"run": 2})
    assert json.loads((taken / "config.json").read_text()) == {"run": 1} and blocker.read_text() == "x"
    assert not Path(PROC_OUT).exists() and issubclass(OutputDirError, UserInputError)


def test_a_different_run_is_refused_naming_what_differs(tmp_path):
    from lpg.run_io import RunDir, config_differences

    old = {"command": "train", "options": {"seed": 3, "steps": 100, "agent": {"lr": 1e-3}}, "gone": 1}
    new = {"command": "train", "options": {"seed": 4, "steps": 100, "agent": {"lr": 2e-3}}, "added": [1]}
    assert config_differences(old, new) == ["added", "gone", "options.agent.lr", "options.seed"]
    assert config_differences(old, old) == []
    RunDir.prepare(tmp_path / "run", old)
    with pytest.raises(OutputDirError, match=r"differs in added, gone, options\.agent\.lr, options\.seed\)"):
        RunDir.prepare(tmp_path / "run", new)
    many = {"options": {f"k{i}": i for i in range(6)}}
    RunDir.prepare(tmp_path / "many", many)
    with pytest.raises(OutputDirError, match=r"options\.k3 and 2 more\)"):
        RunDir.prepare(tmp_path / "many", {"options": {f"k{i}": -i - 1 for i in range(6)}})
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(OutputDirError, match=r"already holds a different run; choose"):
        RunDir.prepare(tmp_path / "broken", old)


# --------------------------------------------------------------------------- bench --out files

BENCH_ATARI = ["bench", "atari", "--num-envs", "2", "--unroll-length", "2", "--frames", "16"]
BENCH_SCALE = ["bench", "scale", "--device-counts", "1", "--updates", "1", "--repeats", "1"]


@pytest.mark.parametrize(
    "where, phrase", [("a folder", "is a folder"), ("under a file", "cannot write"), ("under /proc", "cannot write")]
)
@pytest.mark.parametrize("bench", [BENCH_ATARI, BENCH_SCALE], ids=["atari", "scale"])
def test_bench_output_file_is_checked_before_measuring(tmp_path, capsys, monkeypatch, bench, where, phrase):
    """A bad ``lpg bench ... --out FILE`` fails in validation (nothing measured, nothing written)."""
    import training.atari_bench
    import training.scale_bench

    def never(*args, **kwargs):
        raise AssertionError("the bench ran despite a bad --out")

    monkeypatch.setattr(training.atari_bench, "bench_atari", never)
    monkeypatch.setattr(training.scale_bench, "bench_scale", never)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    folder = tmp_path / "folder"
    folder.mkdir()
    out = {
        "a folder": folder,
        "under a file": blocker / "sub" / "bench.json",
        "under /proc": Path(PROC_OUT) / "bench.json",
    }[where]
    before = snapshot(tmp_path)
    assert main([*bench, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lpg: error: ") and phrase in lines[0], captured.err
    assert snapshot(tmp_path) == before and not Path(PROC_OUT).exists()


def test_bench_atari_missing_peer_script_fails_before_measuring(tmp_path, capsys, monkeypatch):
    import training.atari_bench

    monkeypatch.setattr(training.atari_bench, "bench_atari", lambda *a, **k: pytest.fail("the bench ran"))
    assert main([*BENCH_ATARI, "--peer", str(tmp_path / "nowhere.py")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "nowhere.py: no such file" in lines[0]


def test_check_output_file_removes_only_the_folders_it_made(tmp_path, monkeypatch):
    import tempfile

    from lpg.run_io import check_output_file

    kept = tmp_path / "kept"
    kept.mkdir()
    assert check_output_file(kept / "a" / "b" / "bench.json") == kept / "a" / "b" / "bench.json"
    assert (kept / "a" / "b").is_dir() and not any((kept / "a" / "b").iterdir())  # the probe file is gone

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(OutputDirError, match="Permission denied"):
        check_output_file(kept / "x" / "y" / "bench.json")
    assert sorted(p.name for p in kept.iterdir()) == ["a"]  # x and x/y were made and removed; kept stays


def test_run_dir_prepare_removes_only_the_folders_it_made(tmp_path, monkeypatch):
    """A failed write check undoes its own ``mkdir`` but never removes a folder that
    existed before, even an empty one (it used to walk upward and delete it)."""
    import tempfile

    from lpg.run_io import RunDir

    kept = tmp_path / "kept"
    kept.mkdir()  # empty, and made by the user before the run

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(OutputDirError, match="Permission denied"):
        RunDir.prepare(kept / "x" / "y", {"seed": 0})
    assert kept.is_dir() and not any(kept.iterdir())  # x and x/y were made and removed; kept stays
    with pytest.raises(OutputDirError, match="Permission denied"):
        RunDir.prepare(kept, {"seed": 0})  # an existing empty --out is left in place too
    assert kept.is_dir()


# --------------------------------------------------------------------------- the argument parser's own errors


@pytest.mark.parametrize(
    "args, line",
    [
        (
            ["train", "catch", "--stepz", "100"],
            "Unrecognized options: --stepz, 100; did you mean --steps? (see `lpg train --help`)",
        ),
        (["discover", "online", "catch", "--stepz", "3"], "did you mean --steps? (see `lpg discover online --help`)"),
        (
            ["bench", "atari", "--gam", "Pong"],
            "Unrecognized options: --gam, Pong; did you mean --game? (see `lpg bench atari --help`)",
        ),
        (
            ["train", "catch", "--steps", "abc"],
            "Error parsing --steps: no type matching {None}|INT could be instantiated from ['abc'] (see",
        ),
        (["train"], "Missing from lpg train: ENV Environment name"),
        (["discover"], "Expected one of {online, offline} (see `lpg discover --help`)"),
        (["nosuch"], "Unrecognized options: nosuch (see `lpg --help`)"),
    ],
)
def test_parser_errors_are_one_line(capsys, args, line):
    assert main(args) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lpg: error: ") and line in lines[0], captured.err
    assert captured.out == ""


def test_help_still_prints_in_full(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    assert exit_.value.code == 0
    captured = capsys.readouterr()
    assert "usage: lpg train" in captured.out and "--objective-config" in captured.out and captured.err == ""
