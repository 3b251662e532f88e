"""text2token: turn a decoder-only LM into a text embedder by token target prediction.

The package imports lazily: ``import text2token`` and ``text2token --help`` do not load torch or
transformers; ``text2token.Text2TokenModel`` loads them on first use.
"""

import os

# Idle OpenMP threads sleep at once instead of spinning: two torch jobs on the same cores then share them (each
# 1.9x its solo time in benchmarks/contention.py) instead of spinning against each other (2.9x for encode, far
# more for training), and a job alone is no slower. Set before torch loads its OpenMP runtime (torch imported
# before text2token keeps its own setting); an OMP_WAIT_POLICY the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
__all__ = ["Text2TokenModel", "__version__"]


def __getattr__(name):
    if name == "Text2TokenModel":
        from .model import Text2TokenModel

        return Text2TokenModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + ["Text2TokenModel"])
