"""The one exception type for errors a user can cause and fix."""


class HiclError(Exception):
    """A problem with the user's input, files or settings.

    The message says what is wrong and what to do; the CLI prints it on one line,
    without a traceback, and exits non-zero.
    """
