"""User-facing errors: the CLI prints their message and exits with code 2, never a traceback."""


class UserError(Exception):
    """Bad input from the user (a file, a config value, an argument). The message names what is
    wrong, the offending value and how to fix it."""


class ConfigError(UserError):
    """A configuration key is unknown, has the wrong type or breaks a rule."""


class DataError(UserError):
    """A dataset file is missing, unreadable or inconsistent with the rest of the dataset."""
