"""text2token: turn a decoder-only LM into a text embedder by token target prediction."""

__version__ = "0.1.0"

from .model import Text2TokenModel  # noqa: E402

__all__ = ["Text2TokenModel", "__version__"]
