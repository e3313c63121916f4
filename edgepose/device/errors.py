"""The one error type edgepose raises for bad input; the CLI prints it as a single line.

Lives in the device package (which must stay importable without torch on Python 3.6) so
that host and device code share it; ``edgepose.errors`` re-exports it.
"""


class EdgeposeError(Exception):
    """A user-facing error: bad input, a missing file or runtime, a failed check.

    The message is one line that says what is wrong and, where possible, what to do.
    """
