"""Errors for users of the flow package (bad file, bad weights, bad argument). The vid2vid and
flow command lines print the message and exit with code 2."""


class FlowError(Exception):
    """Bad input to the flow package: the message names the file or argument, the value and the fix."""
