"""The one error type edgepose raises for bad input; the CLI prints it as a single line.

Lives in the device package (which must stay importable without torch on Python 3.6) so
that host and device code share it; ``edgepose.errors`` re-exports it.
"""


class EdgeposeError(Exception):
    """A user-facing error: bad input, a missing file or runtime, a failed check.

    The message is one line that says what is wrong and, where possible, what to do.
    """


def os_error_message(exc):
    """One line for an ``OSError``: the path it concerns and the cause ("out/a.jpg: No space left on device").

    ``shutil.Error`` (a copy of many files) gives its first failure and how many there were.
    """
    if type(exc).__name__ == "Error" and exc.args and isinstance(exc.args[0], list) and exc.args[0]:
        failures = exc.args[0]
        first = failures[0]
        more = " (and {} more)".format(len(failures) - 1) if len(failures) > 1 else ""
        if isinstance(first, tuple) and len(first) == 3:
            return "{}: {}{}".format(first[1], first[2], more)
    cause = exc.strerror or str(exc) or type(exc).__name__
    name = exc.filename
    if name is None:
        return cause
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    if exc.filename2 is not None:
        return "{} -> {}: {}".format(name, exc.filename2, cause)
    return "{}: {}".format(name, cause)
