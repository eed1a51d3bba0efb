"""``lpg quickstart`` at toy size, and the shipped objective checkpoints (every folder of checkpoints/)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from evaluation.evaluate import checkpoint_train_config
from lpg.commands.quickstart import SHIPPED_CHECKPOINT, QuickstartCommand, shipped_checkpoint
from lpg.errors import CheckpointError, InvalidConfigError

REPO = Path(__file__).resolve().parents[1]


def test_shipped_checkpoint_location():
    assert SHIPPED_CHECKPOINT == REPO / "checkpoints" / "lpg-toy-v1"
    assert shipped_checkpoint() == SHIPPED_CHECKPOINT


# Every folder of checkpoints/ is a shipped objective: each is held to its model card.
SHIPPED = sorted(p for p in (REPO / "checkpoints").iterdir() if p.is_dir())


def test_the_quickstart_objective_is_shipped():
    assert SHIPPED_CHECKPOINT in SHIPPED


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_shipped_checkpoint_is_small(folder):
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert total < 1_000_000, total


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_shipped_checkpoint_loads_and_matches_model_card(folder):
    from lpg.checkpoint import check_agent_heads
    from objectives import load as load_objective

    objective, eta, metadata = load_objective(folder)
    assert objective.name == "lpg"
    check_agent_heads(metadata, objective.heads.y_size)
    leaves = [np.asarray(x) for x in __import__("jax").tree.leaves(eta)]
    assert leaves and all(np.all(np.isfinite(x)) for x in leaves)

    card = (folder / "MODEL.md").read_text()
    assert card.startswith(f"# {folder.name}: ")
    # The model card's claims are the checkpoint's metadata.
    assert metadata["method"] in ("grad", "es")
    assert f"method: `{metadata['method']}`" in card
    envs_line = re.search(r"environment set: (.*)", card).group(1)
    assert [e.strip(" `") for e in envs_line.split(",")] == metadata["envs"]
    assert f"{metadata['meta_steps']:,}" in card
    assert "lpg discover offline" in card
    # What evaluation needs is recorded, and the card prints the recorded means.
    recorded = metadata["evaluation"]
    for key in (
        "steps",
        "num_envs",
        "unroll_length",
        "agent_optimizer",
        "alpha_y",
        "seeds",
        "held_out_envs",
        "results",
        "held_out_results",
    ):
        assert key in recorded, key
    assert recorded["alpha_y"] == pytest.approx(objective.config.alpha_y)
    config = checkpoint_train_config(metadata)
    assert config.num_envs == recorded["num_envs"] and config.unroll_length == recorded["unroll_length"]
    assert set(recorded["results"]["results"]) == set(metadata["envs"])
    assert not set(recorded["held_out_envs"]) & set(metadata["envs"])
    assert set(recorded["held_out_results"]["results"]) == set(recorded["held_out_envs"])
    for part in ("results", "held_out_results"):
        assert f"**{recorded[part]['mean_a2c_normalised']:.2f}**" in card, part
    # Listed in the folder's index with the same two means.
    index = (REPO / "checkpoints" / "README.md").read_text()
    row = next(line for line in index.splitlines() if line.startswith(f"| [`{folder.name}`]"))
    assert f"{recorded['results']['mean_a2c_normalised']:.2f}" in row
    assert f"{recorded['held_out_results']['mean_a2c_normalised']:.2f}" in row


def test_the_quickstart_objective_learns_its_training_set():
    from objectives import load as load_objective

    _, _, metadata = load_objective(SHIPPED_CHECKPOINT)
    assert metadata["evaluation"]["results"]["mean_a2c_normalised"] >= 0.9


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="missing"):
        shipped_checkpoint(tmp_path / "nope")
    with pytest.raises(CheckpointError):
        QuickstartCommand(out=str(tmp_path / "q"), checkpoint=str(tmp_path / "nope"), meta_steps=0).run()
    assert not (tmp_path / "q").exists()


def test_validation(tmp_path):
    with pytest.raises(InvalidConfigError):
        QuickstartCommand(out=str(tmp_path / "q"), meta_steps=-1).run()
    with pytest.raises(InvalidConfigError):
        QuickstartCommand(out=str(tmp_path / "q"), eval_steps=0).run()


def test_quickstart_toy_size(tmp_path, capsys):
    out = tmp_path / "quick"
    command = QuickstartCommand(
        out=str(out),
        envs="chain/short",
        meta_steps=3,
        num_lifetimes=2,
        num_envs=4,
        unroll_length=5,
        lifetime_updates=5,
        eval_envs="chain/short,chain/long",
        eval_steps=400,
        eval_seeds=2,
        progress=False,
    )
    assert command.run() == 0
    printed = capsys.readouterr().out
    # Part 1: the small discovery.
    discovery = json.loads((out / "discovery" / "summary.json").read_text())
    assert discovery["meta_steps"] == 3 and discovery["method"] == "grad"
    assert (out / "discovery" / "objective").is_dir()
    # The best-evaluated objective is kept too (here the only, final evaluation).
    assert discovery["best_meta_step"] == 3 and (out / "discovery" / "objective_best").is_dir()
    assert discovery["best_mean_a2c_normalised"] == pytest.approx(discovery["mean_a2c_normalised"])
    assert (out / "discovery" / "metrics.jsonl").exists()
    assert "chain/short" in discovery["evaluation"]["results"]
    # Part 2: the shipped objective's evaluation.
    evaluation = json.loads((out / "evaluation" / "summary.json").read_text())
    assert evaluation["envs"] == ["chain/short", "chain/long"]
    assert evaluation["held_out"] == [n for n in ["chain/short", "chain/long"] if n not in evaluation["trained_on"]]
    for name in evaluation["envs"]:
        r = evaluation["results"][name]
        assert {"return", "a2c_return", "random_return", "a2c_normalised"} <= set(r)
        assert r["steps"] >= 400
    assert (out / "evaluation" / "results.md").read_text().startswith("| environment |")
    assert (out / "evaluation" / "a2c_normalised.png").exists()
    # It prints where the files went and the numbers.
    assert str(out / "discovery") in printed and str(out / "evaluation") in printed
    assert "A2C-normalised" in printed and "quickstart done" in printed
    # The same quickstart again reuses both finished parts: same numbers, files untouched, no training.
    kept = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name in ("summary.json", "metrics.jsonl")}
    assert command.run() == 0
    assert {p: p.read_bytes() for p in kept} == kept
    assert capsys.readouterr().err.count("already holds this run, finished; nothing to do") == 2
