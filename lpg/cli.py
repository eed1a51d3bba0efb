"""The ``lpg`` command line, generated from frozen dataclasses by tyro.

Every sub-command is a dataclass whose field docstrings are its ``--help``.
Errors caused by the user's input (``lpg.errors.UserInputError``) are printed
as one line on stderr with exit status 2, never as a traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import re
import signal
import sys
from typing import Annotated, Union

import tyro

from lpg import allocator, xla_flags
from lpg.distributed import initialize_from_env
from lpg.errors import RunFailedError, RunInterrupted, UserInputError
from lpg.networks import NetworkConfig
from lpg.validation import recipe_flags

Positional = tyro.conf.Positional


@dataclasses.dataclass(frozen=True)
class EnvsCommand:
    """List every environment with a one-line description."""

    kind: str | None = None
    """Only environments of this kind (toy, gymnax or atari)."""

    def run(self) -> int:
        from lpg import envs

        rows = envs.list_envs(self.kind)
        width = max((len(name) for name, _ in rows), default=0)
        for name, description in rows:
            print(f"{name:<{width}}  {description}")
        print("\nnamed sets: " + ", ".join(f"{k} ({len(v)})" for k, v in envs.ENV_SETS.items()))
        return 0


@dataclasses.dataclass(frozen=True)
class ObjectivesCommand:
    """List every objective (hand-designed and learned): the commands it supports and a one-line description."""

    def run(self) -> int:
        import objectives

        rows = [(name, ",".join(objectives.make(name).supports.names()) or "-", text)
                for name, text in objectives.list_objectives()]  # fmt: skip
        width = max((len(name) for name, _, _ in rows), default=0)
        uses = max((len(use) for _, use, _ in rows), default=0)
        for name, use, description in rows:
            print(f"{name:<{width}}  {use:<{uses}}  {description}")
        print("\nsupports: train = `lpg train`; online = `lpg discover online`; offline = `lpg discover offline`")
        return 0


def _group(name: str, doc: str, members: dict[str, type]) -> type:
    """A command group (``lpg bench ...``, ``lpg discover ...``) whose sub-commands are ``members``."""
    union = Union[tuple(Annotated[cls, tyro.conf.subcommand(key)] for key, cls in members.items())]  # type: ignore[valid-type]
    field = Annotated[union, tyro.conf.arg(name="")]  # no name: its options show under "options", as in other commands
    namespace = {"__doc__": doc, "run": lambda self: self.what.run(), "MEMBERS": tuple(members), "CLASSES": members}
    return dataclasses.make_dataclass(name, [("what", field)], frozen=True, namespace=namespace)


def _subcommands() -> dict[str, type]:
    from lpg.commands.bench import (
        BenchAtariCommand,
        BenchEnvsCommand,
        BenchOfflineCommand,
        BenchOnlineCommand,
        BenchScaleCommand,
    )
    from lpg.commands.discover_offline import DiscoverOfflineCommand
    from lpg.commands.discover_online import DiscoverOnlineCommand
    from lpg.commands.evaluate import EvaluateCommand
    from lpg.commands.experiment import ExperimentCommand
    from lpg.commands.inspect import InspectCommand
    from lpg.commands.plot import PlotCommand
    from lpg.commands.quickstart import QuickstartCommand
    from lpg.commands.train import TrainCommand

    return {
        "quickstart": QuickstartCommand,
        "envs": EnvsCommand,
        "objectives": ObjectivesCommand,
        "train": TrainCommand,
        "discover": _group(
            "Discover",
            "Discover an objective: online (within one lifetime) or offline (across many lifetimes).",
            {"online": DiscoverOnlineCommand, "offline": DiscoverOfflineCommand},
        ),
        "evaluate": EvaluateCommand,
        "inspect": InspectCommand,
        "plot": PlotCommand,
        "experiment": ExperimentCommand,
        "bench": _group(
            "Bench",
            "Benchmarks of this machine.",
            {
                "envs": BenchEnvsCommand,
                "online": BenchOnlineCommand,
                "offline": BenchOfflineCommand,
                "atari": BenchAtariCommand,
                "scale": BenchScaleCommand,
            },
        ),
    }


_INTERRUPTED_ABRUPTLY = False  # set when Ctrl-C stopped a command outside a guarded loop (no checkpoint written)


def entry() -> None:
    """The ``lpg`` console script: ``main()``, then exit with its status.

    After a Ctrl-C outside a guarded loop (e.g. while XLA compiles) the
    process leaves with ``os._exit``: the interpreter's shutdown would tear
    down Python while XLA's compiler threads still run, which crashed with a
    segmentation fault (status 139) instead of 130.

    It first sets glibc's malloc to reuse big buffers (``lpg.allocator``) and
    adds the XLA flag every command runs with (``lpg.xla_flags``).
    """
    allocator.keep_large_buffers()
    xla_flags.for_every_command()
    status = main()
    if _INTERRUPTED_ABRUPTLY:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


def main(argv: list[str] | None = None) -> int:
    """Run one ``lpg`` command and return its exit status.

    A reader that closes the pipe early (``lpg envs | head -2``) ends the
    command quietly with status 141 (128 + SIGPIPE, as a shell reports it),
    following Python's documented recipe: stdout is pointed at devnull so the
    interpreter's final flush cannot raise a second time.
    """
    try:
        status = _run(argv)
        sys.stdout.flush()  # surface a closed pipe here, not in the interpreter's exit flush
        return status
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + int(signal.SIGPIPE)


def _validate_networks(options: object) -> None:
    """``NetworkConfig.validate`` on every network config among a parsed command's (nested) options.

    The configs validate here, not in ``__post_init__``, where tyro would show
    its own error box instead of the one-line ``lpg: error: ...``.
    """
    if isinstance(options, NetworkConfig):
        options.validate()
    elif dataclasses.is_dataclass(options):
        for field in dataclasses.fields(options):
            _validate_networks(getattr(options, field.name))


def command_path(argv: list[str], commands: dict[str, type]) -> str:
    """``lpg train`` / ``lpg discover online`` / ``lpg``: the (known) command words of ``argv``."""
    words = [w for w in argv if not w.startswith("-")]
    path = ["lpg"]
    if words and words[0] in commands:
        path.append(words[0])
        if len(words) > 1 and words[1] in getattr(commands[words[0]], "MEMBERS", ()):
            path.append(words[1])
    return " ".join(path)


def with_recipe(argv: list[str], commands: dict[str, type]) -> list[str]:
    """``argv`` with the flags of its ``--recipe NAME`` inserted right after the command words.

    A recipe is a named set of option values (``RECIPES`` of the command's
    options). Its flags come before the user's, so a flag given on the command
    line wins (the parser keeps the last value of a repeated flag). An unknown
    name is left to the options' own check, which says which recipes exist.
    """
    words = [(i, w) for i, w in enumerate(argv) if not w.startswith("-")]
    if not words or words[0][1] not in commands:
        return argv
    cls, end = commands[words[0][1]], words[0][0] + 1
    if len(words) > 1 and words[1][1] in getattr(cls, "CLASSES", {}):
        cls, end = cls.CLASSES[words[1][1]], words[1][0] + 1
    recipes = getattr(cls, "RECIPES", {})
    name = None
    for i, word in enumerate(argv):
        if word == "--recipe" and i + 1 < len(argv):
            name = argv[i + 1]
        elif word.startswith("--recipe="):
            name = word.split("=", 1)[1]
    if name not in recipes:
        return argv
    return argv[:end] + recipe_flags(recipes[name]) + argv[end:]


def parser_error_line(box: str, command: str) -> str:
    """One line from tyro's error box (printed plain when stderr is not a terminal).

    The box is a title, then sections between rules of dashes: the first holds
    the error; a "Perhaps you meant" section lists options, each followed by
    the command it belongs to (``in lpg train --help``), and only those of the
    command being run are kept as suggestions.
    """
    lines = [raw.strip().strip("│╭╮╰╯").strip() for raw in box.splitlines()]
    lines = [line for line in lines if line][1:]  # without the title
    sections: list[list[str]] = [[]]
    for line in lines:
        if set(line) <= set("-─"):
            sections.append([])
        else:
            sections[-1].append(line)
    sections = [section for section in sections if section] or [["invalid arguments"]]
    message = " ".join(" ".join(sections[0]).split()).split(" Got errors:")[0]  # not the per-type attempts
    message = re.sub(r"^Error parsing \w+: ", "", message)  # a config's own check, raised while tyro built it
    suggestions: list[str] = []
    for section in sections[1:]:
        if not section or not section[0].startswith("Perhaps you meant"):
            continue
        option = None
        for line in section[1:]:
            if line.startswith("--"):
                option = line.split()[0]
            elif (
                line.startswith("in lpg ")
                and option is not None
                and line.removeprefix("in ").removesuffix(" --help") == command
                and option not in suggestions
            ):
                suggestions.append(option)
        if not any(line.startswith("in lpg ") for line in section) and option is not None:
            suggestions.append(option)
    hint = f"; did you mean {' or '.join(suggestions)}?" if suggestions else ""
    return f"{message.rstrip('.')}{hint} (see `{command} --help`)"


def _run(argv: list[str] | None) -> int:
    commands = _subcommands()
    argv = with_recipe(list(sys.argv[1:] if argv is None else argv), commands)
    union = Union[tuple(Annotated[cls, tyro.conf.subcommand(name)] for name, cls in commands.items())]  # type: ignore[valid-type]
    parser_errors = io.StringIO()  # tyro's error boxes, turned into one line below
    try:
        with contextlib.redirect_stderr(parser_errors):
            command = tyro.cli(
                union,
                args=argv,
                prog="lpg",
                description="Discover reinforcement-learning objectives (LPG, FRODO, meta-gradient RL) in JAX.",
                config=(tyro.conf.OmitSubcommandPrefixes,),
            )
    except SystemExit as exit_:
        if exit_.code in (0, None):  # --help (printed on stdout)
            sys.stderr.write(parser_errors.getvalue())
            raise
        command_words = command_path(argv, commands)
        print(f"lpg: error: {parser_error_line(parser_errors.getvalue(), command_words)}", file=sys.stderr)
        return 2
    sys.stderr.write(parser_errors.getvalue())
    try:
        _validate_networks(command)
        initialize_from_env(command)  # LPG_COORDINATOR_ADDRESS etc.: join a multi-process run (lpg/distributed.py)
        return int(command.run() or 0)
    except UserInputError as error:
        print(f"lpg: error: {error}", file=sys.stderr)
        return 2
    except RunInterrupted as error:
        print(f"lpg: {error}", file=sys.stderr)
        return 128 + error.signum
    except RunFailedError as error:
        print(f"lpg: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        global _INTERRUPTED_ABRUPTLY
        _INTERRUPTED_ABRUPTLY = True
        print("lpg: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    entry()
