"""A shipped objective's evaluation record (evaluation.model_card): built from two evaluation summaries."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import objectives
from evaluation.evaluate import checkpoint_train_config
from evaluation.model_card import evaluation_record, record_evaluation
from lpg.checkpoint import read_objective_metadata, save_objective
from lpg.errors import InvalidConfigError
from lpg.run_io import to_jsonable

ADAM = {"name": "adam", "learning_rate": 0.03, "schedule": "constant", "max_grad_norm": 0.0}


def _summary(
    objective, envs, *, steps=6400, seeds=3, seed=0, num_envs=16, unroll_length=20, optimizer=None, config=None
):
    """What `lpg evaluate` writes to summary.json, as far as the record reads it."""
    setup = {"num_envs": num_envs, "unroll_length": unroll_length, "optimizer": optimizer or ADAM}
    results = {name: {"return": 0.5, "a2c_return": 1.0, "random_return": 0.0, "a2c_normalised": 0.5} for name in envs}
    return {
        "objective": objective.name,
        "objective_config": config if config is not None else to_jsonable(objective.config_dict()),
        "envs": list(envs),
        "steps": steps,
        "seeds": seeds,
        "seed": seed,
        "train_configs": {name: dict(setup) for name in envs},
        "results": results,
        "mean_a2c_normalised": 0.5,
    }


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    objective = objectives.make("lpg", hidden_size=4, y_size=3)
    eta = objective.init(jax.random.PRNGKey(0))
    path = tmp_path_factory.mktemp("card") / "ckpt"
    save_objective(path, objective, eta, {"envs": ["chain/short", "gridworld/sparse"], "method": "grad"})
    (path / "MODEL.md").write_text("# ckpt: a card\n")
    return path, objective, eta


def test_record_is_written_into_the_checkpoint(saved, tmp_path):
    path, objective, eta = saved
    training = _summary(objective, ["gridworld/sparse", "chain/short"], seeds=8)
    held_out = _summary(objective, ["chain/long"], seeds=4)
    record = record_evaluation(path, training, held_out)
    _, eta_back, metadata = objectives.load(path)
    assert metadata["evaluation"] == record
    assert read_objective_metadata(path)["evaluation"] == record  # checksums renewed: verification passes
    for a, b in zip(jax.tree.leaves(eta), jax.tree.leaves(eta_back), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert (path / "MODEL.md").read_text() == "# ckpt: a card\n"
    assert metadata["method"] == "grad" and metadata["envs"] == ["chain/short", "gridworld/sparse"]
    # The fields `lpg evaluate --agent-setup checkpoint` and the model-card tests read.
    assert (record["steps"], record["updates"], record["seeds"], record["held_out_seeds"]) == (6400, 20, 8, 4)
    assert record["held_out_envs"] == ["chain/long"] and record["alpha_y"] == objective.config.alpha_y
    assert record["results"]["mean_a2c_normalised"] == 0.5 and set(record["held_out_results"]["results"]) == {
        "chain/long"
    }
    config = checkpoint_train_config(metadata)
    assert (config.num_envs, config.unroll_length, config.optimizer.learning_rate) == (16, 20, 0.03)


@pytest.mark.parametrize(
    ("training", "held_out", "phrase"),
    [
        (dict(envs=["chain/short"]), {}, "not the checkpoint's environments"),
        ({}, dict(envs=["chain/long", "chain/short"]), "includes training environments: chain/short"),
        ({}, dict(steps=3200), "differ in steps: 6400 and 3200"),
        ({}, dict(seed=5), "differ in seed"),
        ({}, dict(unroll_length=50), "more than one agent set-up"),
        ({}, dict(optimizer={**ADAM, "learning_rate": 0.003}), "more than one agent set-up"),
        ({}, dict(config={"alpha_y": 0.1}), "--objective-config overrides"),
    ],
)
def test_summaries_that_do_not_fit_are_refused(saved, training, held_out, phrase):
    path, objective, _ = saved
    _, _, metadata = objectives.load(path)
    envs = training.pop("envs", ["chain/short", "gridworld/sparse"])
    held_envs = held_out.pop("envs", ["chain/long"])
    with pytest.raises(InvalidConfigError, match=phrase.replace("(", r"\(")):
        evaluation_record(metadata, _summary(objective, envs, **training), _summary(objective, held_envs, **held_out))
