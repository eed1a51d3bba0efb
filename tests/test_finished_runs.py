"""A run folder that already holds a finished run: running it again is refused, --resume reuses it untouched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lpg.cli import main

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "lpg-toy-v1"
RESUMABLE = {
    "discover online": ["discover", "online", "catch", "--objective", "self_tuning", "--steps", "200"],
    "evaluate": ["evaluate", str(SHIPPED), "--envs", "chain/short", "--steps", "100", "--seeds", "1"],
}


def files(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("command", sorted(RESUMABLE))
def test_a_finished_run_is_refused_without_resume_and_reused_with_it(command, tmp_path, capsys):
    args = [*RESUMABLE[command], "--out", str(tmp_path / "run"), "--no-progress"]
    assert main(args) == 0
    first = capsys.readouterr().out
    before = files(tmp_path / "run")
    summary = json.loads(before["summary.json"])
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds this run, finished; add --resume" in err[0]
    assert files(tmp_path / "run") == before
    assert main([*args, "--resume"]) == 0  # nothing is trained again: same files, same printed results
    captured = capsys.readouterr()
    assert "nothing to do" in captured.err and files(tmp_path / "run") == before
    assert json.loads((tmp_path / "run" / "summary.json").read_text()) == summary
    assert [line for line in captured.out.splitlines() if "wall" not in line and "s/s" not in line] == [
        line for line in first.splitlines() if "wall" not in line and "s/s" not in line
    ]


def test_an_experiment_is_not_repeated_into_its_own_results(tmp_path, capsys):
    args = [
        "experiment",
        "mrp-gamma",
        "--steps",
        "2",
        "--monte-carlo",
        "1",
        "--out",
        str(tmp_path / "exp"),
        "--no-progress",
    ]
    assert main(args) == 0
    capsys.readouterr()
    before = files(tmp_path / "exp")
    assert main(args) == 2  # it has no --resume: running again would append to metrics.jsonl
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds the results of this run; choose a new --out or delete it" in err[0]
    assert files(tmp_path / "exp") == before
    (tmp_path / "fresh").mkdir()
    (tmp_path / "fresh" / "config.json").write_text((tmp_path / "exp" / "config.json").read_text())
    assert (
        main([*args[:-3], "--out", str(tmp_path / "fresh"), "--no-progress"]) == 0
    )  # only a config.json (stopped at start): runs
