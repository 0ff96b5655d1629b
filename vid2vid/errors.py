"""User-facing errors: the CLI prints their message and exits with code 2, never a traceback."""

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class UserError(Exception):
    """Bad input from the user (a file, a config value, an argument). The message names what is
    wrong, the offending value and how to fix it."""


class ConfigError(UserError):
    """A configuration key is unknown, has the wrong type or breaks a rule."""


class DataError(UserError):
    """A dataset file is missing, unreadable or inconsistent with the rest of the dataset."""


def write_failed(path: str | os.PathLike, error: BaseException | str) -> UserError:
    """The error for an output that could not be written (a full disk, no permission, a file size limit): it names
    the output's own path (not a temporary name) and the reason (the system's, or a text)."""
    reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    return UserError(f"{path}: could not be written ({reason}); free disk space or write somewhere else, and check "
                     "the folder's permissions")


@contextmanager
def writing(path: str | os.PathLike, also: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """A write that fails inside the block (an OSError, or one of `also`) becomes write_failed(path, ...)."""
    try:
        yield
    except (OSError, *also) as error:
        raise write_failed(path, error) from None


def run_cli(prog: str, body: Callable[[], object]) -> int:
    """Run the body of `vid2vid` or a tool -> exit status. A UserError (ConfigError, DataError, ...), a flow
    FlowError or an OSError prints `prog: error: <one line>` on stderr and gives 2; Ctrl-C prints
    `prog: interrupted` and gives 130; other exceptions (bugs) keep their traceback."""
    from flow import FlowError, run_command  # here, not at the top: importing flow imports torch

    return run_command(prog, body, user_errors=(UserError, FlowError))
