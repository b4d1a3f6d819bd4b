"""The one exception type for errors a user can cause and fix, and its kind for an index's own damage."""


class HiclError(Exception):
    """A problem with the user's input, files or settings.

    The message says what is wrong and what to do; the CLI prints it on one line,
    without a traceback, and exits non-zero.
    """


class IndexDamaged(HiclError):
    """An index's own files are damaged, missing or cannot be opened: not the fault of the request that met it.

    The CLI prints it like any `HiclError`; the service answers 503 (and /health reports it) rather than
    blaming the client with a 4xx.
    """
