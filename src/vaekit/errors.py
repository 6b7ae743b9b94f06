"""User-facing errors: one clear line, exit code 2, no traceback (unless --debug)."""


class VaekitError(Exception):
    """A problem with the user's input (a file, a flag, a run folder), not a bug in vaekit.

    The message is one line that names the file or setting and the problem.
    """


class DataError(VaekitError):
    """A data file is missing, malformed, or does not match what it claims to be."""


class RunError(VaekitError):
    """A run folder or model file cannot be used (missing, incomplete, would be overwritten)."""
