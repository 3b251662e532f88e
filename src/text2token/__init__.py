"""text2token: turn a decoder-only LM into a text embedder by token target prediction.

The package imports lazily: ``import text2token`` and ``text2token --help`` do not load torch or
transformers; ``text2token.Text2TokenModel`` loads them on first use.
"""

__version__ = "0.1.0"
__all__ = ["Text2TokenModel", "__version__"]


def __getattr__(name):
    if name == "Text2TokenModel":
        from .model import Text2TokenModel

        return Text2TokenModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + ["Text2TokenModel"])
