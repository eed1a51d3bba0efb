"""Checkpoints (orbax-checkpoint): objective checkpoints and training checkpoints.

Two kinds (see DESIGN.md, "Checkpoints"):

* An **objective checkpoint** is what evaluation and users load: one folder
  holding the objective's meta-parameters ``eta`` and JSON metadata (objective
  name and config, the agent heads it expects, framework and format version,
  and the caller's provenance: environments, method, meta-steps, seed, wall
  time, scores)::

      save_objective("checkpoints/lpg-toy", objective, eta, {"envs": [...], "method": "grad"})
      objective, eta, metadata = objectives.load("checkpoints/lpg-toy")
      agent = make_agent(spec, heads=objective.heads)

  Layout: ``state/`` (eta, orbax ``StandardSave``; absent when eta has no
  arrays), ``meta/metadata`` (plain JSON, orbax ``JsonSave``) and
  ``checksums.json`` (size and SHA-256 of every file, so a truncated or
  corrupted checkpoint is reported as such instead of failing deep inside
  orbax). Other top-level files (a ``MODEL.md``) are ignored when loading and
  kept when the checkpoint is overwritten.

  Saving is atomic: everything is written into a hidden staging folder next to
  ``path`` and renamed into place at the end; overwriting an existing
  checkpoint swaps the two folders with one ``renameat2(RENAME_EXCHANGE)`` on
  Linux (two renames elsewhere), so a crash never leaves a half-written
  checkpoint at ``path``.

* A **training checkpoint** holds everything a run needs to resume exactly (a
  pytree of agent / optimiser / meta states, RNG keys and counters, plus a JSON
  dict of host-side values), one numbered step folder per save in an
  ``ocp.CheckpointManager`` directory (atomic by orbax's design; the newest
  ``keep`` steps are kept).

Every problem a user can cause (missing, truncated, corrupted, incompatible or
mismatching checkpoints) raises ``lpg.errors.CheckpointError`` with one line
saying what is wrong and where.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import logging
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from lpg.errors import (
    CheckpointError,
    InvalidConfigError,
    OutputDirError,
    UserInputError,
)
from lpg.run_io import make_writable_folder, to_jsonable
from lpg.types import AgentHeads

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "check_agent_heads",
    "latest_training_step",
    "load_objective",
    "read_objective_metadata",
    "restore_training_state",
    "save_objective",
    "save_training_state",
]

FORMAT = "lpg-objective-checkpoint"
FORMAT_VERSION = 1

STATE_ITEM = "state"
META_ITEM = "meta"
META_FILE = Path(META_ITEM) / "metadata"  # where orbax's JsonCheckpointHandler writes the JSON
CHECKSUMS_FILE = "checksums.json"

# Metadata keys computed by save_objective; the caller's values for them are replaced.
RESERVED_KEYS = (
    "format",
    "format_version",
    "framework_version",
    "objective",
    "agent_heads",
    "eta_spec",
    "eta_num_params",
    "saved_at",
)


# --------------------------------------------------------------------------- helpers


def _ocp():
    import orbax.checkpoint as ocp

    # orbax logs every save at INFO/WARNING through absl; keep the console for our own output.
    logging.getLogger("absl").setLevel(logging.ERROR)
    return ocp


def _this_process_only(ocp):
    """Orbax options under which the calling process reads and writes alone (in a multi-process run only process 0 does, lpg/distributed.py)."""
    me = jax.process_index()
    return ocp.options.MultiprocessingOptions(
        primary_host=me, active_processes={me} if jax.process_count() > 1 else None
    )


def _checkpointer(ocp):
    options = _this_process_only(ocp)
    handler = ocp.CompositeCheckpointHandler(composite_options=ocp.CompositeOptions(multiprocessing_options=options))
    return ocp.Checkpointer(handler, multiprocessing_options=options)


def _one_line(error: BaseException, limit: int = 300) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _keystr(path: tuple) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path) or "<root>"


def _tree_spec(tree: Any) -> list[dict[str, Any]]:
    """[{path, shape, dtype}] of every leaf of ``tree`` (arrays or ShapeDtypeStructs)."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [
        {"path": _keystr(p), "shape": [int(d) for d in x.shape], "dtype": str(np.dtype(x.dtype))} for p, x in leaves
    ]


def _abstract(tree: Any) -> Any:
    """ShapeDtypeStructs (with a sharding) for every leaf of ``tree`` (arrays or ShapeDtypeStructs)."""
    default = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

    def leaf(x):
        sharding = getattr(x, "sharding", None)
        if not isinstance(sharding, jax.sharding.Sharding):
            sharding = default
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)

    return jax.tree.map(leaf, tree)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_checksums(folder: Path) -> None:
    """Writes ``checksums.json``: size and SHA-256 of every file under ``folder``."""
    files = {}
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = file.relative_to(folder).as_posix()
        if rel != CHECKSUMS_FILE:
            files[rel] = {"bytes": file.stat().st_size, "sha256": _sha256(file)}
    (folder / CHECKSUMS_FILE).write_text(json.dumps({"format": FORMAT, "files": files}, indent=1) + "\n")


def _verify_checksums(path: Path) -> None:
    try:
        listing = json.loads((path / CHECKSUMS_FILE).read_text())
        files = listing["files"]
        if not isinstance(files, dict):
            raise TypeError("files is not a mapping")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(
            f"objective checkpoint {str(path)!r} is corrupted: unreadable {CHECKSUMS_FILE} ({_one_line(e, 120)})"
        ) from None
    for rel, expected in files.items():
        file = path / rel
        if not file.is_file():
            raise CheckpointError(f"objective checkpoint {str(path)!r} is incomplete: file {rel} is missing")
        size = file.stat().st_size
        if size != expected.get("bytes"):
            raise CheckpointError(
                f"objective checkpoint {str(path)!r} is truncated or corrupted: {rel} has {size} bytes, expected {expected.get('bytes')}"
            )
        if _sha256(file) != expected.get("sha256"):
            raise CheckpointError(
                f"objective checkpoint {str(path)!r} is corrupted: the checksum of {rel} does not match"
            )


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _rename_exchange(a: Path, b: Path) -> bool:
    """Atomically swaps two existing paths (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    at_fdcwd, rename_exchange = -100, 2
    return fn(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), rename_exchange) == 0


def _is_objective_checkpoint(path: Path) -> bool:
    try:
        return json.loads((path / META_FILE).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _framework_version() -> str:
    import lpg

    return lpg.__version__


def _major(version: str) -> str:
    return str(version).split(".")[0]


# --------------------------------------------------------------------------- objective checkpoints


def save_objective(
    path: str | os.PathLike, objective: Any, eta: Any, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Saves ``eta`` and metadata as an objective checkpoint folder at ``path`` (atomically).

    Args:
      path: the checkpoint folder; created, or replaced if it already holds an
        objective checkpoint (its other top-level files, e.g. MODEL.md, are kept).
      objective: the ``objectives.Objective`` whose meta-parameters ``eta`` are.
      eta: its meta-parameter pytree (``{}`` for hand-designed objectives).
      metadata: provenance, JSON-able after ``lpg.run_io.to_jsonable`` (env set,
        method, meta-steps, seed, wall time, evaluation scores, ...). Keys in
        ``RESERVED_KEYS`` are computed here and replace the caller's.

    Returns:
      The checkpoint folder (absolute).

    Raises:
      OutputDirError: ``path`` is a file or a non-empty folder that is not an
        objective checkpoint, or cannot be written.
    """
    path = Path(path).absolute()
    if path.exists() and not path.is_dir():
        raise OutputDirError(f"cannot save an objective checkpoint to {str(path)!r}: it is a file")
    if path.is_dir() and any(path.iterdir()) and not _is_objective_checkpoint(path):
        raise OutputDirError(
            f"refusing to overwrite {str(path)!r}: it is a non-empty folder that holds no objective checkpoint"
        )

    eta = jax.device_get(eta)
    spec = _tree_spec(eta)
    meta = {k: v for k, v in to_jsonable(dict(metadata or {})).items() if k not in RESERVED_KEYS}
    meta.update(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        framework_version=_framework_version(),
        objective={"name": objective.name, "config": to_jsonable(objective.config_dict())},
        agent_heads=objective.heads.to_json(),
        eta_spec=spec,
        eta_num_params=int(sum(int(np.prod(s["shape"])) for s in spec)),
        saved_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    json.dumps(meta)  # fail before writing anything if the caller's metadata is not JSON

    staging = path.parent / f".{path.name}.saving-{uuid.uuid4().hex[:8]}"
    try:
        make_writable_folder(staging)  # on failure it removes the parent folders it made, too
    except OSError as e:
        raise OutputDirError(f"cannot write objective checkpoint {str(path)!r}: {e.strerror or e}") from None
    try:
        new = staging / "checkpoint"
        ocp = _ocp()
        items = {META_ITEM: ocp.args.JsonSave(meta)}
        if spec:
            items[STATE_ITEM] = ocp.args.StandardSave(eta)
        with _checkpointer(ocp) as checkpointer:
            checkpointer.save(new, ocp.args.Composite(**items))
        _write_checksums(new)
        if path.is_dir():  # keep the user's extra files (MODEL.md, ...)
            for extra in path.iterdir():
                if extra.is_file() and not (new / extra.name).exists():
                    shutil.copy2(extra, new / extra.name)
        _swap_into_place(new, path)
        _fsync_dir(path.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def _swap_into_place(new: Path, path: Path) -> None:
    """Moves folder ``new`` to ``path``, replacing an existing folder there atomically where possible."""
    if not path.exists():
        os.rename(new, path)
        return
    if _rename_exchange(new, path):  # ``new`` now holds the old checkpoint; the caller removes it
        return
    backup = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
    os.rename(path, backup)
    try:
        os.rename(new, path)
    except BaseException:
        os.rename(backup, path)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def read_objective_metadata(path: str | os.PathLike, *, verify: bool = True) -> dict[str, Any]:
    """The metadata of the objective checkpoint at ``path``, checked for format and version.

    Raises:
      CheckpointError: missing folder, not a checkpoint, truncated or
        corrupted files (when ``verify``), incompatible format or framework version.
    """
    path = Path(path)
    where = repr(str(path))
    if not path.exists():
        hint = ""
        if path.parent.is_dir() and any(path.parent.glob(f".{path.name}.old-*")):
            hint = f" (an interrupted overwrite left the previous checkpoint in {path.parent}/.{path.name}.old-*)"
        raise CheckpointError(f"no objective checkpoint at {where}: the folder does not exist{hint}")
    if not path.is_dir():
        raise CheckpointError(f"{where} is a file, not an objective checkpoint folder")
    if not (path / META_FILE).exists() and not (path / CHECKSUMS_FILE).exists():
        if any(p.is_dir() and p.name.isdigit() for p in path.iterdir()):
            raise CheckpointError(
                f"{where} is a training checkpoint folder (use --resume), not an objective checkpoint"
            )
        raise CheckpointError(f"{where} is not an objective checkpoint (no {META_FILE.as_posix()} or {CHECKSUMS_FILE})")
    if verify:
        _verify_checksums(path)
    try:
        meta = json.loads((path / META_FILE).read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"objective checkpoint {where} has corrupted metadata ({_one_line(e, 120)})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"objective checkpoint {where} has corrupted metadata (format is not {FORMAT!r})")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"objective checkpoint {where} has format version {version}, this framework reads version {FORMAT_VERSION}; "
            f"load it with the framework version that wrote it ({meta.get('framework_version')})"
        )
    saved_by = str(meta.get("framework_version"))
    if _major(saved_by) != _major(_framework_version()):
        raise CheckpointError(
            f"objective checkpoint {where} was written by framework version {saved_by}, "
            f"incompatible with this version {_framework_version()} (major versions differ)"
        )
    for key in ("objective", "agent_heads", "eta_spec"):
        if key not in meta:
            raise CheckpointError(f"objective checkpoint {where} has corrupted metadata (no {key!r})")
    if not isinstance(meta["objective"], dict) or not isinstance(meta["objective"].get("name"), str):
        raise CheckpointError(f"objective checkpoint {where} has corrupted metadata (objective name missing)")
    return meta


def load_objective(path: str | os.PathLike, make: Callable[..., Any]) -> tuple[Any, Any, dict[str, Any]]:
    """Loads the objective checkpoint at ``path`` (``objectives.load(path)`` passes the registry's ``make``).

    Rebuilds the objective with ``make(name, **config)`` and restores
    ``eta`` against the abstract tree of ``objective.init(PRNGKey(0))``.

    Returns:
      ``(objective, eta, metadata)``; ``eta`` is a pytree of jax arrays.

    Raises:
      CheckpointError: see ``read_objective_metadata``; also an objective name
        or config this framework does not know, and an ``eta`` whose tree does
        not fit the rebuilt objective.
    """
    path = Path(path).absolute()
    where = repr(str(path))
    meta = read_objective_metadata(path)
    name = meta["objective"]["name"]
    config = meta["objective"].get("config") or {}
    try:
        objective = make(name, **_config_values(config))
    except UserInputError as e:
        raise CheckpointError(f"objective checkpoint {where} cannot be rebuilt: {_one_line(e)}") from None
    check_agent_heads(meta, objective.heads, where=where, what="the rebuilt objective")

    abstract = jax.eval_shape(objective.init, jax.random.PRNGKey(0))
    expected = _tree_spec(abstract)
    saved = meta["eta_spec"]
    if saved != expected:
        raise CheckpointError(
            f"objective checkpoint {where}: eta does not fit objective {name!r}: {_spec_difference(saved, expected)}"
        )
    if not expected:
        return objective, objective.init(jax.random.PRNGKey(0)), meta
    ocp = _ocp()
    try:
        with _checkpointer(ocp) as checkpointer:
            restored = checkpointer.restore(
                path, ocp.args.Composite(**{STATE_ITEM: ocp.args.StandardRestore(_abstract(abstract))})
            )
        eta = restored[STATE_ITEM]
    except Exception as e:  # orbax / tensorstore raise many types for unreadable data
        raise CheckpointError(f"objective checkpoint {where} cannot be read: {_one_line(e)}") from None
    return objective, eta, meta


def _config_values(config: Mapping[str, Any]) -> dict[str, Any]:
    """JSON lists back to tuples (frozen config dataclasses hold tuples, e.g. hidden sizes)."""

    def fix(value):
        if isinstance(value, list):
            return tuple(fix(v) for v in value)
        return value

    return {k: fix(v) for k, v in config.items()}


def _spec_difference(saved: list[dict], expected: list[dict]) -> str:
    saved_by_path = {s["path"]: s for s in saved}
    expected_by_path = {s["path"]: s for s in expected}
    for p, e in expected_by_path.items():
        if p not in saved_by_path:
            return f"{p} is missing from the checkpoint"
        s = saved_by_path[p]
        if (s["shape"], s["dtype"]) != (e["shape"], e["dtype"]):
            return (
                f"{p} is {s['dtype']}{s['shape']} in the checkpoint but the objective expects {e['dtype']}{e['shape']}"
            )
    extra = [p for p in saved_by_path if p not in expected_by_path]
    if extra:
        return f"the checkpoint has {extra[0]}, which the objective does not have"
    return "the leaves are in a different order"


def _heads_text(heads: AgentHeads) -> str:
    text = f"y_size={heads.y_size}"
    return text + "".join(f", {h.name}={h.size}{'xA' if h.per_action else ''}" for h in heads.extra)


def check_agent_heads(
    metadata_or_objective: Any, agent: AgentHeads | int, *, where: str | None = None, what: str = "the agent"
) -> None:
    """Raises ``CheckpointError`` unless an agent with heads ``agent`` fits the objective.

    Args:
      metadata_or_objective: an objective checkpoint's metadata dict (its
        ``agent_heads``) or an ``Objective`` (its ``heads``).
      agent: the agent's heads (``AgentHeads``), or just the size of its y head (0 = none).
    """
    agent = agent if isinstance(agent, AgentHeads) else AgentHeads(y_size=int(agent))
    if isinstance(metadata_or_objective, Mapping):
        recorded = metadata_or_objective.get("agent_heads") or {}
        try:
            expected = AgentHeads.from_json(recorded)
        except (AttributeError, TypeError, ValueError, KeyError):
            raise CheckpointError(
                f"objective checkpoint{' ' + where if where else ''} has corrupted metadata (agent_heads)"
            ) from None
        source = "objective checkpoint" + (f" {where}" if where else "")
    else:
        expected = metadata_or_objective.heads
        source = f"objective {getattr(metadata_or_objective, 'name', '?')!r}"
    if agent != expected:
        raise CheckpointError(f"{source} expects agent heads {_heads_text(expected)} but {what} has {_heads_text(agent)}")


# --------------------------------------------------------------------------- training checkpoints


_HISTORY_SPEC = "_history_spec"  # extra key: {name: [shape, dtype]} of the saved history arrays


def _manager(directory: Path, keep: int | None = None, create: bool = False):
    ocp = _ocp()
    alone = _this_process_only(ocp)
    if create and alone.active_processes is not None:  # orbax creates the folder only when every process takes part
        directory.mkdir(parents=True, exist_ok=True)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep,
        create=create and alone.active_processes is None,
        read_only=not create,
        multiprocessing_options=alone,
    )
    return ocp.CheckpointManager(directory, options=options)


def save_training_state(
    directory: str | os.PathLike,
    step: int,
    state: Any,
    extra: Mapping[str, Any] | None = None,
    keep: int = 2,
    history: Mapping[str, Any] | None = None,
    replace: bool = False,
) -> Path:
    """Saves a training checkpoint for exact resume as step ``step`` of ``directory``.

    ``state`` is a pytree of arrays (agent, optimiser and meta states, RNG keys
    as raw uint32 key arrays, counters); ``extra`` a JSON-able dict of host-side
    values; ``history`` an optional flat dict of host arrays (the metrics of
    the updates so far, whose shapes grow with the run), restored as
    ``extra["history"]``. Returns after the checkpoint is completely written (orbax commits
    it atomically); the newest ``keep`` steps are kept. Saving a step that
    already exists keeps the existing one, unless ``replace`` (then the old one
    is deleted first: a kill in between leaves the older kept steps).

    Returns:
      The step's folder.
    """
    directory = Path(directory).absolute()
    if int(step) < 0:
        raise InvalidConfigError(f"training checkpoint step must be >= 0, got {step}")
    if keep is not None and keep < 1:
        raise InvalidConfigError(f"keep must be >= 1, got {keep}")
    if directory.exists() and not directory.is_dir():
        raise OutputDirError(f"cannot write training checkpoints to {str(directory)!r}: it is a file")
    ocp = _ocp()
    extra_json = to_jsonable(dict(extra or {}))
    history_arrays = {str(k): np.asarray(v) for k, v in (history or {}).items()}
    extra_json[_HISTORY_SPEC] = {k: [list(v.shape), str(v.dtype)] for k, v in history_arrays.items()}
    try:
        manager = _manager(directory, keep, create=True)
    except OSError as e:
        raise OutputDirError(f"cannot write training checkpoints to {str(directory)!r}: {e.strerror or e}") from None
    try:
        if replace and int(step) in manager.all_steps():
            manager.delete(int(step))
        if int(step) not in manager.all_steps():
            items = {"state": ocp.args.StandardSave(state), "extra": ocp.args.JsonSave(extra_json)}
            if history_arrays:
                items["history"] = ocp.args.StandardSave(history_arrays)
            manager.save(int(step), args=ocp.args.Composite(**items))
        manager.wait_until_finished()
    finally:
        manager.close()
    return directory / str(int(step))


def latest_training_step(directory: str | os.PathLike) -> int | None:
    """The newest complete training checkpoint step in ``directory``; None if there is none."""
    directory = Path(directory).absolute()
    if not directory.is_dir():
        return None
    manager = _manager(directory)
    try:
        return manager.latest_step()
    finally:
        manager.close()


def restore_training_state(directory: str | os.PathLike, abstract_state: Any) -> tuple[int, Any, dict[str, Any]] | None:
    """Restores the newest training checkpoint of ``directory``.

    Args:
      abstract_state: the state's tree (arrays or ``jax.ShapeDtypeStruct``s,
        e.g. ``jax.eval_shape(init, key)``); shardings are kept where given.

    Returns:
      ``(step, state, extra)``, or None when ``directory`` holds no checkpoint.

    Raises:
      CheckpointError: the checkpoint is unreadable or does not fit ``abstract_state``.
    """
    directory = Path(directory).absolute()
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"training checkpoint folder {str(directory)!r} is a file")
    step = latest_training_step(directory)
    if step is None:
        return None
    ocp = _ocp()
    manager = _manager(directory)
    try:
        extra = dict(manager.restore(step, args=ocp.args.Composite(extra=ocp.args.JsonRestore()))["extra"] or {})
        items = {"state": ocp.args.StandardRestore(_abstract(abstract_state))}
        spec = extra.pop(_HISTORY_SPEC, None) or {}
        if spec:
            host = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
            target = {
                k: jax.ShapeDtypeStruct(tuple(shape), np.dtype(dtype), sharding=host)
                for k, (shape, dtype) in spec.items()
            }
            items["history"] = ocp.args.StandardRestore(target)
        restored = manager.restore(step, args=ocp.args.Composite(**items))
        if spec:
            extra["history"] = {k: np.asarray(v) for k, v in restored["history"].items()}
    except Exception as e:
        raise CheckpointError(
            f"training checkpoint {str(directory / str(step))!r} cannot be restored into this run's state: {_one_line(e)}"
        ) from None
    finally:
        manager.close()
    return step, restored["state"], extra
