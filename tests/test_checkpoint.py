"""Objective checkpoints and training checkpoints (lpg.checkpoint)."""

from __future__ import annotations

import dataclasses
import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import struct

import objectives
from lpg import checkpoint as ck
from lpg.errors import CheckpointError, OutputDirError, UserInputError
from lpg.types import AgentOutput, Rollout
from objectives import replace_config
from objectives.a2c import a2c_loss
from objectives.base import AgentHeads, Objective

# --------------------------------------------------------------------------- a test objective with a y head


@dataclasses.dataclass(frozen=True)
class YHeadConfig:
    """Config of the test objective: y head size and the width of a dummy meta-network."""

    y_size: int = 30
    width: int = 4
    hidden: tuple[int, ...] = (3, 2)


class YHeadObjective(Objective):
    """A2C plus a small eta-weighted penalty on the agent's y logits (test only)."""

    name = "test-yhead"
    description = "test objective with a y head"

    def __init__(self, config: YHeadConfig = YHeadConfig()):
        self.config = config

    @property
    def heads(self) -> AgentHeads:
        return AgentHeads(y_size=self.config.y_size)

    @property
    def is_learned(self) -> bool:
        return True

    def init(self, key: chex.PRNGKey):
        k1, k2 = jax.random.split(key)
        return {
            "net": {
                "w": jax.random.normal(k1, (self.config.width, self.config.y_size)),
                "b": jnp.zeros((self.config.y_size,)),
            },
            "scale": jnp.asarray(0.01, jnp.float32),
            "steps": jnp.asarray(7, jnp.int32),
            "mix": jax.random.uniform(k2, self.config.hidden),
        }

    def agent_loss(self, eta, rollout: Rollout, agent_out: AgentOutput):
        loss, metrics = a2c_loss(rollout, agent_out, 0.99, 0.95, 0.5, 0.01)
        y_target = jax.nn.softmax(jnp.mean(eta["net"]["w"], axis=0) + eta["net"]["b"])
        y_loss = jnp.mean(jnp.sum((jax.nn.softmax(agent_out.y_logits) - y_target) ** 2, axis=-1))
        return loss + eta["scale"] * y_loss, dict(metrics, y_loss=y_loss)


if YHeadObjective.name not in dict(objectives.list_objectives()):
    objectives.register(
        YHeadObjective.name, lambda **o: YHeadObjective(replace_config(YHeadConfig(), **o)), YHeadObjective.description
    )


def assert_trees_equal(a, b):
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    assert ta == tb
    for x, y in zip(la, lb):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and message
    return message


PROVENANCE = {
    "envs": ["chain/short", "gridworld/dense"],
    "method": "grad",
    "meta_steps": 120,
    "seed": 3,
    "wall_s": 12.5,
    "eval": {"mean_a2c_normalised": 0.93, "results": {"chain/short": {"a2c_normalised": 1.02}}},
}


@pytest.fixture
def saved(tmp_path):
    objective = objectives.make("test-yhead", y_size=30, hidden=(3, 2))
    eta = objective.init(jax.random.PRNGKey(5))
    path = ck.save_objective(tmp_path / "ckpt", objective, eta, PROVENANCE)
    return path, objective, eta


# --------------------------------------------------------------------------- objective checkpoints


def test_objective_round_trip_gives_identical_arrays_and_metadata(saved):
    path, objective, eta = saved
    loaded, loaded_eta, meta = objectives.load(path)
    assert loaded.name == objective.name and loaded.config == objective.config  # tuples come back as tuples
    assert_trees_equal(eta, loaded_eta)
    for key, value in PROVENANCE.items():
        assert meta[key] == value
    assert meta["objective"] == {"name": "test-yhead", "config": {"y_size": 30, "width": 4, "hidden": [3, 2]}}
    assert meta["agent_heads"] == {"y_size": 30}
    assert meta["format_version"] == ck.FORMAT_VERSION
    import lpg

    assert meta["framework_version"] == lpg.__version__
    assert meta == ck.read_objective_metadata(path)  # metadata identical however it is read


def test_a2c_objective_with_empty_eta_round_trips(tmp_path):
    a2c = objectives.make("a2c", gamma=0.9)
    path = ck.save_objective(tmp_path / "a2c", a2c, a2c.init(jax.random.PRNGKey(0)), {"method": "none"})
    loaded, eta, meta = objectives.load(path)
    assert loaded.name == "a2c" and loaded.config == a2c.config and eta == {}
    assert meta["method"] == "none" and meta["eta_num_params"] == 0


def test_wrong_agent_y_size_fails_with_a_clear_message(saved):
    path, _, _ = saved
    objective, _, meta = objectives.load(path)
    with pytest.raises(CheckpointError) as error:
        ck.check_agent_heads(meta, 8)
    assert "expects agent heads y_size=30 but the agent has y_size=8" in one_line(error)
    with pytest.raises(CheckpointError, match="expects agent heads y_size=30 but the agent has y_size=0"):
        ck.check_agent_heads(objective, 0)
    ck.check_agent_heads(meta, 30)
    ck.check_agent_heads(objective, 30)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError) as error:
        objectives.load(tmp_path / "nope")
    assert "no objective checkpoint" in one_line(error) and "nope" in str(error.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not an objective checkpoint"):
        objectives.load(tmp_path / "empty")
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="is a file"):
        objectives.load(tmp_path / "file")


def _data_files(path):
    return sorted(
        (p for p in (path / "state").rglob("*") if p.is_file() and p.stat().st_size > 0),
        key=lambda p: -p.stat().st_size,
    )


def test_truncated_data_file(saved):
    path, _, _ = saved
    victim = _data_files(path)[0]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    with pytest.raises(CheckpointError) as error:
        objectives.load(path)
    assert "truncated" in one_line(error) and str(path) in str(error.value)


def test_deleted_data_file(saved):
    path, _, _ = saved
    victim = _data_files(path)[0]
    victim.unlink()
    with pytest.raises(CheckpointError) as error:
        objectives.load(path)
    assert "missing" in one_line(error) and victim.name in str(error.value)


def test_corrupted_data_and_metadata(saved):
    path, _, _ = saved
    victim = _data_files(path)[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted") as error:
        objectives.load(path)
    one_line(error)
    meta_file = path / "meta" / "metadata"
    meta_file.write_text("{not json")
    ck._write_checksums(path)  # consistent checksums: the JSON itself is what is broken
    with pytest.raises(CheckpointError, match="corrupted metadata") as error:
        objectives.load(path)
    one_line(error)


def _rewrite_metadata(path, **changes):
    meta_file = path / "meta" / "metadata"
    meta = json.loads(meta_file.read_text())
    meta.update(changes)
    meta_file.write_text(json.dumps(meta))
    ck._write_checksums(path)


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"format_version": 99}, "format version 99"),
        ({"framework_version": "7.0.0"}, "framework version 7.0.0"),
        ({"objective": {"name": "no-such-objective", "config": {}}}, "unknown objective 'no-such-objective'"),
        ({"objective": {"name": "test-yhead", "config": {"y_size": 30, "nope": 1}}}, "cannot be rebuilt"),
        ({"agent_heads": {"y_size": 8}}, "expects agent heads y_size=8 but the rebuilt objective has y_size=30"),
    ],
)
def test_incompatible_metadata(saved, changes, expected):
    path, _, _ = saved
    _rewrite_metadata(path, **changes)
    with pytest.raises(CheckpointError) as error:
        objectives.load(path)
    assert expected in one_line(error)


def test_eta_tree_mismatch(tmp_path):
    objective = objectives.make("test-yhead", y_size=30)
    eta = objective.init(jax.random.PRNGKey(0))
    eta["net"]["w"] = jnp.zeros((5, 30))
    path = ck.save_objective(tmp_path / "bad", objective, eta, {})
    with pytest.raises(CheckpointError) as error:
        objectives.load(path)
    assert "net/w is float32[5, 30] in the checkpoint but the objective expects float32[4, 30]" in one_line(error)


def test_crash_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch, saved):
    path, objective, eta = saved
    (path / "MODEL.md").write_text("model card")

    def crash(folder):
        raise RuntimeError("simulated crash")

    new_eta = jax.tree.map(lambda x: x + 1, eta)
    with monkeypatch.context() as m:
        m.setattr(ck, "_write_checksums", crash)
        with pytest.raises(RuntimeError, match="simulated crash"):
            ck.save_objective(path, objective, new_eta, {"method": "es"})
        with pytest.raises(RuntimeError):
            ck.save_objective(tmp_path / "fresh", objective, new_eta, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no staging folder, nothing at "fresh"
    _, loaded_eta, meta = objectives.load(path)
    assert_trees_equal(eta, loaded_eta)
    assert meta["method"] == "grad"

    # an uninterrupted overwrite replaces the checkpoint and keeps extra files (the model card)
    ck.save_objective(path, objective, new_eta, {"method": "es"})
    _, loaded_eta, meta = objectives.load(path)
    assert_trees_equal(new_eta, loaded_eta)
    assert meta["method"] == "es" and (path / "MODEL.md").read_text() == "model card"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_failed_save_removes_the_folders_it_made(tmp_path, monkeypatch):
    """If the staging folder cannot be made, the missing parents made for it are removed
    again (they used to stay behind, empty), and an existing parent is kept."""
    from pathlib import Path

    a2c = objectives.make("a2c")
    real_mkdir = Path.mkdir

    def refuse_staging(self, *args, **kwargs):
        if ".saving-" in self.name:
            raise PermissionError(13, "Permission denied")
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refuse_staging)
    with pytest.raises(OutputDirError, match="Permission denied"):
        ck.save_objective(tmp_path / "a" / "b" / "ckpt", a2c, {}, {})
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_to_overwrite_a_foreign_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("precious")
    a2c = objectives.make("a2c")
    with pytest.raises(OutputDirError, match="refusing to overwrite"):
        ck.save_objective(tmp_path / "mine", a2c, {}, {})
    assert (tmp_path / "mine" / "notes.txt").read_text() == "precious"


def test_checkpoint_errors_are_user_input_errors():
    assert issubclass(CheckpointError, UserInputError)


# --------------------------------------------------------------------------- training checkpoints


@struct.dataclass
class FakeLearner:
    params: dict
    opt_state: optax.OptState
    key: jax.Array
    count: jax.Array


def make_state(offset: float = 0.0) -> FakeLearner:
    params = {"table": jnp.arange(12, dtype=jnp.float32).reshape(3, 4) + offset, "b": jnp.full((2,), 0.5 + offset)}
    opt = optax.adam(1e-3)
    opt_state = opt.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    _, opt_state = opt.update(grads, opt_state, params)
    return FakeLearner(
        params, opt_state, jax.random.split(jax.random.PRNGKey(int(offset)), 3), jnp.asarray(int(offset), jnp.int32)
    )


def test_training_state_round_trip(tmp_path):
    directory = tmp_path / "train_ckpt"
    assert ck.latest_training_step(directory) is None
    assert ck.restore_training_state(directory, make_state()) is None
    for step in (10, 20, 30):
        ck.save_training_state(directory, step, make_state(step), {"step": step, "rng": [1, 2], "wall_s": 1.5}, keep=2)
    assert ck.latest_training_step(directory) == 30
    assert sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit()) == [20, 30]
    abstract = jax.eval_shape(lambda: make_state(0.0))
    step, state, extra = ck.restore_training_state(directory, abstract)
    assert step == 30 and isinstance(state, FakeLearner)
    assert_trees_equal(make_state(30), state)
    assert extra == {"step": 30, "rng": [1, 2], "wall_s": 1.5}
    # saving an existing step again keeps the first one
    ck.save_training_state(directory, 30, make_state(99), {"step": 99})
    assert ck.restore_training_state(directory, abstract)[2]["step"] == 30


def test_training_state_mismatch_is_a_checkpoint_error(tmp_path):
    directory = tmp_path / "train_ckpt"
    ck.save_training_state(directory, 1, make_state(), {})
    with pytest.raises(CheckpointError) as error:
        ck.restore_training_state(directory, {"other": jax.ShapeDtypeStruct((3,), jnp.float32)})
    assert "cannot be restored" in one_line(error) and str(directory) in str(error.value)
