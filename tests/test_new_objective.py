"""An objective is one file: `objectives/learned_advantage.py` (added with no edit elsewhere) goes through every command.

It is listed by `lpg objectives`, meta-learned by `lpg discover offline`
(meta-gradients and ES), saved as an objective checkpoint, and loaded and run
by `lpg evaluate`; `lpg discover online` and its checkpoint round trip
(tests/test_online_checkpoints.py) and the contract tests
(tests/test_objective_contract.py) take every registered objective, this one too.
"""

from __future__ import annotations

import json

import pytest

import objectives
from lpg.cli import main

NAME = "learned_advantage"
TINY_OFFLINE = [
    "discover", "offline", "--objective", NAME, "--envs", "chain/short", "--meta-steps", "2",
    "--num-lifetimes", "2", "--num-envs", "2", "--unroll-length", "4", "--lifetime-updates", "4",
    "--inner-updates", "2", "--eval-updates", "2", "--eval-seeds", "1", "--no-progress",
]  # fmt: skip


def test_the_new_objective_is_registered_from_its_file_alone(capsys):
    assert objectives.module_of(NAME) == "objectives.learned_advantage"
    assert main(["objectives"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(NAME + " "))
    assert "online,offline" in line


@pytest.mark.parametrize("method", ["grad", "es"])
def test_the_new_objective_is_discovered_offline_saved_and_evaluated(tmp_path, capsys, method):
    out = tmp_path / method
    assert main([*TINY_OFFLINE, "--method", method, "--out", str(out)]) == 0, capsys.readouterr().err
    objective, _eta, metadata = objectives.load(out / "objective")
    assert objective.name == NAME and metadata["objective"]["name"] == NAME
    if method == "grad":  # evaluating one of the two is enough to show `lpg evaluate` loads it
        evaluate = ["evaluate", str(out / "objective"), "--envs", "chain/short", "--steps", "80", "--seeds", "1"]
        assert main([*evaluate, "--out", str(tmp_path / "evaluate"), "--no-progress"]) == 0, capsys.readouterr().err
        summary = json.loads((tmp_path / "evaluate" / "summary.json").read_text())
        assert summary["objective"] == NAME and "chain/short" in summary["results"]
