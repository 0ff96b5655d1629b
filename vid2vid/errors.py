"""User-facing errors: the CLI prints their message and exits with code 2, never a traceback."""

from collections.abc import Callable


class UserError(Exception):
    """Bad input from the user (a file, a config value, an argument). The message names what is
    wrong, the offending value and how to fix it."""


class ConfigError(UserError):
    """A configuration key is unknown, has the wrong type or breaks a rule."""


class DataError(UserError):
    """A dataset file is missing, unreadable or inconsistent with the rest of the dataset."""


def run_cli(prog: str, body: Callable[[], object]) -> int:
    """Run the body of `vid2vid` or a tool -> exit status. A UserError (ConfigError, DataError, ...), a flow
    FlowError or an OSError prints `prog: error: <one line>` on stderr and gives 2; Ctrl-C prints
    `prog: interrupted` and gives 130; other exceptions (bugs) keep their traceback."""
    from flow import FlowError, run_command  # here, not at the top: importing flow imports torch

    return run_command(prog, body, user_errors=(UserError, FlowError))
