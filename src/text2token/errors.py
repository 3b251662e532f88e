"""User-facing errors: one clear line, no deep stack trace."""


def one_line(text: str) -> str:
    """``text`` with line breaks and other unprintable characters escaped (``\\n``), so that a message quoting what
    a user's file holds (a key, a value, a path) stays one line."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


class Text2TokenError(Exception):
    """A problem with the user's input (file, model, config) that the CLI reports as one line: the message is kept
    one line whatever it quotes."""

    def __init__(self, message: str = "", *args):
        super().__init__(one_line(str(message)), *args)


class InputFileError(Text2TokenError):
    """A problem in an input file; the message names the file and, where known, the line."""

    def __init__(self, path, message: str, line: int | None = None):
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.line = line


class ConfigError(Text2TokenError):
    """An invalid configuration value or key."""


class ModelLoadError(Text2TokenError):
    """A model that cannot be found or used (no weights, no LM head, ...)."""
