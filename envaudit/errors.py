"""The one exception type a user can cause.

Its message is shown verbatim as one stderr line by the CLI (exit 2), so it must say what went
wrong and how to fix it. Never raise it for a bug in envaudit itself.
"""


class EnvauditError(Exception):
    """A problem the user can fix: bad input, missing or corrupt golden data, missing dependency."""
