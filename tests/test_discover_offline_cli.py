"""`lpg discover offline` end to end at toy size: outputs, initial evaluation, checkpoint, resume."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from lpg.cli import main
from objectives import load as load_objective

TOY = [
    "--envs",
    "chain/short",
    "--meta-steps",
    "4",
    "--num-lifetimes",
    "2",
    "--num-envs",
    "4",
    "--unroll-length",
    "10",
    "--lifetime-updates",
    "6",
    "--inner-updates",
    "2",
    "--eval-every",
    "2",
    "--eval-updates",
    "3",
    "--eval-seeds",
    "1",
    "--no-progress",
]


@pytest.mark.parametrize("method", ["grad", "es"])
def test_discover_offline_writes_objective_and_evaluates_from_the_random_start(tmp_path, method):
    out = tmp_path / method
    assert main(["discover", "offline", "--method", method, "--out", str(out), *TOY]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == method and summary["meta_steps"] == 4
    assert [e["meta_step"] for e in summary["evaluations"]] == [0, 2, 4]
    assert summary["initial_mean_a2c_normalised"] == summary["evaluations"][0]["mean_a2c_normalised"]
    objective, eta, metadata = load_objective(out / "objective")
    assert objective.name == "lpg" and metadata["method"] == method
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(eta))
    assert (out / "metrics.jsonl").exists() and list(out.glob("events.out.tfevents.*"))


def test_resumed_discovery_equals_an_uninterrupted_one(tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    args = ["discover", "offline", "--method", "grad", *TOY, "--eval-every", "0", "--checkpoint-every", "2"]
    assert main([*args, "--out", str(whole)]) == 0
    first = list(args)
    first[first.index("--meta-steps") + 1] = "2"
    assert main([*first, "--out", str(split)]) == 0
    assert main([*args, "--out", str(split), "--resume"]) == 0
    _, eta_whole, _ = load_objective(whole / "objective")
    _, eta_split, _ = load_objective(split / "objective")
    for a, b in zip(jax.tree.leaves(eta_whole), jax.tree.leaves(eta_split)):
        np.testing.assert_array_equal(a, b)


def test_discover_offline_bad_method_is_a_clean_error(tmp_path, capsys):
    assert main(["discover", "offline", "--method", "sgd", "--out", str(tmp_path / "x"), *TOY]) == 2
    assert "method" in capsys.readouterr().err and not (tmp_path / "x").exists()
