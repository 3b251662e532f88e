"""User-facing errors: one clear line, no deep stack trace."""


class Text2TokenError(Exception):
    """A problem with the user's input (file, model, config) that the CLI reports as one line."""


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
