"""Several devices and several hosts: JAX's own distributed runtime and a 1-D ``"data"`` mesh.

The population axes are what scale out (DESIGN.md: "many devices are a
``jax.sharding.Mesh`` over the population/lifetime axis"):

* offline discovery (grad): the lifetime axis of every ``LifetimeState`` group
  (``shard_offline_state``); ES: the members of each environment group inside
  ``es_step`` (``constrain_leading``);
* plain and online training: the batch axis ``num_envs`` (``shard_batch``).

Arrays are placed with ``NamedSharding``; ``jit`` propagates the placement, so
the mean over lifetimes (or over the batch) becomes a cross-device reduction
and the numbers equal a one-device run up to float summation order. With one
device every helper returns its input unchanged.

Several processes (hosts) join one run through ``initialize_from_env``
(``LPG_COORDINATOR_ADDRESS``, ``LPG_NUM_PROCESSES``, ``LPG_PROCESS_ID``; the
CLI calls it). Every process runs the same program on the same full values;
``shard_leading`` turns each process's copy into one global array. Only
process 0 writes the run folder and checkpoints (``prepare_run_dir``,
``primary_checkpoints``); sharded state is gathered to host numpy first
(``to_host``) and a restored checkpoint is broadcast from process 0.
"""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from lpg.errors import InvalidConfigError, UserInputError
from lpg.run_io import RunDir

ADDRESS_VAR = "LPG_COORDINATOR_ADDRESS"
NUM_PROCESSES_VAR = "LPG_NUM_PROCESSES"
PROCESS_ID_VAR = "LPG_PROCESS_ID"
ENV_VARS = (ADDRESS_VAR, NUM_PROCESSES_VAR, PROCESS_ID_VAR)
AXIS = "data"


# --------------------------------------------------------------------------- runtime


def distributed_env() -> tuple[str, int, int] | None:
    """``(coordinator_address, num_processes, process_id)`` from the environment; None when none is set.

    Raises:
      InvalidConfigError: only some are set, or a value is malformed.
    """
    values = {name: os.environ.get(name, "").strip() for name in ENV_VARS}
    if not any(values.values()):
        return None
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise InvalidConfigError(
            f"a multi-process run needs all of {', '.join(ENV_VARS)}; missing {', '.join(missing)}"
        )
    address = values[ADDRESS_VAR]
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidConfigError(f"{ADDRESS_VAR} must be HOST:PORT (e.g. 10.0.0.1:1234), got {address!r}")
    numbers = {}
    for name in (NUM_PROCESSES_VAR, PROCESS_ID_VAR):
        try:
            numbers[name] = int(values[name])
        except ValueError:
            raise InvalidConfigError(f"{name} must be an integer, got {values[name]!r}") from None
    num, pid = numbers[NUM_PROCESSES_VAR], numbers[PROCESS_ID_VAR]
    if num < 1:
        raise InvalidConfigError(f"{NUM_PROCESSES_VAR} must be >= 1, got {num}")
    if not 0 <= pid < num:
        raise InvalidConfigError(f"{PROCESS_ID_VAR} must be in [0, {num - 1}] ({NUM_PROCESSES_VAR}={num}), got {pid}")
    return address, num, pid


def initialize_from_env(command: Any = None) -> bool:
    """Joins the multi-process run the ``LPG_*`` variables describe (once); returns whether they are set.

    Call before any JAX computation. ``command`` (a parsed CLI command, or
    None) must be one that supports several processes: a command class with
    ``MULTI_PROCESS = True`` (``lpg discover offline``). On CPU, cross-process
    collectives use gloo.

    Raises:
      InvalidConfigError: malformed variables, or a command that runs in one process only.
    """
    env = distributed_env()
    if env is None:
        return False
    if command is not None and not getattr(getattr(command, "what", command), "MULTI_PROCESS", False):
        raise InvalidConfigError(f"only `lpg discover offline` runs on several processes; unset {', '.join(ENV_VARS)}")
    if jax.distributed.is_initialized():
        return True
    if jax.config.values.get("jax_cpu_collectives_implementation") in (None, "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    address, num, pid = env
    jax.distributed.initialize(coordinator_address=address, num_processes=num, process_id=pid)
    return True


def is_primary() -> bool:
    """True on process 0, the one that writes files."""
    return jax.process_index() == 0


# --------------------------------------------------------------------------- placement


def data_mesh() -> Mesh:
    """A 1-D mesh named ``"data"`` over every device of every process."""
    return Mesh(np.asarray(jax.devices()), (AXIS,))


def _is_array(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype")


def _place(x: Any, sharding: NamedSharding) -> jax.Array:
    if jax.process_count() == 1 or (isinstance(x, jax.Array) and not x.is_fully_addressable):
        return jax.device_put(x, sharding)
    host = np.asarray(x)  # every process holds the same full value: build the global array from it
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def shard_leading(tree: Any, mesh: Mesh, axis_size: int | None, axis: int = 0) -> Any:
    """``tree`` placed on ``mesh``: array leaves whose dimension ``axis`` is ``axis_size`` split over ``"data"``.

    A leaf is split when that dimension equals ``axis_size`` and is divisible
    by the mesh size; every other array leaf is replicated (``axis_size`` None
    replicates all). With one device ``tree`` is returned unchanged.
    """
    size = mesh.devices.size
    if size == 1:
        return tree
    split = NamedSharding(mesh, P(*(None,) * axis, AXIS))
    replicated = NamedSharding(mesh, P())

    def leaf(x):
        if not _is_array(x):
            return x
        sharded = axis_size is not None and x.ndim > axis and x.shape[axis] == axis_size and axis_size % size == 0
        return _place(x, split if sharded else replicated)

    return jax.tree.map(leaf, tree)


def shard_offline_state(state: Any) -> Any:
    """An ``OfflineState`` with each group's lifetimes split over devices (leading axis) and the rest replicated."""
    if len(jax.devices()) == 1:
        return state
    mesh = data_mesh()
    lifetimes = tuple(shard_leading(lives, mesh, jax.tree.leaves(lives)[0].shape[0]) for lives in state.lifetimes)
    return shard_leading(state.replace(lifetimes=()), mesh, None).replace(lifetimes=lifetimes)


def shard_batch(states: Any, num_envs: int) -> Any:
    """Per-seed training states [S, ...] with the batch axis (dimension 1 of size ``num_envs``) split over devices."""
    if len(jax.devices()) == 1:
        return states
    return shard_leading(states, data_mesh(), num_envs, axis=1)


def constrain_leading(tree: Any, axis_size: int) -> Any:
    """Inside ``jit``: leaves with leading dimension ``axis_size`` split over all devices (no-op with one device)."""
    size = len(jax.devices())
    if size == 1 or axis_size % size:
        return tree
    split = NamedSharding(data_mesh(), P(AXIS))
    return jax.tree.map(
        lambda x: jax.lax.with_sharding_constraint(x, split) if x.ndim and x.shape[0] == axis_size else x, tree
    )


# --------------------------------------------------------------------------- host copies


def to_host(tree: Any) -> Any:
    """``tree`` as host numpy arrays, gathering arrays sharded over other processes.

    Arrays split over several processes are gathered with one collective, so
    in a multi-process run every process must call this at the same point.
    """
    leaves, treedef = jax.tree.flatten(tree)
    spread = [
        i
        for i, x in enumerate(leaves)
        if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated
    ]
    if spread:
        gathered = jax.jit(lambda xs: xs, out_shardings=NamedSharding(data_mesh(), P()))([leaves[i] for i in spread])
        for i, x in zip(spread, gathered):
            leaves[i] = x

    def host(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(x.addressable_data(0))
        return np.asarray(x) if _is_array(x) else x

    return jax.tree.unflatten(treedef, [host(x) for x in leaves])


def host_local(tree: Any) -> Any:
    """``tree`` unchanged in a one-process run; else host numpy copies (for computations local to a process)."""
    return tree if jax.process_count() == 1 else to_host(tree)


def broadcast_object(value: Any) -> Any:
    """Process 0's ``value`` (any picklable object) on every process."""
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    data = np.frombuffer(pickle.dumps(value), np.uint8) if is_primary() else np.zeros(0, np.uint8)
    length = int(multihost_utils.broadcast_one_to_all(np.asarray(data.size, np.int64)))
    padded = np.zeros(length, np.uint8)
    padded[: data.size] = data
    return pickle.loads(multihost_utils.broadcast_one_to_all(padded).tobytes())


def on_primary(fn: Callable[[], Any]) -> Any:
    """``fn()`` run on process 0, its (picklable) result returned on every process.

    A ``UserInputError`` that ``fn`` raises is raised on every process, so
    the others do not wait for process 0 in a collective it never reaches.
    """
    if jax.process_count() == 1:
        return fn()
    result, error = None, None
    if is_primary():
        try:
            result = fn()
        except UserInputError as e:
            error = e
    result, failure = broadcast_object((result, None if error is None else (type(error), str(error))))
    if error is not None:
        raise error
    if failure is not None:
        raise failure[0](failure[1])
    return result


# --------------------------------------------------------------------------- files: process 0 writes


def prepare_run_dir(out: Any, config: Any) -> RunDir:
    """``RunDir.prepare(out, config)`` on process 0; elsewhere a scratch run folder, removed on ``close``."""
    prepared: list[RunDir] = []
    on_primary(lambda: prepared.append(RunDir.prepare(out, config)))
    return prepared[0] if prepared else ScratchRunDir()


class ScratchRunDir(RunDir):
    """The run folder of a process other than 0: nothing is logged; plots land in a temporary folder."""

    def __init__(self) -> None:
        super().__init__(tempfile.mkdtemp(prefix=f"lpg-process{jax.process_index()}-"))

    def log(self, step, metrics) -> None:
        pass

    def write_summary(self, summary):
        return self.path / "summary.json"

    def read_metrics(self):
        return []

    def truncate_metrics(self, rows) -> None:
        pass

    def close(self) -> None:
        super().close()
        shutil.rmtree(self.path, ignore_errors=True)


class _PrimaryCheckpoints:
    """``lpg.checkpoint`` for a multi-process run: process 0 reads and writes, the others follow.

    Saving gathers sharded state to host numpy on every process (one
    collective) and writes it on process 0; what process 0 reads is broadcast,
    so the other processes need no access to the files.
    """

    def __init__(self, module: Any) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)

    def latest_training_step(self, directory):
        return on_primary(lambda: self._module.latest_training_step(directory))

    def save_objective(self, path, objective, eta, metadata=None):
        eta = to_host(eta)
        return on_primary(lambda: self._module.save_objective(path, objective, eta, metadata))

    def save_training_state(self, directory, step, state, *args, **kwargs):
        state = to_host(state)
        return on_primary(lambda: self._module.save_training_state(directory, step, state, *args, **kwargs))

    def restore_training_state(self, directory, abstract_state):
        """Restored on process 0 as host numpy (``abstract_state``'s shardings are not used) and broadcast."""
        host_abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), abstract_state)

        def restore():
            restored = self._module.restore_training_state(directory, host_abstract)
            return None if restored is None else (restored[0], jax.tree.map(np.asarray, restored[1]), restored[2])

        return on_primary(restore)


def primary_checkpoints(module: Any) -> Any:
    """``module`` (``lpg.checkpoint``) in a one-process run; else a wrapper that reads and writes on process 0 only."""
    if module is None or jax.process_count() == 1:
        return module
    return _PrimaryCheckpoints(module)
