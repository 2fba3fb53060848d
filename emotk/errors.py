"""The one exception type the CLI turns into a one-line error and exit code 1."""


class EmotkError(Exception):
    """A user-facing error: bad input, a missing file, an invalid option.

    The message must say what is wrong and where (file, line, utterance id).
    """


def where(path, line_no=None) -> str:
    """Format a location as ``path:line`` for error messages."""
    return f"{path}:{line_no}" if line_no is not None else str(path)
