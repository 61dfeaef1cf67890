"""The one exception type users see: the CLI prints its message as a single line, no traceback."""


class MtkdError(Exception):
    """A problem with the user's input (config, data, checkpoint, name), explained in one line."""


def first_line(err: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type name when it has none (``EOFError()``)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__
