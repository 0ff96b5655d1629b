"""Errors for users of the flow package (bad file, bad weights, bad argument), and the command-line runner
that turns them into one line on stderr: `python -m flow`, `vid2vid` and the tools all exit through
`run_command` (vid2vid.errors.run_cli adds vid2vid's own error classes)."""

import sys
from collections.abc import Callable

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class FlowError(Exception):
    """Bad input to the flow package: the message names the file or argument, the value and the fix."""


def load_failure_reason(error: BaseException) -> str:
    """One line on why torch.load(weights_only=True) failed: for a refused pickle, the line naming the global it
    would have imported (not torch's advice to pass weights_only=False, which would run the file's code); for
    content the weights-only unpickler cannot read (a plain pickle), its own reason; else the exception's type and
    first line (an empty or cut file raises EOFError without any text)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    refused = next((line for line in lines if "GLOBAL" in line), None)
    if refused:
        return f"it would import {refused.split('GLOBAL', 1)[1].strip().split(' ')[0]}: refused, never executed"
    unpickler = next((i for i, line in enumerate(lines) if line.endswith("WeightsUnpickler error:")), None)
    if unpickler is not None and unpickler + 1 < len(lines):  # e.g. a plain pickle: "Unsupported operand 149"
        return f"{type(error).__name__} in the weights-only unpickler: {lines[unpickler + 1]}"
    return " ".join([type(error).__name__, *lines[:1]])


def error_message(error: BaseException, user_errors: tuple[type[BaseException], ...]) -> str | None:
    """The one-line message for a user error or an OSError (unreadable input, unwritable output, full disk);
    None for anything else (a bug: let its traceback through)."""
    if isinstance(error, user_errors):
        text = str(error)
    elif isinstance(error, OSError):
        where = f"{error.filename}: " if error.filename else ""
        text = f"{where}{error.strerror or error}; check the path and its permissions and free space"
    else:
        return None
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def run_command(prog: str, body: Callable[[], object],
                user_errors: tuple[type[BaseException], ...] = (FlowError,)) -> int:
    """Run a command line's body -> exit status: 0; 2 after printing `prog: error: <one line>` for a user
    error or an OSError; 130 after `prog: interrupted` for Ctrl-C. Other exceptions propagate."""
    try:
        body()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:
        message = error_message(e, user_errors)
        if message is None:
            raise
        print(f"{prog}: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0
