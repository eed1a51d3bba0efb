"""The `lpg` command line: listings, a short training run, and bad input.

Bad input must give one line on stderr, exit status 2, no traceback, and must
leave nothing behind in the output folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lpg.cli import main


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lpg.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        timeout=300,
    )


def test_envs_lists_every_toy_environment_with_a_description(capsys):
    assert main(["envs"]) == 0
    out = capsys.readouterr().out
    for name in ["gridworld/dense", "gridworld/rand_small_sparse", "chain/distractor", "mrp", "catch", "snake"]:
        line = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert len(line.split(maxsplit=1)[1]) > 10, line


def test_objectives_lists_a2c_and_vtrace(capsys):
    assert main(["objectives"]) == 0
    out = capsys.readouterr().out
    assert any(line.startswith("a2c ") for line in out.splitlines())
    assert any(line.startswith("vtrace ") for line in out.splitlines())


def test_train_writes_every_promised_output(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        ["train", "catch", "--objective", "a2c", "--steps", "3000", "--seed", "3", "--out", str(out), "--no-progress"]
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    for key in ["env", "objective", "steps", "seed", "final_return", "wall_s", "steps_per_s"]:
        assert key in summary, key
    assert summary["env"] == "catch" and summary["objective"] == "a2c" and summary["seed"] == 3
    assert summary["steps"] >= 3000
    assert -1.0 <= summary["final_return"] <= 1.0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows and rows[-1]["step"] == summary["steps"]
    assert list(out.glob("events.out.tfevents.*"))
    assert (out / "learning_curve.png").stat().st_size > 1000
    # The same run again into the same folder continues it with --resume (here: already finished) ...
    assert main(["train", "catch", "--steps", "3000", "--seed", "3", "--out", str(out), "--no-progress"]) == 2
    assert "add --resume" in capsys.readouterr().err
    assert (
        main(["train", "catch", "--steps", "3000", "--seed", "3", "--out", str(out), "--no-progress", "--resume"]) == 0
    )
    assert json.loads((out / "summary.json").read_text())["final_return"] == summary["final_return"]
    # ... a different run into it is not.
    assert main(["train", "catch", "--steps", "3000", "--seed", "4", "--out", str(out), "--no-progress"]) == 2
    assert "already holds a different run (its config.json differs in options.seed)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "no_such_env", "--steps", "100"], "unknown environment 'no_such_env'"),
        (["train", "catch", "--objective", "nope", "--steps", "100"], "unknown objective 'nope'"),
        (["train", "catch", "--steps", "0"], "--steps must be positive"),
        (["train", "catch", "--steps", "-5"], "--steps must be positive"),
        (["train", "catch", "--num-seeds", "0", "--steps", "100"], "--num-seeds must be positive"),
        (["train", "catch", "--steps", "100", "--objective-config", "gama=0.9"], "no field 'gama'"),
        (["train", "catch", "--steps", "100", "--optimizer", "adamw"], "unknown optimizer 'adamw'"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "out"
    result = run_cli(*args, "--out", str(out))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_a_reader_that_closes_the_pipe_early_gets_no_traceback():
    """`lpg envs | head -2`: the reader is gone before lpg writes; lpg exits 141 quietly."""
    child = subprocess.Popen(
        [sys.executable, "-m", "lpg.cli", "envs"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    child.stdout.close()  # before the child has imported anything, so its first flush meets a closed pipe
    stderr = child.stderr.read().decode()
    assert child.wait(timeout=120) == 141, stderr
    assert stderr == ""


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_folder_non_root(tmp_path):  # pragma: no cover - CI runs as root
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    result = run_cli("train", "catch", "--steps", "100", "--out", str(locked / "run"))
    assert result.returncode == 2 and "cannot write" in result.stderr


def test_output_folder_that_is_a_file_or_under_a_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in (blocker, blocker / "run"):
        result = run_cli("train", "catch", "--steps", "100", "--out", str(out))
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert blocker.read_text() == "x"


def test_output_folder_with_foreign_files_is_refused(tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = run_cli("train", "catch", "--steps", "100", "--out", str(out))
    assert result.returncode == 2 and "not empty" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_bench_envs_prints_a_table_for_the_requested_environments(capsys):
    assert main(["bench", "envs", "--envs", "chain/short,catch", "--num-envs", "8", "--num-steps", "20"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "steps/s" not in line]
    assert [row.split("|")[1].strip() for row in rows] == ["chain/short", "catch"]
    assert all(float(row.split("|")[2].replace(",", "")) > 0 for row in rows)


@pytest.mark.parametrize("interrupted", [True, False])
def test_console_script_leaves_at_once_after_an_unguarded_ctrl_c(interrupted):
    # Ctrl-C while XLA compiled used to end in a segfault (139) during the interpreter's shutdown;
    # entry() now skips the shutdown (os._exit: atexit handlers do not run) after such an interrupt only.
    script = (
        "import atexit, sys, lpg.cli as cli\n"
        "atexit.register(lambda: print('shutdown ran', file=sys.stderr))\n"
        "def start(command):\n    raise KeyboardInterrupt\n"
        f"if {interrupted}: cli.initialize_from_env = start\n"
        "sys.argv = ['lpg', 'objectives']\n"
        "cli.entry()\n"
    )
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == (130 if interrupted else 0), proc.stderr
    assert ("lpg: interrupted" in proc.stderr) == interrupted
    assert ("shutdown ran" in proc.stderr) == (not interrupted)


def test_grouped_commands_list_their_options_under_options(capsys):
    # `lpg discover online --help` showed its options under "what options" and its description twice.
    with pytest.raises(SystemExit):
        main(["discover", "online", "--help"])
    text = capsys.readouterr().out
    assert "what options" not in text and "what.network" not in text and "network options" in text
    assert text.count("Discover an objective online") == 1 and "--inner-steps" in text
