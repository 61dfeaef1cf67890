"""The one exception type users see: the CLI prints its message as a single line, no traceback."""


class MtkdError(Exception):
    """A problem with the user's input (config, data, checkpoint, name), explained in one line."""
