"""Typed errors of the Python API.

Every error a user can cause by their input (an unknown name, an invalid
number, an unwritable folder, a mismatching checkpoint) is a ``UserInputError``.
The command line prints its message as one line on stderr and exits with
status 2; Python callers can catch the specific subclass.
"""


class UserInputError(ValueError):
    """Invalid input from the user: the message says what and how to fix it."""


class UnknownNameError(UserInputError):
    """An environment, objective, method, experiment or preset name is not registered."""


class InvalidConfigError(UserInputError):
    """A configuration value is out of its valid range."""


class OutputDirError(UserInputError):
    """The output folder cannot be written, or already holds a different run."""


class CheckpointError(UserInputError):
    """A checkpoint is missing, corrupted, incompatible or does not fit the agent."""


class RunFailedError(RuntimeError):
    """A run stopped itself (not the user's input); the CLI prints one line and exits with status 1."""


class NonFiniteError(RunFailedError):
    """Too many consecutive updates had non-finite gradients, meta-gradients or fitness."""


class RunInterrupted(RunFailedError):
    """SIGINT or SIGTERM stopped the run after a checkpoint was saved; exit status 128 + signal number."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
